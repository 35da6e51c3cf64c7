package proxy

import (
	"net/http"

	"go.uber.org/zap"

	"github.com/metagate/gateway/enrich"
	"github.com/metagate/gateway/proxy/expr"
)

// Policy decision results, the values of gateway_policy_decisions_total's
// result label.
const (
	PolicyAllowed = "allowed"
	PolicyDenied  = "denied"
	PolicyError   = "error"
)

// allowIf is the policy stage that runs once the caller's metadata is
// known: the route's allow_if expressions (Policy.AllowIf) over the
// verified caller, its claims, its metadata and the canonical request.
// Scopes and caller kinds were checked before (authorize), with their
// own RFC 6750 answers; a false expression is a plain 403 naming the
// route, and an expression that cannot be evaluated is one too, with a
// warning that names the route and the expression, never a value.
func (p *pipeline) allowIf(pol *Policy, route string, t *Token, md *enrich.Metadata, req func() *expr.Request) *refusal {
	if pol.AllowIf == nil {
		return nil
	}
	v := &expr.Vars{Metadata: md.Map(), Request: req}
	if t != nil {
		v.Caller = expr.Caller{Kind: t.Caller.Kind.String(), ID: t.Caller.ID, Issuer: t.Caller.Issuer, Scopes: t.Scopes}
		v.Claims = t.AllClaims
	}
	res := pol.AllowIf.Eval(v)
	switch {
	case res.Err != nil:
		p.obs.PolicyDecision(route, PolicyError)
		p.log.Warn("route policy could not be evaluated: denied", zap.String("route", route), zap.Int("allow_if", res.Denied), zap.Error(res.Err))
	case !res.Allowed:
		p.obs.PolicyDecision(route, PolicyDenied)
	default:
		p.obs.PolicyDecision(route, PolicyAllowed)
		return nil
	}
	return &refusal{status: http.StatusForbidden, code: "forbidden", route: route, reason: "policy",
		desc: "The route's policy does not allow this request"}
}

// policyRequest is the request view expressions read, built only when one
// reads request.
func (g *Gateway) policyRequest(r *http.Request, st *state) func() *expr.Request {
	return func() *expr.Request {
		var params map[string]string
		if t := st.route.tmpl; t != nil {
			params = t.Values(st.path.Match)
		}
		return expr.NewRequest(st.method, st.path.Match, params, r.URL.RawQuery, r.Header)
	}
}
