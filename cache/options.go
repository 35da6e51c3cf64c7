package cache

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
)

// Defaults of the Options left zero. Exported so configuration and docs can
// show the effective values.
const (
	// DefaultRedisTimeout bounds each Redis operation.
	DefaultRedisTimeout = 100 * time.Millisecond
	// DefaultPrefix is the Redis key namespace.
	DefaultPrefix = "gateway"
	// DefaultClaimTTL bounds a fleet-wide claim.
	DefaultClaimTTL = 10 * time.Second
	// DefaultDisconnectedTTL caps L1 freshness while the bus is down.
	DefaultDisconnectedTTL = 5 * time.Second
)

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
	// ErrorTTL: a failed origin load (any error but ErrNotFound, and not
	// the fill's own context ending) is remembered in L1 for this long,
	// per key and per replica: Gets in that window return at once with a
	// *RecentFailureError (wrapping ErrRecentFailure and the load's
	// error) instead of calling a failing origin again, unless
	// StaleIfError lets them serve an old value, which wins. Background
	// refreshes are not retried in that window either. 0 turns it off.
	ErrorTTL time.Duration
	// MaxWait bounds how long a Get waits for a fill (the L2 lookup, a
	// wait for another replica's claim, the origin load): past it Get
	// returns an error wrapping ErrStillFilling, and the fill goes on,
	// storing what it loads, so a Get soon after finds it (0: no bound
	// but the Get's context). A fill keeps the deadline of the Get that
	// started it, so a bound meant to let the fill outlive the wait
	// belongs here, not on that context.
	MaxWait time.Duration
	// MaxEntries bounds L1 (required > 0).
	MaxEntries int
	// Redis is L2; nil means no L2 (and no claims, no bus). The caller
	// owns the client: Close does not close it, and must come before the
	// client's Close. Every operation runs with a context bounded by
	// RedisTimeout, which go-redis only applies to socket reads and writes
	// when the client has ContextTimeoutEnabled (NewRedisClient sets it) or
	// read/write timeouts no longer than RedisTimeout.
	Redis redis.UniversalClient
	// RedisTimeout bounds each Redis operation (default
	// DefaultRedisTimeout).
	RedisTimeout time.Duration
	// Prefix namespaces Redis keys and channels (default DefaultPrefix);
	// the layout is in redis.go. It must not contain '{' or '}', which
	// would change the Redis Cluster hash slots of the keys.
	Prefix string
	// ClaimTTL bounds the claim a replica takes in Redis before asking
	// the origin about a key no replica has fresh (default
	// DefaultClaimTTL). The holder releases it as soon as its value is in
	// L2 (or its load failed), so it only matters when the holder dies:
	// the others wait for it to expire, then one takes over. Make it
	// longer than the slowest origin call: a holder slower than ClaimTTL
	// loses its claim, another replica calls too, and the late holder
	// does not write L2.
	ClaimTTL time.Duration
	// DisconnectedTTL caps how long an L1 entry is trusted while the
	// invalidation bus may have missed messages (default
	// DefaultDisconnectedTTL). While the subscription is down, an entry
	// this replica last checked (loaded, or read from L2) more than
	// DisconnectedTTL ago is still served, as an L1 hit, but re-checked
	// in the background: L2 first (invalidations delete it there, so it
	// is the truth), the origin if Redis has nothing or is down. Once the
	// bus is back, every entry last checked before it came back is
	// re-checked the same way, once: what was missed cannot be known.
	// Stale reads after an invalidation are so bounded by DisconnectedTTL
	// plus one re-check, whatever happens to Redis. A value >= TTL turns
	// the cap off in practice. Readiness is not affected.
	DisconnectedTTL time.Duration
	// Logger; nil means zap.NewNop(). It is used as given: the caller
	// names it (the gateway passes its "cache" logger), so the name is
	// not doubled.
	Logger *zap.Logger
	// Now is the clock for freshness; nil means time.Now. The Redis
	// backoff, claim waits and the bus's heartbeats use the real clock.
	Now func() time.Time
	// Observe, if set, is called once per Get with its Result, on the
	// caller's goroutine. It must be cheap: it is on the hot path.
	Observe func(Result)
	// OnRedisError, if set, is called once per failed Redis operation with
	// the operation's name: "get" (an L2 read, with the claim it takes),
	// "set" (an L2 write, releasing the claim), "release" (a claim given
	// back after a failed load), "del" (an invalidation), "publish"
	// (InvalidateAll's message) or "subscribe" (the bus lost its
	// subscription: once per outage, not per retry).
	OnRedisError func(op string)
	// OnClaim, if set, is called once per fleet-wide claim decision of a
	// fill: "acquired" (this replica calls the origin), "waited" (another
	// replica's value arrived while this one waited), "takeover" (the
	// holder failed or died without a value; this replica took the claim
	// and calls), "timeout" (a wait ended without a value: ClaimTTL
	// passed and this replica calls without a claim, or the Get's deadline
	// passed, or a background refresh's holder gave up).
	OnClaim func(outcome string)
	// OnInvalidation, if set, is called with "published" when this
	// replica's Invalidate or InvalidateAll reached the bus, and "applied"
	// when a message of another replica was applied here.
	OnInvalidation func(event string)
}

// validate reports the first option New refuses.
func validate(o Options, haveCodec bool) error {
	switch {
	case o.TTL <= 0:
		return fmt.Errorf("cache: Options.TTL must be > 0, got %s", o.TTL)
	case o.NegativeTTL < 0:
		return fmt.Errorf("cache: Options.NegativeTTL must be >= 0, got %s", o.NegativeTTL)
	case o.StaleWhileRevalidate < 0:
		return fmt.Errorf("cache: Options.StaleWhileRevalidate must be >= 0, got %s", o.StaleWhileRevalidate)
	case o.StaleIfError < 0:
		return fmt.Errorf("cache: Options.StaleIfError must be >= 0, got %s", o.StaleIfError)
	case o.ErrorTTL < 0:
		return fmt.Errorf("cache: Options.ErrorTTL must be >= 0, got %s", o.ErrorTTL)
	case o.MaxWait < 0:
		return fmt.Errorf("cache: Options.MaxWait must be >= 0, got %s", o.MaxWait)
	case o.MaxEntries <= 0:
		return fmt.Errorf("cache: Options.MaxEntries must be > 0, got %d", o.MaxEntries)
	case o.RedisTimeout < 0:
		return fmt.Errorf("cache: Options.RedisTimeout must be >= 0, got %s", o.RedisTimeout)
	case o.ClaimTTL < 0 || (o.ClaimTTL > 0 && o.ClaimTTL < time.Millisecond):
		return fmt.Errorf("cache: Options.ClaimTTL must be 0 (default) or >= 1ms, got %s", o.ClaimTTL)
	case o.DisconnectedTTL < 0:
		return fmt.Errorf("cache: Options.DisconnectedTTL must be >= 0, got %s", o.DisconnectedTTL)
	case strings.ContainsAny(o.Prefix, "{}"):
		return fmt.Errorf("cache: Options.Prefix must not contain '{' or '}' (they would move keys between Redis Cluster slots), got %q", o.Prefix)
	case o.Redis != nil && !haveCodec:
		return errors.New("cache: a Codec is required when Options.Redis is set")
	}
	return nil
}
