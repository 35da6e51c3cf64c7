package proxy

import (
	"bufio"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/websocket"

	"github.com/metagate/gateway/enrich"
)

// named is an upstream that says who it is and records the path it got.
type named struct {
	*httptest.Server
	name string
	mu   sync.Mutex
	hits int
	path string
	hdr  http.Header
}

func newNamed(t *testing.T, name string) *named {
	n := &named{name: name}
	n.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.mu.Lock()
		n.hits++
		n.path = r.URL.RequestURI()
		n.hdr = r.Header.Clone()
		n.mu.Unlock()
		w.Header().Set("X-Upstream", name)
		_, _ = io.Copy(io.Discard, r.Body)
	}))
	t.Cleanup(n.Close)
	return n
}

func (n *named) u() *url.URL { u, _ := url.Parse(n.URL); return u }

func (n *named) count() int { n.mu.Lock(); defer n.mu.Unlock(); return n.hits }

func TestRoutingAndPolicies(t *testing.T) {
	admin, orders, ordersV2, public, wild, billing, reports := newNamed(t, "admin"), newNamed(t, "orders"), newNamed(t, "orders-v2"),
		newNamed(t, "public"), newNamed(t, "wild"), newNamed(t, "billing"), newNamed(t, "reports")
	f := newFixture(t, fixtureOpts{routes: func(*url.URL) []RouteConfig {
		return []RouteConfig{
			{Name: "wild", Hosts: []string{"*.tenants.test"}, PathPrefix: "/", Upstreams: []*url.URL{wild.u()}, Auth: AuthPublic},
			{Name: "orders-post", PathPrefix: "/orders", Methods: []string{"POST"}, Upstreams: []*url.URL{ordersV2.u()},
				Policy: Policy{AllOf: []string{"write:orders"}}},
			{Name: "orders", PathPrefix: "/orders", Upstreams: []*url.URL{orders.u()}, StripPrefix: "/orders", AddPrefix: "/v1"},
			{Name: "admin", PathPrefix: "/admin", Upstreams: []*url.URL{admin.u()}, Policy: Policy{AnyOf: []string{"admin", "root"}}},
			{Name: "public", PathPrefix: "/public", Upstreams: []*url.URL{public.u()}, Auth: AuthPublic},
			{Name: "exact", Path: "/health", Upstreams: []*url.URL{public.u()}, Auth: AuthPublic},
			{Name: "billing", PathPrefix: "/billing", Upstreams: []*url.URL{billing.u()},
				Policy: Policy{Kinds: []enrich.Kind{enrich.KindClient}, MetadataKeys: []string{"tier"}}},
			{Name: "reports", PathPrefix: "/reports", Upstreams: []*url.URL{reports.u()}, Auth: AuthOptional,
				Policy: Policy{Audiences: []string{"https://other-api.test/"}, MetadataKeys: []string{}}},
		}
	}})
	is := f.issuer
	tok := is.Token(t, "svc-billing") // scope read:things
	withScope := func(scope string) string {
		c := is.Claims("svc-billing")
		c["scope"] = scope
		return is.Sign(t, is.Key(), c, nil)
	}
	user := func() string {
		c := is.Claims("spa")
		c["sub"] = "auth0|alice"
		delete(c, "gty")
		return is.Sign(t, is.Key(), c, nil)
	}()
	otherAud := func() string {
		c := is.Claims("svc-billing")
		c["aud"] = "https://other-api.test/"
		return is.Sign(t, is.Key(), c, nil)
	}()

	cases := []struct {
		name, method, host, path, token string
		wantStatus                      int
		wantUpstream                    string
		wantPath                        string
		wantAuth                        string // WWW-Authenticate substring
	}{
		{"host wildcard wins first", "GET", "acme.tenants.test", "/admin", "", 200, "wild", "/admin", ""},
		{"wildcard needs one label", "GET", "tenants.test", "/public/x", "", 200, "public", "/public/x", ""},
		{"wildcard is one label only", "GET", "a.b.tenants.test", "/nothing", "", 404, "", "", ""},
		{"method filter picks the POST route", "POST", "", "/orders/1", withScope("write:orders"), 200, "orders-v2", "/orders/1", ""},
		{"POST without the scope", "POST", "", "/orders/1", tok, 403, "", "", `error="insufficient_scope", scope="write:orders"`},
		{"GET falls through to the next route, prefix rewritten", "GET", "", "/orders/1?x=y", tok, 200, "orders", "/v1/1?x=y", ""},
		{"prefix root rewritten", "GET", "", "/orders", tok, 200, "orders", "/v1/", ""},
		{"segment-aware prefix", "GET", "", "/ordersx", tok, 404, "", "", ""},
		{"any_of scope missing", "GET", "", "/admin/users", tok, 403, "", "", `scope="admin root"`},
		{"any_of scope present", "GET", "", "/admin/users", withScope("root"), 200, "admin", "/admin/users", ""},
		{"exact path", "GET", "", "/health", "", 200, "public", "/health", ""},
		{"exact path does not match below it", "GET", "", "/health/x", "", 404, "", "", ""},
		{"exact path takes its trailing-slash spelling (Spring, Express)", "GET", "", "/Health/", "", 200, "public", "/health", ""},
		{"no route", "GET", "", "/nowhere", tok, 404, "", "", ""},
		{"clients-only route refuses a user", "GET", "", "/billing/x", user, 403, "", "", ""},
		{"clients-only route takes a client", "GET", "", "/billing/x", tok, 200, "billing", "/billing/x", ""},
		{"optional route without token", "GET", "", "/reports/x", "", 200, "reports", "/reports/x", ""},
		{"optional route with a bad token", "GET", "", "/reports/x", "bad.token.here", 401, "", "", `error="invalid_token"`},
		{"route audience refuses the issuer's other audience", "GET", "", "/reports/x", tok, 401, "", "", "audience"},
		{"route audience accepts its own", "GET", "", "/reports/x", otherAud, 200, "reports", "/reports/x", ""},
		// Path tricks: an ambiguous spelling is refused, never routed.
		{"double slash", "GET", "", "//admin/users", "", 400, "", "", ""},
		{"dot-dot through public", "GET", "", "/public/../admin/users", "", 400, "", "", ""},
		{"encoded dot-dot through public", "GET", "", "/public/%2e%2e/admin/users", "", 400, "", "", ""},
		{"encoded slash", "GET", "", "/public%2F..%2Fadmin/users", "", 400, "", "", ""},
		{"upper case gets the admin policy", "GET", "", "/ADMIN/users", "", 401, "", "", `Bearer realm`},
		{"upper case is forwarded in the route's spelling", "GET", "", "/ADMIN/users", withScope("root"), 200, "admin", "/admin/users", ""},
		{"encoded unreserved letter is decoded", "GET", "", "/%61dmin/users", withScope("root"), 200, "admin", "/admin/users", ""},
		{"trailing slash", "GET", "", "/admin/", "", 401, "", "", `Bearer realm`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := map[*named]int{}
			all := []*named{admin, orders, ordersV2, public, wild, billing, reports}
			for _, n := range all {
				before[n] = n.count()
			}
			resp := rawRequest(t, f.gw.Listener.Addr().String(), tc.method, tc.host, tc.path, tc.token)
			if resp.StatusCode != tc.wantStatus {
				t.Fatalf("status %d, want %d", resp.StatusCode, tc.wantStatus)
			}
			if got := resp.Header.Get("X-Upstream"); got != tc.wantUpstream {
				t.Errorf("upstream %q, want %q", got, tc.wantUpstream)
			}
			if !strings.Contains(resp.Header.Get("WWW-Authenticate"), tc.wantAuth) {
				t.Errorf("WWW-Authenticate %q, want %q", resp.Header.Get("WWW-Authenticate"), tc.wantAuth)
			}
			for _, n := range all {
				got := n.count() - before[n]
				want := 0
				if n.name == tc.wantUpstream {
					want = 1
				}
				if got != want {
					t.Errorf("upstream %s hit %d times, want %d", n.name, got, want)
				}
				if want == 1 && n.path != tc.wantPath {
					t.Errorf("upstream got path %q, want %q", n.path, tc.wantPath)
				}
			}
		})
	}

	t.Run("metadata allow-list", func(t *testing.T) {
		f.do(t, "GET", "/billing/x", tok, nil)
		if billing.hdr.Get("X-Client-Metadata-Tier") != "gold" || billing.hdr.Get("X-Client-Metadata-Region") != "" || billing.hdr.Get("X-Client-Metadata") != "" {
			t.Errorf("billing route got tier=%q region=%q json=%q; want only tier", billing.hdr.Get("X-Client-Metadata-Tier"),
				billing.hdr.Get("X-Client-Metadata-Region"), billing.hdr.Get("X-Client-Metadata"))
		}
		f.do(t, "GET", "/reports/x", otherAud, nil)
		for k := range reports.hdr {
			if strings.HasPrefix(k, "X-Client-Metadata") {
				t.Errorf("reports route (empty allow-list) got %s", k)
			}
		}
		if reports.hdr.Get("X-Client-Id") != "svc-billing" {
			t.Errorf("identity headers still expected with an empty allow-list")
		}
	})
}

