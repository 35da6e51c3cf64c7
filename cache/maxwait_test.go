package cache_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/metagate/gateway/cache"
	"github.com/metagate/gateway/internal/testenv"
)

// TestMaxWaitBoundsTheWaitNotTheFill: an origin slower than MaxWait. The
// Get gives up after MaxWait with ErrStillFilling (and a Retry-After), the
// fill goes on, and once it lands the next Get is an L1 hit: one origin
// call in all.
func TestMaxWaitBoundsTheWaitNotTheFill(t *testing.T) {
	_, rdb := startRedis(t)
	opts := baseOptions(rdb, nil)
	opts.MaxWait = 100 * time.Millisecond
	opts.ErrorTTL = 5 * time.Second
	c := newTiered(t, opts)
	o := newOrigin("v")
	release := o.hold()
	defer release()

	start := time.Now()
	_, res, err := c.Get(context.Background(), "k", o.load)
	waited := time.Since(start)
	if !errors.Is(err, cache.ErrStillFilling) || res != cache.ResultMiss {
		t.Fatalf("Get during a slow fill = %s, %v; want a miss wrapping ErrStillFilling", res, err)
	}
	if waited < opts.MaxWait || waited > opts.MaxWait+time.Second {
		t.Errorf("Get returned after %s, want about MaxWait (%s)", waited, opts.MaxWait)
	}
	if d, ok := cache.RetryAfter(err); !ok || d != time.Second {
		t.Errorf("RetryAfter = %s, %v; want 1s", d, ok)
	}
	// A second Get joins the same fill: no second origin call, not an
	// error remembered by ErrorTTL.
	if _, _, err := c.Get(context.Background(), "k", o.load); !errors.Is(err, cache.ErrStillFilling) {
		t.Fatalf("second Get during the fill: %v, want ErrStillFilling", err)
	}

	release()
	testenv.Eventually(t, 5*time.Second, "the fill lands in L1 and L2", func() bool {
		return inRedis(t, rdb, "k")
	})
	if v := get(t, c, "k", o.load, cache.ResultL1Hit); v != want("v", "k") {
		t.Fatalf("after the fill: %+v", v)
	}
	if n := o.calls.Load(); n != 1 {
		t.Fatalf("origin called %d times, want 1", n)
	}
}
