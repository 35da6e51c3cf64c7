// Package ratelimit counts requests per caller against named policies,
// across the whole fleet: at most one Redis round trip per request (the
// requests that arrive together share one pipeline; a caller a replica
// sees often takes small leases of tokens, and a refused one is refused
// locally until its next token is due: lease.go), with the generic cell
// rate algorithm (GCRA) of github.com/go-redis/redis_rate, so every
// replica sharing the cache's Redis enforces one limit. While
// Redis cannot be reached the limiter decides locally, per replica (a
// limit of N is then N per replica), so a Redis outage never fails a
// request; it goes back to Redis by itself.
package ratelimit

import (
	"context"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/go-redis/redis_rate/v10"
	"github.com/maypok86/otter/v2"
	"github.com/redis/go-redis/v9"
	"golang.org/x/time/rate"
)

// Policy is one named limit: Limit requests Per period, with bursts of up
// to Burst.
type Policy struct {
	Name  string
	Limit int
	Per   time.Duration
	Burst int

	// PolicyHeader is the IETF RateLimit-Policy value
	// (draft-ietf-httpapi-ratelimit-headers): `"name";q=Limit;w=seconds`,
	// made once by NewPolicy.
	PolicyHeader string
	// PolicyValue is PolicyHeader as a header value of capacity 1
	// (shared: an append copies it), and Quoted the name as the
	// RateLimit header writes it.
	PolicyValue []string
	Quoted      string
	limit       redis_rate.Limit
	local       rate.Limit
	lease       int // the most tokens one replica takes ahead (lease.go)
}

// NewPolicy prepares a validated policy (Limit, Burst > 0; Per of a second
// or more).
func NewPolicy(name string, limit int, per time.Duration, burst int) *Policy {
	if burst <= 0 {
		burst = limit
	}
	p := &Policy{
		Name: name, Limit: limit, Per: per, Burst: burst, Quoted: strconv.Quote(name),
		limit: redis_rate.Limit{Rate: limit, Burst: burst, Period: per},
		local: rate.Limit(float64(limit) / per.Seconds()),
		lease: leaseSize(burst),
	}
	p.PolicyHeader = p.Quoted + ";q=" + strconv.Itoa(limit) + ";w=" + strconv.Itoa(int(per/time.Second))
	p.PolicyValue = []string{p.PolicyHeader}
	return p
}

// Decision is the outcome of one request against a policy.
type Decision struct {
	Allowed bool
	// Remaining is how many more requests the key may make now.
	Remaining int
	// RetryAfter is when the next request would be allowed (refused
	// requests only); ResetAfter when the key is back to a full burst.
	RetryAfter, ResetAfter time.Duration
	// Local reports a decision taken by this replica alone, because
	// Redis was down or not configured.
	Local bool
}

// Options builds a Limiter.
type Options struct {
	// Redis is the cache's Redis, whose read and write timeouts bound a
	// decision's wait; nil: every decision is local.
	Redis redis.UniversalClient
	// Prefix namespaces the counters' keys, as the cache's do.
	Prefix string
	// Backoff is how long the limiter decides locally after a Redis
	// failure before trying Redis again, so an outage costs one timeout,
	// not one per request. Default 1s.
	Backoff time.Duration
	// MaxLocalKeys bounds the local limiters kept, and apart from them
	// the keys' leases (least recently used go first). Default 100000.
	MaxLocalKeys int
	// OnRedisError is told of each failed Redis call (metrics, logs).
	OnRedisError func(error)
}

// Limiter decides requests against policies. It is safe for concurrent
// use and starts no goroutines.
type Limiter struct {
	redis     *redis_rate.Limiter // nil: local only
	prefix    string
	backoff   time.Duration
	downUntil atomic.Int64 // unix nanos until which Redis is not tried
	local     *otter.Cache[localKey, *rate.Limiter]
	leases    *otter.Cache[leaseKey, *lease]
	onError   func(error)
	now       func() time.Time
}

// New builds a Limiter.
func New(o Options) *Limiter {
	if o.Backoff <= 0 {
		o.Backoff = time.Second
	}
	if o.MaxLocalKeys <= 0 {
		o.MaxLocalKeys = 100_000
	}
	if o.OnRedisError == nil {
		o.OnRedisError = func(error) {}
	}
	// Bounded by size only: expiry would start a cleanup goroutine
	// nobody could stop, and an idle key's bucket is full again anyway,
	// so evicting the least used ones loses nothing.
	// Must: the options are this function's own, always valid.
	local := otter.Must(&otter.Options[localKey, *rate.Limiter]{MaximumSize: o.MaxLocalKeys})
	leases := otter.Must(&otter.Options[leaseKey, *lease]{MaximumSize: o.MaxLocalKeys})
	l := &Limiter{prefix: o.Prefix, backoff: o.Backoff, local: local, leases: leases, onError: o.OnRedisError, now: time.Now}
	if o.Redis != nil {
		l.redis = redis_rate.NewLimiter(&batcher{UniversalClient: o.Redis})
	}
	return l
}

// localKey is a local bucket's key: a struct, so looking one up
// allocates nothing.
type localKey struct{ policy, key string }

// Allow counts one request of key against p.
func (l *Limiter) Allow(ctx context.Context, p *Policy, key string) Decision {
	if l.redis != nil && l.now().UnixNano() >= l.downUntil.Load() {
		if d, err := l.allowRedis(ctx, p, key); err == nil {
			return d
		} else if ctx.Err() == nil {
			l.downUntil.Store(l.now().Add(l.backoff).UnixNano())
			l.onError(err)
		}
	}
	return l.allowLocal(p, localKey{p.Name, key})
}

// allowLocal is the same policy on this replica alone (x/time/rate's
// token bucket: Limit per Per, bursts of Burst).
func (l *Limiter) allowLocal(p *Policy, k localKey) Decision {
	lim, ok := l.local.GetIfPresent(k)
	if !ok {
		lim, _ = l.local.SetIfAbsent(k, rate.NewLimiter(p.local, p.Burst))
	}
	now := l.now()
	d := Decision{Local: true, Allowed: lim.AllowN(now, 1)}
	tokens := lim.TokensAt(now)
	d.Remaining = max(int(tokens), 0)
	perToken := time.Duration(float64(time.Second) / float64(p.local))
	d.ResetAfter = time.Duration((float64(p.Burst) - tokens) * float64(perToken))
	if !d.Allowed {
		d.RetryAfter = time.Duration((1 - tokens) * float64(perToken))
	}
	return d
}
