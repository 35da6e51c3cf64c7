package attack

import (
	"bufio"
	"context"
	"crypto/sha1"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"go.uber.org/zap"

	"github.com/metagate/gateway/internal/app"
	"github.com/metagate/gateway/internal/config"
	"github.com/metagate/gateway/internal/testenv"
)

// ---------------------------------------------------------------------------
// Recording upstreams

// hit is one request as an upstream received it.
type hit struct {
	Upstream   string
	Method     string
	RequestURI string // the raw request target, exactly as received
	Host       string
	Header     http.Header
	Trailer    http.Header // request trailers, read after the body
	BodyLen    int64
	BodyErr    error
}

// upstream is one route's backend. It records every request (method, raw
// target, headers, body length), counts the gateway's connections to it,
// and tunnels WebSocket upgrades (101 + echo) so upgrade tests can prove a
// tunnel exists.
type upstream struct {
	name string
	srv  *httptest.Server

	arrived   atomic.Int64 // requests whose headers reached the handler
	active    atomic.Int64 // handlers running
	maxActive atomic.Int64
	gate      chan struct{} // when set, handlers wait for it to close before answering

	mu    sync.Mutex
	hits  []hit
	conns map[net.Conn]http.ConnState
}

// newGatedUpstream makes an upstream whose handlers block until gate is
// closed (nil: answer at once).
func newGatedUpstream(t *testing.T, name string, gate chan struct{}) *upstream {
	t.Helper()
	u := &upstream{name: name, gate: gate, conns: map[net.Conn]http.ConnState{}}
	u.srv = httptest.NewUnstartedServer(http.HandlerFunc(u.serve))
	u.srv.Config.ConnState = func(c net.Conn, s http.ConnState) {
		u.mu.Lock()
		defer u.mu.Unlock()
		if s == http.StateClosed || s == http.StateHijacked {
			delete(u.conns, c)
			return
		}
		u.conns[c] = s
	}
	u.srv.Start()
	t.Cleanup(func() {
		if u.gate != nil {
			select {
			case <-u.gate:
			default:
				close(u.gate)
			}
		}
		u.srv.CloseClientConnections()
		u.srv.Close()
	})
	return u
}

func (u *upstream) URL() string { return u.srv.URL }

func (u *upstream) serve(w http.ResponseWriter, r *http.Request) {
	u.arrived.Add(1)
	n := u.active.Add(1)
	defer u.active.Add(-1)
	for {
		m := u.maxActive.Load()
		if n <= m || u.maxActive.CompareAndSwap(m, n) {
			break
		}
	}
	h := hit{Upstream: u.name, Method: r.Method, RequestURI: r.RequestURI, Host: r.Host, Header: r.Header.Clone()}
	if strings.EqualFold(r.Header.Get("Upgrade"), "websocket") {
		u.record(h)
		u.tunnel(w, r)
		return
	}
	h.BodyLen, h.BodyErr = io.Copy(io.Discard, r.Body)
	h.Trailer = r.Trailer.Clone()
	u.record(h)
	if u.gate != nil {
		select {
		case <-u.gate:
		case <-r.Context().Done():
			return
		}
	}
	w.Header().Set("X-Upstream", u.name)
	w.Header().Set("Content-Type", "text/plain")
	_, _ = io.WriteString(w, "upstream "+u.name+"\n")
}

// tunnel answers a WebSocket upgrade with 101 and echoes bytes back.
func (u *upstream) tunnel(w http.ResponseWriter, r *http.Request) {
	conn, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		http.Error(w, err.Error(), 500)
		return
	}
	sum := sha1.Sum([]byte(r.Header.Get("Sec-WebSocket-Key") + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
	fmt.Fprintf(brw, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: %s\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n",
		r.Header.Get("Upgrade"), base64.StdEncoding.EncodeToString(sum[:]))
	_ = brw.Flush()
	go func() {
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(20 * time.Second))
		buf := make([]byte, 512)
		for {
			n, err := brw.Read(buf)
			if n > 0 {
				if _, werr := conn.Write(buf[:n]); werr != nil {
					return
				}
			}
			if err != nil {
				return
			}
		}
	}()
}

