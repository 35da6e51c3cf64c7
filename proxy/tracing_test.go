package proxy

import (
	"bytes"
	"context"
	"encoding/hex"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/encoding/prototext"

	"github.com/metagate/gateway/internal/config"
	"github.com/metagate/gateway/internal/testenv"
	"github.com/metagate/gateway/internal/tracing"
)

const (
	callerTraceID     = "4bf92f3577b34da6a3ce929d0e0e4736"
	callerParentID    = "00f067aa0ba902b7"
	callerTraceparent = "00-" + callerTraceID + "-" + callerParentID + "-01"
	callerTracestate  = "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7"
)

func callerTraceHeaders() http.Header {
	return http.Header{"Traceparent": {callerTraceparent}, "Tracestate": {callerTracestate}}
}

// byName returns the received spans by name; it fails on a duplicate.
func byName(t *testing.T, rc *testenv.OTLPReceiver) map[string]*tracepb.Span {
	t.Helper()
	m := map[string]*tracepb.Span{}
	for _, s := range rc.Spans() {
		if m[s.GetName()] != nil {
			t.Errorf("span %q exported twice", s.GetName())
		}
		m[s.GetName()] = s
	}
	return m
}

// tracedGateway puts a gateway with tracing on the fixture's issuer,
// verifier and upstream, exporting to rc. Shutdown flushes the spans.
func tracedGateway(t *testing.T, f *fixture, rc *testenv.OTLPReceiver) *tracing.Provider {
	t.Helper()
	p, err := tracing.New(context.Background(), config.Tracing{
		OTLPEndpoint: rc.URL, ServiceName: "gateway", SampleRatio: 1, Timeout: config.Duration(5 * time.Second),
	}, "test")
	if err != nil {
		t.Fatalf("tracing.New: %v", err)
	}
	t.Cleanup(func() { _ = p.Shutdown(context.Background()) })
	withTracerProvider(t, f, p.TracerProvider())
	return p
}

// withTracerProvider replaces the fixture's gateway with one using tp.
func withTracerProvider(t *testing.T, f *fixture, tp trace.TracerProvider) {
	t.Helper()
	upURL, _ := url.Parse(f.up.URL)
	f.gw.Close()
	f.gw = httptest.NewServer(New(Options{
		Routes:   []RouteConfig{{Name: "api", PathPrefix: "/", Upstreams: []*url.URL{upURL}}},
		Verifier: f.verifier, Resolver: testResolver(), Headers: defaultHeaders(), Realm: "gateway",
		TracerProvider: tp,
	}))
	t.Cleanup(f.gw.Close)
}

// flush waits for the gateway's handlers to return (spans end there, after
// the client may have read the whole response) and exports every span.
func flush(t *testing.T, f *fixture, p *tracing.Provider) {
	t.Helper()
	f.gw.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := p.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
}

func TestTraceHeadersPassThroughUntouchedWhenTracingIsOff(t *testing.T) {
	for _, c := range []struct {
		name string
		tp   trace.TracerProvider
	}{
		{"no provider", nil},
		{"noop provider", noop.NewTracerProvider()},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := newFixture(t, fixtureOpts{})
			withTracerProvider(t, f, c.tp)
			resp := f.do(t, "GET", "/things", f.issuer.Token(t, "svc-billing"), callerTraceHeaders())
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("status %d, want 200", resp.StatusCode)
			}
			h := f.up.lastHeader()
			if got := h["Traceparent"]; len(got) != 1 || got[0] != callerTraceparent {
				t.Errorf("upstream traceparent %q, want exactly %q", got, callerTraceparent)
			}
			if got := h["Tracestate"]; len(got) != 1 || got[0] != callerTracestate {
				t.Errorf("upstream tracestate %q, want exactly %q", got, callerTracestate)
			}
		})
	}
}

