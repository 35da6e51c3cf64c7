package ratelimit

import (
	"context"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"

	"github.com/metagate/gateway/internal/testenv"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func client(t *testing.T, r *testenv.Redis) redis.UniversalClient {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: r.Addr, MaxRetries: -1})
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// count runs n requests and returns how many were allowed.
func count(l *Limiter, p *Policy, key string, n int) (allowed int, local int) {
	for range n {
		d := l.Allow(context.Background(), p, key)
		if d.Allowed {
			allowed++
		}
		if d.Local {
			local++
		}
	}
	return allowed, local
}

func TestPolicyHeader(t *testing.T) {
	if got := NewPolicy("gold", 200, time.Minute, 0).PolicyHeader; got != `"gold";q=200;w=60` {
		t.Errorf("RateLimit-Policy = %s", got)
	}
}

func TestLocalBurstThenRefused(t *testing.T) {
	l := New(Options{})
	p := NewPolicy("free", 5, time.Hour, 5)
	if ok, local := count(l, p, "caller-a", 8); ok != 5 || local != 8 {
		t.Fatalf("allowed %d of 8 (local %d), want the burst of 5, all local", ok, local)
	}
	d := l.Allow(context.Background(), p, "caller-a")
	if d.Allowed || d.RetryAfter < 11*time.Minute || d.RetryAfter > 12*time.Minute {
		t.Errorf("refused decision %+v: retry after one token (12m at 5/h)", d)
	}
	if ok, _ := count(l, p, "caller-b", 1); ok != 1 {
		t.Error("another key shares caller-a's count")
	}
	if ok, _ := count(l, NewPolicy("other", 5, time.Hour, 5), "caller-a", 1); ok != 1 {
		t.Error("another policy shares the count")
	}
}

// TestReplicasShareOneCount: two limiters on one Redis (two replicas)
// enforce one limit between them.
func TestReplicasShareOneCount(t *testing.T) {
	r := testenv.StartRedis(t)
	a := New(Options{Redis: client(t, r), Prefix: "gw"})
	b := New(Options{Redis: client(t, r), Prefix: "gw"})
	p := NewPolicy("gold", 10, time.Hour, 10)
	okA, localA := count(a, p, "svc", 7)
	okB, localB := count(b, p, "svc", 7)
	if okA+okB != 10 || localA+localB != 0 {
		t.Fatalf("allowed %d+%d (local %d+%d), want 10 in all, none local", okA, okB, localA, localB)
	}
	d := b.Allow(context.Background(), p, "svc")
	if d.Allowed || d.RetryAfter <= 0 || d.Remaining != 0 {
		t.Errorf("after the burst: %+v", d)
	}
}

// TestRedisDownFallsBackAndRecovers: with Redis killed every request is
// still decided (locally, per replica); once Redis is back the limiter
// returns to it by itself.
func TestRedisDownFallsBackAndRecovers(t *testing.T) {
	r := testenv.StartRedis(t)
	var errs atomic.Int64
	l := New(Options{Redis: client(t, r), Prefix: "gw", Backoff: 50 * time.Millisecond,
		OnRedisError: func(error) { errs.Add(1) }})
	p := NewPolicy("gold", 1000, time.Second, 1000)
	if _, local := count(l, p, "svc", 5); local != 0 {
		t.Fatalf("%d local decisions with Redis up", local)
	}
	r.Kill()
	start := time.Now()
	ok, local := count(l, p, "svc", 200)
	if ok != 200 || local != 200 {
		t.Fatalf("Redis down: allowed %d, local %d of 200", ok, local)
	}
	if took := time.Since(start); took > time.Second {
		t.Errorf("200 decisions with Redis down took %s: the backoff should spare a timeout per request", took)
	}
	if errs.Load() == 0 || errs.Load() > 5 {
		t.Errorf("%d Redis errors reported for 200 requests in one backoff window", errs.Load())
	}
	r.Restart()
	testenv.Eventually(t, 5*time.Second, "decisions go back to Redis", func() bool {
		return !l.Allow(context.Background(), p, "svc").Local
	})
}

// TestConcurrentRequestsCountExactly: requests arriving together share
// pipelines, and still each is counted once: of 300 concurrent requests
// against a burst of 100, exactly 100 pass, none decided locally.
func TestConcurrentRequestsCountExactly(t *testing.T) {
	r := testenv.StartRedis(t)
	c := client(t, r)
	l := New(Options{Redis: c, Prefix: "gw"})
	p := NewPolicy("burst", 100, time.Hour, 100)
	var allowed, local atomic.Int64
	var wg sync.WaitGroup
	for i := range 300 {
		wg.Go(func() {
			d := l.Allow(context.Background(), p, "svc-"+strconv.Itoa(i%3))
			if d.Allowed {
				allowed.Add(1)
			}
			if d.Local {
				local.Add(1)
			}
		})
	}
	wg.Wait()
	if allowed.Load() != 300 || local.Load() != 0 {
		t.Fatalf("three keys with 100 requests each: %d allowed, %d local; want 300, 0", allowed.Load(), local.Load())
	}
	for i := range 300 {
		wg.Go(func() {
			if l.Allow(context.Background(), p, "svc-"+strconv.Itoa(i%3)).Allowed {
				allowed.Add(1)
			}
		})
	}
	wg.Wait()
	if allowed.Load() != 300 {
		t.Fatalf("after the bursts: %d allowed, want still 300", allowed.Load())
	}
	// A flushed script cache (a restarted or failed-over Redis): the
	// script is loaded again, nothing is decided locally.
	if err := c.ScriptFlush(context.Background()).Err(); err != nil {
		t.Fatal(err)
	}
	for i := range 50 {
		wg.Go(func() {
			if l.Allow(context.Background(), p, "other-"+strconv.Itoa(i)).Local {
				local.Add(1)
			}
		})
	}
	wg.Wait()
	if local.Load() != 0 {
		t.Errorf("%d requests decided locally after SCRIPT FLUSH", local.Load())
	}
}
