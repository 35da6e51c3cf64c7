package app

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/metagate/gateway/internal/testenv"
	"github.com/metagate/gateway/internal/testenv/auth0emu"
)

// reloadFixture runs a copy of deploy/examples/auth0.yaml that the test
// can rewrite.
type reloadFixture struct {
	a    *App
	file string
	orig string
	emu  *auth0emu.Tenant
	tok  string
}

// exampleText is deploy/examples/auth0.yaml without the drain delay, so
// the test's shutdown is quick even after a reload.
func exampleText(t *testing.T) string {
	orig, err := os.ReadFile(exampleFile)
	if err != nil {
		t.Fatal(err)
	}
	return strings.Replace(string(orig), "server:\n", "server:\n  drain_delay: 0s\n", 1)
}

func newReloadFixture(t *testing.T, upstream string) *reloadFixture {
	emu := tenant(t)
	f := &reloadFixture{file: filepath.Join(t.TempDir(), "gateway.yaml"), orig: exampleText(t), emu: emu}
	f.write(t, f.orig)
	f.a = startFile(t, f.file, exampleEnv(emu, "", upstream), nil)
	f.tok = emu.ClientToken("svc-billing", apiAudience, time.Hour)
	return f
}

func (f *reloadFixture) write(t *testing.T, content string) {
	t.Helper()
	if err := os.WriteFile(f.file, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

// withReportsRoute adds a route for /reports to another upstream, ahead of
// the catch-all.
func withReportsRoute(cfg, upstream string) string {
	return strings.Replace(cfg, "\nroutes:\n", "\nroutes:\n  - name: reports\n    match:\n      path_prefix: /reports\n    upstreams: [\""+upstream+"\"]\n", 1)
}

// withIssuer adds iss, for apiAudience, second in the issuers list: the
// first issuer still names the Management API tenant
// (metadata.auth0.management_url defaults from it).
func withIssuer(cfg, iss string) string {
	const first = "    audiences: [\"${AUTH0_AUDIENCE}\"]\n"
	return strings.Replace(cfg, first, first+"  - issuer: "+iss+"\n    audiences: [\""+apiAudience+"\"]\n", 1)
}

func (f *reloadFixture) get(t *testing.T, path string) int {
	req, _ := http.NewRequest("GET", "http://"+f.a.Addr("gateway")+path, nil)
	req.Header.Set("Authorization", "Bearer "+f.tok)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Errorf("GET %s: %v", path, err)
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestReloadAddsRouteWithoutDroppingRequests: a valid new config with a
// new route is served after Reload, no request in flight or arriving
// during the swap fails, and the JWKS and metadata cache stay warm (no new
// JWKS fetch, no new Management API call).
func TestReloadAddsRouteWithoutDroppingRequests(t *testing.T) {
	api, reports := newRecorder(t), newRecorder(t)
	f := newReloadFixture(t, api.URL)
	if code := f.get(t, "/reports/q3"); code != 200 || reports.hits.Load() != 0 {
		t.Fatalf("before reload: %d, reports upstream hits %d", code, reports.hits.Load())
	}
	jwks, clients := f.emu.Calls(auth0emu.EndpointJWKS), f.emu.Calls("clients")

	// Traffic during the reload: 4 callers, new connections and reused ones.
	var sent, failed atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				sent.Add(1)
				if code := f.get(t, "/orders"); code != 200 {
					failed.Add(1)
				}
			}
		}()
	}
	time.Sleep(100 * time.Millisecond)
	f.write(t, withReportsRoute(f.orig, reports.URL))
	if err := f.a.Reload(context.Background()); err != nil {
		t.Fatalf("Reload: %v", err)
	}
	time.Sleep(100 * time.Millisecond)
	close(stop)
	wg.Wait()
	t.Logf("%d requests during the reload, %d failed", sent.Load(), failed.Load())
	if failed.Load() != 0 || sent.Load() < 10 {
		t.Fatalf("%d of %d requests failed during the reload", failed.Load(), sent.Load())
	}

	if code := f.get(t, "/reports/q3"); code != 200 || reports.hits.Load() != 1 {
		t.Fatalf("after reload: %d, reports upstream hits %d, want the new route", code, reports.hits.Load())
	}
	if n := f.emu.Calls(auth0emu.EndpointJWKS); n != jwks {
		t.Errorf("JWKS fetched %d more times: the reload dropped the warm keys", n-jwks)
	}
	if n := f.emu.Calls("clients"); n != clients {
		t.Errorf("Management API called %d more times: the reload dropped the warm cache", n-clients)
	}
	m := scrape(t, f.a)
	if m[`gateway_config_reloads_total{result="success"}`] != 1 {
		t.Errorf("reload success counter = %v", m[`gateway_config_reloads_total{result="success"}`])
	}
}

