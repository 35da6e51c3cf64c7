// Command bench-e2e is `make bench-e2e`: it builds the gateway and a bare
// httputil.ReverseProxy, starts an upstream, and drives each proxy in turn
// with the same load over real sockets, interleaved for several rounds, in
// four scenarios (hot path, 10k warm callers, L1 miss with a Redis hit,
// full miss against the Auth0 tenant emulator). It prints throughput,
// latency percentiles, CPU per request of the proxy process under test and
// the gateway/bare ratios, checked against the targets of issue 11, plus the
// memory each cached caller costs. docs/benchmarks.md has the method.
package main

import (
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"sync"
	"syscall"
	"time"

	"github.com/metagate/gateway/internal/benche2e"
	"github.com/metagate/gateway/internal/testenv"
)

type options struct {
	goBin    string
	rounds   int
	duration time.Duration
	conc     int
	callers  int
	rate     float64
	keep     bool
	access   bool
}

func main() {
	var o options
	flag.StringVar(&o.goBin, "go", "go", "the go command that builds the gateway")
	flag.IntVar(&o.rounds, "rounds", 5, "rounds per scenario (each: one bare run and one gateway run, back to back)")
	flag.DurationVar(&o.duration, "duration", 1500*time.Millisecond, "length of one run")
	flag.IntVar(&o.conc, "c", 32, "closed-loop concurrency (keep-alive connections)")
	flag.IntVar(&o.callers, "callers", 10000, "distinct callers of the warm, Redis and full-miss scenarios")
	flag.Float64Var(&o.rate, "rate", 1000, "requests per second of the fixed-rate (open-loop) run")
	flag.BoolVar(&o.access, "access-log", false, "keep the gateway's access log on (log.access), written to the gateway's log file")
	flag.BoolVar(&o.keep, "keep", false, "keep the binaries, configurations and logs (the directory is printed first)")
	flag.Parse()
	if o.rounds < 1 || o.conc < 1 || o.callers < 10 || o.rate <= 0 || o.duration <= 0 {
		fmt.Fprintln(os.Stderr, "bench-e2e: -rounds, -c, -rate, -duration must be positive and -callers at least 10")
		os.Exit(2)
	}
	began := time.Now()
	env := &benche2e.Env{}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	go func() {
		<-sig
		env.Close()
		os.Exit(130)
	}()
	r := run(env, o)
	env.Close()
	r.print(os.Stdout, o, time.Since(began))
}

