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
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/otel/trace"
	"go.uber.org/zap"

	"github.com/metagate/gateway/enrich"
	"github.com/metagate/gateway/proxy/canon"
	"github.com/metagate/gateway/proxy/ratelimit"
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
	// ClientError counts requests refused because the client sent
	// something the gateway cannot read one way only (a bad path, method,
	// upgrade or body framing, a stalled body), apart from upstream errors.
	ClientError(reason string)
	// PolicyDecision counts the decisions of routes with allow_if:
	// PolicyAllowed, PolicyDenied or PolicyError.
	PolicyDecision(route, result string)
	// RateLimitDecision counts one request against a rate-limit policy;
	// local: decided by this replica alone (Redis down or absent).
	RateLimitDecision(policy string, allowed, local bool)
}

type nopObserver struct{}

func (nopObserver) Request(string, string, int, time.Duration, time.Duration) {}
func (nopObserver) AuthFailure(string)                                        {}
func (nopObserver) UpstreamError(string)                                      {}
func (nopObserver) ClientError(string)                                        {}
func (nopObserver) PolicyDecision(string, string)                             {}
func (nopObserver) RateLimitDecision(string, bool, bool)                      {}

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
	// ReadTimeout is the longest a client may stay silent while sending a
	// request body (the idle time between two reads, not the whole body);
	// a stalled client gets 408 and its upstream connection is freed.
	// 0: no limit.
	ReadTimeout time.Duration
	Observer    Observer
	// Logger receives the gateway's own warnings; AccessLog, when not
	// nil, one line per request.
	Logger    *zap.Logger
	AccessLog *zap.Logger
	// TracerProvider receives spans for each request and its verify,
	// resolve and upstream steps. Nil or a noop.TracerProvider turns
	// tracing off entirely: traceparent/tracestate then pass through
	// untouched; otherwise the gateway joins the caller's trace and sends
	// the upstream its own traceparent (see tracing.go).
	TracerProvider trace.TracerProvider
	// Endpoints are the gateway's own handlers on the public listener
	// (the token endpoint, /.well-known/gateway/me, the assertion JWKS),
	// by exact canonical path, compared like routes. They take
	// precedence over every route and see the request before any
	// credential is read: each reads what it needs itself.
	Endpoints map[string]http.Handler
	// Assertion, when not nil, signs the assertion sent to the upstream
	// in Headers.Assertion for every request with a verified token.
	Assertion AssertionSigner
	// RateLimiter counts requests on routes with a RateLimit; nil with
	// such routes: New uses a local-only ratelimit.Limiter.
	RateLimiter RateLimiter
}

// Gateway is the http.Handler that fronts the upstreams.
type Gateway struct {
	pipeline
	routes      []*route
	endpoints   []endpoint      // gateway-owned handlers, before every route
	assertion   AssertionSigner // nil: no signed assertion
	limiter     RateLimiter
	headers     *headerWriter
	trusted     []netip.Prefix
	readTimeout time.Duration
	access      *zap.Logger // nil: no access log
	tracer      *tracer     // nil when tracing is off
	states      sync.Pool   // *state, one per request in flight
	buffers     *bufferPool // ReverseProxy's copy buffers
}

// New builds a Gateway from validated options.
func New(o Options) *Gateway {
	if o.Logger == nil {
		o.Logger = zap.NewNop()
	}
	if o.Transport == nil {
		o.Transport = NewTransport(0)
	}
	if o.Observer == nil {
		o.Observer = nopObserver{}
	}
	g := &Gateway{
		pipeline: pipeline{
			verifier: o.Verifier, resolver: o.Resolver, realm: o.Realm,
			forwardUnknown: o.ForwardUnknown, log: o.Logger, obs: o.Observer,
		},
		headers:     newHeaderWriter(o.Headers),
		assertion:   o.Assertion,
		trusted:     o.TrustedProxies,
		readTimeout: o.ReadTimeout,
		buffers:     newBufferPool(),
		access:      o.AccessLog,
		limiter:     o.RateLimiter,
	}
	if g.limiter == nil {
		for _, rc := range o.Routes {
			if rc.RateLimit != nil {
				g.limiter = ratelimit.New(ratelimit.Options{})
				break
			}
		}
	}
	for path, h := range o.Endpoints {
		g.endpoints = append(g.endpoints, endpoint{folded: canon.Fold(path), h: h})
	}
	for _, rc := range o.Routes {
		rt := newRoute(rc)
		rt.upstream = newBalancer(rc.Upstreams, rc.UnhealthyFor)
		rt.proxy = &httputil.ReverseProxy{
			Rewrite:      g.rewrite,
			Transport:    routeTransport(o.Transport, rc),
			ErrorHandler: g.upstreamError,
			// 0: ReverseProxy already flushes at once what must stream
			// (text/event-stream, unknown length); every other response
			// goes out in as few writes as it can (see streaming_test.go).
			FlushInterval: 0,
			BufferPool:    g.buffers,
			ErrorLog:      zap.NewStdLog(o.Logger.Named("reverseproxy")),
		}
		g.routes = append(g.routes, rt)
	}
	if g.tracer = newTracer(o.TracerProvider); g.tracer != nil {
		g.tracer.instrument(g)
	}
	return g
}

