// Package proxy is the gateway's front door: it matches a route, verifies
// the bearer token, identifies the caller, asks a resolver for the caller's
// metadata, replaces every client-sent header in the trusted namespace with
// trusted ones, and forwards with httputil.ReverseProxy. It does not know
// where metadata comes from.
package proxy

import (
	"context"
	"errors"
	"net/http"
	"net/http/httputil"
	"net/netip"
	"time"

	"go.opentelemetry.io/otel/trace"
	"go.uber.org/zap"

	"github.com/metagate/gateway/enrich"
)

// AuthMode is a route's token policy.
type AuthMode uint8

// Token policies.
const (
	// AuthRequired refuses requests without a valid token.
	AuthRequired AuthMode = iota
	// AuthOptional enriches requests with a valid token, forwards requests
	// without one unenriched, and still refuses an invalid token.
	AuthOptional
	// AuthPublic never looks at the token; trusted headers are still
	// stripped.
	AuthPublic
)

// TokenVerifier verifies a raw bearer token.
type TokenVerifier interface {
	Verify(ctx context.Context, raw string) (*Token, error)
}

// MetadataResolver finds a caller's metadata. It returns an error wrapping
// enrich.ErrUnknownCaller when the caller does not exist at the source.
type MetadataResolver interface {
	Resolve(ctx context.Context, c enrich.Caller) (*enrich.Metadata, error)
}

// Observer is told how each request ended; the metrics package implements
// it. Reasons and routes are closed sets, safe as metric labels.
type Observer interface {
	Request(route, method string, code int, total, upstream time.Duration)
	AuthFailure(reason string)
	UpstreamError(route string)
}

type nopObserver struct{}

func (nopObserver) Request(string, string, int, time.Duration, time.Duration) {}
func (nopObserver) AuthFailure(string)                                        {}
func (nopObserver) UpstreamError(string)                                      {}

// Options builds a Gateway. Resolver may be nil (no metadata source).
type Options struct {
	Routes         []RouteConfig
	Verifier       TokenVerifier
	Resolver       MetadataResolver
	Headers        HeaderConfig
	Realm          string
	ForwardUnknown bool // forward callers unknown to the source, without metadata, instead of 403
	Transport      http.RoundTripper
	// TrustedProxies are the peers whose X-Forwarded-* headers are kept
	// (and appended to); from anyone else they are replaced.
	TrustedProxies []netip.Prefix
	Observer       Observer
	Logger         *zap.Logger
	// TracerProvider receives spans for each request and its verify,
	// resolve and upstream steps. Nil or a noop.TracerProvider turns
	// tracing off entirely: traceparent/tracestate then pass through
	// untouched; otherwise the gateway joins the caller's trace and sends
	// the upstream its own traceparent (see tracing.go).
	TracerProvider trace.TracerProvider
}

// Gateway is the http.Handler that fronts the upstreams.
type Gateway struct {
	routes         []*route
	verifier       TokenVerifier
	resolver       MetadataResolver
	headers        *headerWriter
	realm          string
	forwardUnknown bool
	trusted        []netip.Prefix
	obs            Observer
	log            *zap.Logger
	tracer         *tracer // nil when tracing is off
}

// New builds a Gateway from validated options.
func New(o Options) *Gateway {
	if o.Logger == nil {
		o.Logger = zap.NewNop()
	}
	if o.Transport == nil {
		o.Transport = NewTransport()
	}
	if o.Observer == nil {
		o.Observer = nopObserver{}
	}
	g := &Gateway{
		verifier:       o.Verifier,
		resolver:       o.Resolver,
		headers:        newHeaderWriter(o.Headers),
		realm:          o.Realm,
		forwardUnknown: o.ForwardUnknown,
		trusted:        o.TrustedProxies,
		obs:            o.Observer,
		log:            o.Logger,
	}
	for _, rc := range o.Routes {
		rt := newRoute(rc)
		rt.upstream = newBalancer(rc.Upstreams, rc.UnhealthyFor)
		rt.proxy = &httputil.ReverseProxy{
			Rewrite:      g.rewrite,
			Transport:    routeTransport(o.Transport, rc),
			ErrorHandler: g.upstreamError,
			// Flush streamed responses (SSE, chunked) as they arrive.
			FlushInterval: -1,
			ErrorLog:      zap.NewStdLog(o.Logger.Named("reverseproxy")),
		}
		g.routes = append(g.routes, rt)
	}
	if g.tracer = newTracer(o.TracerProvider); g.tracer != nil {
		g.tracer.instrument(g)
	}
	return g
}

