package cache

import (
	"context"
	"errors"
	"fmt"
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

// InvalidateAll forgets every key, in L1 and in Redis (every key under
// the prefix), as Invalidate does for one. Fills in progress store
// nothing.
func (t *Tiered[V]) InvalidateAll(ctx context.Context) error {
	t.mu.Lock()
	for _, cs := range t.running {
		for _, c := range cs {
			c.invalidated = true
		}
	}
	clear(t.joinable)
	t.l1.InvalidateAll()
	t.mu.Unlock()
	if t.rdb == nil || t.ctx.Err() != nil {
		return nil
	}
	if err := t.l2DelAll(ctx); err != nil {
		return fmt.Errorf("cache: invalidate everything in Redis: %w", err)
	}
	return nil
}

// l2DelAll deletes every value key under the prefix, on every master of a
// cluster. Keys are deleted one by one: in a cluster, one DEL of several
// keys must stay in one slot.
func (t *Tiered[V]) l2DelAll(ctx context.Context) error {
	match := t.redisKey("*")
	del := func(ctx context.Context, c redis.Cmdable) error {
		iter := c.Scan(ctx, 0, match, 1000).Iterator()
		for iter.Next(ctx) {
			if err := c.Del(ctx, iter.Val()).Err(); err != nil {
				return err
			}
		}
		return iter.Err()
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
