package main

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/metagate/gateway/internal/benche2e"
	"github.com/metagate/gateway/internal/testenv"
)

// gwConfig is what varies between the scenarios' gateway configurations.
type gwConfig struct {
	name      string
	metadata  map[string]any
	cache     map[string]any
	accessLog bool
	// rateLimit, when set, is the route's rate_limit policy, one that
	// never refuses: the scenario measures the counting, not refusals.
	rateLimit bool
}

func localClients(n int) map[string]any {
	clients := make(map[string]any, n)
	for i := range n {
		clients[benche2e.ClientID(i)] = map[string]any{
			"name": "Service " + benche2e.ClientID(i), "metadata": benche2e.ClientMetadata(i),
		}
	}
	return clients
}

// gateway is a running `gateway serve`.
type gateway struct {
	*proc
	admin string // http://host:port of the admin listener
}

// startGateway writes the configuration and starts the gateway on it, and
// waits until /readyz answers 200.
func startGateway(env *benche2e.Env, dir string, is *testenv.Issuer, upstream string, c gwConfig) *gateway {
	listen, admin := freeAddr(env), freeAddr(env)
	logCfg := map[string]any{"format": "json", "level": "warn", "access": c.accessLog}
	cfg := map[string]any{
		"server": map[string]any{
			"listen": listen, "admin_listen": admin, "pprof": true, // for /debug/pprof/heap?gc=1
			"drain_delay": "0s", "shutdown_timeout": "2s",
		},
		// No access log (log.access) unless -access-log, and warn: one line
		// per request would dominate the gateway's CPU and the comparison.
		"log":      logCfg,
		"issuers":  []any{map[string]any{"issuer": is.URL, "audiences": []string{is.Audience}, "jwks_url": is.JWKSURL}},
		"metadata": c.metadata,
		"cache":    c.cache,
	}
	route := map[string]any{"name": "api", "match": map[string]any{"path_prefix": "/"}, "upstreams": []string{upstream}}
	if c.rateLimit {
		cfg["rate_limits"] = map[string]any{"bench": map[string]any{"limit": 100_000_000, "per": "1s"}}
		route["rate_limit"] = "bench"
	}
	cfg["routes"] = []any{route}
	bin := filepath.Join(dir, "gateway")
	file := filepath.Join(dir, "gateway-"+c.name+".yaml")
	check := func() (string, error) {
		b, err := yaml.Marshal(cfg)
		must(env, err, "marshal config")
		must(env, os.WriteFile(file, b, 0o600), "write config")
		out, err := exec.Command(bin, "check", "--config", file).CombinedOutput()
		return string(out), err
	}
	out, err := check()
	if err != nil && strings.Contains(out, "log.access") && !c.accessLog {
		// A gateway from before log.access: its access log follows
		// log.level, which warn already turns off.
		delete(logCfg, "access")
		out, err = check()
	}
	if err != nil {
		env.Fatalf("gateway check --config %s: %v\n%s", file, err, out)
	}
	p := start(env, bin, false, "serve", "--config", file)
	p.name = "gateway (" + c.name + ")"
	g := &gateway{proc: p, admin: "http://" + admin}
	g.URL = "http://" + listen
	g.waitReady(env, g.admin+"/readyz")
	return g
}

// metrics scrapes the gateway's /metrics.
func (g *gateway) metrics(env *benche2e.Env) map[string]float64 {
	resp, err := http.Get(g.admin + "/metrics")
	must(env, err, "GET /metrics")
	defer resp.Body.Close()
	return testenv.ParseMetrics(env, resp.Body)
}

// liveHeap is the gateway's heap after two full collections: pprof's heap
// endpoint with gc=1 runs runtime.GC before it answers, and
// go_memstats_heap_alloc_bytes is read right after.
func (g *gateway) liveHeap(env *benche2e.Env) float64 {
	for range 2 {
		resp, err := http.Get(g.admin + "/debug/pprof/heap?gc=1")
		must(env, err, "GET /debug/pprof/heap")
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
	}
	v, ok := g.metrics(env)["go_memstats_heap_alloc_bytes"]
	if !ok {
		env.Fatalf("no go_memstats_heap_alloc_bytes in the gateway's /metrics")
	}
	return v
}

// lookups is the share of metadata cache lookups per result between two
// scrapes, as "l2_hit 99.8%, miss 0.2%".
func lookups(before, after map[string]float64) string {
	var total float64
	counts := map[string]float64{}
	for _, r := range []string{"l1_hit", "l2_hit", "miss", "stale", "negative"} {
		k := `gateway_metadata_cache_lookups_total{result="` + r + `"}`
		if d := after[k] - before[k]; d > 0 {
			counts[r] = d
			total += d
		}
	}
	out := ""
	for _, r := range []string{"l1_hit", "l2_hit", "miss", "stale", "negative"} {
		if counts[r] > 0 {
			if out != "" {
				out += ", "
			}
			out += fmt.Sprintf("%s %.1f%%", r, 100*counts[r]/total)
		}
	}
	return out
}

// side is the gateway as a proxy under test.
func (g *gateway) side() side { return side{pid: g.pid(), url: g.URL, admin: g.admin} }
