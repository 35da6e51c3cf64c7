// Package cache is a two-tier read-through cache for values that are slow or
// rate-limited to fetch from their origin (for the gateway: caller metadata
// from the Auth0 Management API).
//
// L1 is an in-process otter cache that holds decoded values, so a fresh hit
// costs a map lookup and a clock read: no Redis, no decoding, no locks of
// this package, no allocation. L2 is an optional Redis shared by every
// replica, so the origin is asked about each key about once per TTL however
// many replicas run.
//
// One origin call per key, fleet-wide: concurrent misses for a key in one
// process are collapsed into one fill, and a fill that finds nothing fresh
// in L2 first claims the key in Redis (claim.go). Replicas that find the
// claim taken wait for the holder's value (a pub/sub notice tells them when
// it lands) instead of calling the origin too; if the holder fails or dies,
// one of them takes the claim over.
//
// One truth: Invalidate and InvalidateAll publish on a Redis channel that
// every replica with the same prefix subscribes to, so a change reaches
// every L1 at once (bus.go). While that subscription is down a replica
// cannot know what it missed, so it re-checks what it serves
// (Options.DisconnectedTTL).
//
// Freshness is decided here, from the time the origin was asked (which L2
// keeps), not by otter or Redis: their own expiry only drops entries that
// can no longer be served even as stale.
//
// Redis is an optimisation, never a dependency: every Redis operation is
// bounded by Options.RedisTimeout, and after a failure L2 is skipped for a
// growing backoff (1s up to 5s) so requests are served from L1 and the
// origin without waiting on a dead Redis (and without claims: with Redis
// down, every replica may ask the origin). L2 is used again by itself once
// an operation after the backoff succeeds.
//
// The package knows nothing about what it caches: values of type V by string
// key, turned into bytes for Redis by a Codec.
package cache

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/maypok86/otter/v2"
	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
)

// Codec turns V into bytes for Redis (L2) and back. L1 stores V itself, so
// decoding/precomputation happens once per fill, never per request.
type Codec[V any] interface {
	Marshal(v V) ([]byte, error)
	Unmarshal(b []byte) (V, error)
}

// ErrNotFound is returned by a Loader (possibly wrapped; it is matched with
// errors.Is) for a definite miss at the origin. The cache then remembers the
// miss for Options.NegativeTTL, and Get returns ErrNotFound itself (not the
// loader's wrapped error) with ResultNegative, both when it asked the origin
// and when it answered from a remembered miss.
var ErrNotFound = errors.New("not found")

// Loader fetches the value for key from the origin. It runs at most once at a
// time per key per Tiered (and, with Redis, per key fleet-wide), on a
// goroutine of the cache, with a context that carries the values of the Get
// that started it but not its cancellation: one caller giving up must not
// fail the others sharing the fill. A fill started by a Get keeps that Get's
// deadline; a background refresh has no deadline but is cancelled by Close,
// so the Loader should bound its own calls (an HTTP client timeout). Take the
// Loader once and pass the same value to every Get: a method value (s.load)
// allocates each time it is taken, which would be the only allocation of an
// L1 hit.
type Loader[V any] func(ctx context.Context, key string) (V, error)

// Result tells where the answer of a Get came from, for metrics and logs.
type Result uint8

const (
	// ResultL1Hit: a fresh value from the in-process cache.
	ResultL1Hit Result = iota + 1
	// ResultL2Hit: a fresh value from Redis, fetched from the origin by
	// another replica or an earlier instance (possibly while this one
	// waited for it).
	ResultL2Hit
	// ResultMiss: the origin was asked. Also the Result of a Get that
	// returns an error other than ErrNotFound and ErrRecentFailure.
	ResultMiss
	// ResultStale: a value older than TTL, served under
	// StaleWhileRevalidate (a refresh runs in the background) or
	// StaleIfError (the origin failed, now or within ErrorTTL).
	ResultStale
	// ResultNegative: the origin said the key does not exist (now or
	// within NegativeTTL); the error is ErrNotFound.
	ResultNegative
	// ResultErrorCached: the origin failed for this key within ErrorTTL
	// and was not asked again; the error wraps ErrRecentFailure.
	ResultErrorCached
)

