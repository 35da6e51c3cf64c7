package app

import (
	"context"
	"fmt"
	"net/http/httptest"
	"runtime"
	"runtime/metrics"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"go.uber.org/zap"

	"github.com/metagate/gateway/internal/config"
	"github.com/metagate/gateway/internal/gctune"
	"github.com/metagate/gateway/internal/testenv"
)

// memoryInUse is what the Go runtime holds the soft memory limit against:
// every byte it has mapped, less what it has returned to the OS.
func memoryInUse() uint64 {
	ms := []metrics.Sample{{Name: "/memory/classes/total:bytes"}, {Name: "/memory/classes/heap/released:bytes"}}
	metrics.Read(ms)
	return ms[0].Value.Uint64() - ms[1].Value.Uint64()
}

// peakMemory samples memoryInUse until stop is called, and returns the
// highest value seen.
func peakMemory() (stop func() uint64) {
	var peak atomic.Uint64
	done, finished := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTicker(2 * time.Millisecond)
		defer t.Stop()
		for {
			if m := memoryInUse(); m > peak.Load() {
				peak.Store(m)
			}
			select {
			case <-done:
				return
			case <-t.C:
			}
		}
	}()
	return func() uint64 { close(done); <-finished; return peak.Load() }
}

// TestMemoryLimitHoldsUnderTenThousandCallers builds the gateway with
// server.memory_limit as gateway serve does (TuneGC), sends one request
// from each of 10,000 distinct callers, so the verified-token and metadata
// caches fill with 10,000 entries each, and checks that the memory the
// runtime holds never passed the limit, although the default GC percent of
// 400 alone would let the heap grow to five times what is live.
func TestMemoryLimitHoldsUnderTenThousandCallers(t *testing.T) {
	const (
		callers = 10_000
		limit   = 96 << 20
		workers = 4
	)
	is := testenv.NewIssuer(t)
	// P-256 runs in assembly, which -race leaves alone: signing and
	// verifying 10,000 tokens costs a fraction of EdDSA's or RSA's time.
	key := is.AddKey(t, "ES256")
	up := newRecorder(t)
	doc := fmt.Sprintf(`
server:
  listen: 127.0.0.1:0
  admin_listen: 127.0.0.1:0
  drain_delay: 0s
  memory_limit: %dMiB
issuers:
  - issuer: %s
    audiences: [%s]
    jwks_url: %s
    algorithms: [ES256]
cache:
  max_entries: %d
routes:
  - name: api
    match: {path_prefix: /}
    upstreams: [%s]
`, limit>>20, is.URL, is.Audience, is.JWKSURL, 2*callers, up.URL)
	noEnv := func(string) (string, bool) { return "", false }
	cfg, err := config.Parse("gc.yaml", []byte(doc), noEnv)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Metadata.Local.Clients = make(map[string]config.LocalClient, callers)
	id := func(i int) string { return fmt.Sprintf("svc-%05d", i) }
	for i := range callers {
		cfg.Metadata.Local.Clients[id(i)] = config.LocalClient{Name: "Service " + strconv.Itoa(i),
			Metadata: map[string]any{"tier": "gold", "team": "team-" + strconv.Itoa(i%97), "region": "eu-west-1"}}
	}
	// Signed on every core (is.Sign would call t.Fatal off the test's
	// goroutine, so jwt is called directly).
	tokens := make([]string, callers)
	var signers sync.WaitGroup
	for w := range runtime.GOMAXPROCS(0) {
		signers.Go(func() {
			for i := w; i < callers; i += runtime.GOMAXPROCS(0) {
				tok := jwt.NewWithClaims(jwt.SigningMethodES256, is.Claims(id(i)))
				tok.Header["kid"] = key.Kid
				var err error
				if tokens[i], err = tok.SignedString(key.Private); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	signers.Wait()
	if t.Failed() {
		t.FailNow()
	}
	gcBefore, limitBefore := gctune.Current()

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	a, err := New(ctx, cfg, Options{Logger: zap.NewNop(), LookupEnv: noEnv, TuneGC: true})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	stopped := false
	stop := func() {
		if !stopped {
			stopped = true
			cancel()
			if err := <-done; err != nil {
				t.Errorf("shutdown: %v", err)
			}
		}
	}
	defer stop()
	testenv.Eventually(t, 10*time.Second, "/readyz", func() bool { code, _ := readyz(t, a); return code == 200 })
	m := scrape(t, a)
	if m["gateway_gc_percent"] != gctune.LimitedGCPercent || m["gateway_memory_limit_bytes"] != limit {
		t.Errorf("metrics: gateway_gc_percent %v, gateway_memory_limit_bytes %v; want %d and %d",
			m["gateway_gc_percent"], m["gateway_memory_limit_bytes"], gctune.LimitedGCPercent, limit)
	}

	runtime.GC()
	peak := peakMemory()
	start := time.Now()
	var next atomic.Int64
	var bad atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := int(next.Add(1)) - 1; i < callers; i = int(next.Add(1)) - 1 {
				// Straight into the handler: the memory at stake is the
				// caches', and skipping the client and listener halves
				// the time -race takes; the upstream hop stays real.
				req := httptest.NewRequest("GET", "http://gateway.test/orders", nil)
				req.Header.Set("Authorization", "Bearer "+tokens[i])
				rec := httptest.NewRecorder()
				a.serveGateway(rec, req)
				if rec.Code != 200 {
					bad.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	highest := peak()
	var stats runtime.MemStats
	runtime.ReadMemStats(&stats)
	t.Logf("%d callers in %s: peak memory in use %.1f MiB of a %d MiB limit; heap in use after %.1f MiB, %d GC cycles",
		callers, time.Since(start).Round(time.Millisecond), float64(highest)/(1<<20), limit>>20, float64(stats.HeapInuse)/(1<<20), stats.NumGC)
	if n := bad.Load(); n > 0 {
		t.Fatalf("%d of %d requests failed", n, callers)
	}
	if got := up.hits.Load(); got != callers {
		t.Errorf("upstream saw %d requests, want %d", got, callers)
	}
	if highest >= limit {
		t.Errorf("memory in use peaked at %d bytes, past the %d-byte memory limit", highest, limit)
	}

	stop()
	if gc, l := gctune.Current(); gc != gcBefore || l != limitBefore {
		t.Errorf("after Shutdown: gc_percent %d, memory limit %d; want the previous %d and %d", gc, l, gcBefore, limitBefore)
	}
}