func TestTracingOnExportsTheGatewaysSpansInTheCallersTrace(t *testing.T) {
	rc := testenv.NewOTLPReceiver(t)
	f := newFixture(t, fixtureOpts{})
	p := tracedGateway(t, f, rc)
	token := f.issuer.Token(t, "svc-billing")
	resp := f.do(t, "GET", "/things?id=1", token, callerTraceHeaders())
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d, want 200", resp.StatusCode)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	flush(t, f, p)

	spans := byName(t, rc)
	server, verify, resolve, upstream := spans["gateway api"], spans["verify"], spans["resolve"], spans["upstream"]
	if server == nil || verify == nil || resolve == nil || upstream == nil {
		t.Fatalf("spans %v, want gateway api, verify, resolve, upstream", keys(spans))
	}
	for name, s := range spans {
		if got := hex.EncodeToString(s.GetTraceId()); got != callerTraceID {
			t.Errorf("%s: trace id %s, want the caller's %s", name, got, callerTraceID)
		}
	}
	if got := hex.EncodeToString(server.GetParentSpanId()); got != callerParentID {
		t.Errorf("server span parent %s, want the caller's %s", got, callerParentID)
	}
	if server.GetTraceState() != callerTracestate {
		t.Errorf("server span tracestate %q, want %q", server.GetTraceState(), callerTracestate)
	}
	for _, s := range []*tracepb.Span{verify, resolve, upstream} {
		if !bytes.Equal(s.GetParentSpanId(), server.GetSpanId()) {
			t.Errorf("%s: parent %x, want the server span %x", s.GetName(), s.GetParentSpanId(), server.GetSpanId())
		}
	}
	if server.GetKind() != tracepb.Span_SPAN_KIND_SERVER || upstream.GetKind() != tracepb.Span_SPAN_KIND_CLIENT {
		t.Errorf("kinds: server %v, upstream %v", server.GetKind(), upstream.GetKind())
	}

	// The upstream sees the gateway as the caller's next hop.
	h := f.up.lastHeader()
	want := "00-" + callerTraceID + "-" + hex.EncodeToString(upstream.GetSpanId()) + "-01"
	if got := h["Traceparent"]; len(got) != 1 || got[0] != want {
		t.Errorf("upstream traceparent %q, want %q", got, want)
	}
	if got := h["Tracestate"]; len(got) != 1 || got[0] != callerTracestate {
		t.Errorf("upstream tracestate %q, want %q", got, callerTracestate)
	}

	for span, attrs := range map[*tracepb.Span]map[string]string{
		server:   {"gateway.route": "api", "http.request.method": "GET", "http.response.status_code": "200", "gateway.caller.kind": "client"},
		verify:   {"gateway.caller.kind": "client"},
		resolve:  {"gateway.caller.kind": "client", "gateway.resolve.outcome": "found"},
		upstream: {"gateway.route": "api", "http.response.status_code": "200", "server.address": "127.0.0.1"},
	} {
		got := testenv.Attrs(span.GetAttributes())
		for k, v := range attrs {
			if got[k] != v {
				t.Errorf("%s: %s = %q, want %q (all: %v)", span.GetName(), k, got[k], v, got)
			}
		}
		if span.GetStatus().GetCode() == tracepb.Status_STATUS_CODE_ERROR {
			t.Errorf("%s: error status on a successful request", span.GetName())
		}
	}
	res := rc.Resources()
	if len(res) == 0 || res[0]["service.name"] != "gateway" || res[0]["service.version"] != "test" {
		t.Errorf("resource %v, want service.name gateway, service.version test", res)
	}

	// Nothing secret or caller-specific leaves in a span.
	for _, s := range rc.Spans() {
		text := prototextOf(s)
		for _, secret := range []string{token, "svc-billing", "Billing Service", "gold", "acme", "eu-west-1", "id=1"} {
			if strings.Contains(text, secret) {
				t.Errorf("span %s carries %q", s.GetName(), secret)
			}
		}
	}
}

