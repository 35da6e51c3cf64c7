// Package canon is the gateway's one reading of a request target: the
// canonical path (and method) that routes match, policies are decided on,
// and the upstream receives. It has no dependencies so that config
// validation holds route patterns to the same rules as requests.
package canon

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// The model is Spring Security's StrictHttpFirewall: a spelling that some
// upstream framework could read differently from the gateway is refused
// (400), not passed on for the upstream to interpret. Refused:
//   - encoded "/" (%2F), "\" (%5C), "." (%2E) and "%" (%25), and a raw "\"
//     (servers that decode before routing, or treat "\" as "/", would see
//     other segments than the gateway);
//   - control characters, raw or encoded (%00 ends the path in C servers);
//   - ";" raw or encoded (Spring and Tomcat strip ";" path parameters);
//   - dot segments and empty segments ("//");
//   - a segment ending in "." (Windows drops trailing dots) or starting or
//     ending with whitespace (Spring trims it);
//   - bytes that do not decode to UTF-8.
//
// What is left decodes unambiguously. Percent-encoded characters that
// need no encoding ("%61" for "a") are decoded, so every spelling of a path
// has one canonical escaped form, and that is what the upstream receives.
// An encoded slash can be allowed per route (relax: [encoded_slash]); it
// then stays "%2F" inside its segment and never separates segments.

// Refusal names why a path was refused; it is the 400 body's description.
type Refusal string

const (
	refuseNotOrigin    Refusal = "The request path must start with /"
	RefuseEncodedSlash Refusal = "The request path contains an encoded slash (%2F)"
	refuseEncBackslash Refusal = "The request path contains an encoded backslash (%5C)"
	refuseBackslash    Refusal = "The request path contains a backslash"
	refuseEncDot       Refusal = "The request path contains an encoded dot (%2E)"
	refuseEncPercent   Refusal = "The request path contains an encoded percent sign (%25)"
	refuseBadEscape    Refusal = "The request path contains an invalid percent-encoding"
	refuseControl      Refusal = "The request path contains a control character"
	refuseParameter    Refusal = "The request path contains a path parameter (;)"
	refuseDotSegment   Refusal = "The request path contains a dot segment (. or ..)"
	refuseEmptySegment Refusal = "The request path contains an empty segment (//)"
	refuseTrailingDot  Refusal = "The request path contains a segment ending in a dot"
	refuseWhitespace   Refusal = "The request path contains a segment starting or ending with whitespace"
	refuseBadUTF8      Refusal = "The request path does not decode to UTF-8"
	refuseStream       Refusal = "The request path contains an NTFS stream name (:$)"

	refuseQuerySemicolon Refusal = "The query string contains a semicolon"
	refuseQueryEscape    Refusal = "The query string contains an invalid percent-encoding"
)

// Path is a request path after canonicalisation.
type Path struct {
	// Match is the decoded path that routes match on (case-insensitively);
	// an allowed encoded slash stays "%2F" in it, which is unambiguous
	// because a decoded "%" is refused.
	Match string
	// Escaped is the canonical escaped form: what the upstream receives.
	Escaped string
	// EncodedSlash reports a "%2F", which only a relaxed route accepts.
	EncodedSlash bool
}

// literal reports whether c stays as it is in the canonical escaped form:
// RFC 3986 unreserved characters and the sub-delimiters, ":" and "@" that
// a path segment may carry unencoded (";" is refused before this).
func literal(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	switch c {
	case '-', '.', '_', '~', '!', '$', '&', '\'', '(', ')', '*', '+', ',', '=', ':', '@':
		return true
	}
	return false
}

// ParsePath canonicalises an escaped request path (URL.EscapedPath, which
// is the path exactly as the client sent it). An empty path, as in an
// absolute-form target without one, is "/".
func ParsePath(raw string) (Path, Refusal) {
	if raw == "" {
		return Path{Match: "/", Escaped: "/"}, ""
	}
	if raw[0] != '/' {
		return Path{}, refuseNotOrigin
	}
	plain := true // nothing to decode or escape: all three forms are raw
	for i := 0; i < len(raw); i++ {
		if c := raw[i]; c != '/' && !literal(c) {
			plain = false
			break
		}
	}
	if plain {
		if r := checkSegments(raw); r != "" {
			return Path{}, r
		}
		return Path{Match: raw, Escaped: raw}, ""
	}
	return decodePath(raw)
}

