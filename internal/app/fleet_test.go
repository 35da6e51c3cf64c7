package app

import (
	"net/http"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/metagate/gateway/internal/config"
	"github.com/metagate/gateway/internal/testenv"
	"github.com/metagate/gateway/internal/testenv/auth0emu"
)

const logStreamAuth = "Bearer fleet-test-log-stream-secret"

// startFleet runs n replicas of deploy/examples/auth0.yaml sharing one
// Redis and one upstream, with the log stream receiver on.
func startFleet(t *testing.T, n int, emu *auth0emu.Tenant, tweak func(*config.Config)) ([]*App, *recorder) {
	t.Helper()
	redis := testenv.StartRedis(t)
	up := newRecorder(t)
	var apps []*App
	for i := 0; i < n; i++ {
		apps = append(apps, startExampleWith(t, emu, redis.URL, up.URL, func(c *config.Config) {
			// About sharing, not about Redis being slow on two loaded cores.
			c.Cache.Redis.Timeout = config.Duration(2 * time.Second)
			c.Invalidation.Auth0LogStream.Authorization = logStreamAuth
			if tweak != nil {
				tweak(c)
			}
		}))
	}
	return apps, up
}

// TestFleetReadsEachCallerOnce: three replicas, a Management API that
// answers in 300 ms, and 100 concurrent first requests for one new client
// at each replica make exactly one Management API read.
func TestFleetReadsEachCallerOnce(t *testing.T) {
	emu := tenant(t)
	apps, _ := startFleet(t, 3, emu, func(c *config.Config) {
		// About sharing, not about 300 requests under -race on two loaded
		// cores outlasting the 1s lookup_deadline.
		c.Metadata.Auth0.LookupDeadline = config.Duration(10 * time.Second)
	})
	emu.SetMgmtLatency(300 * time.Millisecond)
	tok := emu.ClientToken("svc-billing", apiAudience, time.Hour)
	var wg sync.WaitGroup
	var bad atomic.Int64
	start := time.Now()
	for _, a := range apps {
		for i := 0; i < 100; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if get(t, a, tok) != 200 {
					bad.Add(1)
				}
			}()
		}
	}
	wg.Wait()
	t.Logf("3×100 concurrent first requests answered in %s: %d Management API reads", time.Since(start).Round(time.Millisecond), emu.Calls("clients"))
	if bad.Load() != 0 {
		t.Errorf("%d of 300 requests failed", bad.Load())
	}
	if n := emu.Calls("clients"); n != 1 {
		t.Errorf("3 replicas × 100 first requests made %d Management API reads, want 1", n)
	}
}

// TestLogStreamChangeReachesEveryReplica: a metadata change in Auth0 and
// one log stream delivery to replica A; replicas B and C forward the new
// value on their next request.
func TestLogStreamChangeReachesEveryReplica(t *testing.T) {
	emu := tenant(t)
	apps, up := startFleet(t, 3, emu, nil)
	tok := emu.ClientToken("svc-billing", apiAudience, time.Hour)
	tier := func(a *App) string {
		if code := get(t, a, tok); code != 200 {
			t.Fatalf("status %d", code)
		}
		up.mu.Lock()
		defer up.mu.Unlock()
		return up.hdr.Get("X-Client-Metadata-Tier")
	}
	for _, a := range apps {
		if got := tier(a); got != "gold" {
			t.Fatalf("before the change: tier %q", got)
		}
	}
	emu.SetClientMetadata("svc-billing", map[string]string{"tier": "platinum", "region": "eu-west-1"})
	if got := tier(apps[1]); got != "gold" {
		t.Fatalf("cached replica saw the change without an invalidation: %q", got)
	}

	entry := `{"log_id":"90020261201","data":{"date":"2026-12-01T12:00:00.000Z","type":"sapi","description":"Update a client",` +
		`"details":{"request":{"method":"patch","path":"/api/v2/clients/svc-billing","body":{"client_metadata":{"tier":"platinum"}}}}}}`
	req, _ := http.NewRequest("POST", "http://"+apps[0].Addr("gateway")+"/hooks/auth0/log-stream", strings.NewReader(entry+"\n"))
	req.Header.Set("Authorization", logStreamAuth)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	delivered := time.Now()
	if resp.StatusCode != 200 {
		t.Fatalf("log stream delivery: %d", resp.StatusCode)
	}
	for _, a := range apps[1:] {
		var got string
		for deadline := time.Now().Add(2 * time.Second); ; time.Sleep(5 * time.Millisecond) {
			if got = tier(a); got == "platinum" || time.Now().After(deadline) {
				break
			}
		}
		if got != "platinum" {
			t.Fatalf("replica %s still forwards tier %q 2s after the log stream delivery", a.Addr("gateway"), got)
		}
		t.Logf("replica %s forwards the new tier %s after the delivery (including its Management API read)", a.Addr("gateway"), time.Since(delivered).Round(100*time.Microsecond))
	}

	// A wrong secret invalidates nothing.
	emu.SetClientMetadata("svc-billing", map[string]string{"tier": "bronze"})
	req, _ = http.NewRequest("POST", "http://"+apps[0].Addr("gateway")+"/hooks/auth0/log-stream", strings.NewReader(entry))
	req.Header.Set("Authorization", "Bearer wrong")
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 401 {
		t.Errorf("wrong secret: %d, want 401", resp.StatusCode)
	}
	for _, a := range apps {
		if got := tier(a); got != "platinum" {
			t.Errorf("a refused delivery changed replica %s: tier %q", a.Addr("gateway"), got)
		}
	}
}

