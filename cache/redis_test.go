package cache_test

import (
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/metagate/gateway/cache"
	"github.com/metagate/gateway/internal/testenv"
)

// getWithin is get, also failing when the Get takes longer than bound: a
// correctness bound (nothing may wait on a dead Redis for long), not a
// speed test.
func getWithin(t *testing.T, c *cache.Tiered[meta], key string, load cache.Loader[meta], wantRes cache.Result, bound time.Duration) meta {
	t.Helper()
	start := time.Now()
	v := get(t, c, key, load, wantRes)
	if took := time.Since(start); took > bound {
		t.Fatalf("Get(%q) took %s with RedisTimeout %s, want < %s", key, took, testRedisTimeout, bound)
	}
	return v
}

func TestRedisKilledAndRestarted(t *testing.T) {
	r, rdb := startRedis(t)
	var redisErrors atomic.Int64
	opts := baseOptions(rdb, nil)
	opts.OnRedisError = func(string) { redisErrors.Add(1) }
	a := newTiered(t, opts)
	cache.SetRedisBackoff(a, 20*time.Millisecond, 100*time.Millisecond)
	o := newOrigin("v")

	get(t, a, "before", o.load, cache.ResultMiss)
	testenv.Eventually(t, 5*time.Second, "the value in Redis", func() bool { return inRedis(t, rdb, "before") })
	if !a.RedisHealthy() {
		t.Fatal("RedisHealthy is false with Redis up")
	}

	r.Kill()
	// Keep going until several retries after the backoff have failed too.
	deadline := time.Now().Add(10 * time.Second)
	for i := 0; i < 30 || redisErrors.Load() < 3; i++ {
		if time.Now().After(deadline) {
			t.Fatalf("only %d Redis errors after %d Gets with Redis killed", redisErrors.Load(), i)
		}
		key := fmt.Sprintf("during-%d", i)
		if v := getWithin(t, a, key, o.load, cache.ResultMiss, time.Second); v != want("v", key) {
			t.Fatalf("Get(%q) with Redis down returned %+v", key, v)
		}
		getWithin(t, a, "before", o.load, cache.ResultL1Hit, time.Second)
	}
	if a.RedisHealthy() {
		t.Fatal("RedisHealthy is true with Redis killed")
	}
	if redisErrors.Load() == 0 {
		t.Fatal("OnRedisError was never called with Redis killed")
	}

	r.Restart()
	n := 0
	testenv.Eventually(t, 10*time.Second, "L2 to be healthy again", func() bool {
		n++
		getWithin(t, a, fmt.Sprintf("after-%d", n), o.load, cache.ResultMiss, time.Second)
		return a.RedisHealthy()
	})
	get(t, a, "after-restart", o.load, cache.ResultMiss)
	testenv.Eventually(t, 5*time.Second, "the value written to the restarted Redis", func() bool {
		return inRedis(t, rdb, "after-restart")
	})
	b := newTiered(t, opts)
	if v := get(t, b, "after-restart", o.load, cache.ResultL2Hit); v != want("v", "after-restart") {
		t.Fatalf("a fresh instance read %+v from L2", v)
	}
}

// blackHole accepts TCP connections and never answers: a Redis that hangs.
func blackHole(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu    sync.Mutex
		conns []net.Conn
		wg    sync.WaitGroup
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		wg.Wait()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			_ = c.Close()
		}
	})
	return ln.Addr().String()
}

func TestUnresponsiveRedisDoesNotDelayGets(t *testing.T) {
	rdb := newClient(t, "redis://"+blackHole(t)+"/0")
	var redisErrors atomic.Int64
	opts := baseOptions(rdb, nil)
	opts.OnRedisError = func(string) { redisErrors.Add(1) }
	c := newTiered(t, opts)
	cache.SetRedisBackoff(c, 20*time.Millisecond, 100*time.Millisecond)
	o := newOrigin("v")

	for i := range 20 {
		key := fmt.Sprintf("k%d", i)
		if v := getWithin(t, c, key, o.load, cache.ResultMiss, time.Second); v != want("v", key) {
			t.Fatalf("Get(%q) returned %+v", key, v)
		}
		getWithin(t, c, key, o.load, cache.ResultL1Hit, time.Second)
		if err := c.Invalidate(context.Background(), key); err == nil {
			t.Fatalf("Invalidate(%q) reported success with Redis hanging", key)
		}
	}
	if c.RedisHealthy() {
		t.Fatal("RedisHealthy is true with Redis hanging")
	}
	if redisErrors.Load() == 0 {
		t.Fatal("OnRedisError was never called")
	}
}

func TestNoRedisConfigured(t *testing.T) {
	c := newTiered(t, baseOptions(nil, nil))
	if !c.RedisHealthy() {
		t.Fatal("RedisHealthy is false with no Redis configured, want true (nothing degraded)")
	}
	o := newOrigin("v")
	get(t, c, "k", o.load, cache.ResultMiss)
	get(t, c, "k", o.load, cache.ResultL1Hit)
	if err := c.Invalidate(context.Background(), "k"); err != nil {
		t.Fatalf("Invalidate: %v", err)
	}
	get(t, c, "k", o.load, cache.ResultMiss)
}

