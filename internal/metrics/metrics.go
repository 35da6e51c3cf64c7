// Package metrics defines the gateway's Prometheus metrics on a registry of
// its own (no global state) and exposes them as small hook methods the
// other packages call. Labels are low-cardinality by construction: routes
// and issuers come from the config, reasons and results from closed sets;
// caller ids and tokens never become labels.
package metrics

import (
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/metagate/gateway/internal/gctune"
)

// Metrics holds every collector of one gateway process.
type Metrics struct {
	reg *prometheus.Registry
	// handles are the per-route collectors a request updates, looked up
	// once per route and status instead of by label values every time.
	handles handles

	requests       *prometheus.CounterVec
	duration       *prometheus.HistogramVec
	authFailures   *prometheus.CounterVec
	upstreamErrors *prometheus.CounterVec
	clientErrors   *prometheus.CounterVec
	cacheLookups   *prometheus.CounterVec
	redisErrors    *prometheus.CounterVec
	auth0Calls     *prometheus.CounterVec
	auth0Latency   *prometheus.HistogramVec
	auth0Waits     prometheus.Counter
	jwksFailures   *prometheus.CounterVec
	jwksFetches    *prometheus.CounterVec
	reloads        *prometheus.CounterVec
	replicas       replicas
	features       features
}

// New registers every collector, plus the Go and process collectors.
func New() *Metrics {
	m := &Metrics{reg: prometheus.NewRegistry()}
	f := func(c prometheus.Collector) { m.reg.MustRegister(c) }
	m.requests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "gateway_requests_total", Help: "Requests answered, by route, method class and status code.",
	}, []string{"route", "method", "code"})
	m.duration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "gateway_request_duration_seconds", Help: "Request duration by route; part=gateway is the time the gateway added, part=upstream the time waiting for the upstream's response headers.",
		Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
	}, []string{"route", "part"})
	m.authFailures = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "gateway_auth_failures_total", Help: "Refused requests by reason (missing, expired, bad_signature, unknown_kid, bad_issuer, bad_audience, insufficient_scope, ...).",
	}, []string{"reason"})
	m.upstreamErrors = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "gateway_upstream_errors_total", Help: "Upstream requests that failed (connection refused, timeout, reset), by route.",
	}, []string{"route"})
	m.clientErrors = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "gateway_client_errors_total", Help: "Requests refused because of what the client sent, by reason (invalid_path, invalid_query, method_not_allowed, upgrade_not_allowed, invalid_body, request_timeout, request_too_large); never counted as upstream errors.",
	}, []string{"reason"})
	m.cacheLookups = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "gateway_metadata_cache_lookups_total", Help: "Metadata cache lookups by result: l1_hit, l2_hit, miss, stale, negative, error_cached (a recent origin failure answered at once, cache.error_ttl).",
	}, []string{"result"})
	m.redisErrors = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "gateway_redis_errors_total", Help: "Failed Redis operations of the shared cache tier, by operation.",
	}, []string{"op"})
	m.auth0Calls = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "gateway_auth0_requests_total", Help: "Calls to Auth0 by endpoint (clients, users, token) and HTTP status (0: no response).",
	}, []string{"endpoint", "code"})
	m.auth0Latency = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "gateway_auth0_request_duration_seconds", Help: "Latency of calls to Auth0 by endpoint.",
		Buckets: []float64{.01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
	}, []string{"endpoint"})
	m.auth0Waits = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "gateway_auth0_rate_budget_waits_total", Help: "Management API calls that had to wait for (or were refused by) the gateway's own rate budget.",
	})
	m.jwksFetches = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "gateway_jwks_fetches_total", Help: "JWKS fetches by issuer (periodic refreshes, unknown-kid refreshes and the first fetch), whatever their outcome.",
	}, []string{"issuer"})
	m.jwksFailures = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "gateway_jwks_refresh_failures_total", Help: "Failed JWKS fetches by issuer; the last good keys stay in use.",
	}, []string{"issuer"})
	m.reloads = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "gateway_config_reloads_total", Help: "Configuration reloads by result (success, failure).",
	}, []string{"result"})
	// Read from the runtime at each scrape, so they show what the process
	// runs with, whoever set it (server.gc_percent, GOGC, the defaults).
	gcPercent := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "gateway_gc_percent", Help: "The garbage collector's GOGC percent in effect (-1: off); see server.gc_percent.",
	}, func() float64 { p, _ := gctune.Current(); return float64(p) })
	memoryLimit := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "gateway_memory_limit_bytes", Help: "The Go runtime's soft memory limit in effect (0: none); see server.memory_limit.",
	}, func() float64 { _, l := gctune.Current(); return float64(l) })
	// Present from the start, so an alert on increase(...{result="failure"})
	// sees the first failure.
	m.reloads.WithLabelValues("success")
	m.reloads.WithLabelValues("failure")
	for _, c := range []prometheus.Collector{m.requests, m.duration, m.authFailures, m.upstreamErrors, m.clientErrors, m.cacheLookups,
		m.redisErrors, m.auth0Calls, m.auth0Latency, m.auth0Waits, m.jwksFailures, m.jwksFetches, m.reloads, gcPercent, memoryLimit,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{})} {
		f(c)
	}
	m.replicas, m.features = newReplicas(), newFeatures()
	for _, c := range append(m.replicas.collectors(), m.features.collectors()...) {
		f(c)
	}
	return m
}