func TestRoundRobinAndPassiveHealth(t *testing.T) {
	a, b, c := newNamed(t, "a"), newNamed(t, "b"), newNamed(t, "c")
	dead := newNamed(t, "dead")
	deadURL := dead.u()
	dead.Close() // refuses connections from now on
	var rts []RouteConfig
	f := newFixture(t, fixtureOpts{routes: func(*url.URL) []RouteConfig {
		rts = []RouteConfig{
			{Name: "spread", PathPrefix: "/spread", Upstreams: []*url.URL{a.u(), b.u(), c.u()}, Auth: AuthPublic},
			{Name: "flaky", PathPrefix: "/flaky", Upstreams: []*url.URL{deadURL, a.u()}, Auth: AuthPublic, UnhealthyFor: time.Hour},
		}
		return rts
	}})
	for i := 0; i < 30; i++ {
		f.do(t, "GET", "/spread", "", nil)
	}
	for _, n := range []*named{a, b, c} {
		if n.count() != 10 {
			t.Errorf("upstream %s got %d of 30 requests, want 10", n.name, n.count())
		}
	}
	before := a.count()
	for i := 0; i < 6; i++ {
		resp := f.do(t, "GET", "/flaky", "", nil)
		if resp.StatusCode != 200 {
			t.Fatalf("request %d: status %d: the dead target was not retried on the live one", i, resp.StatusCode)
		}
	}
	if got := a.count() - before; got != 6 {
		t.Errorf("live target served %d of 6", got)
	}
	// A non-idempotent request is not retried, but the dead target is out.
	req, _ := http.NewRequest("POST", f.gw.URL+"/flaky", strings.NewReader("x"))
	resp, err := f.gw.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("POST after the dead target was taken out: %d", resp.StatusCode)
	}
}