func TestTracingOnStartsATraceForCallersWithoutOne(t *testing.T) {
	rc := testenv.NewOTLPReceiver(t)
	f := newFixture(t, fixtureOpts{})
	p := tracedGateway(t, f, rc)
	// A tracestate without a traceparent is meaningless and must not survive.
	resp := f.do(t, "GET", "/", f.issuer.Token(t, "svc-billing"), http.Header{"Tracestate": {callerTracestate}})
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d, want 200", resp.StatusCode)
	}
	flush(t, f, p)
	up := byName(t, rc)["upstream"]
	if up == nil {
		t.Fatal("no upstream span")
	}
	h := f.up.lastHeader()
	want := "00-" + hex.EncodeToString(up.GetTraceId()) + "-" + hex.EncodeToString(up.GetSpanId()) + "-01"
	if got := h.Get("Traceparent"); got != want {
		t.Errorf("upstream traceparent %q, want the gateway's %q", got, want)
	}
	if got := h.Values("Tracestate"); len(got) != 0 {
		t.Errorf("upstream tracestate %q, want none", got)
	}
	if len(up.GetParentSpanId()) == 0 {
		t.Error("upstream span has no parent; want the gateway's server span")
	}
}

func TestRefusedTokenIsAnErrorVerifySpanAndReachesNoUpstream(t *testing.T) {
	rc := testenv.NewOTLPReceiver(t)
	f := newFixture(t, fixtureOpts{})
	p := tracedGateway(t, f, rc)
	c := f.issuer.Claims("svc-billing")
	c["exp"] = time.Now().Add(-time.Hour).Unix()
	expired := f.issuer.Sign(t, f.issuer.Key(), c, nil)
	resp := f.do(t, "GET", "/things", expired, callerTraceHeaders())
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("status %d, want 401", resp.StatusCode)
	}
	flush(t, f, p)
	if n := f.up.hits.Load(); n != 0 {
		t.Errorf("upstream hit %d times", n)
	}
	spans := byName(t, rc)
	verify, server := spans["verify"], spans["gateway api"]
	if verify == nil || server == nil {
		t.Fatalf("spans %v, want verify and gateway api", keys(spans))
	}
	if spans["resolve"] != nil || spans["upstream"] != nil {
		t.Errorf("spans %v: resolve or upstream after a refused token", keys(spans))
	}
	if verify.GetStatus().GetCode() != tracepb.Status_STATUS_CODE_ERROR {
		t.Errorf("verify status %v, want error", verify.GetStatus())
	}
	if got := testenv.Attrs(verify.GetAttributes())["gateway.auth.reason"]; got != "expired" {
		t.Errorf("verify gateway.auth.reason = %q, want expired", got)
	}
	sa := testenv.Attrs(server.GetAttributes())
	if sa["gateway.auth.reason"] != "expired" || sa["http.response.status_code"] != "401" {
		t.Errorf("server span attributes %v, want auth reason expired and status 401", sa)
	}
	if server.GetStatus().GetCode() == tracepb.Status_STATUS_CODE_ERROR {
		t.Error("a 401 is the gateway working, not failing: server span status error")
	}
	for _, s := range rc.Spans() {
		if strings.Contains(prototextOf(s), expired) {
			t.Errorf("span %s carries the token", s.GetName())
		}
	}
}

func TestUnreachableUpstreamIsAnErrorUpstreamSpan(t *testing.T) {
	rc := testenv.NewOTLPReceiver(t)
	f := newFixture(t, fixtureOpts{})
	p := tracedGateway(t, f, rc)
	f.up.Close()
	resp := f.do(t, "GET", "/", f.issuer.Token(t, "svc-billing"), nil)
	if resp.StatusCode != http.StatusBadGateway {
		t.Fatalf("status %d, want 502", resp.StatusCode)
	}
	flush(t, f, p)
	spans := byName(t, rc)
	for _, name := range []string{"upstream", "gateway api"} {
		s := spans[name]
		if s == nil {
			t.Fatalf("no %s span in %v", name, keys(spans))
		}
		if s.GetStatus().GetCode() != tracepb.Status_STATUS_CODE_ERROR {
			t.Errorf("%s status %v, want error", name, s.GetStatus())
		}
	}
	if _, ok := testenv.Attrs(spans["upstream"].GetAttributes())["http.response.status_code"]; ok {
		t.Error("upstream span has a status code though no response came")
	}
}

func keys(m map[string]*tracepb.Span) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	return ks
}

// prototextOf is every string a span carries (name, attributes, status,
// events), for leak checks.
func prototextOf(s *tracepb.Span) string {
	return prototext.Format(s)
}
