package proxy

// Tracing: OpenTelemetry spans for the gateway's own work, and what happens
// to the W3C trace headers.
//
// Tracing off (Options.TracerProvider nil or a noop.TracerProvider): the
// gateway is not a trace participant. Nothing is extracted or injected and
// no span exists; traceparent and tracestate reach the upstream exactly as
// the caller sent them, like any other end-to-end header. The request path
// pays one nil check.
//
// Tracing on: the gateway is a participating W3C intermediary. It continues
// the caller's trace (parent taken from traceparent/tracestate with the W3C
// TraceContext propagator) with a server span for the request, children
// "verify", "resolve" and "upstream", and replaces traceparent on the
// outgoing request with the upstream span's context: same trace id, the
// upstream span as parent id, the caller's sampled flag and tracestate
// kept. A request without a valid traceparent starts a new trace, so the
// upstream receives a traceparent from the gateway (and any tracestate that
// came without a valid traceparent is dropped, as W3C requires).
//
// Span attributes are closed sets or structural values (route name,
// method, status code, auth failure reason, caller kind, resolve outcome,
// upstream host). Tokens, caller ids, metadata values, paths and error
// texts (which may quote any of those) are never recorded.

import (
	"context"
	"errors"
	"net/http"
	"net/http/httputil"
	"strconv"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/metagate/gateway/enrich"
)

// instrumentationName names the tracer, as OpenTelemetry asks: the
// instrumenting package.
const instrumentationName = "github.com/metagate/gateway/proxy"

// Span attributes of our own, namespaced so they never collide with
// semantic conventions.
const (
	attrRoute         = attribute.Key("gateway.route")
	attrAuthReason    = attribute.Key("gateway.auth.reason")
	attrCallerKind    = attribute.Key("gateway.caller.kind")
	attrResolveResult = attribute.Key("gateway.resolve.outcome")
)

// Resolve outcomes: the answer the gateway got, whichever cache tier or
// origin gave it.
const (
	resolveFound   = "found"
	resolveUnknown = "unknown"
	resolveError   = "error"
)

// tracer creates the gateway's spans. A nil *tracer means tracing is off;
// Gateway checks for nil before calling any method.
type tracer struct {
	t    trace.Tracer
	prop propagation.TraceContext
}

// traceState is the part of a request's state that tracing needs; behind a
// pointer so that with tracing off the per-request state stays as small as
// it was.
type traceState struct {
	server   trace.Span
	upstream trace.Span
	// upstreamStatus is the status of the upstream's response; 0 when none
	// came (unreachable, cancelled, body too large).
	upstreamStatus int
}

// newTracer returns nil for a nil or noop provider, so that the request
// path can skip extraction and span creation with one pointer check rather
// than paying for no-op spans.
func newTracer(tp trace.TracerProvider) *tracer {
	switch tp.(type) {
	case nil, noop.TracerProvider, *noop.TracerProvider:
		return nil
	}
	return &tracer{t: tp.Tracer(instrumentationName)}
}

// instrument wraps the gateway's stages with spans. It runs once in New, so
// with tracing off the stages are the caller's own values, untouched.
func (t *tracer) instrument(g *Gateway) {
	if g.verifier != nil {
		g.verifier = tracedVerifier{next: g.verifier, t: t.t}
	}
	if g.resolver != nil {
		g.resolver = tracedResolver{next: g.resolver, t: t.t}
	}
	for _, rt := range g.routes {
		if rp, ok := rt.proxy.(*httputil.ReverseProxy); ok {
			rp.ModifyResponse = upstreamResponse
		}
	}
}

// startRequest continues the caller's trace, or starts one, with the
// server span, and returns the request carrying it.
func (t *tracer) startRequest(r *http.Request, st *state) *http.Request {
	st.trace = &traceState{}
	ctx := t.prop.Extract(r.Context(), propagation.HeaderCarrier(r.Header))
	ctx, st.trace.server = t.t.Start(ctx, "gateway",
		trace.WithSpanKind(trace.SpanKindServer),
		trace.WithAttributes(semconv.HTTPRequestMethodKey.String(methodAttr(r.Method))))
	return r.WithContext(ctx)
}

// startUpstream opens the upstream span and puts its context on the
// outgoing request. It runs at the end of Rewrite, after ReverseProxy has
// copied the caller's headers, so it replaces the caller's traceparent.
func (t *tracer) startUpstream(pr *httputil.ProxyRequest, st *state) {
	ctx, sp := t.t.Start(pr.Out.Context(), "upstream",
		trace.WithSpanKind(trace.SpanKindClient),
		trace.WithAttributes(
			attrRoute.String(st.route.Name),
			semconv.HTTPRequestMethodKey.String(methodAttr(pr.Out.Method)),
		))
	st.trace.upstream = sp
	// Inject writes tracestate only when there is one; a tracestate that
	// arrived without a valid traceparent must not survive next to ours.
	pr.Out.Header.Del("Tracestate")
	t.prop.Inject(ctx, propagation.HeaderCarrier(pr.Out.Header))
	pr.Out = pr.Out.WithContext(ctx)
}

