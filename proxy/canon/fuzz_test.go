package canon

import (
	"strings"
	"testing"
	"unicode/utf8"
)

// fuzzPatterns are route-like prefix patterns as a route holds them: the
// pattern as written and its folded form.
var fuzzPatterns = []struct{ raw, folded string }{
	{"/admin", Fold("/admin")},
	{"/Inv", Fold("/Inv")},
	{"/k", Fold("/k")},
}

// FuzzParsePath checks the properties the gateway relies on when it
// routes, authorises and forwards the canonical path:
//
//	(a) ParsePath never panics;
//	(b) an accepted path is a fixed point: ParsePath(p.Escaped) == p;
//	(c) p.Escaped holds only A-Za-z0-9-._~!$&'()*+,=:@/% and every "%"
//	    starts an upper-case "%XX";
//	(d) Unescape(p.Escaped) has no control byte, "\" or ";", is UTF-8, and
//	    (without an encoded slash) equals p.Match and has no ".", ".." or
//	    empty segment but a trailing one;
//	(e) EscapeMatch(p.Match) is p.Escaped, and for a route prefix pattern
//	    the path matches, the forwarded spelling (pattern + rest, escaped)
//	    parses again and is matched by the same pattern, as is the
//	    re-escaped Match.
func FuzzParsePath(f *testing.F) {
	for _, s := range []string{
		"", "/", "/admin", "/ADMIN/users", "/%61dmin", "/%41DMIN/x", "/a%7Cb", "/a|b", "/a%7cb",
		"/caf%C3%A9", "/café", "/x/", "/a%2Fb", "/a%2fb", "/a b", "/a%20b", "/~user/x-y_z.json",
		"/a:b@c!$&'()*+,=", "/%7E", "/a?b", "/inv/\u212a", "/\u212aey", "/\u017fecret", "/İnv", "/ınv",
		"admin", "//", "/a//b", "/.", "/..", "/a/../b", "/a/./b", "/%2E%2E/admin", "/a%2e", "/%25",
		"/%", "/%4", "/%zz", "/a%5Cb", "/a\\b", "/a;b", "/a%3Bb", "/a%00", "/a\x00", "/a%0A", "/a\t",
		"/a%7F", "/a.", "/a./b", "/a.%2Fb", "/a%2F..%2Fb", "/a%2F", "/%20a", "/a%20", "/ ", "/%C3",
		"/%FF", "/\xff", "/%ED%A0%80", "/%F0%9F%98%80", "/\U0001F600/x",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		p, why := ParsePath(raw)
		if why != "" {
			if p != (Path{}) {
				t.Fatalf("ParsePath(%q) refused (%s) but returned %+v", raw, why, p)
			}
			return
		}

		// (b) idempotent.
		q, why2 := ParsePath(p.Escaped)
		if why2 != "" || q != p {
			t.Fatalf("ParsePath(%q) = %+v, but ParsePath(%q) = %+v, %q", raw, p, p.Escaped, q, why2)
		}

		// (c) the escaped form's alphabet.
		esc := p.Escaped
		if !strings.HasPrefix(esc, "/") {
			t.Fatalf("ParsePath(%q).Escaped = %q does not start with /", raw, esc)
		}
		for i := 0; i < len(esc); i++ {
			c := esc[i]
			if c == '%' {
				if i+2 >= len(esc) || !isUpperHex(esc[i+1]) || !isUpperHex(esc[i+2]) {
					t.Fatalf("ParsePath(%q).Escaped = %q: %%-escape at %d is not %%XX with upper-case hex", raw, esc, i)
				}
				i += 2
				continue
			}
			if c != '/' && !literal(c) {
				t.Fatalf("ParsePath(%q).Escaped = %q holds byte %#x at %d", raw, esc, c, i)
			}
		}

		// (d) the decoded form the upstream's URL.Path carries.
		dec := Unescape(esc)
		if !utf8.ValidString(dec) {
			t.Fatalf("Unescape(%q) = %q is not UTF-8", esc, dec)
		}
		for i := 0; i < len(dec); i++ {
			if c := dec[i]; c < 0x20 || c == 0x7f || c == '\\' || c == ';' {
				t.Fatalf("Unescape(%q) = %q holds byte %#x", esc, dec, c)
			}
		}
		if !p.EncodedSlash {
			if dec != p.Match {
				t.Fatalf("ParsePath(%q): Unescape(Escaped) = %q, Match = %q", raw, dec, p.Match)
			}
			segs := strings.Split(dec[1:], "/")
			for i, seg := range segs {
				if seg == "." || seg == ".." || seg == "" && i != len(segs)-1 {
					t.Fatalf("ParsePath(%q): Unescape(Escaped) = %q has segment %d = %q", raw, dec, i, seg)
				}
			}
		}

		// (e) forwarding keeps the match.
		if got := EscapeMatch(p.Match); got != p.Escaped {
			t.Fatalf("ParsePath(%q): EscapeMatch(Match %q) = %q, Escaped = %q", raw, p.Match, got, p.Escaped)
		}
		re, why3 := ParsePath(EscapeMatch(p.Match))
		if why3 != "" {
			t.Fatalf("ParsePath(%q): ParsePath(EscapeMatch(%q)) refused: %s", raw, p.Match, why3)
		}
		for _, pat := range fuzzPatterns {
			n, ok := FoldPrefix(p.Match, pat.folded)
			n2, ok2 := FoldPrefix(re.Match, pat.folded)
			if n != n2 || ok != ok2 {
				t.Fatalf("pattern %q: FoldPrefix(%q) = %d, %v but after re-escaping FoldPrefix(%q) = %d, %v",
					pat.raw, p.Match, n, ok, re.Match, n2, ok2)
			}
			if !ok {
				continue
			}
			// What forwardPath sends for a route whose pattern matched.
			m := pat.raw + p.Match[n:]
			fwd, why := ParsePath(EscapeMatch(m))
			if why != "" {
				t.Fatalf("pattern %q matched %q; the forwarded %q is refused: %s", pat.raw, p.Match, EscapeMatch(m), why)
			}
			if fwd.Match != m {
				t.Fatalf("pattern %q matched %q; forwarded %q reads back as %q", pat.raw, p.Match, m, fwd.Match)
			}
			if n3, ok3 := FoldPrefix(fwd.Match, pat.folded); !ok3 || n3 != len(pat.raw) {
				t.Fatalf("pattern %q matched %q but not the forwarded %q (%d, %v)", pat.raw, p.Match, fwd.Match, n3, ok3)
			}
		}
	})
}

