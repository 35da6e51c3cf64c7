// Package cors is the one CORS rule of the gateway's own endpoints (the
// caller's /.well-known/gateway/me, the dev issuer's /oauth/token): exact
// origins from an allow-list, never a wildcard and never a reflected
// unlisted origin, and preflights answered only for the methods the
// endpoint serves.
package cors

import (
	"net/http"
	"slices"
	"strings"
)

// Policy is one endpoint's CORS allow-list.
type Policy struct {
	origins map[string]bool
	methods []string
	allow   string // Access-Control-Allow-Methods
	headers string // Access-Control-Allow-Headers
	expose  string // Access-Control-Expose-Headers, "" for none
}

// New is the policy of an endpoint serving methods to origins, which may
// send the request headers headers and read the response headers expose.
func New(origins, methods, headers, expose []string) *Policy {
	p := &Policy{origins: make(map[string]bool, len(origins)), methods: methods,
		allow: strings.Join(methods, ", "), headers: strings.Join(headers, ", "), expose: strings.Join(expose, ", ")}
	for _, o := range origins {
		p.origins[o] = true
	}
	return p
}

// Result is what Apply decided.
type Result struct {
	// Preflight: the request was a CORS preflight, which the endpoint
	// answers with 204 when Allowed and a refusal (no CORS headers, which
	// the browser reports as a CORS failure) otherwise.
	Preflight bool
	Allowed   bool
}

// Apply sets the CORS headers of the answer to r. With an empty
// allow-list it does nothing (and r is not a preflight to it).
func (p *Policy) Apply(w http.ResponseWriter, r *http.Request) Result {
	if p == nil || len(p.origins) == 0 {
		return Result{}
	}
	h := w.Header()
	// The answer depends on Origin: a shared cache must not hand one
	// origin's answer to another.
	h.Add("Vary", "Origin")
	origin := r.Header.Get("Origin")
	allowed := p.origins[origin]
	if r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != "" {
		if !allowed || !slices.Contains(p.methods, r.Header.Get("Access-Control-Request-Method")) {
			return Result{Preflight: true}
		}
		h.Set("Access-Control-Allow-Origin", origin)
		h.Set("Access-Control-Allow-Methods", p.allow)
		h.Set("Access-Control-Allow-Headers", p.headers)
		h.Set("Access-Control-Max-Age", "600")
		return Result{Preflight: true, Allowed: true}
	}
	if allowed {
		h.Set("Access-Control-Allow-Origin", origin)
		if p.expose != "" {
			h.Set("Access-Control-Expose-Headers", p.expose)
		}
	}
	return Result{Allowed: allowed}
}
