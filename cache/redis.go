package cache

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
)

// Redis layout under Options.Prefix (P below):
//
//	P:v1:{<key>}          the value of key (format below), with a Redis TTL of
//	                      its remaining lifetime (TTL+max(StaleIfError,
//	                      StaleWhileRevalidate), NegativeTTL for a not-found)
//	P:claim:v1:{<key>}    the fleet-wide claim of key's origin call: a random
//	                      token, PX ClaimTTL (claim.go)
//	P:v1:invalidate       channel: invalidations (bus.go has the payloads)
//	P:v1:filled           channel: "<key>" once its value is in L2, or its
//	                      claim was given back without one
//	P:v1:bus:<id>         channel: heartbeats of one Tiered to itself
//
// The braces are a Redis Cluster hash tag: a value and its claim are in the
// same slot, so one script can read the one and take the other. (Before the
// claim, values were at P:v1:<key>; those keys are no longer read and
// expire by themselves.) The empty key is kept out of Redis: "{}" is no
// hash tag.
//
// L2 value format:
//
//	byte 0     format version (1)
//	byte 1     flags: bit 0 = negative (not found at the origin)
//	bytes 2-9  fetch time, Unix nanoseconds, big-endian int64
//	bytes 10-  Codec bytes (empty for a negative entry)
//
// Anything else is corrupt and read as a miss (the lookup script reads the
// header too, to judge freshness).
const (
	keyVersion    = "v1"
	valueVersion  = 1
	flagNegative  = 1 << 0
	valueHeader   = 10
	knownFlagBits = flagNegative
)

// errCorrupt wraps every reason an L2 value cannot be decoded.
var errCorrupt = errors.New("corrupt L2 value")

// errClosed: Redis is not used after Close.
var errClosed = errors.New("cache closed")

func (t *Tiered[V]) redisKey(key string) string {
	return t.opts.Prefix + ":" + keyVersion + ":{" + key + "}"
}

func (t *Tiered[V]) claimKey(key string) string {
	return t.opts.Prefix + ":claim:" + keyVersion + ":{" + key + "}"
}

func (t *Tiered[V]) encode(e entry[V]) ([]byte, error) {
	var payload []byte
	if !e.negative {
		var err error
		if payload, err = t.codec.Marshal(e.value); err != nil {
			return nil, fmt.Errorf("cache: marshal value: %w", err)
		}
	}
	b := make([]byte, valueHeader, valueHeader+len(payload))
	b[0] = valueVersion
	if e.negative {
		b[1] = flagNegative
	}
	binary.BigEndian.PutUint64(b[2:], uint64(e.fetchedAt.UnixNano()))
	return append(b, payload...), nil
}

func (t *Tiered[V]) decode(b []byte) (entry[V], error) {
	var e entry[V]
	switch {
	case len(b) < valueHeader:
		return e, fmt.Errorf("%w: %d bytes, shorter than the header", errCorrupt, len(b))
	case b[0] != valueVersion:
		return e, fmt.Errorf("%w: format version %d", errCorrupt, b[0])
	case b[1]&^knownFlagBits != 0:
		return e, fmt.Errorf("%w: unknown flags %#x", errCorrupt, b[1])
	}
	e.fetchedAt = time.Unix(0, int64(binary.BigEndian.Uint64(b[2:])))
	e.negative = b[1]&flagNegative != 0
	payload := b[valueHeader:]
	if e.negative {
		if len(payload) != 0 {
			return e, fmt.Errorf("%w: negative entry with a %d-byte payload", errCorrupt, len(payload))
		}
		return e, nil
	}
	v, err := t.codec.Unmarshal(payload)
	if err != nil {
		return e, fmt.Errorf("%w: unmarshal: %w", errCorrupt, err)
	}
	e.value = v
	return e, nil
}

// l2Del deletes key's value and claim from Redis. It is tried even while L2
// is backing off (an invalidation is rare and matters), and is skipped after
// Close.
func (t *Tiered[V]) l2Del(ctx context.Context, key string) error {
	if !t.l2(key) || t.ctx.Err() != nil {
		return nil
	}
	_, probe := t.health.admit()
	return t.redisOp(ctx, "del", probe, func(ctx context.Context) error {
		return t.rdb.Del(ctx, t.redisKey(key), t.claimKey(key)).Err()
	})
}

// redisOp runs do with its own RedisTimeout-bounded context and records the
// outcome in the health state, unless the cache is closed. redis.Nil (key
// absent) is a success, returned as is. A failure caused by parent ending
// (the caller gave up, Close) says nothing about Redis and is not recorded.
func (t *Tiered[V]) redisOp(parent context.Context, op string, probe bool, do func(context.Context) error) error {
	if t.ctx.Err() != nil {
		t.health.release(probe)
		return fmt.Errorf("redis %s: %w", op, errClosed)
	}
	return t.runRedis(parent, op, probe, do)
}