func isUpperHex(c byte) bool { return '0' <= c && c <= '9' || 'A' <= c && c <= 'F' }

// FuzzFoldPrefix checks that a folded pattern matches what it was folded
// from, in full, and the upper- and lower-case spellings of ASCII text.
func FuzzFoldPrefix(f *testing.F) {
	for _, s := range []string{
		"", "/", "/admin", "/Inv/Reports", "k", "K", "\u212a", "\u017f", "ß", "ẞ", "İ", "ı", "σς", "Σ",
		"ǅ", "/caf\u00e9", "\U0001F600", "\xff", "a\x80b", "%2F",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		folded := Fold(s)
		if Fold(folded) != folded {
			t.Fatalf("Fold(%q) = %q is not a fixed point: Fold again = %q", s, folded, Fold(folded))
		}
		if !utf8.ValidString(s) {
			return
		}
		if n, ok := FoldPrefix(s, folded); !ok || n != len(s) {
			t.Fatalf("FoldPrefix(%q, Fold = %q) = %d, %v; want %d, true", s, folded, n, ok, len(s))
		}
		if n, ok := FoldPrefix(folded, folded); !ok || n != len(folded) {
			t.Fatalf("FoldPrefix(Fold(%q) = %q, itself) = %d, %v", s, folded, n, ok)
		}
		for i := 0; i < len(s); i++ {
			if s[i] >= utf8.RuneSelf {
				return
			}
		}
		for _, v := range []string{strings.ToUpper(s), strings.ToLower(s)} {
			if n, ok := FoldPrefix(v, folded); !ok || n != len(v) {
				t.Fatalf("FoldPrefix(%q, Fold(%q) = %q) = %d, %v; want %d, true", v, s, folded, n, ok, len(v))
			}
		}
	})
}
