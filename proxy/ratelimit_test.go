package proxy

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/metagate/gateway/proxy/ratelimit"
)

// TestRateLimitAccessLog: the access log line of each request on a
// limited route says which policy counted it and what it decided; a
// refusal is 429 with Retry-After and the IETF headers, and never
// reaches the upstream.
func TestRateLimitAccessLog(t *testing.T) {
	iss, v := policyVerifier(t)
	up := newUpstream(t)
	u, _ := url.Parse(up.URL)
	core, logs := observer.New(zap.InfoLevel)
	one := &RatePolicy{Policy: ratelimit.NewPolicy("one", 1, time.Hour, 1), Key: RateKey{Kind: RateKeyMetadata, Name: "tenant_id"}}
	gw := New(Options{
		Routes:   []RouteConfig{{Name: "api", PathPrefix: "/", Upstreams: []*url.URL{u}, RateLimit: &RouteRateLimit{Default: one}}},
		Verifier: v, Resolver: testResolver(), Headers: defaultHeaders(), Realm: "gateway", AccessLog: zap.New(core),
	})
	srv := httptest.NewServer(gw)
	t.Cleanup(srv.Close)
	tok := iss.Token(t, "svc-billing")
	var codes []int
	var last *http.Response
	for range 2 {
		req, _ := http.NewRequest("GET", srv.URL+"/x", nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		codes = append(codes, resp.StatusCode)
		last = resp
	}
	if codes[0] != 200 || codes[1] != 429 {
		t.Fatalf("statuses %v, want 200 then 429", codes)
	}
	if last.Header.Get("Retry-After") != "3600" || last.Header.Get("RateLimit-Policy") != `"one";q=1;w=3600` ||
		last.Header.Get("RateLimit") != `"one";r=0;t=3600` {
		t.Errorf("429 headers: %v", last.Header)
	}
	if n := up.hits.Load(); n != 1 {
		t.Errorf("upstream saw %d requests, want 1", n)
	}
	var results []string
	for _, e := range logs.FilterMessage("request").All() {
		f := e.ContextMap()
		if f["rate_limit_policy"] != "one" || f["rate_limit_local"] != true {
			t.Errorf("access log fields %v", f)
		}
		results = append(results, f["rate_limit"].(string))
	}
	if len(results) != 2 || results[0] != "allowed" || results[1] != "limited" {
		t.Errorf("access log rate_limit = %v, want [allowed limited]", results)
	}
}

func TestRateKeys(t *testing.T) {
	res := testResolver()
	iss, v := policyVerifier(t)
	claims := iss.Claims("svc-billing")
	claims["org"] = "acme"
	tok, err := v.Verify(t.Context(), iss.Sign(t, iss.Key(), claims, nil))
	if err != nil {
		t.Fatal(err)
	}
	md, err := res.Resolve(t.Context(), tok.Caller)
	if err != nil {
		t.Fatal(err)
	}
	caller := tok.Caller.Key()
	for _, tc := range []struct {
		key  RateKey
		want string
	}{
		{RateKey{Kind: RateKeyCaller}, caller},
		{RateKey{Kind: RateKeyCallerAndRoute}, "api " + caller},
		{RateKey{Kind: RateKeyClaim, Name: "org"}, "=org=acme"},
		{RateKey{Kind: RateKeyClaim, Name: "missing"}, caller},
		{RateKey{Kind: RateKeyMetadata, Name: "tenant_id"}, "=tenant_id=acme"},
		{RateKey{Kind: RateKeyMetadata, Name: "missing"}, caller},
	} {
		if got := rateKey(tc.key, "api", tok, md); got != tc.want {
			t.Errorf("%+v: key %q, want %q", tc.key, got, tc.want)
		}
	}
}

// BenchmarkHandlerRateLimit is the hot path with a local rate limit that
// never refuses against the same gateway without one.
func BenchmarkHandlerRateLimit(b *testing.B) {
	benchRoutes(b, map[string]func(*RouteConfig){
		"none": func(*RouteConfig) {},
		"local": func(rc *RouteConfig) {
			rc.RateLimit = &RouteRateLimit{Default: &RatePolicy{Policy: ratelimit.NewPolicy("bench", 1<<30, time.Second, 1<<30)}}
		},
	})
}
