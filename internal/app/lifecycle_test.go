package app

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
	"golang.org/x/net/websocket"

	"github.com/metagate/gateway/internal/config"
	"github.com/metagate/gateway/internal/testenv"
	"github.com/metagate/gateway/internal/testenv/auth0emu"
)

func readyz(t *testing.T, a *App) (int, string) {
	t.Helper()
	resp, err := http.Get("http://" + a.Addr("admin") + "/readyz")
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, strings.TrimSpace(string(b))
}

// refusing reports whether addr no longer accepts TCP connections.
func refusing(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return true
	}
	c.Close()
	return false
}

// TestReadinessTransitions walks /readyz through its states: not ready
// while the issuer's JWKS cannot be fetched, ready once it is, not ready
// again as soon as a drain starts, while the gateway still serves new
// connections until the drain delay is over.
func TestReadinessTransitions(t *testing.T) {
	emu := tenant(t)
	emu.SetFault(auth0emu.EndpointJWKS, auth0emu.Fault500)
	up := newRecorder(t)
	cfg, lookup := loadExample(t, exampleEnv(emu, "", up.URL))
	cfg.Server.DrainDelay = config.Duration(time.Second)
	cfg.Issuers[0].JWKSRefresh = config.Duration(time.Second)
	a, stop := runApp(t, cfg, lookup)
	defer stop()

	if code, body := readyz(t, a); code != 503 || body != "not ready: JWKS not fetched yet" {
		t.Fatalf("JWKS down: /readyz = %d %q, want 503 JWKS not fetched yet", code, body)
	}
	jwksFailures := `gateway_jwks_refresh_failures_total{issuer="` + emu.Issuer() + `"}`
	if m := scrape(t, a); m[jwksFailures] < 1 {
		t.Errorf("%s = %v while the JWKS endpoint fails", jwksFailures, m[jwksFailures])
	}
	emu.SetFault(auth0emu.EndpointJWKS, auth0emu.FaultNone)
	testenv.Eventually(t, 10*time.Second, "/readyz 200 after the JWKS comes back", func() bool {
		code, _ := readyz(t, a)
		return code == 200
	})
	tok := emu.ClientToken("svc-billing", apiAudience, time.Hour)
	if code := get(t, a, tok); code != 200 {
		t.Fatalf("ready gateway answered %d", code)
	}

	stopped := make(chan error, 1)
	go func() { stopped <- stop() }()
	testenv.Eventually(t, 2*time.Second, "/readyz draining", func() bool {
		_, body := readyz(t, a)
		return body == "not ready: draining"
	})
	// Draining, not closed: a new connection is still served.
	c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	req, _ := http.NewRequest("GET", "http://"+a.Addr("gateway")+"/orders", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("new connection during the drain: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("request during the drain: %d", resp.StatusCode)
	}
	if err := <-stopped; err != nil {
		t.Fatalf("Run: %v", err)
	}
	if !refusing(a.Addr("gateway")) {
		t.Error("gateway still accepts connections after shutdown")
	}
}

// TestShutdownDeadlineEndsStreamsAndWebSockets: streamed responses and
// WebSocket tunnels are not abandoned when the listener closes (they keep
// working while the deadline runs) and are closed when it passes.
func TestShutdownDeadlineEndsStreamsAndWebSockets(t *testing.T) {
	emu := tenant(t)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/ws" {
			websocket.Handler(func(c *websocket.Conn) { _, _ = io.Copy(c, c) }).ServeHTTP(w, r)
			return
		}
		w.Header().Set("Content-Type", "text/event-stream")
		for {
			if _, err := io.WriteString(w, "data: tick\n\n"); err != nil {
				return
			}
			w.(http.Flusher).Flush()
			select {
			case <-r.Context().Done():
				return
			case <-time.After(50 * time.Millisecond):
			}
		}
	}))
	defer up.Close()
	cfg, lookup := loadExample(t, exampleEnv(emu, "", up.URL))
	const deadline = 2 * time.Second
	cfg.Server.ShutdownTimeout = config.Duration(deadline)
	a, stop := runApp(t, cfg, lookup)
	tok := emu.ClientToken("svc-billing", apiAudience, time.Hour)

	req, _ := http.NewRequest("GET", "http://"+a.Addr("gateway")+"/events", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("stream: %v %v", resp, err)
	}
	defer resp.Body.Close()
	events := bufio.NewReader(resp.Body)
	if line, err := events.ReadString('\n'); err != nil || line != "data: tick\n" {
		t.Fatalf("first event %q, %v", line, err)
	}
	wcfg, _ := websocket.NewConfig("ws://"+a.Addr("gateway")+"/ws", "http://"+a.Addr("gateway"))
	wcfg.Header.Set("Authorization", "Bearer "+tok)
	ws, err := websocket.DialConfig(wcfg)
	if err != nil {
		t.Fatalf("websocket: %v", err)
	}
	defer ws.Close()

	start := time.Now()
	stopped := make(chan error, 1)
	go func() { stopped <- stop() }()
	testenv.Eventually(t, 5*time.Second, "listener closed", func() bool { return refusing(a.Addr("gateway")) })

	// The listener is closed, yet both still work.
	echo := func() error {
		if _, err := ws.Write([]byte("ping")); err != nil {
			return err
		}
		_ = ws.SetReadDeadline(time.Now().Add(deadline + 3*time.Second))
		buf := make([]byte, 4)
		_, err := io.ReadFull(ws, buf)
		return err
	}
	if err := echo(); err != nil {
		t.Fatalf("WebSocket closed before the shutdown deadline: %v", err)
	}
	if _, err := events.ReadString('\n'); err != nil {
		t.Fatalf("stream closed before the shutdown deadline: %v", err)
	}

	// At the deadline both end.
	var wg sync.WaitGroup
	var streamEnd, wsEnd atomic.Int64
	wg.Add(2)
	go func() {
		defer wg.Done()
		_, _ = io.Copy(io.Discard, events)
		streamEnd.Store(int64(time.Since(start)))
	}()
	go func() {
		defer wg.Done()
		_ = ws.SetReadDeadline(time.Now().Add(deadline + 5*time.Second))
		_, _ = io.Copy(io.Discard, ws)
		wsEnd.Store(int64(time.Since(start)))
	}()
	wg.Wait()
	err = <-stopped
	if err == nil || !strings.Contains(err.Error(), "shutdown deadline reached") {
		t.Errorf("Run returned %v, want the shutdown deadline reported", err)
	}
	for name, d := range map[string]time.Duration{"stream": time.Duration(streamEnd.Load()), "websocket": time.Duration(wsEnd.Load())} {
		t.Logf("%s closed %s after the stop", name, d.Round(time.Millisecond))
		if d < deadline-100*time.Millisecond || d > deadline+4*time.Second {
			t.Errorf("%s closed %s after the stop, want at the %s deadline", name, d, deadline)
		}
	}
}

