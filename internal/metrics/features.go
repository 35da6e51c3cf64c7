package metrics

import "github.com/prometheus/client_golang/prometheus"

// features are the collectors of the optional features beyond headers.
type features struct {
	tokenEndpoint *prometheus.CounterVec
	policy        *prometheus.CounterVec
}

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
	}
}

func (f features) collectors() []prometheus.Collector {
	return []prometheus.Collector{f.tokenEndpoint, f.policy}
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
