package proxy

import (
	"errors"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"time"
)

// balancer spreads a route's requests over its targets round-robin, with
// passive health: a target that refuses a connection is skipped for a
// back-off period. When every target is backed off it still tries one,
// because refusing traffic outright would turn a blip into an outage.
type balancer struct {
	targets      []*target
	next         atomic.Uint64
	unhealthyFor time.Duration
	now          func() time.Time
}

type target struct {
	url       *url.URL
	downUntil atomic.Int64 // UnixNano
}

func newBalancer(urls []*url.URL, unhealthyFor time.Duration) *balancer {
	if unhealthyFor <= 0 {
		unhealthyFor = 10 * time.Second
	}
	b := &balancer{unhealthyFor: unhealthyFor, now: time.Now}
	for _, u := range urls {
		b.targets = append(b.targets, &target{url: u})
	}
	return b
}

// pick returns the next healthy target other than skip, or nil when skip
// is the only target.
func (b *balancer) pick(skip *target) *target {
	n := uint64(len(b.targets))
	if n == 1 {
		if skip == b.targets[0] {
			return nil
		}
		return b.targets[0]
	}
	start := b.next.Add(1)
	now := b.now().UnixNano()
	var fallback *target
	for i := uint64(0); i < n; i++ {
		t := b.targets[(start+i)%n]
		if t == skip {
			continue
		}
		if t.downUntil.Load() <= now {
			return t
		}
		if fallback == nil {
			fallback = t
		}
	}
	return fallback
}

func (b *balancer) markDown(t *target) {
	t.downUntil.Store(b.now().Add(b.unhealthyFor).UnixNano())
}

// retryTransport retries a request once on another target when the chosen
// one refused the connection: nothing was sent, so for an idempotent
// method a second attempt cannot do harm.
type retryTransport struct {
	next http.RoundTripper
}

func (rt retryTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	st, _ := req.Context().Value(stateKey{}).(*state)
	if st == nil || st.target == nil {
		return rt.next.RoundTrip(req)
	}
	start := time.Now()
	defer func() { st.upstream += time.Since(start) }()
	resp, err := rt.next.RoundTrip(req)
	if err == nil || !isConnectError(err) {
		return resp, err
	}
	bal := st.route.upstream
	bal.markDown(st.target)
	if !idempotent(req.Method) || (req.Body != nil && req.Body != http.NoBody) {
		return resp, err
	}
	alt := bal.pick(st.target)
	if alt == nil {
		return resp, err
	}
	retry := req.Clone(req.Context())
	retry.URL.Scheme, retry.URL.Host = alt.url.Scheme, alt.url.Host
	if rest, ok := strings.CutPrefix(req.URL.Path, st.target.url.Path); ok && st.target.url.Path != alt.url.Path {
		retry.URL.Path, retry.URL.RawPath = alt.url.Path+rest, ""
	}
	st.target = alt
	return rt.next.RoundTrip(retry)
}

func isConnectError(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}

func idempotent(method string) bool {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace, http.MethodPut, http.MethodDelete:
		return true
	}
	return false
}

// NewTransport is an http.Transport tuned for a proxy: many idle
// connections per upstream instead of Go's default of 2, and at most
// maxConnsPerHost connections to one upstream (0: no cap), so that slow or
// hostile clients cannot open an unbounded number of upstream connections.
func NewTransport(maxConnsPerHost int) *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConns = 1024
	t.MaxIdleConnsPerHost = 256
	t.MaxConnsPerHost = maxConnsPerHost
	t.IdleConnTimeout = 90 * time.Second
	t.ResponseHeaderTimeout = 60 * time.Second
	return t
}

// routeTransport applies a route's timeouts and protocol to the shared
// transport; routes without their own settings share it (and its pool).
func routeTransport(base http.RoundTripper, rc RouteConfig) http.RoundTripper {
	bt, ok := base.(*http.Transport)
	if !ok || (rc.DialTimeout == 0 && rc.ResponseHeaderTimeout == 0 && !rc.H2C && rc.MaxUpstreamConns == 0) {
		return retryTransport{next: base}
	}
	t := bt.Clone()
	if rc.MaxUpstreamConns > 0 {
		t.MaxConnsPerHost = rc.MaxUpstreamConns
	}
	if rc.DialTimeout > 0 {
		d := &net.Dialer{Timeout: rc.DialTimeout, KeepAlive: 30 * time.Second}
		t.DialContext = d.DialContext
	}
	if rc.ResponseHeaderTimeout > 0 {
		t.ResponseHeaderTimeout = rc.ResponseHeaderTimeout
	}
	if rc.H2C {
		t.Protocols = new(http.Protocols)
		t.Protocols.SetUnencryptedHTTP2(true)
	}
	return retryTransport{next: t}
}