// endpoint is a gateway-owned handler at one exact path (Options.Endpoints).
type endpoint struct {
	folded string // the path, case-folded like route patterns
	h      http.Handler
}

// state is what the gateway knows about one request (with its status
// recorder and body reader, in one allocation): the request model every
// stage reads and fills. It travels from ServeHTTP to Rewrite and the
// transport in the request context.
type state struct {
	rec  statusRecorder
	body *bodyReader // nil without a request body

	// The canonical reading of the request (interpret).
	method     string
	path       canon.Path
	route      *route
	endpoint   http.Handler // a gateway-owned endpoint instead of a route
	matched    int          // bytes of path.match the route pattern covered
	credential string       // the bearer token, "" when none was sent
	// What the stages decided.
	token     *Token
	md        *enrich.Metadata
	assertion string // the signed assertion for the upstream, "" for none
	rate      rateState
	target    *target
	// for the access log and metrics
	reason      Reason
	clientError string
	upstream    time.Duration
	trace       *traceState // nil when tracing is off
}

type stateKey struct{}

// stateCtx carries the state in the request context, as context.WithValue
// would, in one allocation too. It is not pooled: the transport may hold
// the outgoing request's context after the handler returned.
type stateCtx struct {
	context.Context
	st *state
}

func (c *stateCtx) Value(key any) any {
	if key == (stateKey{}) {
		return c.st
	}
	return c.Context.Value(key)
}

// getState takes a reset state from the pool.
func (g *Gateway) getState(w http.ResponseWriter) *state {
	st, _ := g.states.Get().(*state)
	if st == nil {
		st = new(state)
	}
	st.rec.ResponseWriter = w
	return st
}

// putState returns st to the pool, dropping every reference it holds
// (the writer, the token, the metadata). Only what nothing can reach after
// ServeHTTP returns lives in a state: the body reader and the context are
// allocated apart, because the transport may still read the body, and
// hold the context, after RoundTrip returned.
func (g *Gateway) putState(st *state) {
	if st.body != nil {
		st.body.served.Store(true)
	}
	*st = state{}
	g.states.Put(st)
}

func (g *Gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	st := g.getState(w)
	defer g.putState(st)
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
	g.obs.Request(route, st.methodLabel(r), rec.code(), d, st.upstream)
	if st.reason != "" {
		g.obs.AuthFailure(string(st.reason))
	}
	if st.clientError != "" {
		g.obs.ClientError(st.clientError)
	}
	g.accessLog(r, rec, st, d)
}

// serve runs the stages in order: interpret (canonical request, route,
// credential), verify and identify (Verifier), authorize (policy),
// resolve (metadata), and forward (mutate headers, proxy). The first
// stage that says no answers the request.
func (g *Gateway) serve(w http.ResponseWriter, r *http.Request, st *state) {
	if rf := g.interpret(r, st); rf != nil {
		g.refuse(w, st, rf)
		return
	}
	// The canonical method is the one the server and every later stage
	// see (net/http itself reads r.Method, e.g. to send no body to HEAD).
	r.Method = st.method
	if st.endpoint != nil {
		st.endpoint.ServeHTTP(w, r)
		return
	}
	rt := st.route
	if rt.Auth != AuthPublic {
		t, rf := g.authenticate(r.Context(), st.credential, rt.Auth, &rt.Policy)
		st.token = t
		if rf != nil {
			g.refuse(w, st, rf)
			return
		}
	}
	md, rf := g.resolve(r.Context(), st.token)
	if rf != nil {
		g.refuse(w, st, rf)
		return
	}
	st.md = md
	if rt.Policy.AllowIf != nil {
		if rf := g.allowIf(&rt.Policy, rt.Name, st.token, md, g.policyRequest(r, st)); rf != nil {
			g.refuse(w, st, rf)
			return
		}
	}
	if rt.RateLimit != nil && st.token != nil {
		if rf := g.limit(r.Context(), w, rt, st); rf != nil {
			g.refuse(w, st, rf)
			return
		}
	}
	if st.token != nil && g.assertion != nil {
		a, err := g.assertion.Assertion(r.Context(), AssertionRequest{
			Token: st.token, Metadata: md, Route: rt.Name, Audience: rt.AssertionAudience, MetadataKeys: rt.Policy.MetadataKeys,
		})
		if err != nil {
			g.log.Error("signing the gateway assertion", zap.String("route", rt.Name), zap.Error(err))
			g.refuse(w, st, &refusal{status: http.StatusServiceUnavailable, code: "assertion_unavailable",
				desc: "The gateway cannot sign its assertion", retryAfter: "5"})
			return
		}
		st.assertion = a
	}
	if rt.MaxBodyBytes > 0 && r.ContentLength > rt.MaxBodyBytes {
		g.refuse(w, st, clientRefusal(http.StatusRequestEntityTooLarge, "request_too_large", "The request body is too large"))
		return
	}
	if r.Body != nil && r.Body != http.NoBody {
		// The connection's own writer, not the pooled recorder: the
		// transport may read the body after this request's state is reused.
		st.body = newBodyReader(st.rec.ResponseWriter, r.Body, rt.MaxBodyBytes, g.readTimeout)
		r.Body = st.body
	}
	rt.proxy.ServeHTTP(w, r.WithContext(&stateCtx{Context: r.Context(), st: st}))
}

