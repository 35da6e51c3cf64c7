package cache

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
)

// Fleet-wide coalescing. A fill that finds nothing fresh in L2 claims the
// key in the same round trip (lookupScript: SET NX PX on the claim key with
// a random token) before asking the origin. Whoever finds the claim taken
// waits (await) for the holder's value: the holder writes it to L2,
// releases the claim and publishes the key on the "filled" channel in one
// script (storeScript), so a waiter learns of it by the pub/sub notice and
// reads it with one more round trip; it also polls, in case the notice is
// lost, and sleeps no longer than the claim has left, so that a holder that
// died is replaced as soon as its claim expires. A holder whose load failed
// releases the claim and publishes too (releaseScript): one waiter then
// takes the claim over and calls. Only the holder releases its claim (the
// scripts compare the token), and an invalidation deletes the claim with
// the value, so that a holder that loaded the old value does not write it
// back. Background refreshes use the same claim but never take one over:
// they already serve a value, and the next hit tries again.
//
// Without Redis, while L2 is backing off after a failure, or when a claim
// operation fails, the fill asks the origin without a claim: never fail
// closed because Redis is down.

// lookupScript reads a value and, unless it is fresh, tries to claim the
// key. The freshness thresholds come from the caller's clock, as 8-byte
// big-endian Unix nanoseconds compared byte by byte (Lua 5.1 numbers are
// doubles, and string comparison follows the server's locale).
//
//	KEYS[1] value key, KEYS[2] claim key
//	ARGV[1] claim token ("": only look), ARGV[2] claim TTL in ms,
//	ARGV[3] oldest fetch time of a fresh value, ARGV[4] of a fresh negative
//	returns {value or nil, 1 if claimed else 0, claim PTTL (ms, -2: none)}
var lookupScript = redis.NewScript(`
local function notolder(s, min)
  for i = 1, 8 do
    local a, b = string.byte(s, i), string.byte(min, i)
    if a ~= b then return a > b end
  end
  return true
end
local v = redis.call('GET', KEYS[1])
local fresh = false
if v and #v >= 10 and string.byte(v, 1) == 1 then
  local flags = string.byte(v, 2)
  if flags == 0 then fresh = notolder(string.sub(v, 3, 10), ARGV[3])
  elseif flags == 1 then fresh = notolder(string.sub(v, 3, 10), ARGV[4]) end
end
if not fresh and ARGV[1] ~= '' and redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return {v, 1, 0}
end
return {v, 0, redis.call('PTTL', KEYS[2])}
`)

// storeScript writes a value, releases the writer's claim and publishes
// the key on the filled channel. A writer that held a claim and lost it
// (it expired, or an invalidation deleted it) writes nothing: what it
// loaded may predate the invalidation.
//
//	KEYS[1] value key, KEYS[2] claim key
//	ARGV[1] value, ARGV[2] TTL in ms, ARGV[3] token ("": no claim held),
//	ARGV[4] filled channel, ARGV[5] key
//	returns 1 if written, else 0
var storeScript = redis.NewScript(`
if ARGV[3] ~= '' then
  if redis.call('GET', KEYS[2]) ~= ARGV[3] then return 0 end
  redis.call('DEL', KEYS[2])
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('PUBLISH', ARGV[4], ARGV[5])
return 1
`)

// releaseScript gives a claim back if it is still the caller's and tells
// the waiters, so that one of them takes over at once.
//
//	KEYS[1] claim key; ARGV[1] token, ARGV[2] filled channel, ARGV[3] key
var releaseScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  redis.call('PUBLISH', ARGV[2], ARGV[3])
  return 1
