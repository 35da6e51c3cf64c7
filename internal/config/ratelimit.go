package config

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// RateLimit is one named policy of rate_limits: Limit requests Per
// period (1s, 1m or 1h) with bursts of Burst, counted by Key.
type RateLimit struct {
	// Key is caller, caller_and_route, claim:NAME or metadata:NAME.
	Key   string   `yaml:"key"`
	Limit int      `yaml:"limit"`
	Per   Duration `yaml:"per"`
	// Burst defaults to Limit.
	Burst int `yaml:"burst"`
}

// RouteRateLimit is routes[].rate_limit: a policy name, or
// {tiers: {field: metadata.tier, gold: policyA, ..., default: policyC}}.
type RouteRateLimit struct {
	Policy string `yaml:"policy"`
	// Tiers maps a value of Field to a policy; "field" and "default" are
	// its two reserved keys.
	Tiers map[string]string `yaml:"tiers"`
}

// UnmarshalYAML takes a policy name or the mapping.
func (r *RouteRateLimit) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode {
		r.Policy = n.Value
		return nil
	}
	type plain RouteRateLimit
	return n.Decode((*plain)(r))
}

// TierField is the tiers' field split into its source ("metadata" or
// "claims") and name; ok is false when it is neither.
func (r *RouteRateLimit) TierField() (source, name string, ok bool) {
	source, name, ok = strings.Cut(r.Tiers["field"], ".")
	return source, name, ok && name != "" && (source == "metadata" || source == "claims")
}

// TierPolicies are the tier values and their policies, without the
// reserved keys.
func (r *RouteRateLimit) TierPolicies() map[string]string {
	out := map[string]string{}
	for k, v := range r.Tiers {
		if k != "field" && k != "default" {
			out[k] = v
		}
	}
	return out
}

// RateKey splits a policy's key into its kind and name.
func (rl RateLimit) RateKey() (kind, name string) {
	kind, name, _ = strings.Cut(rl.Key, ":")
	return kind, name
}

func (cfg *Config) rateLimitDefaults() {
	for name, rl := range cfg.RateLimits {
		if rl.Key == "" {
			rl.Key = "caller"
		}
		if rl.Burst == 0 {
			rl.Burst = rl.Limit
		}
		cfg.RateLimits[name] = rl
	}
}

func (cfg *Config) checkRateLimits(c *checker) {
	names := make([]string, 0, len(cfg.RateLimits))
	for name := range cfg.RateLimits {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		rl := cfg.RateLimits[name]
		p := "rate_limits." + name
		if !policyName(name) {
			c.add(p, "a policy name is letters, digits, '-', '_' and '.', got %q", name)
		}
		switch kind, key := rl.RateKey(); {
		case (kind == "caller" || kind == "caller_and_route") && key == "" && !strings.Contains(rl.Key, ":"):
		case (kind == "claim" || kind == "metadata") && key != "":
		default:
			c.add(p+".key", "must be caller, caller_and_route, claim:NAME or metadata:NAME, got %q", rl.Key)
		}
		if rl.Limit < 1 {
			c.add(p+".limit", "must be at least 1, got %d", rl.Limit)
		}
		if d := rl.Per.D(); d != time.Second && d != time.Minute && d != time.Hour {
			c.add(p+".per", "must be 1s, 1m or 1h, got %s", d)
		}
		if rl.Burst < 1 {
			c.add(p+".burst", "must be at least 1, got %d", rl.Burst)
		}
	}
	for i := range cfg.Routes {
		r := &cfg.Routes[i]
		if r.RateLimit == nil {
			continue
		}
		cfg.checkRouteRateLimit(c, fmt.Sprintf("routes[%d].rate_limit", i), r)
	}
}

func (cfg *Config) checkRouteRateLimit(c *checker, p string, r *Route) {
	rl := r.RateLimit
	if r.Auth == "public" {
		c.add(p, "a public route has no caller to count: use auth: required or optional")
	}
	known := func(path, name string) {
		if _, ok := cfg.RateLimits[name]; !ok {
			c.add(path, "%q is not a policy of rate_limits (%s)", name, strings.Join(sortedKeys(cfg.RateLimits), ", "))
		}
	}
	switch {
	case (rl.Policy == "") == (len(rl.Tiers) == 0):
		c.add(p, "name a policy (rate_limit: NAME) or tiers (rate_limit: {tiers: {field: metadata.tier, gold: NAME, default: NAME}}), one of them")
	case rl.Policy != "":
		known(p, rl.Policy)
	default:
		if _, _, ok := rl.TierField(); !ok {
			c.add(p+".tiers.field", "must be metadata.KEY or claims.NAME, got %q", rl.Tiers["field"])
		}
		if rl.Tiers["default"] == "" {
			c.add(p+".tiers.default", "is required: the policy of callers whose value is missing or in no tier")
		} else {
			known(p+".tiers.default", rl.Tiers["default"])
		}
		for _, v := range sortedKeys(rl.TierPolicies()) {
			known(p+".tiers."+v, rl.Tiers[v])
		}
	}
}

func policyName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

// rateLimitsReadClaims reports whether a route's rate limit reads token
// claims (a claim key or a claims tier field).
func (cfg *Config) rateLimitsReadClaims() bool {
	for _, r := range cfg.Routes {
		if r.RateLimit == nil {
			continue
		}
		if src, _, ok := r.RateLimit.TierField(); ok && src == "claims" {
			return true
		}
		names := append([]string{r.RateLimit.Policy, r.RateLimit.Tiers["default"]}, mapValues(r.RateLimit.TierPolicies())...)
		for _, n := range names {
			if kind, _ := cfg.RateLimits[n].RateKey(); kind == "claim" {
				return true
			}
		}
	}
	return false
}

func mapValues(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for _, v := range m {
		out = append(out, v)
	}
	return out
}
