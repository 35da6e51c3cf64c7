package cache_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/metagate/gateway/cache"
	"github.com/metagate/gateway/internal/testenv"
)

// tally counts the events of a callback (OnClaim, OnInvalidation,
// OnRedisError, Observe).
type tally struct {
	mu sync.Mutex
	m  map[string]int
}

func (c *tally) add(s string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = make(map[string]int)
	}
	c.m[s]++
}

func (c *tally) get(s string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.m[s]
}

func (c *tally) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return fmt.Sprint(c.m)
}

// replica is one Tiered of a simulated fleet and what its hooks saw.
type replica struct {
	*cache.Tiered[meta]
	claims, invalidations, redisErrors tally
}

// fleet builds one Tiered per client (each its own replica: give each its
// own client, as separate processes would have), all with opts, and waits
// until every bus is connected.
func fleet(t *testing.T, opts cache.Options, clients ...redis.UniversalClient) []*replica {
	t.Helper()
	var rs []*replica
	for _, rdb := range clients {
		r := &replica{}
		o := opts
		o.Redis = rdb
		o.OnClaim = r.claims.add
		o.OnInvalidation = r.invalidations.add
		o.OnRedisError = r.redisErrors.add
		r.Tiered = newTiered(t, o)
		cache.SetRedisBackoff(r.Tiered, 20*time.Millisecond, 200*time.Millisecond)
		rs = append(rs, r)
	}
	for i, r := range rs {
		testenv.Eventually(t, 10*time.Second, fmt.Sprintf("replica %d's bus to connect", i), r.BusConnected)
	}
	return rs
}

// clientsFor returns n clients of url.
func clientsFor(t *testing.T, url string, n int) []redis.UniversalClient {
	t.Helper()
	var cs []redis.UniversalClient
	for range n {
		cs = append(cs, newClient(t, url))
	}
	return cs
}

// checkCoalescing makes perReplica concurrent first Gets of one key on
// every replica, against an origin that takes 100ms, and checks that the
// origin was asked once and everyone got its value.
func checkCoalescing(t *testing.T, rs []*replica, key string, perReplica int) {
	t.Helper()
	o := newOrigin("acme")
	o.delay = 100 * time.Millisecond
	var (
		wg      sync.WaitGroup
		start   = make(chan struct{})
		results tally
		errs    = make(chan error, len(rs)*perReplica)
	)
	for i, r := range rs {
		for range perReplica {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				v, res, err := r.Get(ctx, key, o.load)
				if err != nil || v != want("acme", key) {
					errs <- fmt.Errorf("replica %d: Get = %+v, %s, %v", i, v, res, err)
					return
				}
				results.add(fmt.Sprintf("replica%d:%s", i, res))
			}()
		}
	}
	var acquired0, waited0 int
	for _, r := range rs {
		acquired0 += r.claims.get("acquired")
		waited0 += r.claims.get("waited")
	}
	begin := time.Now()
	close(start)
	wg.Wait()
	took := time.Since(begin)
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	acquired, waited := -acquired0, -waited0
	for _, r := range rs {
		acquired += r.claims.get("acquired")
		waited += r.claims.get("waited")
	}
	t.Logf("%d×%d concurrent first Gets of %q: %d origin call(s) in %s; results %s; claims acquired %d, waited %d",
		len(rs), perReplica, key, o.calls.Load(), took.Round(time.Millisecond), &results, acquired, waited)
	if n := o.calls.Load(); n != 1 {
		t.Fatalf("origin called %d times for %d replicas × %d concurrent Gets, want 1", n, len(rs), perReplica)
	}
	if acquired != 1 || waited != len(rs)-1 {
		t.Errorf("claims: %d acquired, %d waited; want 1 and %d", acquired, waited, len(rs)-1)
	}
}

func TestFleetAsksTheOriginOncePerKey(t *testing.T) {
	r, _ := startRedis(t)
	rs := fleet(t, baseOptions(nil, nil), clientsFor(t, r.URL, 3)...)
	checkCoalescing(t, rs, "client-1", 100)
	// The value is in L2 and in every L1 now.
	for i, r := range rs {
		if _, ok := r.Peek("client-1"); !ok {
			t.Errorf("replica %d does not hold the value in L1", i)
		}
	}
}

// checkInvalidationReaches invalidates key on rs[0] and measures how long
// until every other replica has dropped it from L1.
func checkInvalidationReaches(t *testing.T, rs []*replica, key string) time.Duration {
	t.Helper()
	o := newOrigin("v")
	get(t, rs[0].Tiered, key, o.load, cache.ResultMiss)
	for i, r := range rs[1:] {
		testenv.Eventually(t, 5*time.Second, fmt.Sprintf("replica %d to read %q from L2", i+1, key), func() bool {
			_, res, err := r.Get(context.Background(), key, o.load)
			return err == nil && (res == cache.ResultL2Hit || res == cache.ResultL1Hit)
		})
	}
	start := time.Now()
	if err := rs[0].Invalidate(context.Background(), key); err != nil {
		t.Fatalf("Invalidate: %v", err)
	}
	var slowest time.Duration
	for i, r := range rs[1:] {
		for {
			if _, ok := r.Peek(key); !ok {
				break
			}
			if time.Since(start) > time.Second {
				t.Fatalf("replica %d still holds %q 1s after the invalidation on replica 0", i+1, key)
			}
			time.Sleep(200 * time.Microsecond)
		}
		slowest = max(slowest, time.Since(start))
	}
	if _, ok := rs[0].Peek(key); ok {
		t.Fatalf("replica 0 still holds %q after its own Invalidate", key)
	}
	return slowest
}