// loadExample loads deploy/examples/auth0.yaml with env and no drain delay.
func loadExample(t *testing.T, env map[string]string) (*config.Config, func(string) (string, bool)) {
	t.Helper()
	return loadFile(t, exampleFile, env)
}

// TestSkipDrain: a second signal (SkipDrain) ends a long drain delay.
func TestSkipDrain(t *testing.T) {
	emu := tenant(t)
	cfg, lookup := loadExample(t, exampleEnv(emu, "", newRecorder(t).URL))
	cfg.Server.DrainDelay = config.Duration(time.Minute)
	a, stop := runApp(t, cfg, lookup)
	stopped := make(chan error, 1)
	go func() { stopped <- stop() }()
	testenv.Eventually(t, 5*time.Second, "draining", func() bool { _, b := readyz(t, a); return b == "not ready: draining" })
	a.SkipDrain()
	select {
	case err := <-stopped:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("SkipDrain did not end the 1m drain")
	}
}

// TestPprofSwitch: /debug/pprof exists on the admin listener only when
// server.pprof is on.
func TestPprofSwitch(t *testing.T) {
	emu := tenant(t)
	for _, on := range []bool{false, true} {
		cfg, lookup := loadExample(t, exampleEnv(emu, "", newRecorder(t).URL))
		cfg.Server.Pprof = on
		a, stop := runApp(t, cfg, lookup)
		want := map[bool]int{false: 404, true: 200}[on]
		for _, p := range []string{"/debug/pprof/", "/debug/pprof/goroutine?debug=1", "/debug/pprof/cmdline"} {
			resp, err := http.Get("http://" + a.Addr("admin") + p)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != want {
				t.Errorf("pprof=%v: GET %s = %d, want %d", on, p, resp.StatusCode, want)
			}
		}
		if err := stop(); err != nil {
			t.Fatal(err)
		}
	}
}

