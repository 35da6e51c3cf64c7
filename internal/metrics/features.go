package metrics

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// features are the collectors of the optional features beyond headers.
type features struct {
	tokenEndpoint *prometheus.CounterVec
	policy        *prometheus.CounterVec
	rateLimit     *prometheus.CounterVec
	rateLocal     *prometheus.CounterVec
	// rateCounters caches rateLimit's and rateLocal's series by
	// policy: WithLabelValues hashes its labels on every call, and every
	// request on a limited route is counted.
	rateCounters *sync.Map // policy name → *rateCounters; read without a lock on every limited request
}

type rateCounters struct{ allowed, limited, local prometheus.Counter }

func newFeatures() features {
	return features{
		tokenEndpoint: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gateway_token_endpoint_responses_total",
			Help: "Answers of the token endpoint (token_endpoint) by result: augmented, passthrough, not_verified, metadata_failed (the token went out without metadata), upstream_error.",
		}, []string{"result"}),
		policy: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gateway_policy_decisions_total",
			Help: "Decisions of routes' allow_if policies by route and result: allowed, denied, error (an expression that could not be evaluated; the request was denied).",
		}, []string{"route", "result"}),
		rateLimit: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gateway_rate_limit_decisions_total",
			Help: "Requests counted against a rate_limits policy, by policy and result: allowed, limited (answered 429).",
		}, []string{"policy", "result"}),
		rateLocal: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gateway_rate_limit_local_decisions_total",
			Help: "Rate-limit decisions this replica took alone, by policy: Redis was down (or not configured), so the limit was per replica.",
		}, []string{"policy"}),
		rateCounters: &sync.Map{},
	}
}

func (f features) collectors() []prometheus.Collector {
	return []prometheus.Collector{f.tokenEndpoint, f.policy, f.rateLimit, f.rateLocal}
}

// PolicyDecision records one allow_if decision: result is allowed,
// denied or error.
func (m *Metrics) PolicyDecision(route, result string) {
	m.features.policy.WithLabelValues(route, result).Inc()
}

// TokenEndpointResults makes the token endpoint's series exist at zero
// for each result (tokenendpoint.Results), so an alert on their increase
// sees the first one.
func (m *Metrics) TokenEndpointResults(results ...string) {
	for _, r := range results {
		m.features.tokenEndpoint.WithLabelValues(r)
	}
}

// TokenEndpoint records one answer of the token endpoint; result is one
// of tokenendpoint.Results.
func (m *Metrics) TokenEndpoint(result string) {
	m.features.tokenEndpoint.WithLabelValues(result).Inc()
}

// RateLimitDecision records one request counted against a rate-limit
// policy.
func (m *Metrics) RateLimitDecision(policy string, allowed, local bool) {
	f := &m.features
	v, ok := f.rateCounters.Load(policy)
	if !ok {
		v, _ = f.rateCounters.LoadOrStore(policy, &rateCounters{
			allowed: f.rateLimit.WithLabelValues(policy, "allowed"),
			limited: f.rateLimit.WithLabelValues(policy, "limited"),
			local:   f.rateLocal.WithLabelValues(policy),
		})
	}
	c := v.(*rateCounters)
	if allowed {
		c.allowed.Inc()
	} else {
		c.limited.Inc()
	}
	if local {
		c.local.Inc()
	}
}
