package attack

import (
	"testing"
)

// ambiguous is a request target the gateway must refuse with 400
// invalid_path before routing. json is false for targets net/http itself
// refuses before any handler runs (raw control bytes, broken escapes): then
// only "400 and no upstream" is asserted.
type ambiguous struct {
	name   string
	target string
	json   bool
}

var ambiguousPaths = []ambiguous{
	// encoded slash
	{"encoded slash climbs into admin", "/pub%2F..%2Fadmin", true},
	{"lower-case encoded slash climbs into admin", "/pub%2f..%2fadmin", true},
	{"encoded slash inside the admin prefix", "/admin%2Fusers", true},
	{"encoded slash as the first byte", "/%2Fadmin", true},
	{"encoded double slash", "/pub/%2F%2Fadmin", true},
	{"encoded slash after a dot segment", "/pub/..%2Fadmin", true},
	// backslash
	{"encoded backslash climbs into admin", "/pub%5C..%5Cadmin", true},
	{"lower-case encoded backslash", "/pub%5c..%5cadmin", true},
	{"literal backslash climbs into admin", "/pub\\..\\admin", true},
	{"literal backslash as a separator", "/pub\\admin", true},
	{"literal backslash at the end", "/admin\\", true},
	// encoded dot
	{"encoded dot-dot segment", "/pub/%2E%2E/admin", true},
	{"lower-case encoded dot-dot segment", "/pub/%2e%2e/admin", true},
	{"half-encoded dot-dot segment", "/pub/.%2e/admin", true},
	{"encoded dot segment", "/pub/%2e/admin", true},
	{"encoded dot at the end of admin", "/admin%2E", true},
	{"encoded dot in a file name", "/pub/index%2Ehtml", true},
	// encoded percent
	{"double-encoded dot-dot", "/pub/%252e%252e/admin", true},
	{"double-encoded slash", "/pub%252F..%252Fadmin", true},
	{"encoded percent alone", "/admin%25", true},
	// control characters, encoded
	{"encoded NUL truncates admin", "/admin%00", true},
	{"encoded NUL before a suffix", "/admin%00.png", true},
	{"encoded LF", "/admin%0A", true},
	{"encoded CR", "/admin%0D", true},
	{"encoded CRLF splits the upstream request line", "/pub%0D%0AX-Client-Id:%20forged", true},
	{"encoded tab", "/admin%09", true},
	{"encoded DEL", "/admin%7F", true},
	{"encoded SOH", "/admin%01", true},
	{"encoded unit separator", "/adm%1Fin", true},
	{"lower-case encoded DEL", "/admin%7f", true},
	// control characters, raw (net/http refuses these before the handler)
	{"raw DEL", "/admin\x7f", false},
	{"raw NUL", "/admin\x00", false},
	{"raw SOH", "/admin\x01", false},
	{"raw tab", "/admin\t", false},
	// path parameters
	{"semicolon path parameter on admin", "/admin;x=1", true},
	{"Tomcat dot-dot-semicolon", "/pub/..;/admin", true},
	{"trailing semicolon", "/admin;", true},
	{"jsessionid on a public path", "/pub;jsessionid=1", true},
	{"encoded semicolon", "/admin%3Bx=1", true},
	{"lower-case encoded semicolon", "/admin%3b", true},
	// dot segments
	{"dot-dot climbs into admin", "/pub/../admin", true},
	{"dot segment before admin", "/./admin", true},
	{"dot segment after admin", "/admin/.", true},
	{"dot-dot at the end", "/pub/..", true},
	{"dot-dot from the root", "/../admin", true},
	{"dot segment in the middle", "/admin/./x", true},
	// empty segments
	{"double slash before admin", "//admin", true},
	{"double slash inside admin", "/admin//x", true},
	{"double slash inside inv", "/inv//42", true},
	{"triple slash", "///", true},
	// trailing dots
	{"trailing dot on admin", "/admin.", true},
	{"two trailing dots on admin", "/admin..", true},
	{"trailing dot on inv segment", "/inv./42", true},
	{"trailing dot on a file", "/pub/file.", true},
	// whitespace at a segment's edge
	{"trailing encoded space on admin", "/admin%20", true},
	{"leading encoded space on admin", "/%20admin", true},
	{"trailing encoded space before a slash", "/admin%20/x", true},
	{"segment of one encoded space", "/pub/%20", true},
	// invalid UTF-8
	{"overlong slash", "/pub/%C0%AF", true},
	{"overlong dot-dot", "/pub/%C0%AE%C0%AE/admin", true},
	{"three-byte overlong slash", "/pub/%E0%80%AF", true},
	{"lone 0xFF", "/%FF", true},
	{"UTF-16 surrogate", "/pub/%ED%A0%80", true},
	{"truncated sequence", "/pub/caf%C3", true},
	{"raw 0xFF byte", "/pub/\xff", true},
	// escapes net/http cannot even parse
	{"broken percent escape", "/admin%zz", false},
	{"truncated percent escape", "/admin%2", false},
}

