package cache_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/metagate/gateway/cache"
	"github.com/metagate/gateway/internal/testenv"
)

// TestLoadAfterAnInvalidationIsMarked: a replica that held a key until an
// invalidation of another replica dropped it (through the bus) loads it
// again with cache.Invalidated set, so a budgeted origin can treat it as
// the refresh of a known caller; a key it never held, and the load after
// that, are not marked.
func TestLoadAfterAnInvalidationIsMarked(t *testing.T) {
	r, _ := startRedis(t)
	rs := fleet(t, baseOptions(nil, nil), clientsFor(t, r.URL, 2)...)
	var mu sync.Mutex
	var marks []bool
	o := newOrigin("v")
	load := func(ctx context.Context, key string) (meta, error) {
		mu.Lock()
		marks = append(marks, cache.Invalidated(ctx))
		mu.Unlock()
		return o.load(ctx, key)
	}
	lastMark := func() bool {
		mu.Lock()
		defer mu.Unlock()
		return marks[len(marks)-1]
	}
	get(t, rs[1].Tiered, "k", load, cache.ResultMiss)
	if lastMark() {
		t.Fatal("the first load of a key is marked Invalidated")
	}
	if err := rs[0].Invalidate(context.Background(), "k"); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 5*time.Second, "replica 1 to drop k", func() bool { _, ok := rs[1].Peek("k"); return !ok })
	get(t, rs[1].Tiered, "k", load, cache.ResultMiss)
	if !lastMark() {
		t.Error("the load after an invalidation dropped the key is not marked Invalidated")
	}
	if err := rs[1].Invalidate(context.Background(), "never-held"); err != nil {
		t.Fatal(err)
	}
	get(t, rs[1].Tiered, "never-held", load, cache.ResultMiss)
	if lastMark() {
		t.Error("a key this replica never held is marked Invalidated")
	}
}