// String returns the name used in metrics labels.
func (r Result) String() string {
	switch r {
	case ResultL1Hit:
		return "l1_hit"
	case ResultL2Hit:
		return "l2_hit"
	case ResultMiss:
		return "miss"
	case ResultStale:
		return "stale"
	case ResultNegative:
		return "negative"
	case ResultErrorCached:
		return "error_cached"
	default:
		return fmt.Sprintf("Result(%d)", uint8(r))
	}
}

// entry is what L1 holds for a key.
type entry[V any] struct {
	value     V
	fetchedAt time.Time // when the origin was asked
	// checkedAt is when this replica last knew the entry current: when
	// it asked the origin, or read the entry from L2. The bus's
	// freshness cap counts from it.
	checkedAt time.Time
	negative  bool
}

// freshness of an entry at some instant.
type freshness uint8

const (
	expired    freshness = iota // not servable, not even when the origin fails
	fresh                       // serve as is
	revalidate                  // serve, and refresh in the background
	ifError                     // serve only if the origin fails
)

// Tiered is a two-tier (L1 in-process, L2 Redis) read-through cache of V by
// string key. It is safe for concurrent use. Call Close when done with it.
type Tiered[V any] struct {
	opts     Options // normalised by New
	codec    Codec[V]
	l1       *otter.Cache[string, entry[V]]
	failures *otter.Cache[string, failure] // nil without ErrorTTL
	now      func() time.Time
	log      *zap.Logger
	observe  func(Result)
	staleMax time.Duration // max(StaleIfError, StaleWhileRevalidate)
	rdb      redis.UniversalClient
	health   *redisHealth
	bus      *bus // nil without Redis
	notices  notices
	awaiting atomic.Int64 // fills waiting for another replica's claim (tests)

	// ctx is the parent of every fill and Redis write; Close cancels it.
	ctx    context.Context
	cancel context.CancelFunc

	mu     sync.Mutex
	closed bool
	// joinable holds the fill of each key that a Get may wait for: from
	// its start until its answer is final.
	joinable map[string]*call[V]
	// running holds every fill still running, L2 write included, so that
	// Invalidate can stop them from storing what they loaded.
	running map[string][]*call[V]
	// dropped holds the keys an invalidation took out of L1 since they
	// were last loaded: their next load re-reads a known key (Invalidated).
	dropped map[string]struct{}
	wg      sync.WaitGroup // fills in progress
}

// New validates opts and builds a Tiered cache. codec may be nil when
// opts.Redis is nil (it is used only for L2). With Redis, New starts the
// bus's subscriber; it does not wait for it (BusConnected).
func New[V any](opts Options, codec Codec[V]) (*Tiered[V], error) {
	if err := validate(opts, codec != nil); err != nil {
		return nil, err
	}
	if opts.RedisTimeout == 0 {
		opts.RedisTimeout = DefaultRedisTimeout
	}
	if opts.Prefix == "" {
		opts.Prefix = DefaultPrefix
	}
	if opts.ClaimTTL == 0 {
		opts.ClaimTTL = DefaultClaimTTL
	}
	if opts.DisconnectedTTL == 0 {
		opts.DisconnectedTTL = DefaultDisconnectedTTL
	}
	if opts.Logger == nil {
		opts.Logger = zap.NewNop()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}

	t := &Tiered[V]{
		opts:     opts,
		codec:    codec,
		now:      opts.Now,
		log:      opts.Logger.With(zap.String("prefix", opts.Prefix)),
		observe:  opts.Observe,
		staleMax: max(opts.StaleIfError, opts.StaleWhileRevalidate),
		rdb:      opts.Redis,
		joinable: make(map[string]*call[V]),
		running:  make(map[string][]*call[V]),
		dropped:  make(map[string]struct{}),
	}
	t.health = newRedisHealth(t.log, opts.OnRedisError, redisBackoffMin, redisBackoffMax)

	l1, err := otter.New(&otter.Options[string, entry[V]]{
		MaximumSize: opts.MaxEntries,
		// otter drops an entry only once it can no longer be served at
		// all, counted from its fetch time (which may be in the past for
		// an entry found in L2); freshness is decided by Get.
		ExpiryCalculator: otter.ExpiryWritingFunc(func(e otter.Entry[string, entry[V]]) time.Duration {
			return max(t.remaining(e.Value, t.now()), time.Millisecond)
		}),
	})
	if err != nil {
		return nil, fmt.Errorf("cache: create L1: %w", err)
	}
	t.l1 = l1
	if opts.ErrorTTL > 0 {
		if t.failures, err = newFailures(opts, t.now); err != nil {
			l1.StopAllGoroutines()
			return nil, err
		}
	}
	t.ctx, t.cancel = context.WithCancel(context.Background())
	t.warnIfRedisUnbounded()
	if t.rdb != nil {
		t.bus = newBus(t.busConfig())
		go t.bus.run(t.ctx)
	}
	return t, nil
}