func TestBodyLimit(t *testing.T) {
	up := newNamed(t, "up")
	f := newFixture(t, fixtureOpts{routes: func(*url.URL) []RouteConfig {
		return []RouteConfig{{Name: "small", PathPrefix: "/", Upstreams: []*url.URL{up.u()}, Auth: AuthPublic, MaxBodyBytes: 1024}}
	}})
	post := func(body io.Reader, chunked bool) int {
		req, _ := http.NewRequest("POST", f.gw.URL+"/upload", body)
		if chunked {
			req.ContentLength = -1
		}
		resp, err := f.gw.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if s := post(strings.NewReader(strings.Repeat("x", 1024)), false); s != 200 {
		t.Errorf("1024 bytes: %d, want 200", s)
	}
	if s := post(strings.NewReader(strings.Repeat("x", 1025)), false); s != 413 {
		t.Errorf("1025 bytes with Content-Length: %d, want 413", s)
	}
	if s := post(io.MultiReader(strings.NewReader(strings.Repeat("x", 4096))), true); s != 413 {
		t.Errorf("4096 bytes chunked: %d, want 413", s)
	}
}

func TestWebSocketThroughGateway(t *testing.T) {
	var gotClient string
	ws := httptest.NewServer(websocket.Handler(func(c *websocket.Conn) {
		gotClient = c.Request().Header.Get("X-Client-Id")
		_, _ = io.Copy(c, c)
	}))
	defer ws.Close()
	wu, _ := url.Parse(ws.URL)
	f := newFixture(t, fixtureOpts{routes: func(*url.URL) []RouteConfig {
		return []RouteConfig{{Name: "ws", PathPrefix: "/", Upstreams: []*url.URL{wu}}}
	}})
	dial := func(token string) (*websocket.Conn, error) {
		cfg, _ := websocket.NewConfig("ws"+strings.TrimPrefix(f.gw.URL, "http")+"/socket", f.gw.URL)
		if token != "" {
			cfg.Header.Set("Authorization", "Bearer "+token)
		}
		cfg.Header.Set("X-Client-Id", "forged")
		return websocket.DialConfig(cfg)
	}
	if _, err := dial(""); err == nil {
		t.Fatal("WebSocket upgrade without a token succeeded")
	}
	c, err := dial(f.issuer.Token(t, "svc-billing"))
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	defer c.Close()
	if _, err := c.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4)
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "ping" {
		t.Fatalf("echo %q, %v", buf, err)
	}
	if gotClient != "svc-billing" {
		t.Errorf("upstream saw X-Client-Id %q", gotClient)
	}
}

