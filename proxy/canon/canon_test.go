package canon

import (
	"strings"
	"testing"
)

func TestParsePath(t *testing.T) {
	type want struct {
		match, escaped string
		encodedSlash   bool
		refusal        Refusal
	}
	ok := func(match, escaped string) want { return want{match: match, escaped: escaped} }
	refused := func(r Refusal) want { return want{refusal: r} }
	for _, tc := range []struct {
		name, raw string
		want      want
	}{
		// Accepted, and their one canonical spelling.
		{"empty is root", "", ok("/", "/")},
		{"root", "/", ok("/", "/")},
		{"plain", "/admin/users", ok("/admin/users", "/admin/users")},
		{"case kept", "/ADMIN", ok("/ADMIN", "/ADMIN")},
		{"trailing slash kept", "/x/", ok("/x/", "/x/")},
		{"unreserved and sub-delims stay", "/a:b@c!$&'()*+,=-._~", ok("/a:b@c!$&'()*+,=-._~", "/a:b@c!$&'()*+,=-._~")},
		{"needless escape decoded", "/%61dmin", ok("/admin", "/admin")},
		{"needless escape of tilde", "/%7Euser", ok("/~user", "/~user")},
		{"needless upper-case escape", "/%41DMIN/x", ok("/ADMIN/x", "/ADMIN/x")},
		{"needed escape kept", "/a%7Cb", ok("/a|b", "/a%7Cb")},
		{"lower-case hex upper-cased", "/a%7cb", ok("/a|b", "/a%7Cb")},
		{"raw byte escaped", "/a|b", ok("/a|b", "/a%7Cb")},
		{"space inside a segment", "/a b", ok("/a b", "/a%20b")},
		{"escaped space inside a segment", "/a%20b", ok("/a b", "/a%20b")},
		{"question mark escaped", "/a%3Fb", ok("/a?b", "/a%3Fb")},
		{"UTF-8 escaped", "/caf%C3%A9", ok("/café", "/caf%C3%A9")},
		{"UTF-8 lower-case hex", "/caf%c3%a9", ok("/café", "/caf%C3%A9")},
		{"raw UTF-8 escaped", "/café", ok("/café", "/caf%C3%A9")},
		{"four-byte UTF-8", "/%F0%9F%98%80", ok("/\U0001F600", "/%F0%9F%98%80")},
		{"dots inside a segment", "/a..b/.well-known", ok("/a..b/.well-known", "/a..b/.well-known")},
		{"encoded slash reported", "/a%2Fb", want{match: "/a%2Fb", escaped: "/a%2Fb", encodedSlash: true}},
		{"encoded slash upper-cased", "/a%2fb/c", want{match: "/a%2Fb/c", escaped: "/a%2Fb/c", encodedSlash: true}},

		// Refused, one or more spellings per reason. RefuseEncodedSlash is
		// the router's (ParsePath reports EncodedSlash, see above).
		{"relative", "admin", refused(refuseNotOrigin)},
		{"asterisk form", "*", refused(refuseNotOrigin)},
		{"absolute URL", "http://x/", refused(refuseNotOrigin)},
		{"encoded backslash", "/a%5Cb", refused(refuseEncBackslash)},
		{"encoded backslash lower-case", "/a%5cb", refused(refuseEncBackslash)},
		{"backslash", "/a\\b", refused(refuseBackslash)},
		{"encoded dot segment", "/%2E%2E/admin", refused(refuseEncDot)},
		{"encoded dot lower-case", "/a%2e", refused(refuseEncDot)},
		{"encoded percent", "/%25", refused(refuseEncPercent)},
		{"double encoding", "/%252F", refused(refuseEncPercent)},
		{"lone percent", "/%", refused(refuseBadEscape)},
		{"short escape", "/%4", refused(refuseBadEscape)},
		{"short escape at end", "/a%", refused(refuseBadEscape)},
		{"non-hex escape", "/%zz", refused(refuseBadEscape)},
		{"half-hex escape", "/%4g", refused(refuseBadEscape)},
		{"encoded NUL", "/a%00", refused(refuseControl)},
		{"raw NUL", "/a\x00", refused(refuseControl)},
		{"encoded LF", "/a%0Ab", refused(refuseControl)},
		{"raw tab", "/a\tb", refused(refuseControl)},
		{"encoded DEL", "/a%7F", refused(refuseControl)},
		{"raw DEL", "/a\x7f", refused(refuseControl)},
		{"path parameter", "/a;jsessionid=1", refused(refuseParameter)},
		{"encoded path parameter", "/a%3Bb", refused(refuseParameter)},
		{"encoded path parameter lower-case", "/a%3bb", refused(refuseParameter)},
		{"dot", "/.", refused(refuseDotSegment)},
		{"dot dot", "/..", refused(refuseDotSegment)},
		{"dot dot inside", "/a/../b", refused(refuseDotSegment)},
		{"dot inside", "/a/./b", refused(refuseDotSegment)},
		{"dot dot between encoded slashes", "/a%2F..%2Fb", refused(refuseDotSegment)},
		{"double slash", "//", refused(refuseEmptySegment)},
		{"double slash inside", "/a//b", refused(refuseEmptySegment)},
		{"double slash first", "//a", refused(refuseEmptySegment)},
		{"empty piece between encoded slashes", "/a%2F%2Fb", refused(refuseEmptySegment)},
		{"trailing encoded slash", "/a%2F", refused(refuseEmptySegment)},
		{"trailing dot", "/a.", refused(refuseTrailingDot)},
		{"trailing dot inside", "/a./b", refused(refuseTrailingDot)},
		{"trailing dot before encoded slash", "/a.%2Fb", refused(refuseTrailingDot)},
		{"leading space", "/%20a", refused(refuseWhitespace)},
		{"trailing space", "/a%20", refused(refuseWhitespace)},
		{"trailing raw space inside", "/a /b", refused(refuseWhitespace)},
		{"space segment", "/ ", refused(refuseWhitespace)},
		{"dot then space", "/a. ", refused(refuseWhitespace)},
		{"truncated UTF-8", "/%C3", refused(refuseBadUTF8)},
		{"invalid UTF-8 byte", "/%FF", refused(refuseBadUTF8)},
		{"raw invalid UTF-8", "/\xff", refused(refuseBadUTF8)},
		{"bad continuation", "/%C3%28", refused(refuseBadUTF8)},
		{"surrogate", "/%ED%A0%80", refused(refuseBadUTF8)},
		{"overlong slash", "/%C0%AF", refused(refuseBadUTF8)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, why := ParsePath(tc.raw)
			if why != tc.want.refusal {
				t.Fatalf("ParsePath(%q) refusal = %q, want %q", tc.raw, why, tc.want.refusal)
			}
			if why != "" {
				return
			}
			got := want{match: p.Match, escaped: p.Escaped, encodedSlash: p.EncodedSlash}
			if got != tc.want {
				t.Fatalf("ParsePath(%q) = %+v, want %+v", tc.raw, p, tc.want)
			}
		})
	}
}