// lifetime is how long after its fetch an entry can be served at all.
func (t *Tiered[V]) lifetime(e entry[V]) time.Duration {
	if e.negative {
		return t.opts.NegativeTTL
	}
	return t.opts.TTL + t.staleMax
}

// remaining is how much of its lifetime e has left at now.
func (t *Tiered[V]) remaining(e entry[V], now time.Time) time.Duration {
	return t.lifetime(e) - now.Sub(e.fetchedAt)
}

// freshness of e at now. An entry from the future (clock skew between
// replicas) counts as just fetched.
func (t *Tiered[V]) freshness(e entry[V], now time.Time) freshness {
	age := max(now.Sub(e.fetchedAt), 0)
	if e.negative {
		if age <= t.opts.NegativeTTL && t.opts.NegativeTTL > 0 {
			return fresh
		}
		return expired
	}
	switch {
	case age <= t.opts.TTL:
		return fresh
	case age <= t.opts.TTL+t.opts.StaleWhileRevalidate:
		return revalidate
	case age < t.opts.TTL+t.opts.StaleIfError:
		return ifError
	default:
		return expired
	}
}

// doubted reports whether a fresh e may have missed an invalidation (see
// Options.DisconnectedTTL) and must be re-checked.
func (t *Tiered[V]) doubted(e entry[V], now time.Time) bool {
	return t.bus != nil && t.bus.doubts(e.checkedAt, now)
}

// Get returns the value for key: from L1, else L2, else load. Concurrent
// misses for one key make exactly one call to load, fleet-wide when Redis is
// configured: the L2 lookup and the claim happen inside that single fill,
// and a replica that finds the claim taken waits for the holder's value. A
// value loaded from the origin is written to L1 and, after the waiting
// callers have their answer, to L2 with a Redis TTL of
// TTL+max(StaleIfError, StaleWhileRevalidate) (or NegativeTTL for a
// not-found). A value found in L2 is put in L1 with its original fetch time,
// so its freshness counts from when the origin was asked, not from when
// Redis was read.
//
// On ErrNotFound from load (or a remembered one) Get returns the zero V,
// ResultNegative and ErrNotFound. Other load errors are not cached unless
// ErrorTTL is set: Get serves a stale value if StaleIfError allows it
// (ResultStale, nil error) and otherwise returns the error wrapped, with
// ResultMiss (ResultErrorCached and a *RecentFailureError within ErrorTTL
// of the failure). If ctx ends while Get waits for a fill, Get returns
// ctx's error, and after MaxWait an error wrapping ErrStillFilling; either
// way the fill carries on for the others.
func (t *Tiered[V]) Get(ctx context.Context, key string, load Loader[V]) (V, Result, error) {
	v, r, err := t.get(ctx, key, load)
	if t.observe != nil {
		t.observe(r)
	}
	return v, r, err
}