func (g *Gateway) refuse(w http.ResponseWriter, st *state, rf *refusal) {
	st.reason, st.clientError = rf.reason, rf.clientError
	rf.write(w)
}

// rewrite builds the outgoing request from the canonical one. ReverseProxy
// has already removed hop-by-hop headers, including any the client named
// in Connection, so the trusted headers set here reach the upstream as
// they are.
func (g *Gateway) rewrite(pr *httputil.ProxyRequest) {
	st := pr.In.Context().Value(stateKey{}).(*state)
	rt := st.route
	st.target = rt.upstream.pick(nil)
	// RawPath whenever Go's own escaping of Path would differ from the
	// canonical form: it escapes !'()*, and an encoded slash must stay.
	esc := rt.forwardPath(st.path, st.matched)
	pr.Out.URL.Path, pr.Out.URL.RawPath = canon.Unescape(esc), ""
	if strings.ContainsAny(esc, "%!'()*") {
		pr.Out.URL.RawPath = esc
	}
	pr.Out.Method = st.method
	pr.SetURL(st.target.url)
	trusted := g.isTrusted(pr.In.RemoteAddr)
	if trusted {
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
	g.headers.strip(pr.Out.Header, trusted)
	if st.credential != "" && !strings.HasPrefix(pr.Out.Header.Get("Authorization"), "Bearer ") {
		// The one spelling the gateway read ("bearer" becomes "Bearer").
		pr.Out.Header["Authorization"] = []string{"Bearer " + st.credential}
	}
	if st.token != nil {
		g.headers.set(pr.Out.Header, st.token, st.md, rt.allow)
		if st.assertion != "" {
			pr.Out.Header[g.headers.cfg.Assertion] = []string{st.assertion}
		}
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

// upstreamError answers a request the proxy could not complete. A body
// the client could not deliver (malformed framing, too large, stalled) is
// the client's error, answered 4xx and counted apart from upstream errors.
func (g *Gateway) upstreamError(w http.ResponseWriter, r *http.Request, err error) {
	st, _ := r.Context().Value(stateKey{}).(*state)
	if st != nil && st.body != nil {
		if rf := st.body.refusal(); rf != nil {
			g.refuse(w, st, rf)
			return
		}
	}
	if errors.Is(err, context.Canceled) && r.Context().Err() != nil {
		// The client went away; nobody is left to answer.
		w.WriteHeader(499)
		return
	}
	if st != nil {
		g.obs.UpstreamError(st.route.Name)
	}
	g.log.Warn("upstream unreachable", zap.String("host", r.URL.Host), zap.Error(err))
	writeError(w, http.StatusBadGateway, "bad_gateway", "The upstream service is unreachable")
}

func (g *Gateway) accessLog(r *http.Request, rec *statusRecorder, st *state, d time.Duration) {
	if g.access == nil {
		return
	}
	if ce := g.access.Check(zap.InfoLevel, "request"); ce != nil {
		fields := make([]zap.Field, 0, 11)
		fields = append(fields,
			zap.String("method", st.methodLabel(r)),
			zap.String("path", st.logPath(r)),
			zap.Int("status", rec.code()),
			zap.Duration("duration", d),
		)
		if st.route != nil {
			fields = append(fields, zap.String("route", st.route.Name))
		}
		if st.token != nil {
			// Not "caller": zap's own caller field uses that key.
			fields = append(fields, zap.String("caller_id", st.token.Caller.Key()))
		}
		if st.reason != "" {
			fields = append(fields, zap.String("auth_error", string(st.reason)))
		}
		if st.clientError != "" {
			fields = append(fields, zap.String("client_error", st.clientError))
		}
		if p := st.rate.policy; p != nil {
			result := "allowed"
			if !st.rate.decision.Allowed {
				result = "limited"
			}
			fields = append(fields, zap.String("rate_limit_policy", p.Name), zap.String("rate_limit", result))
			if st.rate.decision.Local {
				fields = append(fields, zap.Bool("rate_limit_local", true))
			}
		}
		ce.Write(fields...)
	}
}

// methodLabel is the canonical method once interpret has read it.
func (st *state) methodLabel(r *http.Request) string {
	if st.method != "" {
		return st.method
	}
	return r.Method
}

// logPath is the canonical path when there is one, else the path as sent
// (a refused path is logged as the client spelled it).
func (st *state) logPath(r *http.Request) string {
	if st.path.Escaped != "" {
		return st.path.Escaped
	}
	return r.URL.EscapedPath()
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