func TestTrustedProxiesForwardedFor(t *testing.T) {
	up := newNamed(t, "up")
	for _, tc := range []struct {
		name    string
		trusted []string
		want    string
	}{
		{"untrusted peer: chain replaced", nil, "127.0.0.1"},
		{"trusted peer: chain extended", []string{"127.0.0.0/8"}, "203.0.113.9, 127.0.0.1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, fixtureOpts{routes: func(*url.URL) []RouteConfig {
				return []RouteConfig{{Name: "p", PathPrefix: "/", Upstreams: []*url.URL{up.u()}, Auth: AuthPublic}}
			}, trusted: tc.trusted})
			f.do(t, "GET", "/", "", http.Header{"X-Forwarded-For": {"203.0.113.9"}})
			if got := up.hdr.Get("X-Forwarded-For"); got != tc.want {
				t.Errorf("X-Forwarded-For %q, want %q", got, tc.want)
			}
		})
	}
}

func TestTLSCertificateSwap(t *testing.T) {
	dir := t.TempDir()
	certA, keyA := writeCert(t, dir, "a", "gateway-a")
	cr, err := NewCertReloader(certA, keyA, 0, nopLogger())
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, r.Proto)
	}))
	srv.EnableHTTP2 = true
	srv.TLS = &tls.Config{GetCertificate: cr.GetCertificate}
	srv.StartTLS()
	defer srv.Close()
	peer := func() (string, string) {
		conn, err := tls.Dial("tcp", srv.Listener.Addr().String(), &tls.Config{ServerName: "localhost", InsecureSkipVerify: true, NextProtos: []string{"h2", "http/1.1"}}) //nolint:gosec // test reads the served cert
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		st := conn.ConnectionState()
		return st.PeerCertificates[0].Subject.CommonName, st.NegotiatedProtocol
	}
	if cn, proto := peer(); cn != "gateway-a" || proto != "h2" {
		t.Fatalf("served %q over %q, want gateway-a over h2", cn, proto)
	}
	writeCertAt(t, certA, keyA, "gateway-b") // renewed in place
	if cn, _ := peer(); cn != "gateway-b" {
		t.Errorf("after the swap: served %q, want gateway-b", cn)
	}
}

