package cache

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Entry is what L1 holds for a key, for operators (the admin API's
// GET /admin/cache/entry).
type Entry[V any] struct {
	Value     V
	FetchedAt time.Time // when the origin was asked
	Negative  bool      // the origin said the key does not exist
	// FreshFor is how much longer it is served without a refresh (0 when
	// stale).
	FreshFor time.Duration
}

// Peek returns what L1 holds for key without loading, refreshing or
// counting a lookup.
func (t *Tiered[V]) Peek(key string) (Entry[V], bool) {
	e, ok := t.l1.GetIfPresent(key)
	if !ok {
		return Entry[V]{}, false
	}
	ttl := t.opts.TTL
	if e.negative {
		ttl = t.opts.NegativeTTL
	}
	return Entry[V]{Value: e.value, FetchedAt: e.fetchedAt, Negative: e.negative,
		FreshFor: max(ttl-max(t.now().Sub(e.fetchedAt), 0), 0)}, true
}

// invalidateScript deletes a value and its claim (so that a holder that
// loaded the old value does not write it back) and tells every replica.
//
//	KEYS[1] value key, KEYS[2] claim key; ARGV[1] channel, ARGV[2] message
var invalidateScript = redis.NewScript(`
redis.call('DEL', KEYS[1], KEYS[2])
return redis.call('PUBLISH', ARGV[1], ARGV[2])
`)

// Invalidate drops key from L1 and L2 (used when a change signal says the
// origin changed) and publishes it on the bus, in one Redis script, so every
// replica with the same prefix drops it from its L1 too. A fill of key in
// progress, here or on another replica, still answers its waiters but
// stores nothing, and the next Get starts a new one. The Redis part is
// attempted even while Redis is considered down; its failure is returned (L1
// is dropped regardless), and then L2 may serve the old value until its
// Redis TTL ends, and other replicas until their DisconnectedTTL re-check.
func (t *Tiered[V]) Invalidate(ctx context.Context, key string) error {
	t.dropLocal(key)
	// After Redis: a fill here waiting for another replica's claim looks
	// again and finds it gone with the value.
	defer t.notices.fire(key)
	if t.rdb == nil || t.ctx.Err() != nil {
		return nil
	}
	_, probe := t.health.admit()
	msg := t.bus.keyMessage(key)
	err := t.redisOp(ctx, "del", probe, func(ctx context.Context) error {
		if !t.l2(key) {
			return t.rdb.Publish(ctx, t.bus.invalidate, msg).Err()
		}
		return invalidateScript.Run(ctx, t.rdb, []string{t.redisKey(key), t.claimKey(key)}, t.bus.invalidate, msg).Err()
	})
	if err != nil {
		return fmt.Errorf("cache: invalidate %q in Redis: %w", key, err)
	}
	t.onInvalidation("published")
	return nil
}

// InvalidateAll forgets every key, in L1 and in Redis (every value and
// claim under the prefix), as Invalidate does for one, and publishes "drop
// everything" on the bus after the Redis delete. Fills in progress store
// nothing.
func (t *Tiered[V]) InvalidateAll(ctx context.Context) error {
	t.dropAllLocal()
	defer t.notices.fireAll()
	if t.rdb == nil || t.ctx.Err() != nil {
		return nil
	}
	var errs []error
	if err := t.l2DelAll(ctx); err != nil {
		errs = append(errs, fmt.Errorf("cache: invalidate everything in Redis: %w", err))
	}
	// Published even if the delete failed: the other L1s can still drop
	// everything.
	_, probe := t.health.admit()
	if err := t.redisOp(ctx, "publish", probe, func(ctx context.Context) error {
		return t.rdb.Publish(ctx, t.bus.invalidate, t.bus.allMessage()).Err()
	}); err != nil {
		errs = append(errs, fmt.Errorf("cache: publish the invalidation of everything: %w", err))
	} else {
		t.onInvalidation("published")
	}
	return errors.Join(errs...)
}

// dropLocal is Invalidate in L1: key is dropped, fills of it in progress
// store nothing and can no longer be joined, and a remembered failure is
// forgotten.
func (t *Tiered[V]) dropLocal(key string) {
	t.mu.Lock()
	for _, c := range t.running[key] {
		c.invalidated = true
	}
	delete(t.joinable, key)
	if e, ok := t.l1.GetIfPresent(key); ok && !e.negative {
		if len(t.dropped) >= t.opts.MaxEntries {
			clear(t.dropped) // bounded like L1; a forgotten key only loses its priority
		}
		t.dropped[key] = struct{}{}
	}
	t.l1.Invalidate(key)
	t.mu.Unlock()
	t.forgetFailure(key)
}

// dropAllLocal is dropLocal for every key.
func (t *Tiered[V]) dropAllLocal() {
	t.mu.Lock()
	for _, cs := range t.running {
		for _, c := range cs {
			c.invalidated = true
		}
	}
	clear(t.joinable)
	clear(t.dropped)
	t.l1.InvalidateAll()
	t.mu.Unlock()
	t.forgetFailures()
}

// busConfig connects the bus to this Tiered: messages of other replicas
// are applied in L1 only, and wake the fills waiting on the key.
func (t *Tiered[V]) busConfig() busConfig {
	return busConfig{
		rdb:             t.rdb,
		prefix:          t.opts.Prefix,
		now:             t.now,
		disconnectedTTL: t.opts.DisconnectedTTL,
		log:             t.log,
		onRedisError:    t.opts.OnRedisError,
		onInvalidation:  t.opts.OnInvalidation,
		onKey: func(key string) {
			t.dropLocal(key)
			t.notices.fire(key)
		},
		onAll: func() {
			t.dropAllLocal()
			t.notices.fireAll()
		},
		onFilled: t.notices.fire,
	}
}

func (t *Tiered[V]) onInvalidation(event string) {
	if t.opts.OnInvalidation != nil {
		t.opts.OnInvalidation(event)
	}
}

// l2DelAll deletes every value and claim key under the prefix, on every
// master of a cluster. Keys are deleted one by one: in a cluster, one DEL of
// several keys must stay in one slot.
func (t *Tiered[V]) l2DelAll(ctx context.Context) error {
	p := globEscape(t.opts.Prefix)
	patterns := []string{p + ":" + keyVersion + ":{*", p + ":claim:" + keyVersion + ":{*"}
	del := func(ctx context.Context, c redis.Cmdable) error {
		for _, match := range patterns {
			iter := c.Scan(ctx, 0, match, 1000).Iterator()
			for iter.Next(ctx) {
				if err := c.Del(ctx, iter.Val()).Err(); err != nil {
					return err
				}
			}
			if err := iter.Err(); err != nil {
				return err
			}
		}
		return nil
	}
	var err error
	if cc, ok := t.rdb.(*redis.ClusterClient); ok {
		err = cc.ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error { return del(ctx, c) })
	} else {
		err = del(ctx, t.rdb)
	}
	if errors.Is(err, redis.Nil) {
		return nil
	}
	return err
}

// globEscape quotes the characters special to SCAN MATCH.
func globEscape(s string) string {
	var b strings.Builder
	for _, r := range s {
		if strings.ContainsRune(`*?[]\`, r) {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}