// TestAttackPathAmbiguousIsRefused: every ambiguous spelling gets 400
// invalid_path and reaches no upstream, with or without a token.
func TestAttackPathAmbiguousIsRefused(t *testing.T) {
	t.Parallel()
	w := newWorld(t, nil, nil)
	admin := token(t, w.iss, "svc-billing", "admin read:inv write:inv", nil)
	for _, c := range ambiguousPaths {
		t.Run(c.name, func(t *testing.T) {
			for _, hdrs := range [][]string{nil, {bearer(admin)}} {
				w.reset()
				req := rq("GET", c.target, hdrs...)
				r := send(t, w.gw.addr, req)
				if c.json {
					expectError(t, req, r, 400, "invalid_path")
				} else {
					expectStatus(t, req, r, 400)
				}
				w.expectNoUpstream(t, req)
			}
		})
	}
}

// forwarded is a request the gateway must route to upstream and forward in
// the canonical form want (the raw request target the upstream sees).
type forwarded struct {
	name   string
	method string
	target string
	token  string // "", "admin", "user"
	status int
	route  string // upstream name; "" when none may be reached
	want   string // RequestURI at the upstream
}

// TestAttackPathCanonicalForm: decoded unreserved characters, re-escaped
// everything else (upper-case hex), query untouched.
func TestAttackPathCanonicalForm(t *testing.T) {
	t.Parallel()
	w := newWorld(t, nil, nil)
	cases := []forwarded{
		{name: "percent-encoded a in admin is admin", target: "/%61dmin", token: "admin", status: 200, route: upAdmin, want: "/admin"},
		{name: "percent-encoded a in admin needs the admin token", target: "/%61dmin", status: 401},
		{name: "percent-encoded capital A is still admin, sent in the route's spelling", target: "/%41dmin/x", token: "admin", status: 200, route: upAdmin, want: "/admin/x"},
		{name: "fully encoded admin", target: "/%61%64%6d%69%6e", status: 401},
		{name: "encoded tilde is decoded", target: "/pub/%7Euser", status: 200, route: upPub, want: "/pub/~user"},
		{name: "encoded letters are decoded", target: "/pub/%41%42%63", status: 200, route: upPub, want: "/pub/ABc"},
		{name: "encoded hyphen underscore dot-in-name are decoded", target: "/pub/a%2Db%5Fc", status: 200, route: upPub, want: "/pub/a-b_c"},
		{name: "encoded sub-delims become literal", target: "/pub/a%2Bb%21%24%26%27%28%29%2A%2C%3D", status: 200, route: upPub, want: "/pub/a+b!$&'()*,="},
		{name: "encoded colon and at become literal", target: "/pub/%3A%40me", status: 200, route: upPub, want: "/pub/:@me"},
		{name: "lower-case hex is upper-cased", target: "/pub/caf%c3%a9", status: 200, route: upPub, want: "/pub/caf%C3%A9"},
		{name: "raw UTF-8 is escaped", target: "/pub/caf\xc3\xa9", status: 200, route: upPub, want: "/pub/caf%C3%A9"},
		{name: "encoded question mark stays in the path", target: "/pub/a%3Fb", status: 200, route: upPub, want: "/pub/a%3Fb"},
		{name: "encoded hash stays in the path", target: "/pub/a%23b", status: 200, route: upPub, want: "/pub/a%23b"},
		{name: "raw double quote is escaped", target: "/pub/\"q\"", status: 200, route: upPub, want: "/pub/%22q%22"},
		{name: "raw braces pipe caret backtick are escaped", target: "/pub/{a}|^`", status: 200, route: upPub, want: "/pub/%7Ba%7D%7C%5E%60"},
		{name: "raw angle brackets are escaped", target: "/pub/<x>", status: 200, route: upPub, want: "/pub/%3Cx%3E"},
		{name: "inner encoded space is kept escaped", target: "/pub/a%20b", status: 200, route: upPub, want: "/pub/a%20b"},
		{name: "trailing slash is kept", target: "/pub/", status: 200, route: upPub, want: "/pub/"},
		{name: "root", target: "/", status: 200, route: upPub, want: "/"},
		{name: "query with encoded slash and dots is untouched", target: "/pub/x?a=%2F&b=..%2F..&c", status: 200, route: upPub, want: "/pub/x?a=%2F&b=..%2F..&c"},
		{name: "query is not decoded or re-encoded", target: "/pub/x?q=%61+b%2b", status: 200, route: upPub, want: "/pub/x?q=%61+b%2b"},
		{name: "absolute-form target is routed by its path", target: "http://gw.test/%61dmin", status: 401},
		{name: "absolute-form target is forwarded canonical", target: "http://gw.test/%61dmin", token: "admin", status: 200, route: upAdmin, want: "/admin"},
	}
	runForwarded(t, w, cases)
}

