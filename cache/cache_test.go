package cache_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/metagate/gateway/cache"
	"github.com/metagate/gateway/internal/testenv"
)

func TestConcurrentMissesCallTheOriginOnce(t *testing.T) {
	_, rdb := startRedis(t)
	c := newTiered(t, baseOptions(rdb, nil))
	o := newOrigin("acme")
	release := o.hold()

	const callers = 500
	var (
		wg      sync.WaitGroup
		started sync.WaitGroup
		errs    = make(chan error, callers)
		results sync.Map // Result -> *atomic.Int64
	)
	started.Add(callers)
	for range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			started.Done()
			v, res, err := c.Get(context.Background(), "client-1", o.load)
			if err != nil {
				errs <- err
				return
			}
			if v != want("acme", "client-1") {
				errs <- fmt.Errorf("got %+v", v)
				return
			}
			n, _ := results.LoadOrStore(res, new(atomic.Int64))
			n.(*atomic.Int64).Add(1)
		}()
	}
	started.Wait()
	// The first Get is in the loader; the others pile up behind it.
	testenv.Eventually(t, 5*time.Second, "the loader to be called", func() bool { return o.calls.Load() >= 1 })
	release()
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n := o.calls.Load(); n != 1 {
		t.Fatalf("loader called %d times for %d concurrent Gets, want 1", n, callers)
	}
	results.Range(func(k, v any) bool {
		if r := k.(cache.Result); r != cache.ResultMiss && r != cache.ResultL1Hit {
			t.Errorf("%d Gets returned %s, want only miss and l1_hit", v.(*atomic.Int64).Load(), r)
		}
		return true
	})
}

func TestSecondInstanceGetsL2HitWithOriginalFetchTime(t *testing.T) {
	_, rdb := startRedis(t)
	clock := newFakeClock()
	opts := baseOptions(rdb, clock)
	opts.TTL = time.Minute
	a := newTiered(t, opts)
	b := newTiered(t, opts) // another replica sharing the Redis
	o := newOrigin("acme")

	get(t, a, "client-1", o.load, cache.ResultMiss)
	testenv.Eventually(t, 5*time.Second, "the value in Redis", func() bool { return inRedis(t, rdb, "client-1") })

	clock.Advance(30 * time.Second)
	if v := get(t, b, "client-1", o.load, cache.ResultL2Hit); v != want("acme", "client-1") {
		t.Fatalf("L2 hit returned %+v", v)
	}
	if n := o.calls.Load(); n != 1 {
		t.Fatalf("loader called %d times, want 1 (replica b must not ask the origin)", n)
	}
	get(t, b, "client-1", o.load, cache.ResultL1Hit)

	// 61s after the origin was asked, 31s after b read Redis: stale for b
	// too, because freshness counts from the fetch, not from the L2 read.
	clock.Advance(31 * time.Second)
	o.set(meta{Name: "acme-v2", Tier: 1}, nil)
	if v := get(t, b, "client-1", o.load, cache.ResultMiss); v != want("acme-v2", "client-1") {
		t.Fatalf("after TTL b returned %+v, want the reloaded value", v)
	}
	if n := o.calls.Load(); n != 2 {
		t.Fatalf("loader called %d times, want 2", n)
	}
}

