package cache_test

import (
	"context"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/metagate/gateway/cache"
	"github.com/metagate/gateway/internal/testenv"
)

// TestBusCutAndRestored kills redis-server under two replicas and starts it
// again on the same port: while it is down, an invalidation cannot reach
// the other replica, which serves its old value no longer than
// DisconnectedTTL; once it is back, the subscribers have reconnected by
// themselves and invalidations reach every replica again.
func TestBusCutAndRestored(t *testing.T) {
	r, _ := startRedis(t)
	opts := baseOptions(nil, nil)
	const disconnectedTTL = time.Second
	opts.DisconnectedTTL = disconnectedTTL
	clients := clientsFor(t, r.URL, 2)
	rs := fleet(t, opts, clients...)
	a, b := rs[0], rs[1]
	o := newOrigin("v1")
	get(t, a.Tiered, "k", o.load, cache.ResultMiss)
	get(t, b.Tiered, "k", o.load, cache.ResultL2Hit)
	checkedAt := time.Now() // b read k from L2 just now

	r.Kill()
	killedAt := time.Now()
	for _, x := range rs {
		testenv.Eventually(t, 5*time.Second, "the bus to notice Redis is gone", func() bool { return !x.BusConnected() })
	}
	t.Logf("both buses down %s after the kill", time.Since(killedAt).Round(time.Millisecond))
	if b.redisErrors.get("subscribe") != 1 {
		t.Errorf("b's OnRedisError: %s, want one subscribe", &b.redisErrors)
	}

	// The change reaches a only: its Invalidate cannot publish.
	o.set(meta{Name: "v2", Tier: 1}, nil)
	if err := a.Invalidate(context.Background(), "k"); err == nil {
		t.Fatal("Invalidate reported success with Redis down")
	}
	get(t, a.Tiered, "k", o.load, cache.ResultMiss)
	var staleFor time.Duration
	testenv.Eventually(t, disconnectedTTL+5*time.Second, "b to serve the new value", func() bool {
		v, res, err := b.Get(context.Background(), "k", o.load)
		if err != nil || res != cache.ResultL1Hit {
			t.Fatalf("b.Get with Redis down = %+v, %s, %v; want an L1 hit (stale or re-checked)", v, res, err)
		}
		staleFor = time.Since(checkedAt)
		return v == want("v2", "k")
	})
	t.Logf("b served the old value until %s after it last checked it (DisconnectedTTL %s)", staleFor.Round(time.Millisecond), disconnectedTTL)
	if staleFor > disconnectedTTL+time.Second {
		t.Errorf("b served the old value for %s after its last check, want about DisconnectedTTL (%s)", staleFor, disconnectedTTL)
	}
	if staleFor < disconnectedTTL-100*time.Millisecond {
		t.Errorf("b re-checked its value after %s, before DisconnectedTTL (%s)", staleFor, disconnectedTTL)
	}

	r.Restart()
	restartedAt := time.Now()
	for _, x := range rs {
		testenv.Eventually(t, 10*time.Second, "the bus to reconnect by itself", x.BusConnected)
	}
	t.Logf("both buses up again %s after the restart (down for %s)", time.Since(restartedAt).Round(time.Millisecond), restartedAt.Sub(killedAt).Round(time.Millisecond))

	// b's entry was checked while the bus was down: it is re-checked once
	// now (Redis lost everything, so that asks the origin), then trusted.
	calls := o.calls.Load()
	get(t, b.Tiered, "k", o.load, cache.ResultL1Hit)
	testenv.Eventually(t, 5*time.Second, "b to re-check its entry after the reconnect", func() bool { return o.calls.Load() == calls+1 })
	testenv.Eventually(t, 5*time.Second, "the re-checked value in L2", func() bool { return inRedis(t, clients[1], "k") })
	for range 10 {
		get(t, b.Tiered, "k", o.load, cache.ResultL1Hit)
	}
	if n := o.calls.Load(); n != calls+1 {
		t.Fatalf("origin calls %d → %d after the reconnect, want one re-check", calls, n)
	}

	delay := checkInvalidationReaches(t, rs, "after")
	t.Logf("after the restart an invalidation reached the other replica in %s", delay)
}

func TestNoBusWithoutRedis(t *testing.T) {
	c := newTiered(t, baseOptions(nil, nil))
	if c.BusConnected() {
		t.Fatal("BusConnected is true without Redis")
	}
}

