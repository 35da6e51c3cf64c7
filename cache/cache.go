// Package cache is a two-tier read-through cache for values that are slow or
// rate-limited to fetch from their origin (for the gateway: caller metadata
// from the Auth0 Management API).
//
// L1 is an in-process otter cache that holds decoded values, so a fresh hit
// costs a map lookup and a clock read: no Redis, no decoding, no locks of
// this package, no allocation. L2 is an optional Redis shared by every
// replica, so the origin is asked about each key about once per TTL however
// many replicas run. Concurrent misses for a key are collapsed into one fill
// that asks L2 first and the origin only when L2 has nothing fresh.
//
// Freshness is decided here, from the time the origin was asked (which L2
// keeps), not by otter or Redis: their own expiry only drops entries that
// can no longer be served even as stale. With StaleWhileRevalidate, a
// background refresh first looks in L2 (another replica may have refreshed
// already) and then claims the refresh in Redis, so replicas whose copies
// went stale together do not all ask the origin.
//
// Redis is an optimisation, never a dependency: every Redis operation is
// bounded by Options.RedisTimeout, and after a failure L2 is skipped for a
// growing backoff (1s up to 5s) so requests are served from L1 and the
// origin without waiting on a dead Redis. L2 is used again by itself once an
// operation after the backoff succeeds.
//
// The package knows nothing about what it caches: values of type V by string
// key, turned into bytes for Redis by a Codec.
package cache

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"sync"
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
// time per key per Tiered, on a goroutine of the cache, with a context that
// carries the values of the Get that started it but not its cancellation:
// one caller giving up must not fail the others sharing the fill. A fill
// started by a Get keeps that Get's deadline; a background refresh has no
// deadline but is cancelled by Close, so the Loader should bound its own
// calls (an HTTP client timeout). Take the Loader once and pass the same
// value to every Get: a method value (s.load) allocates each time it is
// taken, which would be the only allocation of an L1 hit.
type Loader[V any] func(ctx context.Context, key string) (V, error)

// Result tells where the answer of a Get came from, for metrics and logs.
type Result uint8

const (
	// ResultL1Hit: a fresh value from the in-process cache.
	ResultL1Hit Result = iota + 1
	// ResultL2Hit: a fresh value from Redis, fetched from the origin by
	// another replica or an earlier instance.
	ResultL2Hit
	// ResultMiss: the origin was asked. Also the Result of a Get that
	// returns an error other than ErrNotFound.
	ResultMiss
	// ResultStale: a value older than TTL, served under
	// StaleWhileRevalidate (a refresh runs in the background) or
	// StaleIfError (the origin failed).
	ResultStale
	// ResultNegative: the origin said the key does not exist (now or
	// within NegativeTTL); the error is ErrNotFound.
	ResultNegative
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
	default:
		return fmt.Sprintf("Result(%d)", uint8(r))
	}
}

// DefaultRedisTimeout is the bound on each Redis operation when
// Options.RedisTimeout is zero. Exported so configuration and docs can show
// the effective default.
const DefaultRedisTimeout = 100 * time.Millisecond

// DefaultPrefix is the Redis key namespace when Options.Prefix is empty.
// Exported for the same reason as DefaultRedisTimeout.
const DefaultPrefix = "gateway"

// Backoff of L2 after a Redis failure: skip Redis this long after the first
// failure, doubling after each failed retry up to the cap.
const (
	redisBackoffMin = time.Second
	redisBackoffMax = 5 * time.Second
)

// Options configure a Tiered cache.
type Options struct {
	// TTL: an entry is fresh this long after it was fetched from the
	// origin (required > 0).
	TTL time.Duration
	// NegativeTTL: how long a not-found is remembered (0: not at all).
	NegativeTTL time.Duration
	// StaleWhileRevalidate: after TTL, for this long, serve the entry and
	// refresh it in the background, once (one refresh per key at a time).
	StaleWhileRevalidate time.Duration
	// StaleIfError: after TTL, when the origin fails, serve the old entry
	// while its age is below TTL+StaleIfError; past that, return the
	// origin's error.
	StaleIfError time.Duration
	// MaxEntries bounds L1 (required > 0).
	MaxEntries int
	// Redis is L2; nil means no L2. The caller owns the client: Close does
	// not close it. Every operation runs with a context bounded by
	// RedisTimeout, which go-redis only applies to socket reads and writes
	// when the client has ContextTimeoutEnabled (NewRedisClient sets it) or
	// read/write timeouts no longer than RedisTimeout.
	Redis redis.UniversalClient
	// RedisTimeout bounds each Redis operation (default
	// DefaultRedisTimeout).
	RedisTimeout time.Duration
	// Prefix namespaces Redis keys: values at "<Prefix>:v1:<key>", refresh
	// claims at "<Prefix>:lock:v1:<key>" (default DefaultPrefix).
	Prefix string
	// Logger; nil means zap.NewNop(). It is used as given: the caller
	// names it (the gateway passes its "cache" logger), so the name is
	// not doubled.
	Logger *zap.Logger
	// Now is the clock for freshness; nil means time.Now. The Redis
	// backoff always uses the real clock.
	Now func() time.Time
	// Observe, if set, is called once per Get with its Result, on the
	// caller's goroutine. It must be cheap: it is on the hot path.
	Observe func(Result)
	// OnRedisError, if set, is called once per failed Redis operation with
	// the operation's name: "get", "set", "del" or "lock" (the claim of a
	// background refresh).
	OnRedisError func(op string)
}

