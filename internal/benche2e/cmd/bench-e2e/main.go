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
	"slices"
	"strings"
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
	only     map[string]bool // scenario groups to run; empty: all
	profile  string          // directory for each scenario's gateway CPU profile; empty: none
}

// scenarioGroups are the names -only takes, in the order they run.
var scenarioGroups = []string{"local", "redis", "ratelimit", "miss"}

// runs reports whether the scenario group is to run.
func (o options) runs(group string) bool { return len(o.only) == 0 || o.only[group] }

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
	only := flag.String("only", "", "comma-separated scenario groups to run (local, redis, ratelimit, miss); default all")
	flag.StringVar(&o.profile, "profile", "", "write a CPU profile of the gateway's first measured run of each scenario to this directory (<scenario>.pprof, from server.pprof)")
	flag.Parse()
	if *only != "" {
		o.only = map[string]bool{}
		for _, g := range strings.Split(*only, ",") {
			if !slices.Contains(scenarioGroups, g) {
				fmt.Fprintf(os.Stderr, "bench-e2e: -only %q: want some of %s\n", g, strings.Join(scenarioGroups, ","))
				os.Exit(2)
			}
			o.only[g] = true
		}
	}
	if o.profile != "" {
		if err := os.MkdirAll(o.profile, 0o755); err != nil {
			fmt.Fprintf(os.Stderr, "bench-e2e: -profile: %v\n", err)
			os.Exit(2)
		}
	}
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

	s := &suite{env: env, o: o, dir: dir, is: is, upstream: up.URL, tokens: tokens, hot: hot,
		b:   &bench{o: o, bare: side{pid: bare.pid(), url: bare.URL}},
		rep: &report{loadStart: loadAverage()}}
	for _, g := range []struct {
		name string
		run  func()
	}{{"local", s.local}, {"redis", s.redis}, {"ratelimit", s.rateLimits}, {"miss", s.miss}} {
		if o.runs(g.name) {
			g.run()
		}
	}
	return s.rep
}

// suite is what every scenario shares: the orchestrator's issuer, the
// built binaries, the upstream and the bare proxy, the tokens, the report.
type suite struct {
	env      *benche2e.Env
	o        options
	dir      string
	is       *testenv.Issuer
	upstream string
	tokens   []string
	hot      []string
	b        *bench
	rep      *report
}

func step(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "bench-e2e: "+format+"\n", args...)
}

// local is the local-metadata scenarios: the hot path, the fixed rate, memory, warm callers.
func (s *suite) local() {
	env, o, b, rep, tokens, hot := s.env, s.o, s.b, s.rep, s.tokens, s.hot
	step("scenario: local metadata (hot path, fixed rate, memory, %d warm callers)", o.callers)
	gw := startGateway(s.env, s.dir, s.is, s.upstream, gwConfig{name: "local", accessLog: o.access,
		metadata: map[string]any{"source": "local", "local": map[string]any{"clients": localClients(o.callers)}},
		cache:    map[string]any{"ttl": "1h", "max_entries": 100000},
	})
	b.gw = gw.side()
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
}

// redis is the L1-miss, Redis-hit scenario.
func (s *suite) redis() {
	env, o, b, rep, tokens := s.env, s.o, s.b, s.rep, s.tokens
	// Redis: an L1 of one entry, so nearly every lookup is a Redis GET.
	step("scenario: L1 miss, Redis hit")
	rd := testenv.StartRedis(env)
	gw := startGateway(s.env, s.dir, s.is, s.upstream, gwConfig{name: "redis", accessLog: o.access,
		metadata: map[string]any{"source": "local", "local": map[string]any{"clients": localClients(o.callers)}},
		cache:    map[string]any{"ttl": "1h", "max_entries": 1, "redis": map[string]any{"url": rd.URL}},
	})
	b.gw = gw.side()
	b.warm(env, tokens) // fills Redis (and the verified-token cache)
	m0 := gw.metrics(env)
	rep.redis = b.closed(env, fmt.Sprintf("L1 miss, Redis hit (%d callers)", o.callers), tokens)
	rep.redis.note = lookups(m0, gw.metrics(env))
	gw.stop()
	rd.Kill()
}

// rateLimits is the hot path with a rate limit that never refuses,
// against the same gateway without one ("bare" here): with the counter in
// Redis and with the local limiter; and with Redis for many callers, each
// seen too rarely on a replica to take tokens in leases, so every request
// is a round trip.
func (s *suite) rateLimits() {
	env, o, rep := s.env, s.o, s.rep
	for _, v := range []struct {
		name    string
		redis   bool
		tokens  []string
		clients int
		row     *row
	}{
		{"hot path, rate limit (Redis)", true, s.hot, 1, &rep.rlRedis},
		{fmt.Sprintf("%d callers, rate limit (Redis)", o.callers), true, s.tokens, o.callers, &rep.rlRedisMany},
		{"hot path, rate limit (local limiter)", false, s.hot, 1, &rep.rlLocal},
	} {
		cache := map[string]any{"ttl": "1h", "max_entries": 100000}
		var rd *testenv.Redis
		if v.redis {
			rd = testenv.StartRedis(env)
			cache["redis"] = map[string]any{"url": rd.URL}
		}
		step("scenario: %s against the same gateway without it", v.name)
		md := map[string]any{"source": "local", "local": map[string]any{"clients": localClients(v.clients)}}
		plain := startGateway(env, s.dir, s.is, s.upstream, gwConfig{name: "rl-off", accessLog: o.access, metadata: md, cache: cache})
		limited := startGateway(env, s.dir, s.is, s.upstream, gwConfig{name: "rl-on", accessLog: o.access, metadata: md, cache: cache, rateLimit: true})
		rb := &bench{o: o, bare: plain.side(), gw: limited.side()}
		rb.warm(env, v.tokens)
		*v.row = rb.closed(env, v.name+" vs off", v.tokens)
		plain.stop()
		limited.stop()
		if rd != nil {
			rd.Kill()
		}
	}
}

// miss is the full-miss scenario against the tenant emulator.
func (s *suite) miss() {
	env, o, b, rep, tokens := s.env, s.o, s.b, s.rep, s.tokens
	step("scenario: full miss against the tenant emulator")
	tenant := start(env, filepath.Join(s.dir, "tenant"), true, "-clients", fmt.Sprint(o.callers))
	gw := startGateway(s.env, s.dir, s.is, s.upstream, gwConfig{name: "auth0", accessLog: o.access,
		metadata: map[string]any{"source": "auth0", "auth0": map[string]any{
			"management_url": tenant.URL, "client_id": benche2e.M2MClientID, "client_secret": benche2e.M2MClientSecret,
			// The scenario measures a miss, not the budget that protects
			// a real tenant (1/s by default).
			"rate_per_second": 1e6, "burst": 100000, "max_retries": 0,
		}},
		// Fresh for 1ns and never served stale: every lookup is a miss.
		cache: map[string]any{"ttl": "1ns", "negative_ttl": "1ns", "stale_while_revalidate": "0s", "stale_if_error": "0s"},
	})
	b.gw = gw.side()
	b.warm(env, tokens) // the verified-token cache; the metadata expires at once
	m0 := gw.metrics(env)
	rep.miss = b.closed(env, fmt.Sprintf("full miss, tenant emulator (%d callers)", o.callers), tokens)
	rep.miss.note = lookups(m0, gw.metrics(env))
	gw.stop()
	tenant.stop()
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