// TestAttackPathQueryIsNeverRewritten: the spec forwards the query
// unchanged. Go's ReverseProxy silently drops parameters it cannot parse
// ("a;b", "%zz"), so the upstream would read other parameters than the
// client sent; byte-for-byte forwarding is what the spec asks, and a 400
// invalid_query refusal is accepted as the fail-closed alternative. A
// silently altered query is never accepted.
func TestAttackPathQueryIsNeverRewritten(t *testing.T) {
	t.Parallel()
	w := newWorld(t, nil, nil)
	for _, c := range []struct{ name, target string }{
		{"query with a semicolon", "/pub/x?q=a;b&r=1"},
		{"query with a lone semicolon parameter", "/pub/x?;admin=1"},
		{"query with a broken escape", "/pub/x?q=%zz&r=1"},
		{"query with a truncated escape", "/pub/x?q=1&r=%"},
		{"query with an encoded semicolon", "/pub/x?q=a%3Bb"},
		{"query with raw UTF-8", "/pub/x?q=caf\xc3\xa9"},
		{"query with a repeated parameter", "/pub/x?role=user&role=admin"},
	} {
		t.Run(c.name, func(t *testing.T) {
			w.reset()
			req := rq("GET", c.target)
			r := send(t, w.gw.addr, req)
			if r.Status == 400 {
				expectError(t, req, r, 400, "invalid_query")
				w.expectNoUpstream(t, req)
				return
			}
			expectStatus(t, req, r, 200)
			if h, ok := w.expectLanded(t, req, upPub); ok && h.RequestURI != c.target {
				t.Errorf("request %q: upstream received %q, want the query byte for byte (or a 400 invalid_query)", req, h.RequestURI)
			}
		})
	}
}