end
return 0
`)

// Waiting for a claim holder: how often a waiter looks at L2 when no
// notice came, with the bus up (the notice is the normal path: this is for
// lost notices) and down (polling is all there is), and how much past the
// claim's expiry it looks again.
const (
	claimPoll        = 200 * time.Millisecond
	claimPollNoBus   = 25 * time.Millisecond
	claimExpirySlack = 5 * time.Millisecond
)

// lookupResult is what lookup found in L2.
type lookupResult[V any] struct {
	ok      bool          // Redis answered
	found   bool          // L2 holds a decodable value: entry
	fresh   bool          // entry is fresh at at
	entry   entry[V]      //
	at      time.Time     // the clock reading freshness was judged at (Options.Now)
	claimed bool          // this replica now holds the claim: token
	token   string        //
	held    time.Duration // > 0: another holder's claim has this long left
}

// lookup reads key from L2 and, with claim set and nothing fresh there,
// claims it, in one round trip. Anything but an answer from Redis (no
// Redis, L2 backing off, an error) leaves ok false; a corrupt value is
// read as absent.
func (t *Tiered[V]) lookup(ctx context.Context, key string, claim bool) lookupResult[V] {
	var r lookupResult[V]
	if !t.l2(key) {
		return r
	}
	ok, probe := t.health.admit()
	if !ok {
		return r
	}
	r.at = t.now()
	token := ""
	if claim {
		token = newToken()
	}
	minFresh := unixBytes(r.at.Add(-t.opts.TTL))
	minNegative := "\xff\xff\xff\xff\xff\xff\xff\xff" // NegativeTTL 0: never fresh
	if t.opts.NegativeTTL > 0 {
		minNegative = unixBytes(r.at.Add(-t.opts.NegativeTTL))
	}
	rkey := t.redisKey(key)
	var res []any
	err := t.redisOp(ctx, "get", probe, func(ctx context.Context) error {
		var err error
		res, err = lookupScript.Run(ctx, t.rdb, []string{rkey, t.claimKey(key)},
			token, max(t.opts.ClaimTTL.Milliseconds(), 1), minFresh, minNegative).Slice()
		return err
	})
	if err != nil {
		return r
	}
	if len(res) != 3 {
		t.log.Warn("unexpected answer of the lookup script", zap.Int("elements", len(res)))
		return r
	}
	r.ok = true
	if b, isString := res[0].(string); isString {
		e, err := t.decode([]byte(b))
		if err != nil {
			t.log.Debug("ignoring a corrupt L2 value", zap.String("redis_key", rkey), zap.Error(err))
		} else {
			r.found, r.entry = true, e
			r.fresh = t.freshness(e, r.at) == fresh
		}
	}
	if n, _ := res[1].(int64); n == 1 {
		r.claimed, r.token = true, token
	}
	if ms, _ := res[2].(int64); ms > 0 {
		r.held = time.Duration(ms) * time.Millisecond
	}
	return r
}

// await waits for the holder of key's claim (held left on it) to write a
// fresh value to L2, woken by the filled notice (w) or by polling. It
// returns the lookup that found the value ("waited"), or, with takeover,
// the one that took the claim when the holder gave it back or it expired
// ("takeover"). "timeout": ClaimTTL passed, ctx ended, or (without
// takeover) the holder gave up. "": Redis failed meanwhile.
func (t *Tiered[V]) await(ctx context.Context, key string, w *watch, held time.Duration, takeover bool) (lookupResult[V], string) {
	var none lookupResult[V]
	t.awaiting.Add(1)
	defer t.awaiting.Add(-1)
	deadline := time.Now().Add(t.opts.ClaimTTL + claimPoll)
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		d := claimPollNoBus
		if t.BusConnected() {
			d = claimPoll
		}
		if held > 0 {
			d = min(d, held+claimExpirySlack)
		}
		timer.Reset(min(d, max(time.Until(deadline), 0)))
		select {
		case <-ctx.Done():
			return none, "timeout"
		case <-w.C():
			w.rearm()
		case <-timer.C:
		}
		if !time.Now().Before(deadline) {
			return none, "timeout"
		}
		r := t.lookup(ctx, key, takeover)
		switch {
		case !r.ok:
			if ctx.Err() != nil {
				return none, "timeout"
			}
			return none, ""
		case r.fresh:
			return r, "waited"
		case r.claimed:
			return r, "takeover"
		case r.held <= 0 && !takeover:
			return none, "timeout"
		}
		held = r.held
	}
}

// storeL2 writes e to Redis for the rest of its lifetime and gives the
// claim (token, if any) back, unless Invalidate dropped key while c was
// filling it: then it only gives the claim back. It runs after the waiters
// have their answer, bounded by RedisTimeout and cancelled by Close.
func (t *Tiered[V]) storeL2(key string, e entry[V], c *call[V], token string) {
	if !t.l2(key) {
		return
	}
	ttl := t.remaining(e, t.now())
	if t.isInvalidated(c) || ttl < time.Millisecond || t.ctx.Err() != nil {
		t.release(key, token)
		return
	}
	b, err := t.encode(e)
	if err != nil {
		t.log.Warn("not writing a value to L2", zap.String("key", key), zap.Error(err))
		t.release(key, token)
		return
	}
	ok, probe := t.health.admit()
	if !ok {
		return
	}
	err = t.redisOp(t.ctx, "set", probe, func(ctx context.Context) error {
		return storeScript.Run(ctx, t.rdb, []string{t.redisKey(key), t.claimKey(key)},
			b, ttl.Milliseconds(), token, t.bus.filled, key).Err()
	})
	// An Invalidate that ran during the write may have deleted the key
	// before the write landed: delete it again.
	if err == nil && t.isInvalidated(c) {
		_ = t.l2Del(t.ctx, key)
	}
}

// release gives the claim token back and wakes the waiters. It runs even
// after Close has cancelled the fills (with its own RedisTimeout bound; Close
// waits for it): a replica shutting down mid-fill hands its keys over at
// once instead of leaving the others to wait for its claims to expire.
func (t *Tiered[V]) release(key, token string) {
	if token == "" || !t.l2(key) {
		return
	}
	ok, probe := t.health.admit()
	if !ok {
		return
	}
	_ = t.runRedis(context.Background(), "release", probe, func(ctx context.Context) error {
		return releaseScript.Run(ctx, t.rdb, []string{t.claimKey(key)}, token, t.bus.filled, key).Err()
	})
}

// newToken is a claim's value: random, so that only its holder releases it.
func newToken() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read does not fail (Go 1.24+)
	return hex.EncodeToString(b[:])
}

// unixBytes is t as the L2 header stores fetch times: big-endian Unix
// nanoseconds (0 before 1970, so that the byte order is the time order).
func unixBytes(t time.Time) string {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(max(t.UnixNano(), 0)))
	return string(b[:])
}

// l2 reports whether key goes to Redis: with Redis configured and a
// non-empty key (an empty hash tag would put a value and its claim in
// different cluster slots, which the scripts cannot span).
func (t *Tiered[V]) l2(key string) bool { return t.rdb != nil && key != "" }