func (u *upstream) record(h hit) {
	u.mu.Lock()
	u.hits = append(u.hits, h)
	u.mu.Unlock()
}

// Hits returns the recorded requests.
func (u *upstream) Hits() []hit {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]hit(nil), u.hits...)
}

func (u *upstream) reset() {
	u.mu.Lock()
	u.hits = nil
	u.mu.Unlock()
	u.arrived.Store(0)
}

// openConns counts the connections the gateway holds open to this upstream
// (new, active or idle in its pool).
func (u *upstream) openConns() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return len(u.conns)
}

// ---------------------------------------------------------------------------
// The standard gateway: a route layout like deploy/examples/ingress.yaml

// Route names of the standard layout, in the order they are configured.
const (
	upWS       = "ws"        // /ws         public, WebSocket upstream
	upAdmin    = "admin"     // /admin      required, scope admin
	upKey      = "key"       // /key        required, scope admin (case folding: KELVIN SIGN)
	upInvWrite = "inv-write" // /inv        [POST PUT PATCH DELETE], scope write:inv (listed first)
	upInvRead  = "inv-read"  // /inv        any method, scope read:inv
	upOrders   = "orders"    // /orders     public, strip /orders, add /v1, upstream <url>/base
	upSvc      = "svc"       // /svc        required, callers [client]
	upOpt      = "opt"       // /opt        auth optional
	upPub      = "pub"       // /           public
)

var stdRouteOrder = []string{upWS, upAdmin, upKey, upInvWrite, upInvRead, upOrders, upSvc, upOpt, upPub}

// spec is what a test may change in the standard gateway's YAML. Lines are
// given without indentation; the harness indents them under their key.
type spec struct {
	issuers     []*testenv.Issuer // default: the world's one issuer
	server      []string          // extra keys under server:
	metadata    []string          // extra keys under metadata: (beside source and local)
	headers     []string          // keys under headers:
	clients     []string          // YAML under metadata.local.clients:
	users       []string          // YAML under metadata.local.users:
	routes      []string          // routes placed before the standard ones (each a "- ..." block)
	noStdRoutes bool
	gates       map[string]chan struct{} // upstreams whose handlers wait for the channel to close
}

type option func(*spec)

func withServer(lines ...string) option {
	return func(s *spec) { s.server = append(s.server, lines...) }
}
func withMetadata(lines ...string) option {
	return func(s *spec) { s.metadata = append(s.metadata, lines...) }
}
func withHeaders(lines ...string) option {
	return func(s *spec) { s.headers = append(s.headers, lines...) }
}
func withClients(lines ...string) option {
	return func(s *spec) { s.clients = append(s.clients, lines...) }
}
func withUsers(lines ...string) option { return func(s *spec) { s.users = append(s.users, lines...) } }

// withRoutes puts routes before the standard ones ({{up:NAME}} in them is
// replaced by that extra upstream's URL).
func withRoutes(lines ...string) option {
	return func(s *spec) { s.routes = append(s.routes, lines...) }
}

func withIssuers(is ...*testenv.Issuer) option { return func(s *spec) { s.issuers = is } }

// withGate makes the named upstream hold every request until gate closes.
func withGate(name string, gate chan struct{}) option {
	return func(s *spec) {
		if s.gates == nil {
			s.gates = map[string]chan struct{}{}
		}
		s.gates[name] = gate
	}
}

// world is one running gateway with its issuer and recording upstreams.
type world struct {
	t   *testing.T
	iss *testenv.Issuer
	up  map[string]*upstream
	gw  *gateway
	all []*upstream
}

// newWorld starts the standard gateway (changed by opts). extra names
// upstreams for routes given with withRoutes.
func newWorld(t *testing.T, iss *testenv.Issuer, extra []string, opts ...option) *world {
	t.Helper()
	if iss == nil {
		iss = testenv.NewIssuer(t)
	}
	w := &world{t: t, iss: iss, up: map[string]*upstream{}}
	s := &spec{issuers: []*testenv.Issuer{iss}}
	for _, o := range opts {
		o(s)
	}
	for _, n := range append(append([]string(nil), stdRouteOrder...), extra...) {
		u := newGatedUpstream(t, n, s.gates[n])
		w.up[n] = u
		w.all = append(w.all, u)
	}
	text := w.yaml(s)
	w.gw = startGateway(t, text)
	return w
}

