package main

import (
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/metagate/gateway/internal/testenv"
)

// signalFixture serves a copy of the shipped gateway.yaml with public
// routes in front, on free ports, in this process, so the test can send
// it real signals.
type signalFixture struct {
	env  map[string]string
	file string
	base string
	done chan int
}

func startSignalFixture(t *testing.T, serverKeys string, routes string) *signalFixture {
	t.Helper()
	env := shippedEnv(t)
	raw, err := os.ReadFile("../../gateway.yaml")
	if err != nil {
		t.Fatal(err)
	}
	base := string(raw)
	for _, k := range []string{"drain_delay", "watch_config"} {
		// SIGHUP must be the only trigger here, and the drain as the test sets it.
		i := strings.Index(base, "  "+k+":")
		j := strings.Index(base[i:], "\n")
		base = base[:i] + base[i+j+1:]
	}
	base = strings.Replace(base, "server:\n", "server:\n"+serverKeys, 1)
	f := &signalFixture{env: env, base: base, file: filepath.Join(t.TempDir(), "gateway.yaml"), done: make(chan int, 1)}
	f.write(t, routes)
	go func() {
		code, _, stderr := runCLI("serve", "--config", f.file)
		if code != 0 {
			t.Logf("serve stderr:\n%s", stderr)
		}
		f.done <- code
	}()
	testenv.Eventually(t, 10*time.Second, "/readyz", func() bool {
		code, _ := f.admin("/readyz")
		return code == 200
	})
	return f
}

// write puts routes ahead of the shipped catch-all route.
func (f *signalFixture) write(t *testing.T, routes string) {
	t.Helper()
	content := strings.Replace(f.base, "\nroutes:\n", "\nroutes:\n"+routes, 1)
	if err := os.WriteFile(f.file, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

func (f *signalFixture) admin(path string) (int, string) {
	resp, err := http.Get("http://" + f.env["GATEWAY_ADMIN_LISTEN"] + path)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func (f *signalFixture) get(t *testing.T, path string) (int, string) {
	t.Helper()
	c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Get("http://" + f.env["GATEWAY_LISTEN"] + path)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func (f *signalFixture) signal(t *testing.T, s syscall.Signal) {
	t.Helper()
	if err := syscall.Kill(os.Getpid(), s); err != nil {
		t.Fatal(err)
	}
}

func (f *signalFixture) wait(t *testing.T) int {
	t.Helper()
	select {
	case code := <-f.done:
		return code
	case <-time.After(20 * time.Second):
		t.Fatal("serve did not stop")
		return -1
	}
}

func publicRoute(name, prefix, upstream string) string {
	return "  - name: " + name + "\n    match:\n      path_prefix: " + prefix + "\n    upstreams: [\"" + upstream + "\"]\n    auth: public\n"
}

// TestSIGTERMDrainsThenFinishesSlowRequest: on SIGTERM /readyz fails at
// once, new connections are still served for the drain delay, then the
// listener closes; a request that was in flight the whole time completes.
func TestSIGTERMDrainsThenFinishesSlowRequest(t *testing.T) {
	arrived, release := make(chan struct{}), make(chan struct{})
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			close(arrived)
			<-release
		}
		_, _ = io.WriteString(w, "done "+r.URL.Path)
	}))
	defer up.Close()
	f := startSignalFixture(t, "  drain_delay: 1s\n", publicRoute("slow", "/slow", up.URL)+publicRoute("fast", "/fast", up.URL))

	type result struct {
		code int
		body string
	}
	slow := make(chan result, 1)
	go func() {
		code, body := f.get(t, "/slow")
		slow <- result{code, body}
	}()
	<-arrived
	start := time.Now()
	f.signal(t, syscall.SIGTERM)

	testenv.Eventually(t, 10*time.Second, "/readyz to report draining", func() bool {
		code, body := f.admin("/readyz")
		return code == 503 && strings.Contains(body, "draining")
	})
	if code, body := f.get(t, "/fast"); code != 200 || body != "done /fast" {
		t.Fatalf("new connection during the drain: %d %q", code, body)
	}
	testenv.Eventually(t, 10*time.Second, "the listener to close after the drain", func() bool {
		c, err := net.DialTimeout("tcp", f.env["GATEWAY_LISTEN"], time.Second)
		if err == nil {
			c.Close()
		}
		return err != nil
	})
	if d := time.Since(start); d < 900*time.Millisecond {
		t.Errorf("listener closed %s after SIGTERM, before the 1s drain delay", d)
	}
	select {
	case r := <-slow:
		t.Fatalf("slow request ended before its upstream answered: %+v", r)
	default:
	}
	close(release)
	r := <-slow
	if r.code != 200 || r.body != "done /slow" {
		t.Errorf("in-flight request got %d %q, want it completed", r.code, r.body)
	}
	if code := f.wait(t); code != 0 {
		t.Errorf("serve exited %d, want 0", code)
	}
}

// TestSIGHUPReloads: SIGHUP with a valid file serves its new route; with
// a broken file the old routes keep serving and the failure is counted.
func TestSIGHUPReloads(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "up "+r.URL.Path)
	}))
	defer up.Close()
	f := startSignalFixture(t, "  drain_delay: 0s\n", publicRoute("a", "/a", up.URL))
	if code, _ := f.get(t, "/b"); code != 401 { // the shipped catch-all wants a token
		t.Fatalf("/b before reload: %d, want 401 from the catch-all route", code)
	}

	f.write(t, publicRoute("a", "/a", up.URL)+publicRoute("b", "/b", up.URL))
	f.signal(t, syscall.SIGHUP)
	testenv.Eventually(t, 10*time.Second, "the new route after SIGHUP", func() bool {
		code, body := f.get(t, "/b")
		return code == 200 && body == "up /b"
	})

	f.write(t, publicRoute("a", "/a", up.URL)+"  - name: broken\n    upstreams: [\"not a url\"]\n")
	f.signal(t, syscall.SIGHUP)
	testenv.Eventually(t, 10*time.Second, "the failed reload to be counted", func() bool {
		_, m := f.admin("/metrics")
		return strings.Contains(m, `gateway_config_reloads_total{result="failure"} 1`)
	})
	if code, body := f.get(t, "/b"); code != 200 || body != "up /b" {
		t.Errorf("after a broken reload /b answered %d %q: the previous config must stay", code, body)
	}
	f.signal(t, syscall.SIGTERM)
	if code := f.wait(t); code != 0 {
		t.Errorf("serve exited %d, want 0", code)
	}
}

// TestHealthSubcommand: the probe the container image's HEALTHCHECK runs.
func TestHealthSubcommand(t *testing.T) {
	f := startSignalFixture(t, "  drain_delay: 0s\n", "")
	admin := f.env["GATEWAY_ADMIN_LISTEN"]
	if code, out, errOut := runCLI("health", "--addr", admin); code != 0 || out != "ok\n" {
		t.Errorf("health: exit %d, %q %q", code, out, errOut)
	}
	if code, out, errOut := runCLI("health", "--addr", admin, "--ready"); code != 0 || out != "ready\n" {
		t.Errorf("health --ready: exit %d, %q %q", code, out, errOut)
	}
	f.signal(t, syscall.SIGTERM)
	if code := f.wait(t); code != 0 {
		t.Errorf("serve exited %d", code)
	}
	if code, _, errOut := runCLI("health", "--addr", admin, "--timeout", "500ms"); code != 1 || !strings.Contains(errOut, "health:") {
		t.Errorf("health against a stopped gateway: exit %d, %q; want 1 with the reason", code, errOut)
	}
}
