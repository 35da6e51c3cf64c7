package config

import (
	"strings"
	"testing"
)

const rateDoc = minimal + `    rate_limit:
      tiers:
        field: metadata.tier
        gold: gold
        default: free
  - name: per-org
    match: {path_prefix: /org}
    upstreams: [http://127.0.0.1:9000]
    rate_limit: org
rate_limits:
  gold: {limit: 200, per: 1s}
  free: {key: caller_and_route, limit: 5, per: 1m, burst: 10}
  org: {key: "claim:https://example.com/org", limit: 1000, per: 1h}
`

func TestRateLimitsParse(t *testing.T) {
	cfg, err := Parse("gw.yaml", []byte(rateDoc), env(nil))
	if err != nil {
		t.Fatal(err)
	}
	if g := cfg.RateLimits["gold"]; g.Key != "caller" || g.Burst != 200 {
		t.Errorf("gold defaults: %+v, want key caller and burst = limit", g)
	}
	if rl := cfg.Routes[0].RateLimit; rl == nil || rl.Tiers["default"] != "free" || rl.TierPolicies()["gold"] != "gold" {
		t.Errorf("routes[0].rate_limit: %+v", rl)
	}
	if rl := cfg.Routes[1].RateLimit; rl == nil || rl.Policy != "org" {
		t.Errorf("routes[1].rate_limit: %+v", rl)
	}
	if !cfg.KeepClaims() {
		t.Error("a policy keyed by a claim needs the token's claims kept")
	}
}

func TestRateLimitErrors(t *testing.T) {
	for _, tc := range []struct {
		name, from, to, want string
	}{
		{"unknown key kind", `key: caller_and_route`, `key: ip`, "gw.yaml:19: rate_limits.free.key: must be caller, caller_and_route, claim:NAME or metadata:NAME"},
		{"claim without a name", `key: "claim:https://example.com/org"`, `key: "claim:"`, "rate_limits.org.key"},
		{"period", `per: 1m, burst`, `per: 2m, burst`, "rate_limits.free.per: must be 1s, 1m or 1h, got 2m0s"},
		{"limit", `limit: 200`, `limit: 0`, "rate_limits.gold.limit: must be at least 1"},
		{"unknown policy", `rate_limit: org`, `rate_limit: orgs`, `gw.yaml:16: routes[1].rate_limit: "orgs" is not a policy of rate_limits (free, gold, org)`},
		{"unknown tier policy", `gold: gold`, `gold: platinum`, `routes[0].rate_limit.tiers.gold: "platinum" is not a policy`},
		{"no default tier", `        default: free` + "\n", "", "routes[0].rate_limit.tiers.default: is required"},
		{"bad tier field", `field: metadata.tier`, `field: tier`, "routes[0].rate_limit.tiers.field: must be metadata.KEY or claims.NAME"},
		{"public route", `rate_limit: org`, "auth: public\n    rate_limit: org", "routes[1].rate_limit: a public route has no caller to count"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			doc := strings.Replace(rateDoc, tc.from, tc.to, 1)
			if doc == rateDoc {
				t.Fatalf("the case changes nothing")
			}
			_, err := Parse("gw.yaml", []byte(doc), env(nil))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want %q", err, tc.want)
			}
		})
	}
}