func indent(n int, lines []string) string {
	pad := strings.Repeat(" ", n)
	var b strings.Builder
	for _, l := range lines {
		for _, ll := range strings.Split(l, "\n") {
			b.WriteString(pad + ll + "\n")
		}
	}
	return b.String()
}

func (w *world) yaml(s *spec) string {
	var b strings.Builder
	b.WriteString("server:\n")
	b.WriteString(indent(2, append([]string{
		"listen: 127.0.0.1:0", "admin_listen: 127.0.0.1:0", "drain_delay: 0s", "shutdown_timeout: 2s",
	}, s.server...)))
	b.WriteString("log:\n  level: error\n")
	b.WriteString("issuers:\n")
	for _, is := range s.issuers {
		fmt.Fprintf(&b, "  - issuer: %q\n    audiences: [%q]\n    jwks_url: %q\n", is.URL, is.Audience, is.JWKSURL)
	}
	b.WriteString("metadata:\n  source: local\n")
	b.WriteString(indent(2, s.metadata))
	b.WriteString("  local:\n    clients:\n")
	b.WriteString(indent(6, append([]string{
		`svc-billing: {name: "Billing Service", metadata: {tier: gold, region: eu-west-1}}`,
		`spa-app: {name: "Shop SPA", metadata: {tier: bronze}}`,
	}, s.clients...)))
	b.WriteString("    users:\n")
	b.WriteString(indent(6, append([]string{
		`"auth0|alice": {app_metadata: {plan: pro}}`,
	}, s.users...)))
	if len(s.headers) > 0 {
		b.WriteString("headers:\n")
		b.WriteString(indent(2, s.headers))
	}
	b.WriteString("routes:\n")
	for _, r := range s.routes {
		for n, u := range w.up {
			r = strings.ReplaceAll(r, "{{up:"+n+"}}", u.URL())
		}
		b.WriteString(indent(2, []string{r}))
	}
	if !s.noStdRoutes {
		std := map[string]string{
			upWS:       "match: {path_prefix: /ws}\nauth: public",
			upAdmin:    "match: {path_prefix: /admin}\nscopes: {all_of: [admin]}",
			upKey:      "match: {path_prefix: /key}\nscopes: {all_of: [admin]}",
			upInvWrite: "match: {path_prefix: /inv, methods: [POST, PUT, PATCH, DELETE]}\nscopes: {all_of: [\"write:inv\"]}",
			upInvRead:  "match: {path_prefix: /inv}\nscopes: {all_of: [\"read:inv\"]}",
			upOrders:   "match: {path_prefix: /orders}\nauth: public\nstrip_prefix: /orders\nadd_prefix: /v1",
			upSvc:      "match: {path_prefix: /svc}\ncallers: [client]",
			upOpt:      "match: {path_prefix: /opt}\nauth: optional",
			upPub:      "match: {path_prefix: /}\nauth: public",
		}
		for _, n := range stdRouteOrder {
			target := w.up[n].URL()
			if n == upOrders {
				target += "/base"
			}
			lines := []string{"- name: " + n, "  upstreams: [\"" + target + "\"]"}
			for _, l := range strings.Split(std[n], "\n") {
				lines = append(lines, "  "+l)
			}
			b.WriteString(indent(2, lines))
		}
	}
	return b.String()
}

// reset forgets every upstream's recorded requests.
func (w *world) reset() {
	for _, u := range w.all {
		u.reset()
	}
}

// landed returns every request any upstream received since the last reset.
func (w *world) landed() []hit {
	var out []hit
	for _, u := range w.all {
		out = append(out, u.Hits()...)
		if n := int(u.arrived.Load()); n > len(u.Hits()) {
			out = append(out, hit{Upstream: u.name, RequestURI: "(still reading the body)"})
		}
	}
	return out
}

