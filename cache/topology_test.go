package cache_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/metagate/gateway/cache"
	"github.com/metagate/gateway/internal/testenv"
)

func TestClusterCoalescesAndInvalidates(t *testing.T) {
	cl := testenv.StartCluster(t)
	clients := clientsFor(t, cl.URL, 3)
	rs := fleet(t, baseOptions(nil, nil), clients...)
	checkCoalescing(t, rs, "client-1", 100)

	// Keys spread over the three masters: each one's value and claim share
	// a slot, so the scripts run wherever it lands.
	o := newOrigin("v")
	for i := range 12 {
		key := fmt.Sprintf("spread-%d", i)
		get(t, rs[0].Tiered, key, o.load, cache.ResultMiss)
		get(t, rs[1].Tiered, key, o.load, cache.ResultL2Hit)
	}
	var delays []time.Duration
	for i := range 3 {
		delays = append(delays, checkInvalidationReaches(t, rs, fmt.Sprintf("inv-%d", i)))
	}
	t.Logf("cluster: invalidation propagation delay to the slowest of 2 other replicas: %v", delays)

	if err := rs[2].InvalidateAll(context.Background()); err != nil {
		t.Fatalf("InvalidateAll: %v", err)
	}
	for i := range 12 {
		key := fmt.Sprintf("spread-%d", i)
		if inRedis(t, clients[0], key) {
			t.Fatalf("%s still in the cluster after InvalidateAll", key)
		}
		testenv.Eventually(t, time.Second, "replica 0 to drop "+key, func() bool { _, ok := rs[0].Peek(key); return !ok })
	}
}

// TestSentinelFailoverUnderLoad runs Gets on two replicas through a
// Sentinel URL while the Sentinel promotes the replica: no Get fails (Redis
// errors fall back to the origin), and afterwards L2, the claims and the
// bus work through the new master.
func TestSentinelFailoverUnderLoad(t *testing.T) {
	s := testenv.StartSentinel(t)
	clients := clientsFor(t, s.URL, 2)
	rs := fleet(t, baseOptions(nil, nil), clients...)
	checkCoalescing(t, rs, "before", 20)

	o := newOrigin("v")
	var (
		stop     = make(chan struct{})
		wg       sync.WaitGroup
		gets     atomic.Int64
		failures atomic.Int64
		results  tally
	)
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rs[w%2]
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				key := fmt.Sprintf("load-%d", i%40) // hot keys, shared by the workers and replicas
				if i%5 == 0 {
					key = fmt.Sprintf("new-%d-%d", w, i) // and misses
				}
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				v, res, err := r.Get(ctx, key, o.load)
				cancel()
				gets.Add(1)
				if err != nil || v != want("v", key) {
					failures.Add(1)
					t.Errorf("Get(%q) during the failover = %+v, %s, %v", key, v, res, err)
				}
				results.add(res.String())
				time.Sleep(2 * time.Millisecond)
			}
		}()
	}
	time.Sleep(300 * time.Millisecond)
	old := s.MasterAddr(t)
	start := time.Now()
	s.Failover(t)
	t.Logf("master %s → %s in %s", old, s.MasterAddr(t), time.Since(start).Round(time.Millisecond))

	// L2 through the new master: a value one replica loads, the other
	// reads.
	n := 0
	testenv.Eventually(t, 20*time.Second, "L2 to work through the new master", func() bool {
		n++
		key := fmt.Sprintf("after-%d", n)
		_, _, err := rs[0].Get(context.Background(), key, o.load)
		if err != nil {
			return false
		}
		time.Sleep(20 * time.Millisecond)
		_, res, err := rs[1].Get(context.Background(), key, o.load)
		return err == nil && res == cache.ResultL2Hit
	})
	t.Logf("L2 shared again %s after the failover began", time.Since(start).Round(time.Millisecond))
	// The bus: the subscriptions on the demoted master were cut; they
	// resubscribe through the Sentinel to the new one.
	testenv.Eventually(t, 20*time.Second, "invalidations to reach the other replica through the new master", func() bool {
		n++
		key := fmt.Sprintf("inv-%d", n)
		get(t, rs[0].Tiered, key, o.load, cache.ResultMiss)
		if _, _, err := rs[1].Get(context.Background(), key, o.load); err != nil {
			return false
		}
		if err := rs[0].Invalidate(context.Background(), key); err != nil {
			return false
		}
		deadline := time.Now().Add(500 * time.Millisecond)
		for time.Now().Before(deadline) {
			if _, ok := rs[1].Peek(key); !ok {
				return true
			}
			time.Sleep(time.Millisecond)
		}
		return false
	})
	t.Logf("invalidations propagate again %s after the failover began", time.Since(start).Round(time.Millisecond))
	close(stop)
	wg.Wait()
	t.Logf("%d Gets during the failover, %d failed; results %s; origin calls %d; Redis errors %s / %s",
		gets.Load(), failures.Load(), &results, o.calls.Load(), &rs[0].redisErrors, &rs[1].redisErrors)
	checkCoalescing(t, rs, "after-failover", 20)
}