func TestRefreshAfterTTL(t *testing.T) {
	t.Run("without stale-while-revalidate one Get reloads for everyone", func(t *testing.T) {
		_, rdb := startRedis(t)
		clock := newFakeClock()
		opts := baseOptions(rdb, clock)
		opts.TTL = time.Minute
		c := newTiered(t, opts)
		o := newOrigin("v1")
		get(t, c, "k", o.load, cache.ResultMiss)
		get(t, c, "k", o.load, cache.ResultL1Hit)

		clock.Advance(61 * time.Second)
		o.set(meta{Name: "v2", Tier: 1}, nil)
		release := o.hold()
		var wg sync.WaitGroup
		for range 50 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				v, _, err := c.Get(context.Background(), "k", o.load)
				if err != nil || v != want("v2", "k") {
					t.Errorf("Get after TTL = %+v, %v; want the reloaded value", v, err)
				}
			}()
		}
		testenv.Eventually(t, 5*time.Second, "the reload to start", func() bool { return o.calls.Load() == 2 })
		release()
		wg.Wait()
		if n := o.calls.Load(); n != 2 {
			t.Fatalf("loader called %d times, want 2 (one load, one refresh)", n)
		}
		get(t, c, "k", o.load, cache.ResultL1Hit)
	})

	t.Run("stale-while-revalidate serves stale and refreshes once in the background", func(t *testing.T) {
		_, rdb := startRedis(t)
		clock := newFakeClock()
		opts := baseOptions(rdb, clock)
		opts.TTL = time.Minute
		opts.StaleWhileRevalidate = time.Minute
		c := newTiered(t, opts)
		o := newOrigin("v1")
		get(t, c, "k", o.load, cache.ResultMiss)
		// The miss's L2 write also releases its claim; a refresh that
		// found the claim still held would wait for that write instead
		// of refreshing (the fake clock made its value stale at once).
		testenv.Eventually(t, 5*time.Second, "the value in Redis", func() bool { return inRedis(t, rdb, "k") })

		clock.Advance(90 * time.Second)
		o.set(meta{Name: "v2", Tier: 1}, nil)
		release := o.hold()
		defer release()
		for range 20 {
			if v := get(t, c, "k", o.load, cache.ResultStale); v != want("v1", "k") {
				t.Fatalf("stale Get returned %+v, want the old value", v)
			}
		}
		testenv.Eventually(t, 5*time.Second, "the background refresh to start", func() bool { return o.calls.Load() == 2 })
		release()
		testenv.Eventually(t, 5*time.Second, "the refreshed value in L1", func() bool {
			v, res, err := c.Get(context.Background(), "k", o.load)
			return err == nil && res == cache.ResultL1Hit && v == want("v2", "k")
		})
		if n := o.calls.Load(); n != 2 {
			t.Fatalf("loader called %d times, want 2 (one load, one background refresh)", n)
		}
	})

	t.Run("a failed background refresh keeps the stale entry", func(t *testing.T) {
		clock := newFakeClock()
		opts := baseOptions(nil, clock)
		opts.TTL = time.Minute
		opts.StaleWhileRevalidate = time.Minute
		c := newTiered(t, opts)
		o := newOrigin("v1")
		get(t, c, "k", o.load, cache.ResultMiss)

		clock.Advance(90 * time.Second)
		o.set(meta{}, errors.New("idp down"))
		get(t, c, "k", o.load, cache.ResultStale)
		testenv.Eventually(t, 5*time.Second, "the background refresh to fail", func() bool { return o.calls.Load() == 2 })
		testenv.Eventually(t, 5*time.Second, "another refresh to be allowed", func() bool {
			v, res, err := c.Get(context.Background(), "k", o.load)
			if err != nil || res != cache.ResultStale || v != want("v1", "k") {
				t.Fatalf("Get after a failed refresh = %+v, %s, %v; want the stale value", v, res, err)
			}
			return o.calls.Load() >= 3
		})
	})
}

func TestNegativeCaching(t *testing.T) {
	_, rdb := startRedis(t)
	clock := newFakeClock()
	opts := baseOptions(rdb, clock)
	opts.NegativeTTL = 30 * time.Second
	c := newTiered(t, opts)
	o := newOrigin("x")
	o.set(meta{}, fmt.Errorf("auth0: client ghost: %w", cache.ErrNotFound))

	expectNegative := func(c *cache.Tiered[meta], wantCalls int64) {
		t.Helper()
		v, res, err := c.Get(context.Background(), "ghost", o.load)
		if !errors.Is(err, cache.ErrNotFound) || res != cache.ResultNegative || v != (meta{}) {
			t.Fatalf("Get = %+v, %s, %v; want zero value, negative, ErrNotFound", v, res, err)
		}
		if n := o.calls.Load(); n != wantCalls {
			t.Fatalf("loader called %d times, want %d", n, wantCalls)
		}
	}
	expectNegative(c, 1)
	clock.Advance(20 * time.Second)
	expectNegative(c, 1) // remembered in L1

	testenv.Eventually(t, 5*time.Second, "the negative entry in Redis", func() bool { return inRedis(t, rdb, "ghost") })
	other := newTiered(t, opts)
	expectNegative(other, 1) // remembered in L2

	clock.Advance(11 * time.Second) // 31s: forgotten
	expectNegative(c, 2)

	o.set(meta{Name: "born", Tier: 1}, nil)
	clock.Advance(31 * time.Second)
	get(t, c, "ghost", o.load, cache.ResultMiss)
}