// expectNoUpstream fails when any upstream saw a request since the last reset.
func (w *world) expectNoUpstream(t *testing.T, req string) {
	t.Helper()
	if hs := w.landed(); len(hs) > 0 {
		t.Errorf("request %q reached upstream(s): %s", req, describeHits(hs))
	}
}

// expectLanded requires exactly one request since the last reset, on the
// named upstream, and returns it.
func (w *world) expectLanded(t *testing.T, req, name string) (hit, bool) {
	t.Helper()
	hs := w.landed()
	if len(hs) != 1 || hs[0].Upstream != name {
		t.Errorf("request %q: want exactly one request on upstream %q, got %s", req, name, describeHits(hs))
		return hit{}, false
	}
	return hs[0], true
}

func describeHits(hs []hit) string {
	if len(hs) == 0 {
		return "none"
	}
	parts := make([]string, len(hs))
	for i, h := range hs {
		parts[i] = fmt.Sprintf("%s got %s %q", h.Upstream, h.Method, h.RequestURI)
	}
	return strings.Join(parts, "; ")
}

// ---------------------------------------------------------------------------
// Gateway process

type gateway struct {
	app   *app.App
	addr  string
	admin string
	file  string
}

// writeConfig writes YAML text into a fresh gateway.yaml under t.TempDir().
func writeConfig(t *testing.T, text string) string {
	t.Helper()
	file := filepath.Join(t.TempDir(), "gateway.yaml")
	if err := os.WriteFile(file, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return file
}

func noEnv(string) (string, bool) { return "", false }

// startGateway loads text as gateway.yaml and runs it until the test ends,
// returning once /readyz answers 200.
func startGateway(t *testing.T, text string) *gateway {
	t.Helper()
	file := writeConfig(t, text)
	cfg, err := config.Load(file, noEnv)
	if err != nil {
		t.Fatalf("config.Load refused the test config: %v\n--- %s\n%s", err, file, text)
	}
	cfg.Server.DrainDelay = 0
	ctx, cancel := context.WithCancel(context.Background())
	a, err := app.New(ctx, cfg, app.Options{Logger: zap.NewNop(), LookupEnv: noEnv})
	if err != nil {
		cancel()
		t.Fatalf("app.New: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			t.Error("gateway did not stop within 15s")
		}
	})
	g := &gateway{app: a, addr: a.Addr("gateway"), admin: a.Addr("admin"), file: file}
	deadline := time.Now().Add(15 * time.Second)
	for {
		r := sendRaw(g.admin, "GET /readyz HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n", 2*time.Second)
		if r.Status == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("gateway never became ready: %d %s %v", r.Status, r.Body, r.Err)
		}
		select {
		case err := <-done:
			t.Fatalf("gateway stopped while starting: %v", err)
		case <-time.After(20 * time.Millisecond):
		}
	}
	return g
}

// ---------------------------------------------------------------------------
// Raw HTTP/1.1 over TCP

// response is what came back on the socket; Err is set (and Status 0) when
// the gateway closed the connection or timed out instead of answering.
type response struct {
	Status int
	Header http.Header
	Body   []byte
	Err    error
}

func (r *response) String() string {
	if r.Err != nil {
		return fmt.Sprintf("no response (%v)", r.Err)
	}
	return fmt.Sprintf("%d %s", r.Status, strings.TrimSpace(string(r.Body)))
}

// rq builds a request: "METHOD target HTTP/1.1", Host: gw.test, then the
// given header lines verbatim.
func rq(method, target string, headers ...string) string {
	var b strings.Builder
	b.WriteString(method + " " + target + " HTTP/1.1\r\nHost: gw.test\r\n")
	for _, h := range headers {
		b.WriteString(h + "\r\n")
	}
	b.WriteString("\r\n")
	return b.String()
}

func bearer(tok string) string { return "Authorization: Bearer " + tok }

// send writes raw on a new connection to addr and reads one response.
func send(t *testing.T, addr, raw string) *response {
	t.Helper()
	return sendRaw(addr, raw, 10*time.Second)
}