// TestAttackPathBeyondSpecLookalikes goes past the spec's list: spellings
// the gateway routes to the public route while some upstream reads them
// as /admin (Java's equalsIgnoreCase folds dotless i and dotted I to i;
// NFKC folds fullwidth forms; Python's str.strip and Java's strip() drop
// Unicode whitespace; IIS serves /admin for /admin::$DATA). The property
// asserted is the attacker's: without a token they must not get past the
// gateway (400 invalid_path, or 401 from the admin policy).
func TestAttackPathBeyondSpecLookalikes(t *testing.T) {
	t.Parallel()
	w := newWorld(t, nil, nil)
	for _, c := range []struct{ name, target string }{
		{"trailing NBSP", "/admin%C2%A0"},
		{"trailing ideographic space", "/admin%E3%80%80"},
		{"trailing EM SPACE", "/admin%E2%80%83"},
		{"leading NBSP", "/%C2%A0admin"},
		{"trailing NEL (a C1 control)", "/admin%C2%85"},
		{"C1 control CSI", "/admin%C2%9B"},
		{"trailing zero width space", "/admin%E2%80%8B"},
		{"leading byte order mark", "/%EF%BB%BFadmin"},
		{"soft hyphen inside", "/ad%C2%ADmin"},
		{"right-to-left override", "/%E2%80%AEnimda"},
		{"dotless i (Java equalsIgnoreCase)", "/adm%C4%B1n"},
		{"dotted capital I (Java equalsIgnoreCase)", "/ADM%C4%B0N"},
		{"fullwidth a (NFKC)", "/%EF%BD%81dmin"},
		{"fullwidth ADMIN (NFKC)", "/%EF%BC%A1%EF%BC%A4%EF%BC%AD%EF%BC%A9%EF%BC%AE"},
		{"fullwidth solidus climbs (NFKC)", "/pub%EF%BC%8F..%EF%BC%8Fadmin"},
		{"division slash climbs", "/pub%E2%88%95..%E2%88%95admin"},
		{"one dot leader dot-dot (NFKC)", "/pub/%E2%80%A5/admin"},
		{"NTFS alternate data stream", "/admin::$DATA"},
		{"NTFS alternate data stream on a child", "/admin::$INDEX_ALLOCATION/x"},
	} {
		t.Run(c.name, func(t *testing.T) {
			w.reset()
			req := rq("GET", c.target)
			r := send(t, w.gw.addr, req)
			if r.Status != 400 && r.Status != 401 {
				t.Errorf("request %q: got %s and %s; want 400 invalid_path or the admin policy's 401", req, r, describeHits(w.landed()))
			}
			if r.Status == 400 {
				expectError(t, req, r, 400, "invalid_path")
			}
			if r.Status != 200 {
				w.expectNoUpstream(t, req)
			}
		})
	}
}

// TestAttackPathCaseFolding: route matching ignores case (Unicode simple
// folding), so a case change never escapes a route's policy, and the
// upstream receives the case the client sent.
func TestAttackPathCaseFolding(t *testing.T) {
	t.Parallel()
	w := newWorld(t, nil, nil)
	cases := []forwarded{
		{name: "upper-case ADMIN needs the admin token", target: "/ADMIN", status: 401},
		{name: "title-case Admin needs the admin token", target: "/Admin/users", status: 401},
		{name: "mixed-case aDmIn needs the admin token", target: "/aDmIn", status: 401},
		{name: "upper-case ADMIN is forwarded in the route's spelling", target: "/ADMIN", token: "admin", status: 200, route: upAdmin, want: "/admin"},
		{name: "encoded upper-case ADMIN is forwarded in the route's spelling", target: "/%41DMIN", token: "admin", status: 200, route: upAdmin, want: "/admin"},
		{name: "KELVIN SIGN spells key", target: "/%E2%84%AAey", status: 401},
		{name: "raw KELVIN SIGN spells key", target: "/\xe2\x84\xaaey", status: 401},
		{name: "KELVIN SIGN is forwarded as the route's /key", target: "/%E2%84%AAey/1", token: "admin", status: 200, route: upKey, want: "/key/1"},
		{name: "upper-case KEY needs the admin token", target: "/KEY", status: 401},
		{name: "LONG S spells svc for a user", target: "/%C5%BFvc", token: "user", status: 403},
		{name: "upper-case SVC refuses a user", target: "/SVC/x", token: "user", status: 403},
		{name: "upper-case INV needs a token", target: "/INV/42", status: 401},
		{name: "upper-case ORDERS is stripped", target: "/ORDERS/7", status: 200, route: upOrders, want: "/base/v1/7"},
		{name: "title-case Orders is stripped once", target: "/Orders/orders/7", status: 200, route: upOrders, want: "/base/v1/orders/7"},
		{name: "encoded o in orders is stripped", target: "/%6Frders/7", status: 200, route: upOrders, want: "/base/v1/7"},
		{name: "orders is stripped on whole segments only", target: "/ordersx/7", status: 200, route: upPub, want: "/ordersx/7"},
		{name: "orders rest is canonical", target: "/orders/%7e/caf%c3%a9?x=%2F", status: 200, route: upOrders, want: "/base/v1/~/caf%C3%A9?x=%2F"},
		{name: "orders with an encoded slash is refused", target: "/orders/a%2Fb", status: 400},
	}
	runForwarded(t, w, cases)
}