func TestCheckPattern(t *testing.T) {
	for _, tc := range []struct {
		pattern string
		wantErr string // substring; "" for a valid pattern
	}{
		{"/", ""},
		{"/admin", ""},
		{"/api/v1/", ""},
		{"/café", ""},
		{"/a b", ""},
		{"/a|b", ""},
		{"", "must start with /"},
		{"admin", "must start with /"},
		{"/a%2Fb", "without %-escapes"},
		{"/%61dmin", "without %-escapes"},
		{"/a?b", "without %-escapes, query or fragment"},
		{"/a#b", "without %-escapes, query or fragment"},
		{"/a/../b", "is not canonical: contains a dot segment"},
		{"//", "is not canonical: contains an empty segment"},
		{"/a;b", "is not canonical: contains a path parameter"},
		{"/a\\b", "is not canonical: contains a backslash"},
		{"/a\x00", "is not canonical: contains a control character"},
		{"/a.", "is not canonical: contains a segment ending in a dot"},
		{"/ a", "is not canonical: contains a segment starting or ending with whitespace"},
		{"/\xff", "is not canonical: does not decode to UTF-8"},
	} {
		err := CheckPattern(tc.pattern)
		switch {
		case tc.wantErr == "" && err != nil:
			t.Errorf("CheckPattern(%q) = %v, want nil", tc.pattern, err)
		case tc.wantErr != "" && err == nil:
			t.Errorf("CheckPattern(%q) = nil, want an error containing %q", tc.pattern, tc.wantErr)
		case tc.wantErr != "" && !strings.Contains(err.Error(), tc.wantErr):
			t.Errorf("CheckPattern(%q) = %q, want it to contain %q", tc.pattern, err, tc.wantErr)
		}
	}
}

func TestCheckQuery(t *testing.T) {
	for _, tc := range []struct {
		name, raw string
		want      Refusal
	}{
		{"empty", "", ""},
		{"plain", "a=1&b=2", ""},
		{"escapes", "q=caf%C3%A9&x=%2f", ""},
		{"escape at end", "a=%41", ""},
		{"semicolon", "a=1;b=2", refuseQuerySemicolon},
		{"lone percent", "a=%", refuseQueryEscape},
		{"short escape at end", "a=%4", refuseQueryEscape},
		{"non-hex escape", "a=%zz", refuseQueryEscape},
	} {
		if got := CheckQuery(tc.raw); got != tc.want {
			t.Errorf("%s: CheckQuery(%q) = %q, want %q", tc.name, tc.raw, got, tc.want)
		}
	}
}