// freezer is a TCP proxy to addr that can stop passing the server's bytes
// on while keeping every connection open: a subscription that is connected
// but hears nothing, as one left on a demoted master.
type freezer struct {
	addr   string
	mu     sync.Mutex
	frozen bool
	thaw   chan struct{}
}

func newFreezer(t *testing.T, target string) *freezer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &freezer{addr: ln.Addr().String()}
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		conns []net.Conn
	)
	track := func(c net.Conn) {
		mu.Lock()
		conns = append(conns, c)
		mu.Unlock()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			in, err := ln.Accept()
			if err != nil {
				return
			}
			out, err := net.Dial("tcp", target)
			if err != nil {
				_ = in.Close()
				continue
			}
			track(in)
			track(out)
			wg.Add(2)
			go func() { defer wg.Done(); _, _ = io.Copy(out, in) }()
			go func() { defer wg.Done(); _, _ = io.Copy(gatedWriter{f, in}, out) }()
		}
	}()
	t.Cleanup(func() {
		f.set(false)
		_ = ln.Close()
		mu.Lock()
		for _, c := range conns {
			_ = c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return f
}

func (f *freezer) set(frozen bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	switch {
	case frozen && !f.frozen:
		f.thaw = make(chan struct{})
	case !frozen && f.frozen:
		close(f.thaw)
	}
	f.frozen = frozen
}

type gatedWriter struct {
	f *freezer
	w io.Writer
}

func (g gatedWriter) Write(p []byte) (int, error) {
	g.f.mu.Lock()
	frozen, thaw := g.f.frozen, g.f.thaw
	g.f.mu.Unlock()
	if frozen {
		<-thaw
	}
	return g.w.Write(p)
}

// splitClient is a client whose subscriptions go elsewhere (through a
// freezer) than its commands.
type splitClient struct {
	*redis.Client
	sub *redis.Client
}

func (c *splitClient) Subscribe(ctx context.Context, channels ...string) *redis.PubSub {
	return c.sub.Subscribe(ctx, channels...)
}

// TestDeafSubscriptionIsDetected: a subscription whose connection stays
// open but delivers nothing is noticed by its heartbeats, the bus counts
// as down (L1 freshness capped) until the subscription hears again.
func TestDeafSubscriptionIsDetected(t *testing.T) {
	r, rdb := startRedis(t)
	f := newFreezer(t, r.Addr)
	sc := &splitClient{Client: rdb.(*redis.Client), sub: newClient(t, "redis://"+f.addr+"/0").(*redis.Client)}
	opts := baseOptions(sc, nil)
	var redisErrors tally
	opts.OnRedisError = redisErrors.add
	c := newTiered(t, opts)
	testenv.Eventually(t, 10*time.Second, "the bus to connect", c.BusConnected)

	f.set(true)
	start := time.Now()
	testenv.Eventually(t, 10*time.Second, "the deaf subscription to be noticed", func() bool { return !c.BusConnected() })
	t.Logf("a deaf subscription was noticed after %s; OnRedisError %s", time.Since(start).Round(time.Millisecond), &redisErrors)
	if redisErrors.get("subscribe") != 1 {
		t.Errorf("OnRedisError saw %s, want one subscribe", &redisErrors)
	}
	f.set(false)
	start = time.Now()
	testenv.Eventually(t, 10*time.Second, "the bus to connect again", c.BusConnected)
	t.Logf("connected again %s after the subscription could hear", time.Since(start).Round(time.Millisecond))
}

// TestL1HitWithTheBusDoesNotAllocate: the bus's freshness check on the hot
// path is one atomic load.
func TestL1HitWithTheBusDoesNotAllocate(t *testing.T) {
	_, rdb := startRedis(t)
	c := newTiered(t, baseOptions(rdb, nil))
	testenv.Eventually(t, 10*time.Second, "the bus to connect", c.BusConnected)
	o := newOrigin("v")
	get(t, c, "client-1", o.load, cache.ResultMiss)
	ctx := context.Background()
	load := o.load
	allocs := testing.AllocsPerRun(1000, func() {
		if _, res, _ := c.Get(ctx, "client-1", load); res != cache.ResultL1Hit {
			panic("not an L1 hit")
		}
	})
	if allocs != 0 {
		t.Fatalf("a fresh L1 hit with the bus allocates %.1f times, want 0", allocs)
	}
}