func TestNotFoundWithoutNegativeTTLIsNotRemembered(t *testing.T) {
	opts := baseOptions(nil, nil)
	opts.NegativeTTL = 0
	c := newTiered(t, opts)
	o := newOrigin("x")
	o.set(meta{}, cache.ErrNotFound)
	for i := 1; i <= 3; i++ {
		_, res, err := c.Get(context.Background(), "ghost", o.load)
		if !errors.Is(err, cache.ErrNotFound) || res != cache.ResultNegative {
			t.Fatalf("Get = %s, %v; want negative, ErrNotFound", res, err)
		}
		if n := o.calls.Load(); n != int64(i) {
			t.Fatalf("loader called %d times after %d Gets, want %d", n, i, i)
		}
	}
}

func TestStaleIfError(t *testing.T) {
	_, rdb := startRedis(t)
	clock := newFakeClock()
	opts := baseOptions(rdb, clock)
	opts.TTL = time.Minute
	opts.StaleIfError = 5 * time.Minute
	c := newTiered(t, opts)
	o := newOrigin("v1")
	get(t, c, "k", o.load, cache.ResultMiss)

	idpDown := errors.New("idp down")
	o.set(meta{}, idpDown)
	clock.Advance(2 * time.Minute)
	if v := get(t, c, "k", o.load, cache.ResultStale); v != want("v1", "k") {
		t.Fatalf("with the origin failing, Get returned %+v, want the stale value", v)
	}
	if n := o.calls.Load(); n != 2 {
		t.Fatalf("loader called %d times, want 2 (the failure must have been tried)", n)
	}

	clock.Advance(4*time.Minute + time.Second) // 6m01s > TTL+StaleIfError
	v, res, err := c.Get(context.Background(), "k", o.load)
	if !errors.Is(err, idpDown) || res != cache.ResultMiss || v != (meta{}) {
		t.Fatalf("past TTL+StaleIfError Get = %+v, %s, %v; want the origin's error", v, res, err)
	}

	// Errors are not cached: the next Get asks the origin again.
	o.set(meta{Name: "v2", Tier: 1}, nil)
	if v := get(t, c, "k", o.load, cache.ResultMiss); v != want("v2", "k") {
		t.Fatalf("after recovery Get returned %+v", v)
	}
}

func TestErrorsAreNotCachedWithoutStaleEntry(t *testing.T) {
	c := newTiered(t, baseOptions(nil, nil))
	o := newOrigin("v1")
	o.set(meta{}, errors.New("boom"))
	for range 3 {
		if _, res, err := c.Get(context.Background(), "k", o.load); err == nil || res != cache.ResultMiss {
			t.Fatalf("Get = %s, %v; want miss with an error", res, err)
		}
	}
	if n := o.calls.Load(); n != 3 {
		t.Fatalf("loader called %d times for 3 failing Gets, want 3", n)
	}
}

func TestInvalidateRemovesFromBothTiers(t *testing.T) {
	_, rdb := startRedis(t)
	opts := baseOptions(rdb, nil)
	c := newTiered(t, opts)
	o := newOrigin("v1")
	get(t, c, "k", o.load, cache.ResultMiss)
	testenv.Eventually(t, 5*time.Second, "the value in Redis", func() bool { return inRedis(t, rdb, "k") })

	if err := c.Invalidate(context.Background(), "k"); err != nil {
		t.Fatalf("Invalidate: %v", err)
	}
	if inRedis(t, rdb, "k") {
		t.Fatal("the key is still in Redis after Invalidate")
	}
	o.set(meta{Name: "v2", Tier: 1}, nil)
	if v := get(t, c, "k", o.load, cache.ResultMiss); v != want("v2", "k") {
		t.Fatalf("after Invalidate Get returned %+v, want the new value", v)
	}
	testenv.Eventually(t, 5*time.Second, "the new value in Redis", func() bool { return inRedis(t, rdb, "k") })
	other := newTiered(t, opts)
	if v := get(t, other, "k", o.load, cache.ResultL2Hit); v != want("v2", "k") {
		t.Fatalf("another instance read %+v from L2, want the new value", v)
	}
}

