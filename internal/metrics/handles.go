package metrics

import (
	"strconv"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// handles caches the collectors each request updates. WithLabelValues
// hashes its label values and formats the status code on every call; a
// route's histograms and its counters by method class and status are
// looked up here instead, under a read lock, without allocating. Routes
// come from the config and statuses from a small set, so the cache stays
// small; a reload's new route names add entries, old ones stay (as their
// series do in Prometheus).
type handles struct {
	mu     sync.RWMutex
	routes map[string]*routeHandles
}

type routeHandles struct {
	name                     string
	total, upstream, gateway prometheus.Observer
	mu                       sync.RWMutex
	counts                   map[countKey]prometheus.Counter
}

type countKey struct {
	method string
	code   int
}

func (h *handles) route(m *Metrics, name string) *routeHandles {
	if name == "" {
		name = "none"
	}
	h.mu.RLock()
	r := h.routes[name]
	h.mu.RUnlock()
	if r != nil {
		return r
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if r = h.routes[name]; r == nil {
		r = &routeHandles{
			name:     name,
			total:    m.duration.WithLabelValues(name, "total"),
			upstream: m.duration.WithLabelValues(name, "upstream"),
			gateway:  m.duration.WithLabelValues(name, "gateway"),
			counts:   map[countKey]prometheus.Counter{},
		}
		if h.routes == nil {
			h.routes = map[string]*routeHandles{}
		}
		h.routes[name] = r
	}
	return r
}

func (r *routeHandles) requests(m *Metrics, method string, code int) prometheus.Counter {
	k := countKey{method, code}
	r.mu.RLock()
	c := r.counts[k]
	r.mu.RUnlock()
	if c != nil {
		return c
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if c = r.counts[k]; c == nil {
		c = m.requests.WithLabelValues(r.name, method, strconv.Itoa(code))
		r.counts[k] = c
	}
	return c
}
