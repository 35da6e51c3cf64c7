package proxy

import (
	"context"
	"math"
	"net/http"
	"strconv"
	"time"

	"github.com/metagate/gateway/enrich"
	"github.com/metagate/gateway/proxy/ratelimit"
)

// RateLimiter counts one request of key against a policy;
// ratelimit.Limiter implements it (fleet-wide through Redis, local while
// Redis is down).
type RateLimiter interface {
	Allow(ctx context.Context, p *ratelimit.Policy, key string) ratelimit.Decision
}

// RateKey says what a policy counts requests by.
type RateKey struct {
	Kind RateKeyKind
	// Name is the claim or metadata key for RateKeyClaim and
	// RateKeyMetadata.
	Name string
}

// RateKeyKind is how a policy's requests are grouped.
type RateKeyKind uint8

// Rate-limit keys (rate_limits.*.key).
const (
	// RateKeyCaller counts per caller (kind, issuer and id).
	RateKeyCaller RateKeyKind = iota
	// RateKeyCallerAndRoute counts per caller on each route apart.
	RateKeyCallerAndRoute
	// RateKeyClaim counts per value of a token claim (an org, a tenant);
	// a token without it is counted as its caller.
	RateKeyClaim
	// RateKeyMetadata counts per value of a metadata key; a caller
	// without it is counted as itself.
	RateKeyMetadata
)

// RatePolicy is a limit and what it counts by.
type RatePolicy struct {
	*ratelimit.Policy
	Key RateKey
}

// RouteRateLimit is a route's rate limit: Default for every caller, or,
// with a TierField, the policy of the caller's tier.
type RouteRateLimit struct {
	// TierField names the metadata key (or, with TierFromClaim, the
	// claim) whose value picks the policy in Tiers. A caller whose value
	// is missing, not a scalar, or not in Tiers gets Default.
	TierField     string
	TierFromClaim bool
	Tiers         map[string]*RatePolicy
	Default       *RatePolicy
}

// rateState is the rate-limit decision of one request, for the response
// headers, the access log and metrics.
type rateState struct {
	policy   *RatePolicy // nil: the route has no limit (or no caller)
	decision ratelimit.Decision
}

// pick is the caller's policy on this route.
func (rl *RouteRateLimit) pick(t *Token, md *enrich.Metadata) *RatePolicy {
	if rl.TierField == "" {
		return rl.Default
	}
	var v any
	if rl.TierFromClaim {
		v = t.AllClaims[rl.TierField]
	} else {
		v = md.Map()[rl.TierField]
	}
	if s, ok := enrich.Scalar(v); ok {
		if p := rl.Tiers[s]; p != nil {
			return p
		}
	}
	return rl.Default
}

// rateKey is what the request is counted as.
func rateKey(k RateKey, route string, t *Token, md *enrich.Metadata) string {
	var v any
	switch k.Kind {
	case RateKeyCallerAndRoute:
		return route + " " + t.Caller.Key()
	case RateKeyClaim:
		v = t.AllClaims[k.Name]
	case RateKeyMetadata:
		v = md.Map()[k.Name]
	default:
		return t.Caller.Key()
	}
	if s, ok := enrich.Scalar(v); ok {
		// Its own namespace: a claim value can never count against a
		// caller of the same name.
		return "=" + k.Name + "=" + s
	}
	return t.Caller.Key()
}

// limit is the rate-limit stage: after the policy, so a refused request
// costs no quota. Requests without a caller (an optional route without a
// token) are not limited. The IETF RateLimit-Policy and RateLimit
// headers go on every answer of a limited route; a refusal is 429 with
// Retry-After.
func (g *Gateway) limit(ctx context.Context, w http.ResponseWriter, rt *route, st *state) *refusal {
	p := rt.RateLimit.pick(st.token, st.md)
	d := g.limiter.Allow(ctx, p.Policy, rateKey(p.Key, rt.Name, st.token, st.md))
	st.rate = rateState{policy: p, decision: d}
	g.obs.RateLimitDecision(p.Name, d.Allowed, d.Local)
	h := w.Header()
	h["Ratelimit-Policy"] = p.PolicyValue
	h["Ratelimit"] = []string{p.Quoted + ";r=" + strconv.Itoa(d.Remaining) + ";t=" + strconv.Itoa(ceilSeconds(d.ResetAfter))}
	if d.Allowed {
		return nil
	}
	return &refusal{status: http.StatusTooManyRequests, code: "rate_limited",
		desc: "Too many requests for this caller", retryAfter: strconv.Itoa(max(1, ceilSeconds(d.RetryAfter)))}
}

func ceilSeconds(d time.Duration) int { return int(math.Ceil(d.Seconds())) }