func run(env *benche2e.Env, o options) *report {
	var dir string
	if o.keep {
		var err error
		dir, err = os.MkdirTemp("", "bench-e2e-")
		must(env, err, "temp dir")
	} else {
		dir = env.TempDir()
	}
	step := func(format string, args ...any) {
		fmt.Fprintf(os.Stderr, "bench-e2e: "+format+"\n", args...)
	}
	is := testenv.NewIssuer(env)
	var tokens []string
	minted := make(chan struct{})
	go func() { // RSA signing is slow: overlap it with the build
		defer close(minted)
		tokens = mint(env, is, o.callers)
	}()
	step("building the gateway and the harness (%s), minting %d RS256 tokens", dir, o.callers)
	build(env, o.goBin, dir)
	<-minted

	up := start(env, filepath.Join(dir, "upstream"), true)
	bare := start(env, filepath.Join(dir, "bareproxy"), true, "-upstream", up.URL)
	hot := tokens[:1]

	b := &bench{o: o, bare: side{pid: bare.pid(), url: bare.URL}}
	rep := &report{loadStart: loadAverage()}

	// Local metadata: the hot path, the fixed rate, memory, 10k warm callers.
	step("scenario: local metadata (hot path, fixed rate, memory, %d warm callers)", o.callers)
	gw := startGateway(env, dir, is, up.URL, gwConfig{name: "local", accessLog: o.access,
		metadata: map[string]any{"source": "local", "local": map[string]any{"clients": localClients(o.callers)}},
		cache:    map[string]any{"ttl": "1h", "max_entries": 100000},
	})
	b.gw = side{pid: gw.pid(), url: gw.URL}
	b.warm(env, hot)
	rep.hot = b.closed(env, "hot path (1 caller, L1)", hot)
	rep.rate = b.open(env, fmt.Sprintf("hot path, %.0f rps open loop", o.rate), hot)

	base := o.callers / 10
	b.warmGW(env, tokens[:base])
	h0 := gw.liveHeap(env)
	b.warmGW(env, tokens[base:])
	h1 := gw.liveHeap(env)
	rep.memPerCaller = (h1 - h0) / float64(o.callers-base)
	tokenBytes := 0
	for _, t := range tokens {
		tokenBytes += len(t)
	}
	rep.memNote = fmt.Sprintf("live heap (go_memstats_heap_alloc_bytes after runtime.GC) %.1f MiB with %d callers cached, %.1f MiB with %d: (difference)/%d; the tokens are %d B on average",
		h0/(1<<20), base, h1/(1<<20), o.callers, o.callers-base, tokenBytes/len(tokens))
	b.warm(env, tokens) // the gateway already knows them; this warms the bare side the same way
	m0 := gw.metrics(env)
	rep.warm = b.closed(env, fmt.Sprintf("%d warm callers (L1)", o.callers), tokens)
	rep.warm.note = lookups(m0, gw.metrics(env))
	gw.stop()

	// Redis: an L1 of one entry, so nearly every lookup is a Redis GET.
	step("scenario: L1 miss, Redis hit")
	rd := testenv.StartRedis(env)
	gw = startGateway(env, dir, is, up.URL, gwConfig{name: "redis", accessLog: o.access,
		metadata: map[string]any{"source": "local", "local": map[string]any{"clients": localClients(o.callers)}},
		cache:    map[string]any{"ttl": "1h", "max_entries": 1, "redis": map[string]any{"url": rd.URL}},
	})
	b.gw = side{pid: gw.pid(), url: gw.URL}
	b.warm(env, tokens) // fills Redis (and the verified-token cache)
	m0 = gw.metrics(env)
	rep.redis = b.closed(env, fmt.Sprintf("L1 miss, Redis hit (%d callers)", o.callers), tokens)
	rep.redis.note = lookups(m0, gw.metrics(env))
	gw.stop()
	rd.Kill()

	// Rate limits: the hot path with a limit that never refuses against
	// the same gateway without one, with the counter in Redis and with
	// the local limiter. Here "bare" is the gateway without the limit.
	for _, withRedis := range []bool{true, false} {
		name, cache := "local limiter", map[string]any{"ttl": "1h"}
		var rrd *testenv.Redis
		if withRedis {
			rrd = testenv.StartRedis(env)
			name, cache = "Redis", map[string]any{"ttl": "1h", "redis": map[string]any{"url": rrd.URL}}
		}
		step("scenario: rate limit (%s) against the same gateway without it", name)
		md := map[string]any{"source": "local", "local": map[string]any{"clients": localClients(1)}}
		plain := startGateway(env, dir, is, up.URL, gwConfig{name: "rl-off", accessLog: o.access, metadata: md, cache: cache})
		limited := startGateway(env, dir, is, up.URL, gwConfig{name: "rl-on", accessLog: o.access, metadata: md, cache: cache, rateLimit: true})
		rb := &bench{o: o, bare: side{pid: plain.pid(), url: plain.URL}, gw: side{pid: limited.pid(), url: limited.URL}}
		rb.warm(env, hot)
		r := rb.closed(env, "hot path, rate limit ("+name+") vs off", hot)
		if withRedis {
			rep.rlRedis = r
		} else {
			rep.rlLocal = r
		}
		plain.stop()
		limited.stop()
		if rrd != nil {
			rrd.Kill()
		}
	}

	// Full miss: every lookup asks the tenant emulator's Management API.
	step("scenario: full miss against the tenant emulator")
	tenant := start(env, filepath.Join(dir, "tenant"), true, "-clients", fmt.Sprint(o.callers))
	gw = startGateway(env, dir, is, up.URL, gwConfig{name: "auth0", accessLog: o.access,
		metadata: map[string]any{"source": "auth0", "auth0": map[string]any{
			"management_url": tenant.URL, "client_id": benche2e.M2MClientID, "client_secret": benche2e.M2MClientSecret,
			// The scenario measures a miss, not the budget that protects
			// a real tenant (1/s by default).
			"rate_per_second": 1e6, "burst": 100000, "max_retries": 0,
		}},
		// Fresh for 1ns and never served stale: every lookup is a miss.
		cache: map[string]any{"ttl": "1ns", "negative_ttl": "1ns", "stale_while_revalidate": "0s", "stale_if_error": "0s"},
	})
	b.gw = side{pid: gw.pid(), url: gw.URL}
	b.warm(env, tokens) // the verified-token cache; the metadata expires at once
	m0 = gw.metrics(env)
	rep.miss = b.closed(env, fmt.Sprintf("full miss, tenant emulator (%d callers)", o.callers), tokens)
	rep.miss.note = lookups(m0, gw.metrics(env))
	gw.stop()
	tenant.stop()
	return rep
}

// mint signs one client-credentials token per caller, on every core.
func mint(env *benche2e.Env, is *testenv.Issuer, n int) []string {
	tokens := make([]string, n)
	var wg sync.WaitGroup
	workers := runtime.NumCPU()
	for w := range workers {
		wg.Go(func() {
			for i := w; i < n; i += workers {
				tokens[i] = is.Token(env, benche2e.ClientID(i))
			}
		})
	}
	wg.Wait()
	return tokens
}
