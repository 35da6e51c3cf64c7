package proxy

import (
	"net/http"

	"go.uber.org/zap"

	"github.com/metagate/gateway/enrich"
	"github.com/metagate/gateway/proxy/canon"
	"github.com/metagate/gateway/proxy/expr"
)

// MiddlewareOptions configures the gateway's in-process form. It takes
// the same parts as the proxy: a Verifier built from IssuerConfig, a
// resolver (enrich.NewResolver), a Policy and an AuthMode, as a route has.
type MiddlewareOptions struct {
	Verifier TokenVerifier
	Resolver MetadataResolver // nil: no metadata
	Realm    string           // the WWW-Authenticate realm; "" means "gateway"
	Auth     AuthMode
	Policy   Policy
	// ForwardUnknown lets a caller unknown to the source through without
	// metadata instead of 403 (metadata.on_unknown: forward).
	ForwardUnknown bool
	// Headers, when its Namespace is set, also strips the trusted
	// namespace from the request and sets the trusted headers, for
	// handlers written against the proxy's headers. Without it only
	// the context carries the caller (enrich.FromContext).
	Headers HeaderConfig
	Logger  *zap.Logger
}

// Middleware is the verify → identify → authorise → resolve pipeline of
// the proxy, inside a Go API and without the proxy hop: the wrapped
// handler finds the caller and its metadata with enrich.FromContext. A
// request the pipeline refuses gets the same answer the proxy gives (401
// with WWW-Authenticate, 403, 503) and never reaches the handler.
func Middleware(o MiddlewareOptions) func(http.Handler) http.Handler {
	if o.Logger == nil {
		o.Logger = zap.NewNop()
	}
	if o.Realm == "" {
		o.Realm = "gateway"
	}
	p := &pipeline{verifier: o.Verifier, resolver: o.Resolver, realm: o.Realm, forwardUnknown: o.ForwardUnknown, log: o.Logger, obs: nopObserver{}}
	var hw *headerWriter
	if len(o.Headers.Namespace) > 0 {
		hw = newHeaderWriter(o.Headers)
	}
	allow := o.Policy.allowSet()
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if hw != nil {
				hw.strip(r.Header, false)
			}
			if o.Auth == AuthPublic {
				next.ServeHTTP(w, r)
				return
			}
			cred, err := bearerToken(r.Header)
			if err != nil {
				p.authRefusal(ReasonBadRequest).write(w)
				return
			}
			t, rf := p.authenticate(r.Context(), cred, o.Auth, &o.Policy)
			if rf != nil {
				rf.write(w)
				return
			}
			if t == nil { // optional and absent
				next.ServeHTTP(w, r)
				return
			}
			md, rf := p.resolve(r.Context(), t)
			if rf != nil {
				rf.write(w)
				return
			}
			if rf := p.allowIf(&o.Policy, "", t, md, func() *expr.Request {
				// The path as net/http decoded it: a middleware sits
				// behind the server's own routing, not the gateway's.
				return expr.NewRequest(canon.Method(r.Method), r.URL.Path, nil, r.URL.RawQuery, r.Header)
			}); rf != nil {
				rf.write(w)
				return
			}
			if hw != nil {
				hw.set(r.Header, t, md, allow)
			}
			id := &enrich.Identity{Caller: t.Caller, ClientID: t.ClientID, Scopes: t.Scopes, Metadata: md}
			next.ServeHTTP(w, r.WithContext(enrich.NewContext(r.Context(), id)))
		})
	}
}