// TestReloadRejectsBrokenConfig: an invalid file, or one that changes a
// restart-only key, leaves the running config serving; the reason names
// the key and the file, and the failure is counted.
func TestReloadRejectsBrokenConfig(t *testing.T) {
	api, reports := newRecorder(t), newRecorder(t)
	f := newReloadFixture(t, api.URL)
	// Exported as 0 before any reload, so increase() alerts see the first.
	if got, ok := scrape(t, f.a)[`gateway_config_reloads_total{result="failure"}`]; !ok || got != 0 {
		t.Fatalf("failure counter before any reload: %v (exported: %v), want an exported 0", got, ok)
	}
	f.write(t, withReportsRoute(f.orig, reports.URL))
	if err := f.a.Reload(context.Background()); err != nil {
		t.Fatalf("Reload: %v", err)
	}
	good := withReportsRoute(f.orig, reports.URL)
	for _, tc := range []struct {
		name, content, want string
	}{
		{"unknown key", strings.Replace(good, "  ttl: 5m", "  ttl: 5m\n  tll: 1m", 1), "cache.tll"},
		{"invalid value", strings.Replace(good, "path_prefix: /reports", "path_prefix: reports", 1), "routes[0].match.path_prefix"},
		{"not YAML", good + "\n\t- [", f.file},
		{"restart-only key", strings.Replace(good, "format: json", "format: console", 1), "log changed: only a restart applies it"},
		{"restart-only GC keys", strings.Replace(good, "server:\n", "server:\n  gc_percent: 200\n  memory_limit: 1GiB\n", 1), "server.gc_percent, server.memory_limit changed: only a restart applies it"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f.write(t, tc.content)
			err := f.a.Reload(context.Background())
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), f.file) {
				t.Fatalf("Reload error %v, want it to name %q and the file", err, tc.want)
			}
			before := reports.hits.Load()
			if code := f.get(t, "/reports/q3"); code != 200 || reports.hits.Load() != before+1 {
				t.Errorf("after a refused reload /reports answered %d (upstream hits %d→%d): the old config must stay", code, before, reports.hits.Load())
			}
		})
	}
	m := scrape(t, f.a)
	if got := m[`gateway_config_reloads_total{result="failure"}`]; got != 5 {
		t.Errorf("reload failure counter = %v, want 5", got)
	}
}