// rawRequest writes the request line exactly as given (Go's client would
// normalise "//admin" into an absolute URL) and reads the response.
func rawRequest(t *testing.T, addr, method, host, target, token string) *http.Response {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	if host == "" {
		host = "gateway.test"
	}
	req := method + " " + target + " HTTP/1.1\r\nHost: " + host + "\r\nContent-Length: 0\r\nConnection: close\r\n"
	if token != "" {
		req += "Authorization: Bearer " + token + "\r\n"
	}
	if _, err := io.WriteString(conn, req+"\r\n"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("read response: %v", err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp
}

func TestH2CUpstream(t *testing.T) {
	var proto atomic.Value
	up := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		proto.Store(r.Proto)
	}))
	up.Config.Protocols = new(http.Protocols)
	up.Config.Protocols.SetHTTP1(true)
	up.Config.Protocols.SetUnencryptedHTTP2(true)
	up.Start()
	defer up.Close()
	uu, _ := url.Parse(up.URL)
	f := newFixture(t, fixtureOpts{routes: func(*url.URL) []RouteConfig {
		return []RouteConfig{{Name: "grpcish", PathPrefix: "/", Upstreams: []*url.URL{uu}, Auth: AuthPublic, H2C: true}}
	}})
	if resp := f.do(t, "GET", "/", "", nil); resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	if got, _ := proto.Load().(string); got != "HTTP/2.0" {
		t.Errorf("upstream saw %q, want HTTP/2.0 (h2c)", got)
	}
}

// TestRewritesWorkOnTheCanonicalPath: strip_prefix and add_prefix apply to
// the canonical path, so they can neither be climbed out of nor decode an
// encoded slash that a relaxed route lets through.
func TestRewritesWorkOnTheCanonicalPath(t *testing.T) {
	pkgs, strict := newNamed(t, "pkgs"), newNamed(t, "strict")
	base := pkgs.u()
	base.Path = "/base"
	f := newFixture(t, fixtureOpts{routes: func(*url.URL) []RouteConfig {
		return []RouteConfig{
			{Name: "pkgs", PathPrefix: "/pkgs", StripPrefix: "/pkgs", AddPrefix: "/v1", AllowEncodedSlash: true,
				Upstreams: []*url.URL{base}, Auth: AuthPublic},
			{Name: "strict", PathPrefix: "/", Upstreams: []*url.URL{strict.u()}, Auth: AuthPublic},
		}
	}})
	addr := f.gw.Listener.Addr().String()
	for _, tc := range []struct {
		name, target string
		status       int
		up           *named
		wantPath     string
	}{
		{"encoded slash kept encoded through the rewrite", "/pkgs/@scope%2fname", 200, pkgs, "/base/v1/@scope%2Fname"},
		{"strip_prefix folds case like the match", "/PKGS/a", 200, pkgs, "/base/v1/a"},
		{"dot segments cannot climb out of the base path", "/pkgs/../../x", 400, nil, ""},
		{"dot segment hidden between encoded slashes", "/pkgs/a%2F..%2F..%2Fx", 400, nil, ""},
		{"encoded slash refused on a strict route", "/other/a%2Fb", 400, nil, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := pkgs.count() + strict.count()
			resp := rawRequest(t, addr, "GET", "", tc.target, "")
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d", resp.StatusCode, tc.status)
			}
			if tc.up == nil {
				if pkgs.count()+strict.count() != before {
					t.Fatal("a refused request reached an upstream")
				}
				return
			}
			tc.up.mu.Lock()
			got := tc.up.path
			tc.up.mu.Unlock()
			if got != tc.wantPath {
				t.Errorf("upstream path %q, want %q", got, tc.wantPath)
			}
		})
	}
}