// TestOutageCostsAuth0Nothing: the Management API fails under a mixed
// load. Cached callers are answered 200 throughout; once the circuit is
// open new callers get 503 at once with Retry-After, and calls are at
// most the threshold's plus one probe per open period; afterwards the
// gateway recovers by itself.
func TestOutageCostsAuth0Nothing(t *testing.T) {
	emu := tenant(t)
	const openFor = time.Second
	for i := 0; i < 40; i++ {
		emu.AddClient(auth0emu.Client{ID: "svc-new-" + string(rune('a'+i%26)) + string(rune('a'+i/26)), Secret: "s",
			Grants: map[string][]string{apiAudience: {"read:orders"}}})
	}
	apps, _ := startFleet(t, 1, emu, func(c *config.Config) {
		c.Metadata.Auth0.Circuit.OpenFor = config.Duration(openFor)
		c.Metadata.Auth0.RatePerSecond, c.Metadata.Auth0.Burst = 50, 10
	})
	a := apps[0]
	cached := emu.ClientToken("svc-billing", apiAudience, time.Hour)
	if get(t, a, cached) != 200 {
		t.Fatal("warm-up failed")
	}
	emu.SetFault("clients", auth0emu.Fault500)
	emu.ResetCalls()

	var mu sync.Mutex
	var openLatencies []time.Duration
	start := time.Now()
	for i := 0; time.Since(start) < 3*time.Second; i++ {
		if code := get(t, a, cached); code != 200 {
			t.Fatalf("cached caller got %d during the outage", code)
		}
		id := "svc-new-" + string(rune('a'+i%26)) + string(rune('a'+(i/26)%2))
		req, _ := http.NewRequest("GET", "http://"+a.Addr("gateway")+"/orders", nil)
		req.Header.Set("Authorization", "Bearer "+emu.ClientToken(id, apiAudience, time.Hour))
		t0 := time.Now()
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		d := time.Since(t0)
		if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
			t.Fatalf("new caller %s during the outage: %d, Retry-After %q", id, resp.StatusCode, resp.Header.Get("Retry-After"))
		}
		if time.Since(start) > 500*time.Millisecond { // the circuit opened within the first few callers
			mu.Lock()
			openLatencies = append(openLatencies, d)
			mu.Unlock()
		}
		time.Sleep(20 * time.Millisecond)
	}
	elapsed := time.Since(start)
	calls := emu.Calls("clients")
	// threshold (5) failed calls open it; then one probe per open period.
	most := 5 + int(elapsed/openFor) + 1
	sort.Slice(openLatencies, func(i, j int) bool { return openLatencies[i] < openLatencies[j] })
	median := openLatencies[len(openLatencies)/2]
	t.Logf("outage of %s: %d Management API calls (at most %d allowed), %d new-caller requests while open, median answer %s, slowest %s",
		elapsed.Round(time.Millisecond), calls, most, len(openLatencies), median, openLatencies[len(openLatencies)-1])
	if calls > most {
		t.Errorf("%d Management API calls during a %s outage, want at most %d", calls, elapsed, most)
	}
	if median > 50*time.Millisecond {
		t.Errorf("new callers waited %s (median) for their 503 with the circuit open, want under 50ms", median)
	}

	emu.SetFault("clients", auth0emu.FaultNone)
	time.Sleep(openFor + 200*time.Millisecond)
	fresh := emu.ClientToken("svc-new-zz", apiAudience, time.Hour)
	emu.AddClient(auth0emu.Client{ID: "svc-new-zz", Secret: "s", Grants: map[string][]string{apiAudience: {"read:orders"}}})
	if code := get(t, a, fresh); code != 200 {
		t.Errorf("after the outage a new caller got %d, want 200", code)
	}
}
