package proxy

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/metagate/gateway/cache"
	"github.com/metagate/gateway/enrich"
	"github.com/metagate/gateway/internal/testenv"
)

// benchParts is the issuer, verifier and cached resolver both benchmark
// setups share.
func benchParts(b testing.TB) (*testenv.Issuer, *Verifier, *enrich.Resolver) {
	is := testenv.NewIssuer(b)
	ctx, cancel := context.WithCancel(context.Background())
	b.Cleanup(cancel)
	v, err := NewVerifier(ctx, VerifierOptions{
		Issuers: []IssuerConfig{{Issuer: is.URL, Audiences: []string{is.Audience}, JWKSURL: is.JWKSURL,
			Algorithms: []string{"RS256"}, Leeway: time.Second, JWKSRefresh: time.Hour, UnknownKIDRefresh: time.Minute}},
		MaxTokenBytes: 16 << 10,
	})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(v.Close)
	tc, err := cache.New[*enrich.Metadata](cache.Options{TTL: time.Hour, MaxEntries: 1000}, enrich.Codec{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = tc.Close() })
	return is, v, enrich.NewResolver(testResolver().src, tc, []string{is.URL})
}

// benchSetup builds a bare httputil.ReverseProxy and the gateway in front of
// the same upstream, sharing one transport, with the gateway on its hot
// path: the token was seen before and the metadata is in L1.
func benchSetup(b *testing.B) (bare, gw http.Handler, token string) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("ok"))
	}))
	b.Cleanup(up.Close)
	target, _ := url.Parse(up.URL)
	tr := NewTransport(0)
	bare = &httputil.ReverseProxy{Transport: tr, Rewrite: func(pr *httputil.ProxyRequest) {
		pr.SetURL(target)
		pr.SetXForwarded()
	}}

	is, v, res := benchParts(b)
	gw = New(Options{
		Routes:   []RouteConfig{{Name: "api", PathPrefix: "/", Upstreams: []*url.URL{target}}},
		Verifier: v, Resolver: res, Headers: defaultHeaders(), Realm: "gateway", Transport: tr,
	})
	return bare, gw, is.Token(b, "svc-billing")
}

func serveOnce(b testing.TB, h http.Handler, token string) {
	req := httptest.NewRequest("GET", "http://gateway.test/api/things?id=1", nil)
	req.Body = http.NoBody // as net/http hands a handler a GET without a body
	req.RemoteAddr = "10.0.0.1:5555"
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	if w.Code != http.StatusOK {
		b.Fatalf("status %d: %s", w.Code, w.Body)
	}
}

// BenchmarkProxy measures the bare proxy and the gateway separately.
func BenchmarkProxy(b *testing.B) {
	bare, gw, token := benchSetup(b)
	b.Run("bare", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			serveOnce(b, bare, token)
		}
	})
	b.Run("gateway", func(b *testing.B) {
		serveOnce(b, gw, token) // warm: token verified, metadata cached
		b.ReportAllocs()
		for b.Loop() {
			serveOnce(b, gw, token)
		}
	})
}

// BenchmarkGatewayOverRatio interleaves one bare request and one gateway
// request per iteration, so both see the same machine noise, and reports
// gateway time / bare time as "ratio".
func BenchmarkGatewayOverRatio(b *testing.B) {
	bare, gw, token := benchSetup(b)
	serveOnce(b, gw, token)
	var tBare, tGW time.Duration
	for b.Loop() {
		s := time.Now()
		serveOnce(b, bare, token)
		m := time.Now()
		serveOnce(b, gw, token)
		tGW += time.Since(m)
		tBare += m.Sub(s)
	}
	b.ReportMetric(float64(tGW)/float64(tBare), "ratio")
	b.ReportMetric(float64(tGW-tBare)/float64(b.N), "added-ns/op")
}

// cannedTransport answers every request at once without a network, so a
// benchmark of the handler counts the proxy's allocations only, not the
// upstream's or the connection's.
type cannedTransport struct{}

func (cannedTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	return &http.Response{
		StatusCode: http.StatusOK, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: http.Header{"Content-Type": {"text/plain"}}, ContentLength: 2,
		Body: io.NopCloser(strings.NewReader("ok")), Request: r,
	}, nil
}

// handlerSetup is benchSetup with the canned transport under both proxies.
func handlerSetup(b testing.TB) (bare, gw http.Handler, token string) {
	is, v, res := benchParts(b)
	target, _ := url.Parse("http://upstream.test")
	bare = &httputil.ReverseProxy{Transport: cannedTransport{}, Rewrite: func(pr *httputil.ProxyRequest) {
		pr.SetURL(target)
		pr.SetXForwarded()
	}}
	gw = New(Options{
		Routes:   []RouteConfig{{Name: "api", PathPrefix: "/", Upstreams: []*url.URL{target}}},
		Verifier: v, Resolver: res,
		Headers: defaultHeaders(), Realm: "gateway", Transport: cannedTransport{},
	})
	return bare, gw, is.Token(b, "svc-billing")
}

// BenchmarkHandler is the proxies' own cost per request: no sockets, no
// upstream. allocs/op of gateway minus bare is what the gateway adds on
// the hot path (token verified before, metadata in L1).
func BenchmarkHandler(b *testing.B) {
	bare, gw, token := handlerSetup(b)
	for _, tc := range []struct {
		name string
		h    http.Handler
	}{{"bare", bare}, {"gateway", gw}} {
		b.Run(tc.name, func(b *testing.B) {
			serveOnce(b, tc.h, token)
			b.ReportAllocs()
			for b.Loop() {
				serveOnce(b, tc.h, token)
			}
		})
	}
}

// TestHotPathAllocations holds the gateway to its allocation budget: on
// the hot path it may allocate at most 4 times more than a bare
// ReverseProxy (the request context that carries its state, the copy of
// the request that carries the context, and the growth of the outgoing
// header map for the trusted headers), and it saves the bare proxy's
// 32 KiB copy buffer.
func TestHotPathAllocations(t *testing.T) {
	bare, gw, token := handlerSetup(t)
	serveOnce(t, gw, token)
	b := testing.AllocsPerRun(200, func() { serveOnce(t, bare, token) })
	g := testing.AllocsPerRun(200, func() { serveOnce(t, gw, token) })
	t.Logf("allocs per request: bare %.0f, gateway %.0f", b, g)
	budget := 4.0
	if raceEnabled {
		budget += 2 // the lossy pools (race_on_test.go); make test also runs this without -race
	}
	if g-b > budget {
		t.Errorf("the gateway adds %.0f allocations per request to a bare proxy's, want at most %.0f", g-b, budget)
	}
}