// decodePath is ParsePath for a path that needs decoding or escaping.
func decodePath(raw string) (Path, Refusal) {
	var match, esc strings.Builder
	match.Grow(len(raw))
	esc.Grow(len(raw) + 8)
	var cp Path
	for i := 0; i < len(raw); i++ {
		c := raw[i]
		switch {
		case c == '%':
			if i+2 >= len(raw) || !isHex(raw[i+1]) || !isHex(raw[i+2]) {
				return Path{}, refuseBadEscape
			}
			c = unhex(raw[i+1])<<4 | unhex(raw[i+2])
			i += 2
			switch c {
			case '/':
				cp.EncodedSlash = true
				match.WriteString("%2F")
				esc.WriteString("%2F")
				continue
			case '\\':
				return Path{}, refuseEncBackslash
			case '.':
				return Path{}, refuseEncDot
			case '%':
				return Path{}, refuseEncPercent
			case ';':
				return Path{}, refuseParameter
			}
		case c == '\\':
			return Path{}, refuseBackslash
		case c == ';':
			return Path{}, refuseParameter
		}
		if c < 0x20 || c == 0x7f {
			return Path{}, refuseControl
		}
		match.WriteByte(c)
		if c == '/' || literal(c) {
			esc.WriteByte(c)
		} else {
			esc.WriteByte('%')
			esc.WriteByte(upperHex[c>>4])
			esc.WriteByte(upperHex[c&15])
		}
	}
	cp.Match, cp.Escaped = match.String(), esc.String()
	if !utf8.ValidString(cp.Match) {
		return Path{}, refuseBadUTF8
	}
	if r := checkRunes(cp.Match); r != "" {
		return Path{}, r
	}
	if r := checkSegments(cp.Match); r != "" {
		return Path{}, r
	}
	return cp, ""
}

// CheckQuery refuses a query string that servers split or decode in
// different ways: a ";" (a separator to some, part of a value to others;
// Go's ReverseProxy would silently drop the parameter) or a "%" not
// followed by two hex digits. The gateway decides nothing on the query,
// but it forwards only what every upstream reads the same way.
func CheckQuery(raw string) Refusal {
	for i := 0; i < len(raw); i++ {
		switch raw[i] {
		case ';':
			return refuseQuerySemicolon
		case '%':
			if i+2 >= len(raw) || !isHex(raw[i+1]) || !isHex(raw[i+2]) {
				return refuseQueryEscape
			}
		}
	}
	return ""
}

// CheckPattern reports whether p can be a route path, path prefix or
// rewrite prefix: written decoded (no %-escapes), starting with "/", and
// passing the rules requests are held to, so that every pattern can be
// matched by some canonical request. Config validation calls it.
func CheckPattern(p string) error {
	switch {
	case !strings.HasPrefix(p, "/"):
		return fmt.Errorf("must start with /, got %q", p)
	case strings.ContainsAny(p, "%?#"):
		return fmt.Errorf("%q: write the path decoded, without %%-escapes, query or fragment", p)
	}
	if _, why := ParsePath(p); why != "" {
		return fmt.Errorf("%q is not canonical: %s", p, strings.TrimPrefix(string(why), "The request path "))
	}
	return nil
}

// checkSegments applies the segment rules to a decoded path. An allowed
// encoded slash ("%2F") splits pieces too: a server that decodes it before
// resolving dot segments must not find any either.
func checkSegments(p string) Refusal {
	rest := p[1:]
	for {
		seg, tail, more := strings.Cut(rest, "/")
		if !more && seg == "" {
			return "" // a trailing slash (or the root) ends the path
		}
		if seg == "" {
			return refuseEmptySegment
		}
		for piece := range strings.SplitSeq(seg, "%2F") {
			if r := checkPiece(piece); r != "" {
				return r
			}
		}
		if !more {
			return ""
		}
		rest = tail
	}
}

func checkPiece(s string) Refusal {
	switch {
	case s == "." || s == "..":
		return refuseDotSegment
	case s == "":
		return refuseEmptySegment
	case s[len(s)-1] == '.':
		return refuseTrailingDot
	case isSpace(s[0]) || isSpace(s[len(s)-1]):
		return refuseWhitespace
	case (s[0] >= utf8.RuneSelf || s[len(s)-1] >= utf8.RuneSelf) && isEdgeSpace(s):
		return refuseWhitespace
	case strings.Contains(s, ":$"):
		// NTFS streams: IIS serves "/admin::$DATA" as "/admin".
		return refuseStream
	}
	return ""
}