// state is what the gateway knows about one request (with its status
// recorder, in one allocation). It travels from ServeHTTP to Rewrite and
// the transport in the request context.
type state struct {
	rec statusRecorder

	route  *route
	target *target
	token  *Token
	md     *enrich.Metadata
	// for the access log and metrics
	reason   Reason
	upstream time.Duration
	trace    *traceState // nil when tracing is off
}

type stateKey struct{}

func (g *Gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	st := &state{rec: statusRecorder{ResponseWriter: w}}
	rec := &st.rec
	if g.tracer != nil {
		r = g.tracer.startRequest(r, st)
	}
	g.serve(rec, r, st)
	d := time.Since(start)
	if g.tracer != nil {
		g.tracer.endRequest(st, rec.code())
	}
	route := ""
	if st.route != nil {
		route = st.route.Name
	}
	g.obs.Request(route, r.Method, rec.code(), d, st.upstream)
	if st.reason != "" {
		g.obs.AuthFailure(string(st.reason))
	}
	g.accessLog(r, rec, st, d)
}

func (g *Gateway) serve(w http.ResponseWriter, r *http.Request, st *state) {
	rt := g.match(r)
	if rt == nil {
		writeError(w, http.StatusNotFound, "not_found", "No route matches this request")
		return
	}
	st.route = rt
	if rt.Auth != AuthPublic {
		raw, present, err := bearerToken(r.Header)
		switch {
		case err != nil:
			st.reason = ReasonBadRequest
			challenge(w, g.realm, ReasonBadRequest)
			return
		case !present && rt.Auth == AuthRequired:
			st.reason = ReasonMissing
			challenge(w, g.realm, ReasonMissing)
			return
		case present:
			t, err := g.verifier.Verify(r.Context(), raw)
			if err != nil {
				var ae *AuthError
				if !errors.As(err, &ae) {
					ae = authErr(ReasonBadClaims, err)
				}
				st.reason = ae.Reason
				g.log.Debug("token refused", zap.String("reason", string(ae.Reason)), zap.Error(ae.Err))
				challenge(w, g.realm, ae.Reason)
				return
			}
			st.token = t
			if !g.authorize(w, rt, t, st) {
				return
			}
		}
	}
	if st.token != nil && g.resolver != nil {
		md, err := g.resolver.Resolve(r.Context(), st.token.Caller)
		switch {
		case errors.Is(err, enrich.ErrUnknownCaller):
			if !g.forwardUnknown {
				writeError(w, http.StatusForbidden, "unknown_caller", "The caller is not known to the gateway")
				return
			}
		case err != nil:
			g.log.Warn("metadata unavailable", zap.String("caller", st.token.Caller.Key()), zap.Error(err))
			w.Header().Set("Retry-After", "5")
			writeError(w, http.StatusServiceUnavailable, "metadata_unavailable", "Caller metadata is temporarily unavailable")
			return
		default:
			st.md = md
		}
	}
	if rt.MaxBodyBytes > 0 {
		if r.ContentLength > rt.MaxBodyBytes {
			writeError(w, http.StatusRequestEntityTooLarge, "request_too_large", "The request body is too large")
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, rt.MaxBodyBytes)
	}
	rt.proxy.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), stateKey{}, st)))
}

// authorize applies the route's policy to a verified token.
func (g *Gateway) authorize(w http.ResponseWriter, rt *route, t *Token, st *state) bool {
	missing, kindOK, audOK := rt.authorize(t)
	switch {
	case !audOK:
		st.reason = ReasonBadAudience
		challenge(w, g.realm, ReasonBadAudience)
		return false
	case !kindOK:
		st.reason = "caller_kind"
		writeError(w, http.StatusForbidden, "forbidden", "This route does not accept "+t.Caller.Kind.String()+" callers")
		return false
	case missing != "":
		st.reason = "insufficient_scope"
		forbidScope(w, g.realm, missing)
		return false
	}
	return true
}

