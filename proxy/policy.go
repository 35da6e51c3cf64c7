package proxy

import (
	"net/http"
	"strings"
)

// authorize is the policy stage: a verified token against the route's
// policy. It returns nil when the caller may pass.
func (g *pipeline) authorize(p *Policy, t *Token) *refusal {
	if len(p.Audiences) > 0 && !anyAudience(t, p.Audiences) {
		return g.authRefusal(ReasonBadAudience)
	}
	if len(p.Kinds) > 0 && !kindAllowed(p, t) {
		return &refusal{status: http.StatusForbidden, code: "forbidden", reason: "caller_kind",
			desc: "This route does not accept " + t.Caller.Kind.String() + " callers"}
	}
	for _, s := range p.AllOf {
		if !t.HasScope(s) {
			return g.scopeRefusal(strings.Join(p.AllOf, " "))
		}
	}
	if len(p.AnyOf) > 0 {
		for _, s := range p.AnyOf {
			if t.HasScope(s) {
				return nil
			}
		}
		return g.scopeRefusal(strings.Join(p.AnyOf, " "))
	}
	return nil
}

func anyAudience(t *Token, auds []string) bool {
	for _, a := range auds {
		if t.HasAudience(a) {
			return true
		}
	}
	return false
}

func kindAllowed(p *Policy, t *Token) bool {
	for _, k := range p.Kinds {
		if k == t.Caller.Kind {
			return true
		}
	}
	return false
}