func runForwarded(t *testing.T, w *world, cases []forwarded) {
	t.Helper()
	toks := map[string]string{
		"admin": token(t, w.iss, "svc-billing", "admin read:inv write:inv", nil),
		"user":  userToken(t, w.iss, "auth0|alice", "admin read:inv"),
		"read":  token(t, w.iss, "svc-billing", "read:inv", nil),
		"write": token(t, w.iss, "svc-billing", "read:inv write:inv", nil),
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			w.reset()
			method := c.method
			if method == "" {
				method = "GET"
			}
			var hdrs []string
			if c.token != "" {
				hdrs = append(hdrs, bearer(toks[c.token]))
			}
			req := rq(method, c.target, hdrs...)
			r := send(t, w.gw.addr, req)
			expectStatus(t, req, r, c.status)
			if c.route == "" {
				w.expectNoUpstream(t, req)
				return
			}
			if h, ok := w.expectLanded(t, req, c.route); ok && h.RequestURI != c.want {
				t.Errorf("request %q: upstream %s received target %q, want %q", req, c.route, h.RequestURI, c.want)
			}
		})
	}
}

// TestAttackPathRelaxedEncodedSlash: relax: [encoded_slash] lets %2F through
// on that route only, forwarded as %2F and never read as a separator.
func TestAttackPathRelaxedEncodedSlash(t *testing.T) {
	t.Parallel()
	w := newWorld(t, nil, []string{"files"}, withRoutes(
		"- name: files\n  match: {path_prefix: /files}\n  auth: public\n  relax: [encoded_slash]\n  upstreams: [\"{{up:files}}\"]",
	))
	ok := []forwarded{
		{name: "encoded slash passes on the relaxed route", target: "/files/a%2Fb", status: 200, route: "files", want: "/files/a%2Fb"},
		{name: "lower-case encoded slash is forwarded upper-case", target: "/files/a%2fb/c", status: 200, route: "files", want: "/files/a%2Fb/c"},
		{name: "encoded slash and other escapes are canonical", target: "/files/%7e%2Fcaf%c3%a9", status: 200, route: "files", want: "/files/~%2Fcaf%C3%A9"},
	}
	runForwarded(t, w, ok)
	refused := []string{
		"/files/..%2Fadmin",      // a dot-dot piece
		"/files/a%2F..%2Fadmin",  // a dot-dot piece in the middle
		"/files/a%2F.%2Fb",       // a dot piece
		"/files/a%2F%2E%2E%2Fb",  // encoded dots stay refused
		"/files/a%5Cb",           // backslash is not relaxed
		"/files%2F..%2Fadmin",    // %2F is not a separator: "files/../admin" is not /files
		"/pub/a%2Fb",             // other routes are not relaxed
		"/admin%2Fx",             // nor admin
		"/files/a%252Fb",         // encoded percent is not relaxed
		"/files/a%2F..%2F..%2Fx", // climbing twice
	}
	for _, target := range refused {
		t.Run("refused "+target, func(t *testing.T) {
			w.reset()
			req := rq("GET", target)
			r := send(t, w.gw.addr, req)
			expectError(t, req, r, 400, "invalid_path")
			w.expectNoUpstream(t, req)
		})
	}
}