func TestInvalidateDuringAFillStoresNothing(t *testing.T) {
	_, rdb := startRedis(t)
	c := newTiered(t, baseOptions(rdb, nil))
	o := newOrigin("old")
	release := o.hold()
	done := make(chan meta)
	go func() {
		v, _, _ := c.Get(context.Background(), "k", o.load)
		done <- v
	}()
	testenv.Eventually(t, 5*time.Second, "the load to start", func() bool { return o.calls.Load() == 1 })
	if err := c.Invalidate(context.Background(), "k"); err != nil {
		t.Fatalf("Invalidate: %v", err)
	}
	release()
	if v := <-done; v != want("old", "k") {
		t.Fatalf("the Get that was waiting returned %+v", v)
	}
	o.set(meta{Name: "new", Tier: 1}, nil)
	if v := get(t, c, "k", o.load, cache.ResultMiss); v != want("new", "k") {
		t.Fatalf("Get after Invalidate returned %+v, want a reload", v)
	}
	if inRedisOld := func() bool {
		b, err := rdb.Get(context.Background(), "test:v1:{k}").Bytes()
		return err == nil && strings.Contains(string(b), "old")
	}(); inRedisOld {
		t.Fatal("the value loaded before Invalidate was written to Redis")
	}
}

func TestCorruptL2ValueIsAMiss(t *testing.T) {
	header := func(version, flags byte) string {
		return string([]byte{version, flags, 0, 0, 0, 0, 0, 0, 0, 1})
	}
	for _, tc := range []struct {
		name  string
		value string
	}{
		{"empty", ""},
		{"shorter than the header", "\x01\x00\x00"},
		{"unknown format version", header(9, 0) + `{"name":"x"}`},
		{"unknown flags", header(1, 0x80) + `{"name":"x"}`},
		{"negative with a payload", header(1, 1) + `{"name":"x"}`},
		{"payload the codec rejects", header(1, 0) + `{not json`},
		{"plain text", "hello world, this is not ours"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, rdb := startRedis(t)
			if err := rdb.Set(context.Background(), "test:v1:{k}", tc.value, time.Minute).Err(); err != nil {
				t.Fatalf("SET: %v", err)
			}
			opts := baseOptions(rdb, nil)
			c := newTiered(t, opts)
			o := newOrigin("good")
			if v := get(t, c, "k", o.load, cache.ResultMiss); v != want("good", "k") {
				t.Fatalf("Get returned %+v", v)
			}
			if n := o.calls.Load(); n != 1 {
				t.Fatalf("loader called %d times, want 1", n)
			}
			// The fill overwrote the corrupt value with a valid one.
			testenv.Eventually(t, 5*time.Second, "the corrupt value to be overwritten", func() bool {
				b, err := rdb.Get(context.Background(), "test:v1:{k}").Result()
				return err == nil && b != tc.value
			})
			other := newTiered(t, opts)
			if v := get(t, other, "k", o.load, cache.ResultL2Hit); v != want("good", "k") {
				t.Fatalf("another instance read %+v from L2", v)
			}
		})
	}
}

func TestOptionsValidation(t *testing.T) {
	_, rdb := startRedis(t)
	valid := baseOptions(rdb, nil)
	for _, tc := range []struct {
		name   string
		mutate func(*cache.Options)
		codec  cache.Codec[meta]
		field  string
	}{
		{"zero TTL", func(o *cache.Options) { o.TTL = 0 }, jsonCodec{}, "TTL"},
		{"negative NegativeTTL", func(o *cache.Options) { o.NegativeTTL = -time.Second }, jsonCodec{}, "NegativeTTL"},
		{"negative StaleWhileRevalidate", func(o *cache.Options) { o.StaleWhileRevalidate = -1 }, jsonCodec{}, "StaleWhileRevalidate"},
		{"negative StaleIfError", func(o *cache.Options) { o.StaleIfError = -1 }, jsonCodec{}, "StaleIfError"},
		{"zero MaxEntries", func(o *cache.Options) { o.MaxEntries = 0 }, jsonCodec{}, "MaxEntries"},
		{"negative RedisTimeout", func(o *cache.Options) { o.RedisTimeout = -1 }, jsonCodec{}, "RedisTimeout"},
		{"negative ErrorTTL", func(o *cache.Options) { o.ErrorTTL = -1 }, jsonCodec{}, "ErrorTTL"},
		{"negative ClaimTTL", func(o *cache.Options) { o.ClaimTTL = -time.Second }, jsonCodec{}, "ClaimTTL"},
		{"sub-millisecond ClaimTTL", func(o *cache.Options) { o.ClaimTTL = time.Microsecond }, jsonCodec{}, "ClaimTTL"},
		{"negative DisconnectedTTL", func(o *cache.Options) { o.DisconnectedTTL = -1 }, jsonCodec{}, "DisconnectedTTL"},
		{"hash tag in the prefix", func(o *cache.Options) { o.Prefix = "gw{1}" }, jsonCodec{}, "Prefix"},
		{"Redis without a codec", func(*cache.Options) {}, nil, "Codec"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			opts := valid
			tc.mutate(&opts)
			c, err := cache.New(opts, tc.codec)
			if err == nil {
				_ = c.Close()
				t.Fatal("New accepted invalid options")
			}
			if !strings.Contains(err.Error(), tc.field) {
				t.Fatalf("error %q does not name %s", err, tc.field)
			}
		})
	}

	t.Run("no Redis needs no codec", func(t *testing.T) {
		c, err := cache.New[meta](baseOptions(nil, nil), nil)
		if err != nil {
			t.Fatalf("New: %v", err)
		}
		_ = c.Close()
	})
}