// runRedis is redisOp without the check for Close.
func (t *Tiered[V]) runRedis(parent context.Context, op string, probe bool, do func(context.Context) error) error {
	if err := parent.Err(); err != nil {
		t.health.release(probe)
		return fmt.Errorf("redis %s: %w", op, context.Cause(parent))
	}
	ctx, cancel := context.WithTimeout(parent, t.opts.RedisTimeout)
	err := do(ctx)
	cancel()
	switch {
	case err == nil || errors.Is(err, redis.Nil):
		t.health.succeeded(probe)
		return err
	case parent.Err() != nil:
		t.health.release(probe)
	default:
		t.health.failed(op, err, probe)
	}
	return fmt.Errorf("redis %s: %w", op, err)
}

// warnIfRedisUnbounded logs when the client would not honour RedisTimeout
// on socket reads and writes (go-redis ignores context deadlines there
// unless ContextTimeoutEnabled is set).
func (t *Tiered[V]) warnIfRedisUnbounded() {
	var ctxTimeouts bool
	var rt, wt time.Duration
	switch c := t.rdb.(type) {
	case *redis.Client:
		o := c.Options()
		ctxTimeouts, rt, wt = o.ContextTimeoutEnabled, o.ReadTimeout, o.WriteTimeout
	case *redis.ClusterClient:
		o := c.Options()
		ctxTimeouts, rt, wt = o.ContextTimeoutEnabled, o.ReadTimeout, o.WriteTimeout
	default:
		return
	}
	limit := t.opts.RedisTimeout
	if !ctxTimeouts && (rt <= 0 || rt > limit || wt <= 0 || wt > limit) {
		t.log.Warn("the Redis client ignores context deadlines and has longer socket timeouts than Options.RedisTimeout; "+
			"a slow Redis can delay cache misses by up to its read timeout (use NewRedisClient, or set ContextTimeoutEnabled)",
			zap.Duration("redis_timeout", limit), zap.Duration("read_timeout", rt), zap.Duration("write_timeout", wt))
	}
}

// redisHealth is the last known state of L2 and the backoff after a
// failure. While down, Redis is skipped until retryAt; then one operation
// (the probe) is let through: its success marks L2 up again, its failure
// doubles the backoff up to max. It uses the real clock, not Options.Now.
type redisHealth struct {
	healthy  atomic.Bool
	log      *zap.Logger
	onError  func(op string)
	min, max time.Duration

	mu      sync.Mutex
	backoff time.Duration
	retryAt time.Time
	probing bool
}

func newRedisHealth(log *zap.Logger, onError func(string), minBackoff, maxBackoff time.Duration) *redisHealth {
	h := &redisHealth{log: log, onError: onError, min: minBackoff, max: maxBackoff}
	h.healthy.Store(true)
	return h
}

