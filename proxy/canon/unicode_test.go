package canon

import "testing"

// TestUnicodeLookalikesAreRefused: characters that some upstream drops,
// trims or maps onto ASCII never reach it.
func TestUnicodeLookalikesAreRefused(t *testing.T) {
	for _, tc := range []struct {
		name, raw string
		want      Refusal
	}{
		{"C1 control (NEL) inside a segment", "/ad%C2%85min", refuseControl},
		{"C1 control (CSI)", "/admin%C2%9B", refuseControl},
		{"zero-width space", "/admin%E2%80%8B", refuseInvisible},
		{"byte order mark", "/%EF%BB%BFadmin", refuseInvisible},
		{"soft hyphen", "/ad%C2%ADmin", refuseInvisible},
		{"right-to-left override", "/%E2%80%AEnimda", refuseInvisible},
		{"no-break space at the end", "/admin%C2%A0", refuseWhitespace},
		{"ideographic space at the start", "/%E3%80%80admin", refuseWhitespace},
		{"em space at the end", "/admin%E2%80%83", refuseWhitespace},
		{"division slash", "/pub%E2%88%95..%E2%88%95admin", refuseLookalike},
		{"NTFS data stream", "/admin::$DATA", refuseStream},
		{"NTFS index allocation", "/admin::$INDEX_ALLOCATION/x", refuseStream},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, got := ParsePath(tc.raw); got != tc.want {
				t.Errorf("ParsePath(%q) refusal %q, want %q", tc.raw, got, tc.want)
			}
		})
	}
	for _, ok := range []string{"/caf%C3%A9", "/%E6%97%A5%E6%9C%AC/x", "/a%C2%A0b", "/time:12"} {
		if _, why := ParsePath(ok); why != "" {
			t.Errorf("ParsePath(%q) refused: %s", ok, why)
		}
	}
}

func TestFoldCoversJavaAndTurkishI(t *testing.T) {
	for p, pattern := range map[string]string{
		"/adm\u0131n": "/admin", // dotless i
		"/ADM\u0130N": "/admin", // dotted capital I
		"/\u212Aey":   "/key",   // KELVIN SIGN
		"/\u017Fvc":   "/svc",   // LONG S
	} {
		if n, ok := FoldPrefix(p, Fold(pattern)); !ok || n != len(p) {
			t.Errorf("%q does not fold onto %q", p, pattern)
		}
	}
}

func TestCompat(t *testing.T) {
	for raw, want := range map[string]string{"/\uFF41dmin": "/admin", "/pub\uFF0F..\uFF0Fadmin": "/pub/../admin", "/caf\u00e9": "/caf\u00e9"} {
		got, changed := Compat(raw)
		if got != want || changed != (raw != want) {
			t.Errorf("Compat(%q) = %q, %v; want %q", raw, got, changed, want)
		}
	}
}
