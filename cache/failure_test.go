package cache_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/metagate/gateway/cache"
	"github.com/metagate/gateway/internal/testenv"
)

func errorTTLOptions(clock *fakeClock, observe func(cache.Result)) cache.Options {
	opts := baseOptions(nil, clock)
	opts.TTL = time.Minute
	opts.ErrorTTL = 5 * time.Second
	opts.Observe = observe
	return opts
}

func TestErrorTTLRemembersAFailedLoad(t *testing.T) {
	clock := newFakeClock()
	var seen tally
	c := newTiered(t, errorTTLOptions(clock, func(r cache.Result) { seen.add(r.String()) }))
	o := newOrigin("v")
	idpDown := errors.New("idp down")
	o.set(meta{}, idpDown)

	if _, res, err := c.Get(context.Background(), "k", o.load); !errors.Is(err, idpDown) || res != cache.ResultMiss {
		t.Fatalf("first Get = %s, %v; want a miss with the origin's error", res, err)
	}
	clock.Advance(2 * time.Second)
	v, res, err := c.Get(context.Background(), "k", o.load)
	if !errors.Is(err, cache.ErrRecentFailure) || !errors.Is(err, idpDown) || res != cache.ResultErrorCached || v != (meta{}) {
		t.Fatalf("Get within ErrorTTL = %+v, %s, %v; want ErrRecentFailure wrapping the origin's error", v, res, err)
	}
	if d, ok := cache.RetryAfter(err); !ok || d != 3*time.Second {
		t.Fatalf("RetryAfter = %s, %v; want 3s (ErrorTTL 5s, failed 2s ago)", d, ok)
	}
	if _, ok := cache.RetryAfter(idpDown); ok {
		t.Fatal("RetryAfter reports a delay for an error that is not a remembered failure")
	}
	if n := o.calls.Load(); n != 1 {
		t.Fatalf("origin called %d times, want 1: the second Get must not call it", n)
	}
	if seen.get("error_cached") != 1 {
		t.Fatalf("Observe saw %s, want one error_cached", &seen)
	}
	// Another key is not affected.
	o.set(meta{Name: "v", Tier: 1}, nil)
	get(t, c, "other", o.load, cache.ResultMiss)

	clock.Advance(3*time.Second + time.Millisecond)
	get(t, c, "k", o.load, cache.ResultMiss)
	if n := o.calls.Load(); n != 3 {
		t.Fatalf("origin called %d times, want 3: after ErrorTTL the origin is asked again", n)
	}
}

func TestErrorTTLServesStaleFirst(t *testing.T) {
	clock := newFakeClock()
	opts := errorTTLOptions(clock, nil)
	opts.StaleIfError = 10 * time.Minute
	c := newTiered(t, opts)
	o := newOrigin("v1")
	get(t, c, "k", o.load, cache.ResultMiss)
	clock.Advance(2 * time.Minute)
	o.set(meta{}, errors.New("idp down"))
	for range 5 {
		if v := get(t, c, "k", o.load, cache.ResultStale); v != want("v1", "k") {
			t.Fatalf("Get = %+v, want the stale value", v)
		}
	}
	if n := o.calls.Load(); n != 2 {
		t.Fatalf("origin called %d times, want 2: one load, one failure, then stale from the remembered failure", n)
	}
}

func TestErrorTTLHoldsBackgroundRefreshes(t *testing.T) {
	clock := newFakeClock()
	opts := errorTTLOptions(clock, nil)
	opts.StaleWhileRevalidate = 10 * time.Minute
	c := newTiered(t, opts)
	o := newOrigin("v1")
	get(t, c, "k", o.load, cache.ResultMiss)
	clock.Advance(2 * time.Minute)
	o.set(meta{}, errors.New("idp down"))
	get(t, c, "k", o.load, cache.ResultStale)
	testenv.Eventually(t, 5*time.Second, "the background refresh to fail", func() bool { return o.calls.Load() == 2 })
	time.Sleep(20 * time.Millisecond) // let the failed refresh finish and be remembered
	for range 20 {
		get(t, c, "k", o.load, cache.ResultStale)
	}
	if n := o.calls.Load(); n != 2 {
		t.Fatalf("origin called %d times, want 2: no refresh within ErrorTTL of a failed one", n)
	}
	clock.Advance(6 * time.Second)
	o.set(meta{Name: "v2", Tier: 1}, nil)
	get(t, c, "k", o.load, cache.ResultStale)
	testenv.Eventually(t, 5*time.Second, "a refresh after ErrorTTL", func() bool {
		v, res, _ := c.Get(context.Background(), "k", o.load)
		return res == cache.ResultL1Hit && v == want("v2", "k")
	})
}

func TestErrorTTLForgottenOnInvalidate(t *testing.T) {
	c := newTiered(t, errorTTLOptions(newFakeClock(), nil))
	o := newOrigin("v")
	o.set(meta{}, errors.New("idp down"))
	_, _, _ = c.Get(context.Background(), "k", o.load)
	if _, res, _ := c.Get(context.Background(), "k", o.load); res != cache.ResultErrorCached {
		t.Fatalf("Get = %s, want error_cached", res)
	}
	if err := c.Invalidate(context.Background(), "k"); err != nil {
		t.Fatal(err)
	}
	o.set(meta{Name: "v", Tier: 1}, nil)
	get(t, c, "k", o.load, cache.ResultMiss)
}

func TestErrorTTLIgnoresTheCallersDeadline(t *testing.T) {
	c := newTiered(t, errorTTLOptions(newFakeClock(), nil))
	var calls atomic.Int64
	var cut atomic.Bool
	load := func(ctx context.Context, key string) (meta, error) {
		if calls.Add(1) == 1 {
			<-ctx.Done() // an origin slower than the first caller's deadline
			cut.Store(true)
			return meta{}, ctx.Err()
		}
		return want("v", key), nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, _, err := c.Get(ctx, "k", load); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Get = %v, want the deadline", err)
	}
	testenv.Eventually(t, 5*time.Second, "the load to be cut", cut.Load)
	// One impatient caller must not fail the next ones for ErrorTTL. (A
	// Get may still join the ending fill and get its error: try again.)
	testenv.Eventually(t, 5*time.Second, "a Get to load again", func() bool {
		v, res, err := c.Get(context.Background(), "k", load)
		if res == cache.ResultErrorCached {
			t.Fatalf("Get = %v: the cut load was remembered as a failure", err)
		}
		return err == nil && v == want("v", "k")
	})
}