// admit reports whether a Redis operation may run now and whether it is the
// probe that decides if L2 is back.
func (h *redisHealth) admit() (ok, probe bool) {
	if h.healthy.Load() {
		return true, false
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.healthy.Load() {
		return true, false
	}
	if h.probing || time.Now().Before(h.retryAt) {
		return false, false
	}
	h.probing = true
	return true, true
}

// release gives back a probe whose outcome says nothing about Redis.
func (h *redisHealth) release(probe bool) {
	if !probe {
		return
	}
	h.mu.Lock()
	h.probing = false
	h.mu.Unlock()
}

func (h *redisHealth) succeeded(probe bool) {
	if !probe || h.healthy.Load() {
		// While down only the probe's success counts: an operation
		// admitted before the outage may complete late.
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.probing = false
	h.backoff = 0
	h.healthy.Store(true)
	h.log.Info("Redis answers again; L2 back in use")
}

func (h *redisHealth) failed(op string, err error, probe bool) {
	if h.onError != nil {
		h.onError(op)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	switch {
	case h.healthy.Load():
		h.healthy.Store(false)
		h.backoff = h.min
		h.retryAt = time.Now().Add(h.backoff)
		h.log.Warn("Redis failed; serving from L1 and the origin without L2 until it answers again",
			zap.String("op", op), zap.Error(err), zap.Duration("retry_in", h.backoff))
	case probe:
		h.probing = false
		h.backoff = min(h.backoff*2, h.max)
		h.retryAt = time.Now().Add(h.backoff)
	}
}

// Redis client defaults of NewRedisClient, for a proxy that reaches Redis
// only on cache misses. A URL may override the pool sizes with pool_size
// and max_active_conns.
const (
	redisPoolSize       = 10
	redisMaxActiveConns = 32
)

// NewRedisClient builds a Redis client for Options.Redis from a URL:
//
//	redis://[user:pass@]host:port[/db]        one server (rediss:// for TLS)
//	unix://[user:pass@]/path/redis.sock?db=N  one server over a Unix socket
//	redis-sentinel://[user:pass@]host:port[/db]?master_name=NAME[&addr=host2:port2...]
//	                                          Sentinel-managed primary (rediss-sentinel:// for TLS);
//	                                          user:pass are the Sentinels' credentials
//	redis-cluster://[user:pass@]host:port[?addr=host2:port2...]
//	                                          Redis Cluster seed nodes (rediss-cluster:// for TLS)
//
// Query parameters are go-redis's (redis.ParseURL, ParseFailoverURL,
// ParseClusterURL), but the ones that decide how the cache degrades are
// forced: dial, read, write and pool-wait timeouts are timeout, context
// deadlines are honoured, and there are no command retries and a single dial
// attempt, since the cache skips Redis on failure instead. The pool is
// small (10 connections, at most 32) unless pool_size / max_active_conns are
// given. Errors never contain the password.
func NewRedisClient(rawURL string, timeout time.Duration) (redis.UniversalClient, error) {
	if timeout <= 0 {
		return nil, fmt.Errorf("cache: Redis timeout must be > 0, got %s", timeout)
	}
	newClient, err := parseRedisURL(rawURL, knobs{timeout: timeout})
	if err != nil {
		return nil, err
	}
	return newClient(), nil
}

// CheckRedisURL reports what NewRedisClient would refuse in rawURL, without
// building a client: config validation uses it, so `gateway check` accepts
// exactly the URLs the cache can use.
func CheckRedisURL(rawURL string) error {
	_, err := parseRedisURL(rawURL, knobs{timeout: time.Second})
	return err
}

// parseRedisURL reads rawURL into the go-redis options of its scheme and
// returns the constructor of that client.
func parseRedisURL(rawURL string, k knobs) (func() redis.UniversalClient, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		var uerr *url.Error
		if errors.As(err, &uerr) {
			err = uerr.Err // without the URL, which may hold a password
		}
		return nil, fmt.Errorf("cache: parse Redis URL: %w", err)
	}
	redacted := u.Redacted()
	switch u.Scheme {
	case "redis", "rediss", "unix":
		o, err := redis.ParseURL(rawURL)
		if err != nil {
			return nil, fmt.Errorf("cache: Redis URL %s: %w", redacted, err)
		}
		k.apply(&o.DialTimeout, &o.ReadTimeout, &o.WriteTimeout, &o.PoolTimeout,
			&o.ContextTimeoutEnabled, &o.MaxRetries, &o.DialerRetries, &o.PoolSize, &o.MaxActiveConns, &o.DisableIdentity)
		return func() redis.UniversalClient { return redis.NewClient(o) }, nil
	case "redis-sentinel", "rediss-sentinel":
		o, err := redis.ParseFailoverURL(withScheme(u, strings.TrimSuffix(u.Scheme, "-sentinel")))
		if err != nil {
			return nil, fmt.Errorf("cache: Redis URL %s: %w", redacted, err)
		}
		if o.MasterName == "" {
			return nil, fmt.Errorf("cache: Redis URL %s: a redis-sentinel URL needs master_name=<name>", redacted)
		}
		k.apply(&o.DialTimeout, &o.ReadTimeout, &o.WriteTimeout, &o.PoolTimeout,
			&o.ContextTimeoutEnabled, &o.MaxRetries, &o.DialerRetries, &o.PoolSize, &o.MaxActiveConns, &o.DisableIdentity)
		return func() redis.UniversalClient { return redis.NewFailoverClient(o) }, nil
	case "redis-cluster", "rediss-cluster":
		o, err := redis.ParseClusterURL(withScheme(u, strings.TrimSuffix(u.Scheme, "-cluster")))
		if err != nil {
			return nil, fmt.Errorf("cache: Redis URL %s: %w", redacted, err)
		}
		k.apply(&o.DialTimeout, &o.ReadTimeout, &o.WriteTimeout, &o.PoolTimeout,
			&o.ContextTimeoutEnabled, &o.MaxRetries, &o.DialerRetries, &o.PoolSize, &o.MaxActiveConns, &o.DisableIdentity)
		return func() redis.UniversalClient { return redis.NewClusterClient(o) }, nil
	default:
		return nil, fmt.Errorf("cache: Redis URL %s: unsupported scheme %q (want redis, rediss, unix, redis-sentinel, rediss-sentinel, redis-cluster or rediss-cluster)", redacted, u.Scheme)
	}
}

// withScheme returns u as a string with another scheme.
func withScheme(u *url.URL, scheme string) string {
	c := *u
	c.Scheme = scheme
	return c.String()
}

// knobs are the client settings NewRedisClient imposes, applied to the
// fields of whichever go-redis options type the URL produced.
type knobs struct{ timeout time.Duration }

func (k knobs) apply(dial, read, write, poolWait *time.Duration, ctxTimeouts *bool,
	maxRetries, dialerRetries, poolSize, maxActive *int, disableIdentity *bool) {
	*dial, *read, *write, *poolWait = k.timeout, k.timeout, k.timeout, k.timeout
	*ctxTimeouts = true
	*maxRetries = -1   // go-redis: -1 disables retries (0 means the default 3)
	*dialerRetries = 1 // one dial attempt per operation (<= 0 means the default 5)
	if *poolSize <= 0 {
		*poolSize = redisPoolSize
	}
	if *maxActive <= 0 {
		*maxActive = max(redisMaxActiveConns, *poolSize)
	}
	*disableIdentity = true // no CLIENT SETINFO round trip on each new connection
}