// entry is what L1 holds for a key.
type entry[V any] struct {
	value     V
	fetchedAt time.Time // when the origin was asked
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

// call is one fill of a key: an L2 lookup and, if needed, one origin load.
// Callers wait on done and then read the published result. Its fields other
// than invalidated are written only by the fill goroutine before done is
// closed; invalidated is guarded by Tiered.mu.
type call[V any] struct {
	done      chan struct{}
	published bool
	value     V
	result    Result
	err       error

	invalidated bool // set by Invalidate: the fill must not store what it loaded
}

// publish hands the result to the waiters, once; later calls are ignored
// (a fill that served a stale value early carries on refreshing).
func (c *call[V]) publish(v V, r Result, err error) {
	if c.published {
		return
	}
	c.value, c.result, c.err = v, r, err
	c.published = true
	close(c.done)
}

// Tiered is a two-tier (L1 in-process, L2 Redis) read-through cache of V by
// string key. It is safe for concurrent use. Call Close when done with it.
type Tiered[V any] struct {
	opts     Options // normalised by New
	codec    Codec[V]
	l1       *otter.Cache[string, entry[V]]
	now      func() time.Time
	log      *zap.Logger
	observe  func(Result)
	staleMax time.Duration // max(StaleIfError, StaleWhileRevalidate)
	rdb      redis.UniversalClient
	health   *redisHealth

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
	wg      sync.WaitGroup // fills in progress
}

// New validates opts and builds a Tiered cache. codec may be nil when
// opts.Redis is nil (it is used only for L2).
func New[V any](opts Options, codec Codec[V]) (*Tiered[V], error) {
	switch {
	case opts.TTL <= 0:
		return nil, fmt.Errorf("cache: Options.TTL must be > 0, got %s", opts.TTL)
	case opts.NegativeTTL < 0:
		return nil, fmt.Errorf("cache: Options.NegativeTTL must be >= 0, got %s", opts.NegativeTTL)
	case opts.StaleWhileRevalidate < 0:
		return nil, fmt.Errorf("cache: Options.StaleWhileRevalidate must be >= 0, got %s", opts.StaleWhileRevalidate)
	case opts.StaleIfError < 0:
		return nil, fmt.Errorf("cache: Options.StaleIfError must be >= 0, got %s", opts.StaleIfError)
	case opts.MaxEntries <= 0:
		return nil, fmt.Errorf("cache: Options.MaxEntries must be > 0, got %d", opts.MaxEntries)
	case opts.RedisTimeout < 0:
		return nil, fmt.Errorf("cache: Options.RedisTimeout must be >= 0, got %s", opts.RedisTimeout)
	case opts.Redis != nil && codec == nil:
		return nil, errors.New("cache: a Codec is required when Options.Redis is set")
	}
	if opts.RedisTimeout == 0 {
		opts.RedisTimeout = DefaultRedisTimeout
	}
	if opts.Prefix == "" {
		opts.Prefix = DefaultPrefix
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
	t.ctx, t.cancel = context.WithCancel(context.Background())
	t.warnIfRedisUnbounded()
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

// Get returns the value for key: from L1, else L2, else load. Concurrent
// misses for one key make exactly one call to load, and the L2 lookup
// happens inside that single fill too. A value loaded from the origin is
// written to L1 and, after the waiting callers have their answer, to L2
// with a Redis TTL of TTL+max(StaleIfError, StaleWhileRevalidate) (or
// NegativeTTL for a not-found). A value found in L2 is put in L1 with its
// original fetch time, so its freshness counts from when the origin was
// asked, not from when Redis was read.
//
// On ErrNotFound from load (or a remembered one) Get returns the zero V,
// ResultNegative and ErrNotFound. Other load errors are never cached: Get
// serves a stale value if StaleIfError allows it (ResultStale, nil error)
// and otherwise returns the error wrapped, with ResultMiss. If ctx ends while
// Get waits for a fill, Get returns ctx's error and the fill carries on for
// the others.
func (t *Tiered[V]) Get(ctx context.Context, key string, load Loader[V]) (V, Result, error) {
	v, r, err := t.get(ctx, key, load)
	if t.observe != nil {
		t.observe(r)
	}
	return v, r, err
}

func (t *Tiered[V]) get(ctx context.Context, key string, load Loader[V]) (V, Result, error) {
	var zero V
	if e, ok := t.l1.GetIfPresent(key); ok {
		switch t.freshness(e, t.now()) {
		case fresh:
			if e.negative {
				return zero, ResultNegative, ErrNotFound
			}
			return e.value, ResultL1Hit, nil
		case revalidate:
			t.flight(ctx, key, load, true)
			return e.value, ResultStale, nil
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
		select {
		case <-c.done:
		case <-ctx.Done():
			return zero, ResultMiss, fmt.Errorf("cache: waiting for the fill of %q: %w", key, context.Cause(ctx))
		}
	}
	return c.value, c.result, c.err
}

// flight returns the fill of key that a Get may join, starting one if there
// is none, or nil after Close. A fill started for a Get keeps the Get's
// deadline; a background refresh has none. Both end at Close. With
// background set, flight starts a fill only if there is no joinable one
// (one refresh per key at a time) and never returns one to wait for.
func (t *Tiered[V]) flight(ctx context.Context, key string, load Loader[V], background bool) *call[V] {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return nil
	}
	if c := t.joinable[key]; c != nil {
		if background {
			return nil
		}
		return c
	}
	c := &call[V]{done: make(chan struct{})}
	t.joinable[key] = c
	t.running[key] = append(t.running[key], c)

	fctx := context.WithoutCancel(ctx)
	var cancel context.CancelFunc
	if d, ok := ctx.Deadline(); ok && !background {
		fctx, cancel = context.WithDeadline(fctx, d)
	} else {
		fctx, cancel = context.WithCancel(fctx)
	}
	stop := context.AfterFunc(t.ctx, cancel)

	t.wg.Add(1)
	go func() {
		defer t.wg.Done()
		defer stop()
		defer cancel()
		defer t.ended(key, c)
		t.fill(fctx, key, load, c)
	}()
	return c
}

// settle makes c unjoinable: its answer is final, and a Get that comes
// later must read L1 or start a fill of its own, not take an answer that
// was computed before it asked.
func (t *Tiered[V]) settle(key string, c *call[V]) {
	t.mu.Lock()
	if t.joinable[key] == c {
		delete(t.joinable, key)
	}
	t.mu.Unlock()
}

// answer settles c and publishes its final answer.
func (t *Tiered[V]) answer(key string, c *call[V], v V, r Result, err error) {
	t.settle(key, c)
	c.publish(v, r, err)
}

// ended forgets c once its fill, L2 write included, is over.
func (t *Tiered[V]) ended(key string, c *call[V]) {
	var zero V
	t.answer(key, c, zero, ResultMiss, errors.New("cache: internal error: fill ended without a result"))
	t.mu.Lock()
	defer t.mu.Unlock()
	cs := t.running[key]
	for i, x := range cs {
		if x == c {
			cs = append(cs[:i], cs[i+1:]...)
			break
		}
	}
	if len(cs) == 0 {
		delete(t.running, key)
	} else {
		t.running[key] = cs
	}
}

// fill finds the value for key in L1 (another fill may have just stored
// it), then L2, then the origin, and answers c's waiters. It may publish a
// stale value early and carry on refreshing it; it writes what it loaded to
// L2 after answering.
func (t *Tiered[V]) fill(ctx context.Context, key string, load Loader[V], c *call[V]) {
	var zero V
	cur, have := t.l1.GetIfPresent(key)
	if have {
		switch t.freshness(cur, t.now()) {
		case fresh:
			t.answerFresh(key, c, cur, ResultL1Hit)
			return
		case expired:
			have = false
		}
	}

	fromL2 := false
	if e, ok := t.l2Get(ctx, key); ok && (!have || e.fetchedAt.After(cur.fetchedAt)) {
		if t.freshness(e, t.now()) != expired {
			cur, have, fromL2 = e, true, true
			t.storeL1(key, e, c)
		}
	}
	if have {
		switch t.freshness(cur, t.now()) {
		case fresh:
			hit := ResultL1Hit
			if fromL2 {
				hit = ResultL2Hit
			}
			t.answerFresh(key, c, cur, hit)
			return
		case revalidate:
			// Serve stale now: whoever waits gets an answer without the
			// origin's latency, and this fill goes on to refresh. It stays
			// joinable meanwhile, so Gets that come during the refresh
			// get the stale value too instead of loading again.
			c.publish(cur.value, ResultStale, nil)
		}
	}

	if c.published && !t.claimRefresh(ctx, key) {
		// Another replica is refreshing key right now: take its value
		// from L2 when it lands. Nobody waits for this fill.
		t.awaitOtherRefresh(ctx, key, cur, c)
		return
	}

	fetchedAt := t.now()
	v, err := t.callLoader(ctx, key, load)
	switch {
	case err == nil:
		e := entry[V]{value: v, fetchedAt: fetchedAt}
		t.storeL1(key, e, c)
		t.answer(key, c, v, ResultMiss, nil)
		t.storeL2(key, e, c)
	case errors.Is(err, ErrNotFound):
		if t.opts.NegativeTTL == 0 {
			t.answer(key, c, zero, ResultNegative, ErrNotFound)
			return
		}
		e := entry[V]{fetchedAt: fetchedAt, negative: true}
		t.storeL1(key, e, c)
		t.answer(key, c, zero, ResultNegative, ErrNotFound)
		t.storeL2(key, e, c)
	case c.published:
		// A stale value was served already (stale-while-revalidate):
		// keep it; the next stale hit tries again.
		t.log.Debug("background refresh failed; keeping the stale entry", zap.String("key", key), zap.Error(err))
	case have && !cur.negative && t.now().Sub(cur.fetchedAt) < t.opts.TTL+t.opts.StaleIfError:
		t.log.Debug("origin failed; serving a stale entry", zap.String("key", key), zap.Error(err))
		t.answer(key, c, cur.value, ResultStale, nil)
	default:
		t.answer(key, c, zero, ResultMiss, fmt.Errorf("cache: load %q: %w", key, err))
	}
}

// answerFresh answers with a fresh entry: its value with hit, or a
// remembered not-found.
func (t *Tiered[V]) answerFresh(key string, c *call[V], e entry[V], hit Result) {
	if e.negative {
		var zero V
		t.answer(key, c, zero, ResultNegative, ErrNotFound)
		return
	}
	t.answer(key, c, e.value, hit, nil)
}

// callLoader runs load, turning a panic into an error: the loader runs on a
// goroutine of the cache, where a panic would kill the process instead of
// failing one request.
func (t *Tiered[V]) callLoader(ctx context.Context, key string, load Loader[V]) (v V, err error) {
	defer func() {
		if p := recover(); p != nil {
			t.log.Error("loader panicked", zap.String("key", key), zap.Any("panic", p), zap.ByteString("stack", debug.Stack()))
			err = fmt.Errorf("cache: loader panicked: %v", p)
		}
	}()
	return load(ctx, key)
}

// storeL1 puts e in L1 unless Invalidate dropped the key while c was
// filling it, and reports whether it did.
func (t *Tiered[V]) storeL1(key string, e entry[V], c *call[V]) bool {
	if t.remaining(e, t.now()) <= 0 {
		return false
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if c.invalidated {
		return false
	}
	t.l1.Set(key, e)
	return true
}

// Invalidate drops key from L1 and L2 (used when a change signal says the
// origin changed). A fill of key in progress still answers its waiters but
// stores nothing, and the next Get starts a new one. The L2 delete is
// attempted even while Redis is considered down; its failure is returned
// (L1 is dropped regardless), and L2 may then serve the old value until its
// Redis TTL ends.
func (t *Tiered[V]) Invalidate(ctx context.Context, key string) error {
	t.mu.Lock()
	for _, c := range t.running[key] {
		c.invalidated = true
	}
	delete(t.joinable, key)
	t.l1.Invalidate(key)
	t.mu.Unlock()
	if err := t.l2Del(ctx, key); err != nil {
		return fmt.Errorf("cache: invalidate %q in Redis: %w", key, err)
	}
	return nil
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

// Close stops background refreshes and Redis writes and waits for them; it
// does not close the Redis client (the caller owns it). After Close, Get
// still answers from L1 and otherwise calls the loader on the caller's
// goroutine, without L2. Close is idempotent.
func (t *Tiered[V]) Close() error {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return nil
	}
	t.closed = true
	t.mu.Unlock()
	t.cancel()
	t.wg.Wait()
	t.l1.StopAllGoroutines()
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