// TestWatchConfigReloadsOnChange: with server.watch_config set, editing
// the file is enough; a Kubernetes-style symlink swap counts as an edit.
func TestWatchConfigReloadsOnChange(t *testing.T) {
	api, reports := newRecorder(t), newRecorder(t)
	emu := tenant(t)
	dir := t.TempDir()
	withWatch := strings.Replace(exampleText(t), "server:\n", "server:\n  watch_config: 100ms\n", 1)
	// ..data -> v1/ ; gateway.yaml -> ..data/gateway.yaml, as kubelet does.
	for _, v := range []struct{ dir, content string }{{"v1", withWatch}, {"v2", withReportsRoute(withWatch, reports.URL)}} {
		if err := os.MkdirAll(filepath.Join(dir, v.dir), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, v.dir, "gateway.yaml"), []byte(v.content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	must := func(err error) {
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.Symlink("v1", filepath.Join(dir, "..data")))
	must(os.Symlink(filepath.Join("..data", "gateway.yaml"), filepath.Join(dir, "gateway.yaml")))
	f := &reloadFixture{emu: emu, file: filepath.Join(dir, "gateway.yaml")}
	f.a = startFile(t, f.file, exampleEnv(emu, "", api.URL), nil)
	f.tok = emu.ClientToken("svc-billing", apiAudience, time.Hour)
	if f.get(t, "/reports/q3"); reports.hits.Load() != 0 {
		t.Fatal("reports route served before the change")
	}

	must(os.Symlink("v2", filepath.Join(dir, "..data_tmp")))
	must(os.Rename(filepath.Join(dir, "..data_tmp"), filepath.Join(dir, "..data")))
	testenv.Eventually(t, 5*time.Second, "the watched change to be served", func() bool {
		f.get(t, "/reports/q3")
		return reports.hits.Load() > 0
	})
}

// TestReloadAddsIssuer: a reload that adds an issuer waits for its JWKS,
// then accepts its tokens; one whose JWKS cannot be fetched is refused and
// the running verifier stays.
func TestReloadAddsIssuer(t *testing.T) {
	api := newRecorder(t)
	f := newReloadFixture(t, api.URL)
	f.a.newIssuerWait = 500 * time.Millisecond
	other := auth0emu.New(t)
	other.AddAPI(apiAudience, "read:orders")
	other.AddClient(auth0emu.Client{ID: "svc-partner", Secret: "p", Grants: map[string][]string{apiAudience: {"read:orders"}}})
	partner := other.ClientToken("svc-partner", apiAudience, time.Hour)
	call := func(tok string) int {
		req, _ := http.NewRequest("GET", "http://"+f.a.Addr("gateway")+"/orders", nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := call(partner); code != 401 {
		t.Fatalf("token of an unconfigured issuer: %d, want 401", code)
	}
	other.SetFault(auth0emu.EndpointJWKS, auth0emu.Fault500)
	f.write(t, withIssuer(f.orig, other.Issuer()))
	if err := f.a.Reload(context.Background()); err == nil || !strings.Contains(err.Error(), "issuers: JWKS not fetched") {
		t.Fatalf("reload with an unreachable JWKS: %v, want it refused", err)
	}
	if code := call(f.tok); code != 200 {
		t.Fatalf("after the refused reload the running issuer answered %d", code)
	}

	other.SetFault(auth0emu.EndpointJWKS, auth0emu.FaultNone)
	if err := f.a.Reload(context.Background()); err != nil {
		t.Fatalf("Reload: %v", err)
	}
	// Verified now; the metadata source (the first tenant) does not know
	// the caller, so the answer is 403 unknown caller, not 401.
	if code := call(partner); code != 403 {
		t.Errorf("token of the added issuer: %d, want 403 (verified, unknown to the metadata source)", code)
	}
	if code := call(f.tok); code != 200 {
		t.Errorf("token of the first issuer after the reload: %d", code)
	}
}

// TestRetirementsRunEachCloserOnce: closeAll runs every pending closer
// exactly once, also those whose timer has fired but whose callback still
// waits for the lock closeAll holds, and returns only once they have all
// run, the ones timers took included. A closer added after closeAll runs
// at once.
func TestRetirementsRunEachCloserOnce(t *testing.T) {
	const rounds, closers = 200, 8
	ran := make([][closers]atomic.Int32, rounds)
	for i := range rounds {
		var r retirements
		for j := range closers {
			// Mostly timers that fire at once; some that closeAll stops.
			after := time.Duration(j/6) * time.Millisecond
			r.add(after, func() { ran[i][j].Add(1) })
		}
		// While the lock is held, the due timers fire and their callbacks
		// queue on it; closeAll, right after, usually gets it before them.
		r.mu.Lock()
		for range 3 {
			runtime.Gosched()
		}
		r.mu.Unlock()
		r.closeAll()
		for j := range closers {
			if n := ran[i][j].Load(); n != 1 {
				t.Fatalf("round %d: closer %d had run %d times when closeAll returned, want 1", i, j, n)
			}
		}
	}
	// The callbacks that found their closer taken have long returned.
	for i := range ran {
		for j := range closers {
			if n := ran[i][j].Load(); n != 1 {
				t.Errorf("round %d: closer %d ran %d times, want 1", i, j, n)
			}
		}
	}

	var r retirements
	r.closeAll()
	late := false
	r.add(time.Hour, func() { late = true })
	if !late {
		t.Error("a closer added after closeAll did not run at once")
	}
}
