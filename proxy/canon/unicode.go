package canon

import (
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
)

// Rules for characters beyond ASCII. A path may hold any UTF-8 text, but
// not characters that some upstream drops, trims or maps onto the ASCII
// characters routes are made of:
//   - C1 controls (U+0080 to U+009F), refused like C0 controls;
//   - invisible format characters (Unicode category Cf: zero-width space,
//     byte order mark, soft hyphen, bidi overrides), which Java and .NET
//     string routines may strip;
//   - Unicode whitespace at a segment's edge (no-break space, ideographic
//     space, NEL...), which Python's str.strip and Java's String.strip
//     trim (see checkPiece);
//   - look-alikes of "/", "\" and "." that servers with "best fit"
//     mappings (IIS) read as the real ones.
//
// Compatibility forms (NFKC: full-width letters, "‥") are handled by
// Compat: a path whose compatibility form would take another route is
// refused by the router.

const (
	refuseInvisible Refusal = "The request path contains an invisible format character"
	refuseLookalike Refusal = "The request path contains a look-alike of /, \\ or ."
)

// checkRunes applies the rules above to a decoded path holding non-ASCII
// bytes (segment-edge whitespace is checkPiece's).
func checkRunes(p string) Refusal {
	for _, r := range p {
		switch {
		case r < utf8.RuneSelf:
		case r <= 0x9f:
			return refuseControl
		case unicode.Is(unicode.Cf, r):
			return refuseInvisible
		case lookalike(r):
			return refuseLookalike
		}
	}
	return ""
}

// lookalike reports the separators' look-alikes that NFKC leaves alone
// but "best fit" code pages map to ASCII.
func lookalike(r rune) bool {
	switch r {
	case '\u2215', '\u2044', '\u29F8', '\u2216', '\u29F9', '\uFE68':
		return true
	}
	return false
}

// isEdgeSpace reports whether the first or last rune of a non-empty
// segment piece is whitespace (ASCII or Unicode).
func isEdgeSpace(s string) bool {
	first, _ := utf8.DecodeRuneInString(s)
	last, _ := utf8.DecodeLastRuneInString(s)
	return unicode.IsSpace(first) || unicode.IsSpace(last)
}

// Compat returns the compatibility form (NFKC) of a decoded Match path and
// whether it differs. Frameworks that normalise paths (and IIS) read
// "/ａdmin" as "/admin": the router refuses a path whose compatibility
// form takes another route, or breaks the path rules ("／..／").
func Compat(match string) (string, bool) {
	for i := 0; i < len(match); i++ {
		if match[i] >= utf8.RuneSelf {
			nf := norm.NFKC.String(match)
			return nf, nf != match
		}
	}
	return match, false
}
