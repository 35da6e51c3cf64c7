package cache_test

import (
	"context"
	"testing"
	"time"

	"github.com/metagate/gateway/cache"
	"github.com/metagate/gateway/internal/testenv"
)

// TestInvalidateAllEmptiesBothTiers: after DELETE /admin/cache every key
// is asked of the origin again, on this replica and on one that shares
// the Redis, and keys of another prefix are left alone.
func TestInvalidateAllEmptiesBothTiers(t *testing.T) {
	_, rdb := startRedis(t)
	clock := newFakeClock()
	a := newTiered(t, baseOptions(rdb, clock))
	other := baseOptions(rdb, clock)
	other.Prefix = "otherapp"
	o := newTiered(t, other)
	src := newOrigin("a")
	for _, k := range []string{"k1", "k2", "k3"} {
		get(t, a, k, src.load, cache.ResultMiss)
	}
	get(t, o, "k1", src.load, cache.ResultMiss)
	testenv.Eventually(t, 5*time.Second, "the values to reach Redis", func() bool { return inRedis(t, rdb, "k3") })
	if err := a.InvalidateAll(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"k1", "k2", "k3"} {
		if inRedis(t, rdb, k) {
			t.Errorf("%s still in Redis", k)
		}
		if _, ok := a.Peek(k); ok {
			t.Errorf("%s still in L1", k)
		}
	}
	calls := src.calls.Load()
	get(t, a, "k2", src.load, cache.ResultMiss)
	if src.calls.Load() != calls+1 {
		t.Errorf("origin calls %d → %d, want one more", calls, src.calls.Load())
	}
	if n, _ := rdb.Exists(context.Background(), "otherapp:v1:{k1}").Result(); n != 1 {
		t.Error("InvalidateAll deleted another prefix's key")
	}
}

func TestPeekShowsAgeWithoutLoading(t *testing.T) {
	clock := newFakeClock()
	c := newTiered(t, baseOptions(nil, clock))
	src := newOrigin("a")
	if _, ok := c.Peek("k"); ok {
		t.Fatal("Peek of an absent key reported an entry")
	}
	get(t, c, "k", src.load, cache.ResultMiss)
	clock.Advance(20 * time.Minute)
	e, ok := c.Peek("k")
	if !ok || e.Value != want("a", "k") || e.Negative || e.FreshFor != 40*time.Minute || clock.Now().Sub(e.FetchedAt) != 20*time.Minute {
		t.Errorf("Peek = %+v, %v", e, ok)
	}
	if src.calls.Load() != 1 {
		t.Errorf("Peek called the origin: %d calls", src.calls.Load())
	}
}