func TestInvalidationReachesEveryReplica(t *testing.T) {
	r, rdb := startRedis(t)
	rs := fleet(t, baseOptions(nil, nil), clientsFor(t, r.URL, 3)...)
	var delays []time.Duration
	for i := range 5 {
		delays = append(delays, checkInvalidationReaches(t, rs, fmt.Sprintf("k%d", i)))
	}
	t.Logf("invalidation propagation delay to the slowest of 2 other replicas, 5 runs: %v", delays)
	if inRedis(t, rdb, "k0") {
		t.Error("the value is still in Redis after Invalidate")
	}
	if n := rs[0].invalidations.get("published"); n != 5 {
		t.Errorf("replica 0 reported %d invalidations published, want 5", n)
	}
	if n := rs[0].invalidations.get("applied"); n != 0 {
		t.Errorf("replica 0 applied %d messages, want 0 (its own are not applied twice)", n)
	}
	for i, r := range rs[1:] {
		testenv.Eventually(t, time.Second, "the applied events to be counted", func() bool { return r.invalidations.get("applied") == 5 })
		if n := r.invalidations.get("published"); n != 0 {
			t.Errorf("replica %d published %d invalidations: applying a message must not re-publish it", i+1, n)
		}
	}

	// InvalidateAll on replica 1 empties every L1.
	o := newOrigin("v")
	for _, r := range rs {
		if v, _, err := r.Get(context.Background(), "all-1", o.load); err != nil || v != want("v", "all-1") {
			t.Fatalf("Get = %+v, %v", v, err)
		}
	}
	start := time.Now()
	if err := rs[1].InvalidateAll(context.Background()); err != nil {
		t.Fatal(err)
	}
	for i, r := range rs {
		testenv.Eventually(t, time.Second, fmt.Sprintf("replica %d to drop everything", i), func() bool {
			_, ok := r.Peek("all-1")
			return !ok
		})
	}
	t.Logf("InvalidateAll reached every replica in %s", time.Since(start).Round(time.Microsecond))
}

func TestDeadClaimHolderIsReplacedWhenItsClaimExpires(t *testing.T) {
	r, rdb := startRedis(t)
	rs := fleet(t, baseOptions(nil, nil), clientsFor(t, r.URL, 2)...)
	// A replica took the claim and died: nobody releases it.
	const claimLeft = 400 * time.Millisecond
	if err := rdb.Set(context.Background(), "test:claim:v1:{k}", "dead-replica", claimLeft).Err(); err != nil {
		t.Fatal(err)
	}
	o := newOrigin("v")
	start := time.Now()
	var wg sync.WaitGroup
	for _, r := range rs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if v, _, err := r.Get(context.Background(), "k", o.load); err != nil || v != want("v", "k") {
				t.Errorf("Get = %+v, %v", v, err)
			}
		}()
	}
	wg.Wait()
	took := time.Since(start)
	t.Logf("both replicas answered %s after the dead holder's claim (%s left) was found; origin calls %d; claims %s / %s",
		took.Round(time.Millisecond), claimLeft, o.calls.Load(), &rs[0].claims, &rs[1].claims)
	if took < claimLeft-50*time.Millisecond {
		t.Fatalf("answered after %s: the live claim (%s left) was not respected", took, claimLeft)
	}
	if n := o.calls.Load(); n != 1 {
		t.Fatalf("origin called %d times, want 1 (one replica takes over, the other waits for it)", n)
	}
	if n := rs[0].claims.get("takeover") + rs[1].claims.get("takeover"); n != 1 {
		t.Fatalf("%d takeovers, want 1", n)
	}
}

func TestFailedOrClosedHolderHandsOverAtOnce(t *testing.T) {
	for _, how := range []string{"its load fails", "it is closed"} {
		t.Run(how, func(t *testing.T) {
			r, _ := startRedis(t)
			opts := baseOptions(nil, nil)
			opts.ClaimTTL = 30 * time.Second // the handover must not wait for it
			rs := fleet(t, opts, clientsFor(t, r.URL, 2)...)
			holder, waiter := rs[0], rs[1]

			failing := newOrigin("bad")
			release := failing.hold()
			defer release()
			holderDone := make(chan error, 1)
			go func() {
				_, _, err := holder.Get(context.Background(), "k", failing.load)
				holderDone <- err
			}()
			testenv.Eventually(t, 5*time.Second, "the holder to call its origin", func() bool { return failing.calls.Load() == 1 })

			good := newOrigin("good")
			start := time.Now()
			got := make(chan meta, 1)
			go func() {
				v, _, err := waiter.Get(context.Background(), "k", good.load)
				if err != nil {
					t.Errorf("the waiter's Get: %v", err)
				}
				got <- v
			}()
			testenv.Eventually(t, 5*time.Second, "the waiter to wait for the holder", func() bool { return cache.Awaiting(waiter.Tiered) == 1 })
			if how == "it is closed" {
				if err := holder.Close(); err != nil {
					t.Fatal(err)
				}
			} else {
				failing.set(meta{}, errors.New("idp down"))
				release()
			}
			if err := <-holderDone; err == nil {
				t.Fatal("the holder's Get succeeded")
			}
			v := <-got
			took := time.Since(start)
			t.Logf("the waiter answered %s after it started waiting; claims %s", took.Round(time.Millisecond), &waiter.claims)
			if v != want("good", "k") || good.calls.Load() != 1 {
				t.Fatalf("waiter got %+v with %d calls to its origin", v, good.calls.Load())
			}
			if waiter.claims.get("takeover") != 1 {
				t.Fatalf("waiter claims %s, want a takeover", &waiter.claims)
			}
			if took > opts.ClaimTTL/3 {
				t.Fatalf("the waiter took %s: it waited for the claim to expire instead of being handed the key", took)
			}
		})
	}
}