// TestShutdownCancelsReload: a reload waiting for a new issuer's JWKS,
// whether the endpoint hangs (the reload is still building) or fails (it
// is polling for the keys), does not hold Shutdown up for newIssuerWait;
// it is abandoned, and neither it nor the parts it built outlive Shutdown.
func TestShutdownCancelsReload(t *testing.T) {
	for _, tc := range []struct {
		name  string
		fault auth0emu.Fault
	}{{"JWKS hangs", auth0emu.FaultHang}, {"JWKS fails", auth0emu.Fault500}} {
		t.Run(tc.name, func(t *testing.T) {
			emu, other, up := tenant(t), auth0emu.New(t), newRecorder(t)
			other.SetFault(auth0emu.EndpointJWKS, tc.fault)
			file := filepath.Join(t.TempDir(), "gateway.yaml")
			orig := exampleText(t)
			writeFile(t, file, orig)
			before := goleak.IgnoreCurrent()
			cfg, lookup := loadFile(t, file, exampleEnv(emu, "", up.URL))
			a, stop := runApp(t, cfg, lookup)
			defer stop()
			a.newIssuerWait = time.Minute

			writeFile(t, file, withIssuer(orig, other.Issuer()))
			reloaded := make(chan error, 1)
			go func() { reloaded <- a.Reload(context.Background()) }()
			failures := `gateway_jwks_refresh_failures_total{issuer="` + other.Issuer() + `"}`
			testenv.Eventually(t, 5*time.Second, "the reload to wait for the new issuer's JWKS", func() bool {
				if tc.fault == auth0emu.FaultHang {
					return other.Calls(auth0emu.EndpointJWKS) > 0 // hanging in the first fetch
				}
				return scrape(t, a)[failures] > 0 // first fetch failed: polling
			})

			start := time.Now()
			if err := stop(); err != nil {
				t.Fatalf("Run: %v", err)
			}
			if took := time.Since(start); took > 3*time.Second {
				t.Errorf("Shutdown took %s under a reload waiting for a JWKS, want it cancelled at once", took)
			}
			select {
			case err := <-reloaded:
				if err == nil || !strings.Contains(err.Error(), "shutting down") {
					t.Errorf("Reload returned %v, want it abandoned for the shutdown", err)
				}
			case <-time.After(2 * time.Second):
				t.Fatal("Reload still running after Shutdown returned")
			}
			// The JWKS clients' idle connections are the only thing left.
			http.DefaultTransport.(*http.Transport).CloseIdleConnections()
			if err := goleak.Find(before); err != nil {
				t.Errorf("left running after Shutdown: %v", err)
			}
		})
	}
}

// TestRunStopsWatcherFirst: when a server fails, Run stops the config
// watcher, and waits for it, before it shuts down: a reload of the
// watcher's must not run into the closing of the parts. An in-flight
// request holds the shutdown open while the test looks.
func TestRunStopsWatcherFirst(t *testing.T) {
	emu := tenant(t)
	arrived, release := make(chan struct{}, 1), make(chan struct{})
	up := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {
		arrived <- struct{}{}
		<-release
	}))
	defer up.Close()
	defer close(release) // before up.Close: Close waits for the handler
	file := filepath.Join(t.TempDir(), "gateway.yaml")
	writeFile(t, file, strings.Replace(exampleText(t), "server:\n", "server:\n  watch_config: 100ms\n", 1))
	cfg, lookup := loadFile(t, file, exampleEnv(emu, "", up.URL))
	a, stop := runApp(t, cfg, lookup)
	defer stop()
	testenv.Eventually(t, 5*time.Second, "the watcher running", func() bool { return watchers() == 1 })

	served := make(chan int, 1)
	go func() { served <- get(t, a, emu.ClientToken("svc-billing", apiAudience, time.Hour)) }()
	<-arrived
	for _, s := range a.servers {
		if s.name == "gateway" {
			_ = s.ln.Close() // the gateway's Serve fails: Run shuts down
		}
	}
	testenv.Eventually(t, 5*time.Second, "Shutdown to begin", a.draining.Load)
	if n := watchers(); n != 0 {
		t.Errorf("the config watcher still runs while Shutdown closes the gateway (%d goroutines)", n)
	}
	release <- struct{}{}
	if code := <-served; code != 200 {
		t.Errorf("in-flight request answered %d, want 200", code)
	}
	if err := stop(); err == nil || !strings.Contains(err.Error(), "gateway:") {
		t.Errorf("Run returned %v, want the gateway server's failure", err)
	}
}

// watchers counts the goroutines running App.watch.
func watchers() int {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			return strings.Count(string(buf[:n]), "internal/app.(*App).watch(")
		}
		buf = make([]byte, 2*len(buf))
	}
}

func writeFile(t *testing.T, file, content string) {
	t.Helper()
	if err := os.WriteFile(file, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}
