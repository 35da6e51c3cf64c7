package tracing

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/trace"
	"go.uber.org/goleak"

	"github.com/metagate/gateway/internal/config"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestNoEndpointIsANoopProvider(t *testing.T) {
	p, err := New(context.Background(), config.Tracing{ServiceName: "gateway", SampleRatio: 1}, "test")
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	if p.Enabled() {
		t.Error("Enabled() = true without an endpoint")
	}
	ctx, sp := p.TracerProvider().Tracer("t").Start(context.Background(), "x")
	if sp.IsRecording() || trace.SpanContextFromContext(ctx).IsValid() {
		t.Error("the noop provider produced a recording span or a valid span context")
	}
	sp.End()
	if err := p.Shutdown(context.Background()); err != nil {
		t.Errorf("Shutdown: %v", err)
	}
}

func TestEndpointStartsAnExportingProvider(t *testing.T) {
	// Nothing listens there: New must not connect, and Shutdown with nothing
	// buffered must not either.
	p, err := New(context.Background(), config.Tracing{
		OTLPEndpoint: "http://127.0.0.1:1", ServiceName: "gateway", SampleRatio: 1,
		Timeout: config.Duration(time.Second),
	}, "test")
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	if !p.Enabled() {
		t.Error("Enabled() = false with an endpoint")
	}
	if err := p.Shutdown(context.Background()); err != nil {
		t.Errorf("Shutdown: %v", err)
	}
}

func TestInvalidSetupIsRefusedWithContext(t *testing.T) {
	cases := []struct {
		name string
		cfg  config.Tracing
		want string
	}{
		{"not a URL", config.Tracing{OTLPEndpoint: "http://[::1", Timeout: config.Duration(time.Second)}, `tracing: otlp_endpoint "http://[::1"`},
		{"no scheme", config.Tracing{OTLPEndpoint: "otel-collector:4318", Timeout: config.Duration(time.Second)}, "absolute http(s) URL"},
		{"grpc scheme", config.Tracing{OTLPEndpoint: "grpc://otel-collector:4317", Timeout: config.Duration(time.Second)}, "absolute http(s) URL"},
		{"no timeout", config.Tracing{OTLPEndpoint: "http://otel-collector:4318"}, "tracing: timeout must be positive"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p, err := New(context.Background(), c.cfg, "test")
			if err == nil {
				_ = p.Shutdown(context.Background())
				t.Fatal("New accepted an invalid setup")
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %q does not mention %q", err, c.want)
			}
		})
	}
}

func TestSpansReachTheCollectorUnderTheBasePath(t *testing.T) {
	type export struct{ path, apiKey, encoding, contentType string }
	got := make(chan export, 10)
	col := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		got <- export{r.URL.Path, r.Header.Get("X-Api-Key"), r.Header.Get("Content-Encoding"), r.Header.Get("Content-Type")}
		w.Header().Set("Content-Type", "application/x-protobuf")
	}))
	defer col.Close()

	// A collector behind a path prefix, written with a trailing slash.
	p, err := New(context.Background(), config.Tracing{
		OTLPEndpoint: col.URL + "/otlp/", ServiceName: "gateway", SampleRatio: 1,
		Headers: map[string]string{"X-Api-Key": "k1"}, Timeout: config.Duration(5 * time.Second),
	}, "test")
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	_, sp := p.TracerProvider().Tracer("t").Start(context.Background(), "x")
	sp.End()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := p.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	select {
	case e := <-got:
		want := export{"/otlp/v1/traces", "k1", "gzip", "application/x-protobuf"}
		if e != want {
			t.Errorf("export %+v, want %+v", e, want)
		}
	default:
		t.Fatal("Shutdown returned before the buffered span was exported")
	}
}