func TestRedisKeyLayout(t *testing.T) {
	_, rdb := startRedis(t)
	opts := baseOptions(rdb, nil)
	opts.Prefix = ""
	opts.TTL = time.Minute
	opts.StaleIfError = 4 * time.Minute
	opts.StaleWhileRevalidate = time.Minute
	c := newTiered(t, opts)
	o := newOrigin("v")
	get(t, c, "client-1", o.load, cache.ResultMiss)
	key := cache.DefaultPrefix + ":v1:{client-1}"
	var ttl time.Duration
	testenv.Eventually(t, 5*time.Second, key+" in Redis", func() bool {
		var err error
		ttl, err = rdb.PTTL(context.Background(), key).Result()
		return err == nil && ttl > 0
	})
	// TTL + max(StaleIfError, StaleWhileRevalidate) = 5m.
	if ttl <= 4*time.Minute+50*time.Second || ttl > 5*time.Minute {
		t.Fatalf("Redis TTL of %s is %s, want about 5m", key, ttl)
	}
}

func TestNewRedisClient(t *testing.T) {
	r, _ := startRedis(t)
	const timeout = 75 * time.Millisecond

	t.Run("redis URL reaches the server with the cache's settings", func(t *testing.T) {
		rdb, err := cache.NewRedisClient(r.URL, timeout)
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = rdb.Close() }()
		if err := rdb.Ping(context.Background()).Err(); err != nil {
			t.Fatalf("PING: %v", err)
		}
		o := rdb.(*redis.Client).Options()
		if !o.ContextTimeoutEnabled || o.ReadTimeout != timeout || o.WriteTimeout != timeout ||
			o.DialTimeout != timeout || o.PoolTimeout != timeout || o.MaxRetries > 0 || o.DialerRetries != 1 {
			t.Fatalf("options not set for the cache: %+v", o)
		}
		if o.PoolSize != 10 || o.MaxActiveConns != 32 {
			t.Fatalf("pool %d/%d, want 10/32", o.PoolSize, o.MaxActiveConns)
		}
	})

	for _, tc := range []struct {
		name    string
		url     string
		check   func(t *testing.T, c redis.UniversalClient)
		wantErr string
	}{
		{name: "rediss uses TLS", url: "rediss://user:pw@cache.internal:6380/2", check: func(t *testing.T, c redis.UniversalClient) {
			o := c.(*redis.Client).Options()
			if o.TLSConfig == nil || o.DB != 2 || o.Username != "user" {
				t.Fatalf("options %+v", o)
			}
		}},
		{name: "unix socket", url: "unix:///run/redis.sock?db=1", check: func(t *testing.T, c redis.UniversalClient) {
			if o := c.(*redis.Client).Options(); o.Network != "unix" || o.DB != 1 {
				t.Fatalf("options %+v", o)
			}
		}},
		{name: "pool size from the URL", url: "redis://127.0.0.1:1/0?pool_size=50", check: func(t *testing.T, c redis.UniversalClient) {
			if o := c.(*redis.Client).Options(); o.PoolSize != 50 || o.MaxActiveConns != 50 {
				t.Fatalf("pool %d/%d, want 50/50", o.PoolSize, o.MaxActiveConns)
			}
		}},
		{name: "sentinel", url: "redis-sentinel://s1:26379/0?master_name=mymaster&addr=s2:26379", check: func(t *testing.T, c redis.UniversalClient) {
			if _, ok := c.(*redis.Client); !ok {
				t.Fatalf("got %T, want a failover *redis.Client", c)
			}
		}},
		{name: "cluster", url: "redis-cluster://n1:7000?addr=n2:7000&addr=n3:7000", check: func(t *testing.T, c redis.UniversalClient) {
			cc, ok := c.(*redis.ClusterClient)
			if !ok {
				t.Fatalf("got %T, want *redis.ClusterClient", c)
			}
			if o := cc.Options(); len(o.Addrs) != 3 || !o.ContextTimeoutEnabled || o.ReadTimeout != timeout {
				t.Fatalf("options %+v", o)
			}
		}},
		{name: "sentinel without master_name", url: "redis-sentinel://s1:26379", wantErr: "master_name"},
		{name: "unknown scheme", url: "memcached://localhost:11211", wantErr: "unsupported scheme"},
		{name: "bad database keeps the password out", url: "redis://user:s3cret@localhost:6379/notadb", wantErr: "invalid database"},
		{name: "unparsable URL keeps the password out", url: "redis://user:s3cret@[::1", wantErr: "parse Redis URL"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := cache.NewRedisClient(tc.url, timeout)
			if tc.wantErr != "" {
				if err == nil {
					_ = c.Close()
					t.Fatalf("NewRedisClient(%q) succeeded, want an error containing %q", tc.url, tc.wantErr)
				}
				if !strings.Contains(err.Error(), tc.wantErr) || strings.Contains(err.Error(), "s3cret") {
					t.Fatalf("error %q: want it to contain %q and no password", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("NewRedisClient(%q): %v", tc.url, err)
			}
			defer func() { _ = c.Close() }()
			tc.check(t, c)
		})
	}

	t.Run("zero timeout", func(t *testing.T) {
		if _, err := cache.NewRedisClient(r.URL, 0); err == nil || !strings.Contains(err.Error(), "timeout") {
			t.Fatalf("err = %v, want a timeout error", err)
		}
	})
}