func TestResultString(t *testing.T) {
	for r, s := range map[cache.Result]string{
		cache.ResultL1Hit:       "l1_hit",
		cache.ResultL2Hit:       "l2_hit",
		cache.ResultMiss:        "miss",
		cache.ResultStale:       "stale",
		cache.ResultNegative:    "negative",
		cache.ResultErrorCached: "error_cached",
		cache.Result(0):         "Result(0)",
	} {
		if got := r.String(); got != s {
			t.Errorf("Result(%d).String() = %q, want %q", uint8(r), got, s)
		}
	}
}

func TestObserveIsCalledOncePerGet(t *testing.T) {
	var mu sync.Mutex
	seen := map[cache.Result]int{}
	opts := baseOptions(nil, nil)
	opts.Observe = func(r cache.Result) {
		mu.Lock()
		seen[r]++
		mu.Unlock()
	}
	c := newTiered(t, opts)
	o := newOrigin("v")
	get(t, c, "k", o.load, cache.ResultMiss)
	get(t, c, "k", o.load, cache.ResultL1Hit)
	get(t, c, "k", o.load, cache.ResultL1Hit)
	mu.Lock()
	defer mu.Unlock()
	if seen[cache.ResultMiss] != 1 || seen[cache.ResultL1Hit] != 2 || len(seen) != 2 {
		t.Fatalf("Observe saw %v, want 1 miss and 2 l1_hit", seen)
	}
}

func TestCallerGivingUpDoesNotFailTheOthers(t *testing.T) {
	c := newTiered(t, baseOptions(nil, nil))
	o := newOrigin("v")
	release := o.hold()

	impatient, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		_, _, err := c.Get(impatient, "k", o.load)
		errc <- err
	}()
	testenv.Eventually(t, 5*time.Second, "the load to start", func() bool { return o.calls.Load() == 1 })
	patient := make(chan meta, 1)
	go func() {
		v, _, _ := c.Get(context.Background(), "k", o.load)
		patient <- v
	}()
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("the cancelled Get returned %v, want context.Canceled", err)
	}
	release()
	if v := <-patient; v != want("v", "k") {
		t.Fatalf("the other Get returned %+v", v)
	}
	if n := o.calls.Load(); n != 1 {
		t.Fatalf("loader called %d times, want 1", n)
	}
}

func TestLoaderPanicBecomesAnError(t *testing.T) {
	core, logs := observer.New(zap.ErrorLevel)
	opts := baseOptions(nil, nil)
	opts.Logger = zap.New(core).Named("cache")
	c := newTiered(t, opts)
	_, res, err := c.Get(context.Background(), "k", func(context.Context, string) (meta, error) {
		panic("bug in the loader")
	})
	if err == nil || !strings.Contains(err.Error(), "bug in the loader") || res != cache.ResultMiss {
		t.Fatalf("Get = %s, %v; want a miss with the panic as an error", res, err)
	}
	// The cache logs on the logger it is given: naming it again gave the
	// gateway "cache.cache".
	var names []string
	for _, e := range logs.FilterMessage("loader panicked").All() {
		names = append(names, e.LoggerName)
	}
	if len(names) != 1 || names[0] != "cache" {
		t.Errorf("panic logged on loggers %q, want one entry on the logger named cache", names)
	}
}