func isSpace(c byte) bool { return c == ' ' }

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case '0' <= c && c <= '9':
		return c - '0'
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10
	default:
		return c - 'A' + 10
	}
}

const upperHex = "0123456789ABCDEF"

// Unescape decodes a canonical escaped path into URL.Path form
// (an encoded slash becomes "/" there; URL.RawPath keeps it apart).
func Unescape(esc string) string {
	if strings.IndexByte(esc, '%') < 0 {
		return esc
	}
	b := make([]byte, 0, len(esc))
	for i := 0; i < len(esc); i++ {
		if esc[i] == '%' && i+2 < len(esc) {
			b = append(b, unhex(esc[i+1])<<4|unhex(esc[i+2]))
			i += 2
			continue
		}
		b = append(b, esc[i])
	}
	return string(b)
}

// Case folding for route matching. Express and ASP.NET Core match routes
// case-insensitively, so every spelling they treat as one path gets one
// policy here. Folding is Unicode simple case folding (the rune's orbit
// under unicode.SimpleFold, represented by its smallest member), which
// is at least as wide as what those frameworks fold: "K" (U+212A KELVIN
// SIGN) folds with "k" too.

// foldRune maps r to the representative of its case-folding orbit.
func foldRune(r rune) rune {
	if r < utf8.RuneSelf {
		if 'a' <= r && r <= 'z' {
			return r - 'a' + 'A'
		}
		return r
	}
	switch r {
	case '\u0130', '\u0131':
		// Dotted capital and dotless small I: Java's equalsIgnoreCase and
		// Turkish-locale folding read both as "i".
		return 'I'
	}
	m := r
	for f := unicode.SimpleFold(r); f != r; f = unicode.SimpleFold(f) {
		m = min(m, f)
	}
	return m
}

// Fold folds every rune of s (for route patterns, once at build).
func Fold(s string) string {
	var b strings.Builder
	for _, r := range s {
		b.WriteRune(foldRune(r))
	}
	return b.String()
}

// FoldPrefix reports whether p starts with the folded pattern, comparing
// folded runes, and returns how many bytes of p the pattern covered.
func FoldPrefix(p, folded string) (int, bool) {
	i, j := 0, 0
	for j < len(folded) {
		if i >= len(p) {
			return 0, false
		}
		a, b := p[i], folded[j]
		if a < utf8.RuneSelf && b < utf8.RuneSelf {
			if byte(foldRune(rune(a))) != b {
				return 0, false
			}
			i, j = i+1, j+1
			continue
		}
		ra, na := utf8.DecodeRuneInString(p[i:])
		rb, nb := utf8.DecodeRuneInString(folded[j:])
		if foldRune(ra) != rb {
			return 0, false
		}
		i, j = i+na, j+nb
	}
	return i, true
}

// EscapeMatch escapes a decoded Match-form path canonically; its "%" only
// ever starts an allowed "%2F", which stays as it is.
func EscapeMatch(m string) string {
	var b strings.Builder
	b.Grow(len(m) + 8)
	for i := 0; i < len(m); i++ {
		c := m[i]
		if c == '/' || c == '%' || literal(c) {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('%')
		b.WriteByte(upperHex[c>>4])
		b.WriteByte(upperHex[c&15])
	}
	return b.String()
}

// Standard reports whether m (canonical) is one of the methods every
// route takes when it lists none. Others (WebDAV's PROPFIND, MOVE, COPY,
// LOCK...) only reach a route that lists them: a server may treat them as
// writes that a read route's policy never considered.
func Standard(m string) bool {
	switch m {
	case "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS":
		return true
	}
	return false
}

// Method upper-cases a method (ASCII only: methods are tokens).
// Flask and others upper-case the method they read, so "delete" must be
// routed, authorised and forwarded as DELETE.
func Method(m string) string {
	for i := 0; i < len(m); i++ {
		if c := m[i]; 'a' <= c && c <= 'z' {
			return strings.ToUpper(m)
		}
	}
	return m
}