// Handler serves /metrics.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}

// Request records one answered request.
func (m *Metrics) Request(route, method string, code int, total, upstream time.Duration) {
	r := m.handles.route(m, route)
	r.requests(m, methodClass(method), code).Inc()
	r.total.Observe(total.Seconds())
	if upstream > 0 {
		r.upstream.Observe(upstream.Seconds())
	}
	r.gateway.Observe((total - upstream).Seconds())
}

// AuthFailure records a refused request.
func (m *Metrics) AuthFailure(reason string) { m.authFailures.WithLabelValues(reason).Inc() }

// UpstreamError records a failed upstream request.
func (m *Metrics) UpstreamError(route string) { m.upstreamErrors.WithLabelValues(route).Inc() }

// ClientError records a request refused for what the client sent.
func (m *Metrics) ClientError(reason string) { m.clientErrors.WithLabelValues(reason).Inc() }

// CacheLookup records a metadata cache result.
func (m *Metrics) CacheLookup(result string) { m.cacheLookups.WithLabelValues(result).Inc() }

// RedisError records a failed Redis operation.
func (m *Metrics) RedisError(op string) { m.redisErrors.WithLabelValues(op).Inc() }

// Auth0Call records one call to Auth0.
func (m *Metrics) Auth0Call(endpoint string, status int, d time.Duration) {
	m.auth0Calls.WithLabelValues(endpoint, strconv.Itoa(status)).Inc()
	m.auth0Latency.WithLabelValues(endpoint).Observe(d.Seconds())
}

// RateBudgetWait records a call that waited for the rate budget.
func (m *Metrics) RateBudgetWait() { m.auth0Waits.Inc() }

// JWKSFetch records a JWKS fetch attempt.
func (m *Metrics) JWKSFetch(issuer string) { m.jwksFetches.WithLabelValues(issuer).Inc() }

// JWKSFailure records a failed JWKS fetch.
func (m *Metrics) JWKSFailure(issuer string) { m.jwksFailures.WithLabelValues(issuer).Inc() }

// Reload records a configuration reload.
func (m *Metrics) Reload(ok bool) {
	if ok {
		m.reloads.WithLabelValues("success").Inc()
	} else {
		m.reloads.WithLabelValues("failure").Inc()
	}
}

// methodClass keeps the method label to a closed set.
func methodClass(m string) string {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete, http.MethodOptions:
		return m
	}
	return "OTHER"
}