// match picks the first route that takes the request, on the cleaned path.
func (g *Gateway) match(r *http.Request) *route {
	p := cleanPath(r.URL.Path)
	for _, rt := range g.routes {
		if rt.matches(r.Method, r.Host, p) {
			return rt
		}
	}
	return nil
}

// rewrite builds the outgoing request. ReverseProxy has already removed
// hop-by-hop headers, including any the client named in Connection, so the
// trusted headers set here reach the upstream as they are.
func (g *Gateway) rewrite(pr *httputil.ProxyRequest) {
	st := pr.In.Context().Value(stateKey{}).(*state)
	rt := st.route
	st.target = rt.upstream.pick(nil)
	rt.forwardPath(pr.Out.URL)
	pr.SetURL(st.target.url)
	if g.isTrusted(pr.In.RemoteAddr) {
		// A trusted proxy's chain is kept and extended, not replaced.
		if prior := pr.In.Header.Values("X-Forwarded-For"); len(prior) > 0 {
			pr.Out.Header["X-Forwarded-For"] = prior
		}
		pr.SetXForwarded()
		if proto := pr.In.Header.Get("X-Forwarded-Proto"); proto != "" {
			pr.Out.Header.Set("X-Forwarded-Proto", proto)
		}
		if host := pr.In.Header.Get("X-Forwarded-Host"); host != "" {
			pr.Out.Header.Set("X-Forwarded-Host", host)
		}
	} else {
		pr.SetXForwarded()
	}
	g.headers.strip(pr.Out.Header)
	if st.token != nil {
		g.headers.set(pr.Out.Header, st.token, st.md, rt.allow)
	}
	if g.tracer != nil {
		g.tracer.startUpstream(pr, st)
	}
}

func (g *Gateway) isTrusted(remoteAddr string) bool {
	if len(g.trusted) == 0 {
		return false
	}
	ap, err := netip.ParseAddrPort(remoteAddr)
	if err != nil {
		return false
	}
	ip := ap.Addr().Unmap()
	for _, p := range g.trusted {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

func (g *Gateway) upstreamError(w http.ResponseWriter, r *http.Request, err error) {
	var tooLarge *http.MaxBytesError
	if errors.As(err, &tooLarge) {
		writeError(w, http.StatusRequestEntityTooLarge, "request_too_large", "The request body is too large")
		return
	}
	if errors.Is(err, context.Canceled) && r.Context().Err() != nil {
		// The client went away; nobody is left to answer.
		w.WriteHeader(499)
		return
	}
	if st, ok := r.Context().Value(stateKey{}).(*state); ok {
		g.obs.UpstreamError(st.route.Name)
	}
	g.log.Warn("upstream unreachable", zap.String("host", r.URL.Host), zap.Error(err))
	writeError(w, http.StatusBadGateway, "bad_gateway", "The upstream service is unreachable")
}

func (g *Gateway) accessLog(r *http.Request, rec *statusRecorder, st *state, d time.Duration) {
	if ce := g.log.Check(zap.InfoLevel, "request"); ce != nil {
		fields := make([]zap.Field, 0, 8)
		fields = append(fields,
			zap.String("method", r.Method),
			zap.String("path", r.URL.Path),
			zap.Int("status", rec.code()),
			zap.Duration("duration", d),
		)
		if st.route != nil {
			fields = append(fields, zap.String("route", st.route.Name))
		}
		if st.token != nil {
			fields = append(fields, zap.String("caller", st.token.Caller.Key()))
		}
		if st.reason != "" {
			fields = append(fields, zap.String("auth_error", string(st.reason)))
		}
		ce.Write(fields...)
	}
}

// statusRecorder remembers the status for the access log. Unwrap lets
// http.ResponseController reach Flush and Hijack on the real writer.
type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (s *statusRecorder) WriteHeader(code int) {
	if s.status == 0 {
		s.status = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusRecorder) Write(b []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	return s.ResponseWriter.Write(b)
}

// Flush lets ReverseProxy flush streamed responses through the recorder.
func (s *statusRecorder) Flush() {
	if f, ok := s.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (s *statusRecorder) Unwrap() http.ResponseWriter { return s.ResponseWriter }

func (s *statusRecorder) code() int {
	if s.status == 0 {
		return http.StatusOK
	}
	return s.status
}