func (t *Tiered[V]) get(ctx context.Context, key string, load Loader[V]) (V, Result, error) {
	var zero V
	e, ok := t.l1.GetIfPresent(key)
	f := expired
	if ok {
		now := t.now()
		switch f = t.freshness(e, now); f {
		case fresh:
			if t.doubted(e, now) {
				// The bus may have missed an invalidation of e: serve
				// it, and check it in the background.
				t.refresh(ctx, key, load, now)
			}
			if e.negative {
				return zero, ResultNegative, ErrNotFound
			}
			return e.value, ResultL1Hit, nil
		case revalidate:
			t.refresh(ctx, key, load, now)
			return e.value, ResultStale, nil
		}
	}
	if t.failures != nil {
		if rf := t.recentFailure(key, t.now()); rf != nil {
			if f == ifError {
				return e.value, ResultStale, nil // stale wins over the error
			}
			return zero, ResultErrorCached, rf
		}
	}

	c := t.flight(ctx, key, load, false)
	if c == nil {
		// Closed: no background work any more, so fill on this goroutine.
		c = &call[V]{done: make(chan struct{})}
		t.fill(ctx, key, load, c)
	}
	select {
	case <-c.done:
	default:
		if err := t.wait(ctx, key, c); err != nil {
			return zero, ResultMiss, err
		}
	}
	return c.value, c.result, c.err
}

// wait blocks until c is answered, ctx ends or MaxWait passes, and says
// why it stopped waiting, if not for the answer.
func (t *Tiered[V]) wait(ctx context.Context, key string, c *call[V]) error {
	var expired <-chan time.Time
	if t.opts.MaxWait > 0 {
		timer := time.NewTimer(t.opts.MaxWait)
		defer timer.Stop()
		expired = timer.C
	}
	select {
	case <-c.done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("cache: waiting for the fill of %q: %w", key, context.Cause(ctx))
	case <-expired:
		return fmt.Errorf("cache: waited %s for the fill of %q: %w", t.opts.MaxWait, key, ErrStillFilling)
	}
}

// refresh starts a background refresh of key unless one runs already or
// the origin failed for key within ErrorTTL.
func (t *Tiered[V]) refresh(ctx context.Context, key string, load Loader[V], now time.Time) {
	if t.failures != nil && t.failedRecently(key, now) {
		return
	}
	t.flight(ctx, key, load, true)
}

// FreshFor is how much longer the value L1 holds for key stays fresh
// (served without a refresh): 0 when L1 does not hold it, or holds it
// stale or negative. Answers that may be cached downstream (the caller's
// own endpoint) use it as their max-age, so nobody keeps a value longer
// than the gateway would.
func (t *Tiered[V]) FreshFor(key string) time.Duration {
	e, ok := t.l1.GetIfPresent(key)
	if !ok || e.negative {
		return 0
	}
	return max(t.opts.TTL-max(t.now().Sub(e.fetchedAt), 0), 0)
}

// Close stops the bus's subscriber, background refreshes and Redis writes
// and waits for them; it does not close the Redis client (the caller owns
// it). Claims held by fills that Close cancels are released on the way out,
// so other replicas need not wait for them to expire. After Close, Get still
// answers from L1 and otherwise calls the loader on the caller's goroutine,
// without L2. Close is idempotent.
func (t *Tiered[V]) Close() error {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return nil
	}
	t.closed = true
	t.mu.Unlock()
	t.cancel()
	if t.bus != nil {
		t.bus.close()
	}
	t.wg.Wait()
	t.l1.StopAllGoroutines()
	if t.failures != nil {
		t.failures.StopAllGoroutines()
	}
	return nil
}

// RedisHealthy reports the last known state of L2: false from a failed
// Redis operation until one succeeds again after the backoff. It is updated
// by cache traffic (fills and invalidations), not by a background probe, and
// starts true. With no Redis configured it is true: nothing is degraded.
func (t *Tiered[V]) RedisHealthy() bool {
	if t.rdb == nil {
		return true
	}
	return t.health.healthy.Load()
}

// BusConnected reports whether the invalidation bus is subscribed and its
// last heartbeat came back through it: false before the first
// subscription, while it is down (L1 freshness is then capped, see
// Options.DisconnectedTTL) and without Redis. For health pages and
// metrics; readiness must not depend on it.
func (t *Tiered[V]) BusConnected() bool {
	return t.bus != nil && t.bus.connected.Load()
}