func sendRaw(addr, raw string, timeout time.Duration) *response {
	c, err := net.DialTimeout("tcp", addr, timeout)
	if err != nil {
		return &response{Err: err}
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(timeout))
	if _, err := io.WriteString(c, raw); err != nil {
		return &response{Err: err}
	}
	var req *http.Request
	if m, _, _ := strings.Cut(raw, " "); strings.EqualFold(m, "HEAD") {
		req = &http.Request{Method: "HEAD"} // the response has no body
	}
	return readResponseTo(bufio.NewReader(c), req)
}

func readResponse(br *bufio.Reader) *response { return readResponseTo(br, nil) }

func readResponseTo(br *bufio.Reader, req *http.Request) *response {
	resp, err := http.ReadResponse(br, req)
	if err != nil {
		return &response{Err: err}
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	r := &response{Status: resp.StatusCode, Header: resp.Header, Body: body}
	if err != nil && resp.StatusCode != http.StatusSwitchingProtocols {
		r.Err = err
	}
	return r
}

// errorBody is the gateway's JSON error shape.
type errorBody struct {
	Error       string `json:"error"`
	Description string `json:"error_description"`
}

// expectError checks status and, when code is not empty, the JSON body
// {"error": code, "error_description": "..."}.
func expectError(t *testing.T, req string, r *response, status int, code string) {
	t.Helper()
	if r.Status != status {
		t.Errorf("request %q: got %s, want %d %s", req, r, status, code)
		return
	}
	if code == "" {
		return
	}
	var eb errorBody
	if err := json.Unmarshal(r.Body, &eb); err != nil {
		t.Errorf("request %q: %d but the body is not the JSON error shape: %q", req, r.Status, r.Body)
		return
	}
	if eb.Error != code || eb.Description == "" {
		t.Errorf("request %q: body %q, want error %q with a description", req, r.Body, code)
	}
}

// expectStatus checks the status alone.
func expectStatus(t *testing.T, req string, r *response, status int) {
	t.Helper()
	if r.Status != status {
		t.Errorf("request %q: got %s, want %d", req, r, status)
	}
}

// ---------------------------------------------------------------------------
// Tokens

// token signs claims built from the issuer's client-credentials defaults;
// edit changes them (delete a claim by setting it to nil).
func token(t *testing.T, is *testenv.Issuer, clientID, scope string, edit func(jwt.MapClaims)) string {
	t.Helper()
	c := is.Claims(clientID)
	c["scope"] = scope
	if edit != nil {
		edit(c)
	}
	for k, v := range c {
		if v == nil {
			delete(c, k)
		}
	}
	return is.Sign(t, is.Key(), c, nil)
}

// userToken is a user's access token: sub, azp of the SPA, no gty.
func userToken(t *testing.T, is *testenv.Issuer, sub, scope string) string {
	return token(t, is, "spa-app", scope, func(c jwt.MapClaims) {
		c["sub"], c["gty"] = sub, nil
	})
}

// ---------------------------------------------------------------------------
// Metrics

// scrape reads the admin /metrics into "name{labels}" → value.
func scrape(t *testing.T, g *gateway) map[string]float64 {
	t.Helper()
	r := send(t, g.admin, "GET /metrics HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n")
	if r.Status != 200 {
		t.Fatalf("/metrics: %s", r)
	}
	return testenv.ParseMetrics(t, strings.NewReader(string(r.Body)))
}

// sumPrefix adds every series whose key starts with prefix.
func sumPrefix(m map[string]float64, prefix string) float64 {
	var s float64
	for k, v := range m {
		if strings.HasPrefix(k, prefix) {
			s += v
		}
	}
	return s
}

// foldName is a header name compared the way lenient servers do: case
// ignored, '_' read as '-'.
func foldName(s string) string { return strings.ToLower(strings.ReplaceAll(s, "_", "-")) }

// headersNamed returns every header of h whose folded name is name's.
func headersNamed(h http.Header, name string) []string {
	var out []string
	for k, vs := range h {
		if foldName(k) == foldName(name) {
			for _, v := range vs {
				out = append(out, k+": "+v)
			}
		}
	}
	return out
}