func TestCloseStopsBackgroundRefreshes(t *testing.T) {
	clock := newFakeClock()
	opts := baseOptions(nil, clock)
	opts.TTL = time.Minute
	opts.StaleWhileRevalidate = time.Minute
	c, err := cache.New[meta](opts, jsonCodec{})
	if err != nil {
		t.Fatal(err)
	}
	o := newOrigin("v1")
	get(t, c, "k", o.load, cache.ResultMiss)
	clock.Advance(90 * time.Second)
	release := o.hold() // the refresh blocks until its context is cancelled
	defer release()
	get(t, c, "k", o.load, cache.ResultStale)
	testenv.Eventually(t, 5*time.Second, "the background refresh to start", func() bool { return o.calls.Load() == 2 })

	closed := make(chan error)
	go func() { closed <- c.Close() }()
	select {
	case err := <-closed:
		if err != nil {
			t.Fatalf("Close: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not cancel and wait for the background refresh")
	}

	// After Close, Get still works: L1, else the loader on the caller's goroutine.
	release()
	get(t, c, "other", o.load, cache.ResultMiss)
	if err := c.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

func TestL1HitDoesNotAllocate(t *testing.T) {
	c := newTiered(t, baseOptions(nil, nil))
	o := newOrigin("v")
	get(t, c, "client-1", o.load, cache.ResultMiss)
	ctx := context.Background()
	load := o.load // a method value allocates: take it once, as a caller would
	allocs := testing.AllocsPerRun(1000, func() {
		if _, res, _ := c.Get(ctx, "client-1", load); res != cache.ResultL1Hit {
			panic("not an L1 hit")
		}
	})
	if allocs != 0 {
		t.Fatalf("a fresh L1 hit allocates %.1f times, want 0", allocs)
	}
}

func BenchmarkGetL1Hit(b *testing.B) {
	c, err := cache.New[meta](baseOptions(nil, nil), jsonCodec{})
	if err != nil {
		b.Fatal(err)
	}
	defer func() { _ = c.Close() }()
	load := newOrigin("v").load
	ctx := context.Background()
	if _, _, err := c.Get(ctx, "client-1", load); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, res, _ := c.Get(ctx, "client-1", load); res != cache.ResultL1Hit {
				b.Fatal("not an L1 hit")
			}
		}
	})
}

func TestReplicasRefreshAStaleEntryOnce(t *testing.T) {
	_, rdb := startRedis(t)
	clock := newFakeClock()
	opts := baseOptions(rdb, clock)
	opts.TTL = time.Minute
	opts.StaleWhileRevalidate = time.Minute
	a := newTiered(t, opts)
	b := newTiered(t, opts)
	o := newOrigin("v1")
	get(t, a, "k", o.load, cache.ResultMiss)
	testenv.Eventually(t, 5*time.Second, "the value in Redis", func() bool { return inRedis(t, rdb, "k") })
	get(t, b, "k", o.load, cache.ResultL2Hit)

	// Both replicas hold the same entry, so it goes stale on both at once.
	clock.Advance(90 * time.Second)
	o.set(meta{Name: "v2", Tier: 1}, nil)
	release := o.hold()
	defer release()
	get(t, a, "k", o.load, cache.ResultStale)
	testenv.Eventually(t, 5*time.Second, "a's refresh to reach the origin", func() bool { return o.calls.Load() == 2 })
	get(t, b, "k", o.load, cache.ResultStale) // b's refresh finds a's claim and stands down
	release()
	testenv.Eventually(t, 5*time.Second, "the refreshed value in Redis", func() bool {
		b, err := rdb.Get(context.Background(), "test:v1:{k}").Bytes()
		return err == nil && strings.Contains(string(b), "v2")
	})
	testenv.Eventually(t, 5*time.Second, "b to pick up a's refresh from L2", func() bool {
		v, res, err := b.Get(context.Background(), "k", o.load)
		return err == nil && res == cache.ResultL1Hit && v == want("v2", "k")
	})
	if n := o.calls.Load(); n != 2 {
		t.Fatalf("loader called %d times, want 2 (one load, one refresh for both replicas)", n)
	}
}
