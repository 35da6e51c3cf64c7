package ratelimit

import (
	"context"
	"regexp"
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
	// The few tokens the five requests leased ahead were counted in Redis
	// already and are spent first.
	if ok != 200 || local < 200-p.lease {
		t.Fatalf("Redis down: allowed %d, local %d of 200 (lease up to %d)", ok, local, p.lease)
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

// BenchmarkAllowRedis is the limiter's cost per decision against a real
// redis-server, with requests arriving together as a loaded gateway's
// do (32 in flight on two cores): one hot caller (leases), and callers
// each seen too rarely to lease (a round trip each, sharing pipelines).
func BenchmarkAllowRedis(b *testing.B) {
	r := testenv.StartRedis(b)
	c := redis.NewClient(&redis.Options{Addr: r.Addr, MaxRetries: -1})
	b.Cleanup(func() { _ = c.Close() })
	p := NewPolicy("bench", 1_000_000_000, time.Second, 1_000_000_000)
	for _, bc := range []struct {
		name string
		keys int
	}{{"hot caller", 1}, {"100k callers", 100_000}} {
		b.Run(bc.name, func(b *testing.B) {
			l := New(Options{Redis: c, Prefix: "gw"})
			var next atomic.Int64
			b.SetParallelism(16)
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					key := "svc-" + strconv.Itoa(int(next.Add(1))%bc.keys)
					if d := l.Allow(context.Background(), p, key); !d.Allowed || d.Local {
						b.Errorf("decision %+v: want allowed, from Redis", d)
						return
					}
				}
			})
		})
	}
}

// scriptCalls is how many times Redis ran a script (EVALSHA and EVAL).
func scriptCalls(t *testing.T, c redis.UniversalClient) int {
	t.Helper()
	info, err := c.Info(context.Background(), "commandstats").Result()
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, m := range regexp.MustCompile(`cmdstat_eval(?:sha)?:calls=(\d+)`).FindAllStringSubmatch(info, -1) {
		k, _ := strconv.Atoi(m[1])
		n += k
	}
	return n
}

// TestLeasesKeepOneCount: two replicas sending a hot caller's requests
// take tokens in leases, so Redis runs far fewer scripts than there are
// requests, and between them they still admit the burst, never more,
// and at most a lease per replica less.
func TestLeasesKeepOneCount(t *testing.T) {
	r := testenv.StartRedis(t)
	c := client(t, r)
	a := New(Options{Redis: c, Prefix: "gw"})
	b := New(Options{Redis: client(t, r), Prefix: "gw"})
	p := NewPolicy("hot", 6400, time.Hour, 6400)
	if p.lease != maxLease {
		t.Fatalf("lease %d for a burst of 6400, want %d", p.lease, maxLease)
	}
	var okA, okB, local int
	for range 4000 { // interleaved, as two replicas behind one balancer
		x, l1 := count(a, p, "svc", 1)
		y, l2 := count(b, p, "svc", 1)
		okA, okB, local = okA+x, okB+y, local+l1+l2
	}
	calls := scriptCalls(t, c)
	t.Logf("8000 requests against a burst of 6400: %d+%d allowed, %d scripts run in Redis", okA, okB, calls)
	if local != 0 {
		t.Fatalf("%d local decisions with Redis up", local)
	}
	if okA+okB > 6400 || okA+okB < 6400-2*p.lease {
		t.Errorf("allowed %d+%d = %d, want 6400 at most and at least 6400 - 2 leases", okA, okB, okA+okB)
	}
	if calls > 8000/8 {
		t.Errorf("%d scripts for 8000 requests: a hot caller should take leases", calls)
	}
}

// TestSmallPoliciesDoNotLease: a burst under 200 asks Redis for every
// allowed request, so small limits stay exact per request.
func TestSmallPoliciesDoNotLease(t *testing.T) {
	r := testenv.StartRedis(t)
	c := client(t, r)
	l := New(Options{Redis: c, Prefix: "gw"})
	p := NewPolicy("small", 150, time.Hour, 150)
	if ok, _ := count(l, p, "svc", 100); ok != 100 {
		t.Fatalf("allowed %d of 100", ok)
	}
	// One more: the first EVALSHA finds no script and loads it with EVAL.
	if calls := scriptCalls(t, c); calls < 100 || calls > 101 {
		t.Errorf("%d scripts for 100 allowed requests, want one each", calls)
	}
}

// TestRefusalStandsUntilTheNextToken: once Redis refuses a key, no
// replica can be allowed before its next token is due, so the replica
// refuses locally until then, with a Retry-After that counts down, and
// asks Redis again after.
func TestRefusalStandsUntilTheNextToken(t *testing.T) {
	r := testenv.StartRedis(t)
	c := client(t, r)
	l := New(Options{Redis: c, Prefix: "gw"})
	p := NewPolicy("slow", 5, time.Second, 1) // a token every 200ms
	if ok, _ := count(l, p, "svc", 1); ok != 1 {
		t.Fatal("the first request was refused")
	}
	first := l.Allow(context.Background(), p, "svc")
	if first.Allowed || first.Local || first.RetryAfter <= 0 || first.RetryAfter > 200*time.Millisecond {
		t.Fatalf("second request: %+v, want refused by Redis, retry within 200ms", first)
	}
	before := scriptCalls(t, c)
	time.Sleep(20 * time.Millisecond)
	d := l.Allow(context.Background(), p, "svc")
	if ok, _ := count(l, p, "svc", 50); ok != 0 || d.Allowed || d.RetryAfter >= first.RetryAfter {
		t.Fatalf("refused again: %+v after %+v, and %d of 50 more allowed", d, first, ok)
	}
	if calls := scriptCalls(t, c) - before; calls > 1 { // INFO itself is no script
		t.Errorf("%d scripts for 51 requests refused before the next token", calls)
	}
	time.Sleep(first.RetryAfter)
	if !l.Allow(context.Background(), p, "svc").Allowed {
		t.Error("refused after the next token was due")
	}
}
