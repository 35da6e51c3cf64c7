// Package tracing builds the OpenTelemetry TracerProvider the gateway uses
// for spans about its own work (verify, resolve, upstream). It turns the
// validated config.Tracing into an OTLP/HTTP exporter behind a batch span
// processor, or into a no-op provider when no endpoint is configured, so
// callers never branch on "is tracing on".
//
// Nothing here touches OpenTelemetry's global state (otel.SetTracerProvider,
// otel.SetTextMapPropagator): the provider is a value handed to whoever
// needs it, like every other dependency in this codebase.
package tracing

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"

	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/metagate/gateway/internal/config"
)

// tracesPath is where OTLP/HTTP receivers take spans, relative to the base
// URL in tracing.otlp_endpoint.
const tracesPath = "/v1/traces"

// Provider owns the gateway's TracerProvider and its export pipeline.
type Provider struct {
	tp       trace.TracerProvider
	shutdown func(context.Context) error
}

// New builds the provider described by cfg. With cfg.OTLPEndpoint empty it
// returns a provider backed by noop.TracerProvider: no spans, no exporter,
// no goroutines, and the proxy recognises it and skips tracing entirely.
// Otherwise spans are batched and sent to <otlp_endpoint>/v1/traces
// (gzip-compressed protobuf; plain HTTP for http:// endpoints, TLS for
// https://), sampled ParentBased(TraceIDRatioBased(sample_ratio)): a
// caller's sampled flag is followed, the ratio applies to traces the
// gateway starts. No connection is made here: an unreachable collector
// loses spans, it never fails startup or requests.
//
// The standard OTEL_* environment variables still tune what the config does
// not set (OTEL_RESOURCE_ATTRIBUTES, OTEL_BSP_*, OTEL_EXPORTER_OTLP_CERTIFICATE);
// the endpoint, headers, timeout, sampler and service name come from cfg.
func New(ctx context.Context, cfg config.Tracing, version string) (*Provider, error) {
	if cfg.OTLPEndpoint == "" {
		return &Provider{tp: noop.NewTracerProvider(), shutdown: func(context.Context) error { return nil }}, nil
	}
	opts, err := exporterOptions(cfg)
	if err != nil {
		return nil, fmt.Errorf("tracing: %w", err)
	}
	exp, err := otlptracehttp.New(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("tracing: otlp exporter for %s: %w", cfg.OTLPEndpoint, err)
	}
	res, err := resource.New(ctx,
		resource.WithFromEnv(),
		resource.WithTelemetrySDK(),
		// Last, so the config wins over OTEL_SERVICE_NAME and friends.
		resource.WithSchemaURL(semconv.SchemaURL),
		resource.WithAttributes(semconv.ServiceName(cfg.ServiceName), semconv.ServiceVersion(version)),
	)
	if err != nil && res == nil {
		// resource.New returns a usable resource alongside partial errors
		// (for example a malformed OTEL_RESOURCE_ATTRIBUTES); only a
		// missing resource is fatal.
		_ = exp.Shutdown(ctx)
		return nil, fmt.Errorf("tracing: resource: %w", err)
	}
	tp := sdktrace.NewTracerProvider(
		sdktrace.WithBatcher(exp, sdktrace.WithExportTimeout(cfg.Timeout.D())),
		sdktrace.WithResource(res),
		sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.TraceIDRatioBased(cfg.SampleRatio))),
	)
	return &Provider{tp: tp, shutdown: tp.Shutdown}, nil
}

// exporterOptions turns the endpoint URL into explicit exporter options.
// The exporter's own WithEndpointURL silently falls back to localhost on a
// bad URL, so the URL is parsed here where a mistake can be reported.
func exporterOptions(cfg config.Tracing) ([]otlptracehttp.Option, error) {
	u, err := url.Parse(cfg.OTLPEndpoint)
	if err != nil {
		return nil, fmt.Errorf("otlp_endpoint %q: %w", cfg.OTLPEndpoint, err)
	}
	if u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return nil, fmt.Errorf("otlp_endpoint %q: want an absolute http(s) URL such as http://otel-collector:4318", cfg.OTLPEndpoint)
	}
	if cfg.Timeout.D() <= 0 {
		return nil, errors.New("timeout must be positive")
	}
	opts := []otlptracehttp.Option{
		otlptracehttp.WithEndpoint(u.Host),
		otlptracehttp.WithURLPath(strings.TrimSuffix(u.Path, "/") + tracesPath),
		otlptracehttp.WithTimeout(cfg.Timeout.D()),
		otlptracehttp.WithCompression(otlptracehttp.GzipCompression),
	}
	if u.Scheme == "http" {
		opts = append(opts, otlptracehttp.WithInsecure())
	}
	if len(cfg.Headers) > 0 {
		opts = append(opts, otlptracehttp.WithHeaders(cfg.Headers))
	}
	return opts, nil
}

// TracerProvider is what instrumented code takes. It is a
// noop.TracerProvider when tracing is off.
func (p *Provider) TracerProvider() trace.TracerProvider { return p.tp }

// Enabled reports whether spans are exported.
func (p *Provider) Enabled() bool {
	_, off := p.tp.(noop.TracerProvider)
	return !off
}

// Shutdown exports the spans still buffered and stops the exporter; call it
// after the servers have drained, with a deadline. Spans started afterwards
// are dropped. It is a no-op when tracing is off.
func (p *Provider) Shutdown(ctx context.Context) error {
	if err := p.shutdown(ctx); err != nil {
		return fmt.Errorf("tracing: flush spans on shutdown: %w", err)
	}
	return nil
}