// endRequest closes the upstream span (if the request got that far) and
// the server span, with what the request turned out to be.
func (t *tracer) endRequest(st *state, code int) {
	if sp := st.trace.upstream; sp != nil {
		endUpstream(sp, st, code)
	}
	sp := st.trace.server
	if st.route != nil {
		sp.SetName("gateway " + st.route.Name)
		sp.SetAttributes(attrRoute.String(st.route.Name))
	}
	sp.SetAttributes(semconv.HTTPResponseStatusCode(code))
	if st.reason != "" {
		sp.SetAttributes(attrAuthReason.String(string(st.reason)))
	}
	if st.token != nil {
		sp.SetAttributes(attrCallerKind.String(st.token.Caller.Kind.String()))
	}
	if code >= 500 {
		sp.SetStatus(codes.Error, http.StatusText(code))
	}
	sp.End()
}

func endUpstream(sp trace.Span, st *state, code int) {
	if st.target != nil {
		// The target a retry moved to, if it did.
		u := st.target.url
		sp.SetAttributes(semconv.ServerAddress(u.Hostname()))
		if p, err := strconv.Atoi(u.Port()); err == nil {
			sp.SetAttributes(semconv.ServerPort(p))
		}
	}
	switch s := st.trace.upstreamStatus; {
	case s == 0:
		desc := "no response from upstream"
		if code == 499 {
			desc = "client went away"
		}
		sp.SetStatus(codes.Error, desc)
	case s >= 500:
		sp.SetAttributes(semconv.HTTPResponseStatusCode(s))
		sp.SetStatus(codes.Error, http.StatusText(s))
	default:
		sp.SetAttributes(semconv.HTTPResponseStatusCode(s))
	}
	sp.End()
}

// upstreamResponse is ReverseProxy's ModifyResponse when tracing is on: it
// notes the upstream's own status, which the status the caller finally sees
// cannot tell apart from one the gateway wrote itself.
func upstreamResponse(resp *http.Response) error {
	if resp.Request == nil {
		return nil
	}
	if st, ok := resp.Request.Context().Value(stateKey{}).(*state); ok && st.trace != nil {
		st.trace.upstreamStatus = resp.StatusCode
	}
	return nil
}

// tracedVerifier puts a "verify" span around token verification. The span
// carries the refusal reason, never the token or the error text.
type tracedVerifier struct {
	next TokenVerifier
	t    trace.Tracer
}

func (v tracedVerifier) Verify(ctx context.Context, raw string) (*Token, error) {
	ctx, sp := v.t.Start(ctx, "verify")
	defer sp.End()
	tok, err := v.next.Verify(ctx, raw)
	if err != nil {
		reason := ReasonBadClaims // what serve answers for errors that are not an *AuthError
		var ae *AuthError
		if errors.As(err, &ae) {
			reason = ae.Reason
		}
		sp.SetAttributes(attrAuthReason.String(string(reason)))
		sp.SetStatus(codes.Error, "token refused")
		return tok, err
	}
	sp.SetAttributes(attrCallerKind.String(tok.Caller.Kind.String()))
	return tok, nil
}

// tracedResolver puts a "resolve" span around metadata resolution. It
// records the caller's kind and the outcome, never the caller's id or
// metadata, nor the error text (which may quote the id).
type tracedResolver struct {
	next MetadataResolver
	t    trace.Tracer
}

func (r tracedResolver) Resolve(ctx context.Context, c enrich.Caller) (*enrich.Metadata, error) {
	ctx, sp := r.t.Start(ctx, "resolve", trace.WithAttributes(attrCallerKind.String(c.Kind.String())))
	defer sp.End()
	md, err := r.next.Resolve(ctx, c)
	switch {
	case errors.Is(err, enrich.ErrUnknownCaller):
		sp.SetAttributes(attrResolveResult.String(resolveUnknown))
	case err != nil:
		sp.SetAttributes(attrResolveResult.String(resolveError))
		sp.SetStatus(codes.Error, "metadata unavailable")
	default:
		sp.SetAttributes(attrResolveResult.String(resolveFound))
	}
	return md, err
}

// methodAttr keeps http.request.method a closed set, as the semantic
// conventions ask: a client can send any token as a method.
func methodAttr(m string) string {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodConnect, http.MethodOptions, http.MethodTrace:
		return m
	}
	return "_OTHER"
}
