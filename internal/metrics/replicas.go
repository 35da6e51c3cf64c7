package metrics

import "github.com/prometheus/client_golang/prometheus"

// replicas are the collectors of the many-replica machinery: the
// fleet-wide claims, the invalidation bus and its sources, and the
// Management API circuit.
type replicas struct {
	invalidations *prometheus.CounterVec
	busMessages   *prometheus.CounterVec
	claims        *prometheus.CounterVec
	circuit       *prometheus.GaugeVec
	logStream     *prometheus.CounterVec
}

// circuitStates are the values of gateway_auth0_circuit_state's label.
var circuitStates = []string{"closed", "open", "half_open"}

func newReplicas() replicas {
	r := replicas{
		invalidations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gateway_cache_invalidations_total", Help: "Callers invalidated, by source (log_stream, admin), and everything at once (admin_all).",
		}, []string{"source"}),
		busMessages: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gateway_cache_invalidation_messages_total", Help: "Invalidation bus messages this replica published, and applied (received from another replica).",
		}, []string{"event"}),
		claims: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gateway_cache_claims_total", Help: "Fleet-wide claims before an origin call, by outcome: acquired (this replica called), waited (another replica's answer was used), timeout (the wait ended without one and this replica called), takeover (a dead or failed holder's claim was taken over).",
		}, []string{"outcome"}),
		circuit: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "gateway_auth0_circuit_state", Help: "1 for the Management API circuit's current state (closed, open, half_open), 0 for the others.",
		}, []string{"state"}),
	}
	r.logStream = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "gateway_log_stream_entries_total", Help: "Auth0 log stream entries received, by result: applied (a changed client or user was invalidated), ignored (another event), malformed (skipped).",
	}, []string{"result"})
	for _, e := range []string{"published", "applied"} {
		r.busMessages.WithLabelValues(e)
	}
	for _, o := range []string{"acquired", "waited", "timeout", "takeover"} {
		r.claims.WithLabelValues(o)
	}
	r.setCircuit("closed")
	return r
}

func (r replicas) collectors() []prometheus.Collector {
	return []prometheus.Collector{r.invalidations, r.busMessages, r.claims, r.circuit, r.logStream}
}

func (r replicas) setCircuit(state string) {
	for _, s := range circuitStates {
		v := 0.0
		if s == state {
			v = 1
		}
		r.circuit.WithLabelValues(s).Set(v)
	}
}

// Invalidation counts an invalidation by its source.
func (m *Metrics) Invalidation(source string) { m.replicas.invalidations.WithLabelValues(source).Inc() }

// Circuit records the Management API circuit's new state.
func (m *Metrics) Circuit(state string) { m.replicas.setCircuit(state) }

// LogStreamEntry counts an Auth0 log stream entry by result.
func (m *Metrics) LogStreamEntry(result string) { m.replicas.logStream.WithLabelValues(result).Inc() }

// BusMessage counts an invalidation bus message published or applied.
func (m *Metrics) BusMessage(event string) { m.replicas.busMessages.WithLabelValues(event).Inc() }

// Claim counts a fleet-wide claim by outcome.
func (m *Metrics) Claim(outcome string) { m.replicas.claims.WithLabelValues(outcome).Inc() }
