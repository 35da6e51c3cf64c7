package app

import (
	"github.com/metagate/gateway/internal/config"
	"github.com/metagate/gateway/proxy"
	"github.com/metagate/gateway/proxy/ratelimit"
)

// ratePolicies are rate_limits as the proxy uses them, one value per
// policy that every route naming it shares.
func ratePolicies(cfg *config.Config) map[string]*proxy.RatePolicy {
	out := make(map[string]*proxy.RatePolicy, len(cfg.RateLimits))
	for name, rl := range cfg.RateLimits {
		kind, key := rl.RateKey()
		k := proxy.RateKey{Name: key}
		switch kind {
		case "caller_and_route":
			k.Kind = proxy.RateKeyCallerAndRoute
		case "claim":
			k.Kind = proxy.RateKeyClaim
		case "metadata":
			k.Kind = proxy.RateKeyMetadata
		default:
			k.Kind = proxy.RateKeyCaller
		}
		out[name] = &proxy.RatePolicy{Policy: ratelimit.NewPolicy(name, rl.Limit, rl.Per.D(), rl.Burst), Key: k}
	}
	return out
}

// routeRateLimit is a route's validated rate_limit; nil when it has none.
func routeRateLimit(r config.Route, policies map[string]*proxy.RatePolicy) *proxy.RouteRateLimit {
	rl := r.RateLimit
	if rl == nil {
		return nil
	}
	if rl.Policy != "" {
		return &proxy.RouteRateLimit{Default: policies[rl.Policy]}
	}
	src, field, _ := rl.TierField()
	out := &proxy.RouteRateLimit{
		TierField: field, TierFromClaim: src == "claims",
		Default: policies[rl.Tiers["default"]], Tiers: map[string]*proxy.RatePolicy{},
	}
	for value, name := range rl.TierPolicies() {
		out.Tiers[value] = policies[name]
	}
	return out
}
