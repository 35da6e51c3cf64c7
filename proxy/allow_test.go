package proxy

import (
	"context"
	"encoding/json"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/metagate/gateway/internal/testenv"
	"github.com/metagate/gateway/proxy/expr"
)

func compile(t testing.TB, exprs ...string) *expr.Program {
	t.Helper()
	env, err := expr.NewEnv()
	if err != nil {
		t.Fatal(err)
	}
	p, err := env.Compile(exprs)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// policyVerifier is an issuer and a verifier that keeps every claim, as
// the gateway's is when a route has allow_if.
func policyVerifier(t *testing.T) (*testenv.Issuer, *Verifier) {
	t.Helper()
	iss := testenv.NewIssuer(t)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	v, err := NewVerifier(ctx, VerifierOptions{
		Issuers: []IssuerConfig{{Issuer: iss.URL, Audiences: []string{iss.Audience}, JWKSURL: iss.JWKSURL,
			Algorithms: []string{"RS256"}, Leeway: 5 * time.Second, JWKSRefresh: time.Hour, UnknownKIDRefresh: time.Minute}},
		MaxTokenBytes: 16 << 10, KeepClaims: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(v.Close)
	return iss, v
}

type policyCounts map[string]int

func (policyCounts) Request(string, string, int, time.Duration, time.Duration) {}
func (policyCounts) AuthFailure(string)                                        {}
func (policyCounts) UpstreamError(string)                                      {}
func (policyCounts) ClientError(string)                                        {}
func (c policyCounts) PolicyDecision(route, result string)                     { c[route+" "+result]++ }
func (policyCounts) RateLimitDecision(string, bool, bool)                      {}

// TestAllowIfOverClaimsAndMetadata drives the gateway with a policy over
// a namespaced claim and metadata, and an expression that fails at run
// time: its warning names the route and the expression, never a value.
func TestAllowIfOverClaimsAndMetadata(t *testing.T) {
	iss, v := policyVerifier(t)
	up := newUpstream(t)
	u, _ := url.Parse(up.URL)
	core, logs := observer.New(zap.WarnLevel)
	counts := policyCounts{}
	gw := New(Options{
		Routes: []RouteConfig{
			{Name: "org", PathPrefix: "/org", Upstreams: []*url.URL{u},
				Policy: Policy{AllowIf: compile(t, `claims["https://example.com/org"] == metadata.tenant_id`, `metadata.tier != "bronze"`)}},
			{Name: "secret", PathPrefix: "/secret", Upstreams: []*url.URL{u},
				Policy: Policy{AllowIf: compile(t, `metadata.tier + metadata.no_such_key == "x"`)}},
		},
		Verifier: v, Resolver: testResolver(), Headers: defaultHeaders(), Realm: "gateway",
		Logger: zap.New(core), Observer: counts,
	})
	srv := httptest.NewServer(gw)
	t.Cleanup(srv.Close)
	do := func(path, tok string) (int, map[string]string) {
		req, _ := http.NewRequest("GET", srv.URL+path, nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var body map[string]string
		_ = json.NewDecoder(resp.Body).Decode(&body)
		return resp.StatusCode, body
	}
	claims := iss.Claims("svc-billing")
	claims["https://example.com/org"] = "acme"
	good := iss.Sign(t, iss.Key(), claims, nil)
	claims["https://example.com/org"] = "globex"
	other := iss.Sign(t, iss.Key(), claims, nil)

	if code, _ := do("/org/x", good); code != 200 {
		t.Errorf("matching org claim: %d", code)
	}
	code, body := do("/org/x", other)
	if code != 403 || body["error"] != "forbidden" || body["route"] != "org" {
		t.Errorf("other org: %d %v, want 403 forbidden naming the route", code, body)
	}
	if code, _ := do("/secret", good); code != 403 {
		t.Errorf("runtime error: %d, want 403", code)
	}
	if counts["org allowed"] != 1 || counts["org denied"] != 1 || counts["secret error"] != 1 {
		t.Errorf("decisions: %v", counts)
	}
	entries := logs.FilterMessageSnippet("route policy").All()
	if len(entries) != 1 {
		t.Fatalf("warnings: %v", logs.All())
	}
	line := entries[0].Message
	for _, f := range entries[0].Context {
		line += " " + f.Key + "=" + f.String
		if f.Interface != nil {
			if e, ok := f.Interface.(error); ok {
				line += e.Error()
			}
		}
	}
	if !strings.Contains(line, "secret") || strings.Contains(line, "gold") || strings.Contains(line, good) {
		t.Errorf("warning %q: want the route, no metadata value, no token", line)
	}
}

// TestMiddlewareAllowIf: the Go middleware applies the same policy.
func TestMiddlewareAllowIf(t *testing.T) {
	iss, v := policyVerifier(t)
	mw := Middleware(MiddlewareOptions{Verifier: v, Resolver: testResolver(),
		Policy: Policy{AllowIf: compile(t, `metadata.tier == "gold" && request.method == "GET"`)}})
	srv := httptest.NewServer(mw(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {})))
	t.Cleanup(srv.Close)
	tok := iss.Token(t, "svc-billing")
	for method, want := range map[string]int{"GET": 200, "POST": 403} {
		req, _ := http.NewRequest(method, srv.URL+"/x", nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("%s: %d, want %d", method, resp.StatusCode, want)
		}
	}
}

// BenchmarkHandlerAllowIf is the hot path with a route policy against the
// same gateway without one: what allow_if costs per request (the metadata
// map is decoded once per cached caller, the request view only when an
// expression reads it).
func BenchmarkHandlerAllowIf(b *testing.B) {
	benchRoutes(b, map[string]func(*RouteConfig){
		"none":     func(*RouteConfig) {},
		"metadata": func(rc *RouteConfig) { rc.Policy.AllowIf = compile(b, `metadata.tier in ["gold", "platinum"]`) },
		"metadata_and_request": func(rc *RouteConfig) {
			rc.Policy.AllowIf = compile(b, `metadata.tier == "gold"`, `request.method == "GET" && request.segments[0] == "api"`)
		},
	})
}

// benchRoutes runs the handler's hot path once per variant of its one
// route, each a gateway of its own, in name order.
func benchRoutes(b *testing.B, variants map[string]func(*RouteConfig)) {
	is, v, res := benchParts(b)
	target, _ := url.Parse("http://upstream.test")
	token := is.Token(b, "svc-billing")
	for _, name := range slices.Sorted(maps.Keys(variants)) {
		rc := RouteConfig{Name: "api", PathPrefix: "/", Upstreams: []*url.URL{target}}
		variants[name](&rc)
		gw := New(Options{Routes: []RouteConfig{rc}, Verifier: v, Resolver: res, Headers: defaultHeaders(), Realm: "gateway", Transport: cannedTransport{}})
		b.Run(name, func(b *testing.B) {
			serveOnce(b, gw, token)
			b.ReportAllocs()
			for b.Loop() {
				serveOnce(b, gw, token)
			}
		})
	}
}
