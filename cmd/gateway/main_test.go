package main

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/metagate/gateway/internal/demo"
	"github.com/metagate/gateway/internal/testenv"
)

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// shippedEnv points the shipped gateway.yaml at free ports and a
// temporary dev key, so the test runs beside anything else on the machine.
func shippedEnv(t *testing.T) map[string]string {
	env := map[string]string{
		"GATEWAY_LISTEN":       freeAddr(t),
		"GATEWAY_ADMIN_LISTEN": freeAddr(t),
		"DEV_ISSUER_LISTEN":    freeAddr(t),
		"DEMO_LISTEN":          freeAddr(t),
		"DEV_KEY_FILE":         filepath.Join(t.TempDir(), "dev-key.pem"),
		"ASSERTION_KEY_FILE":   filepath.Join(t.TempDir(), "assertion-key.pem"),
	}
	for k, v := range env {
		t.Setenv(k, v)
	}
	return env
}

func runCLI(args ...string) (code int, stdout, stderr string) {
	var out, errb bytes.Buffer
	code = run(args, &out, &errb)
	return code, out.String(), errb.String()
}

// TestMakeRunAndCurl is the README's first experience: serve the shipped
// gateway.yaml, mint a token with `gateway token`, and call through to the
// demo upstream.
func TestMakeRunAndCurl(t *testing.T) {
	env := shippedEnv(t)
	cfg := "../../gateway.yaml"
	done := make(chan int, 1)
	go func() {
		code, _, stderr := runCLI("serve", "--config", cfg)
		if code != 0 {
			t.Logf("serve stderr:\n%s", stderr)
		}
		done <- code
	}()
	gw := "http://" + env["GATEWAY_LISTEN"]
	tok := listeningToken(t, gw, cfg)

	req, _ := http.NewRequest("GET", gw+"/anything", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("X-Client-Id", "forged")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var echo demo.Echo
	err = json.NewDecoder(resp.Body).Decode(&echo)
	resp.Body.Close()
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("status %d, decode %v", resp.StatusCode, err)
	}
	for k, v := range map[string]string{
		"X-Client-Id": "svc-billing", "X-Client-Kind": "client", "X-Client-Name": "Billing Service",
		"X-Client-Scopes": "read:invoices write:invoices", "X-Client-Metadata-Tier": "gold",
	} {
		if echo.Headers[k] != v {
			t.Errorf("upstream got %s = %q, want %q", k, echo.Headers[k], v)
		}
	}

	checkAssertion(t, gw, "http://"+env["GATEWAY_ADMIN_LISTEN"], echo.Headers["X-Gateway-Assertion"])
	checkTokenEndpointAndMe(t, gw)
	checkPasswordGrant(t, "http://"+env["DEV_ISSUER_LISTEN"], gw)
	checkInvalidateCLI(t, "http://"+env["GATEWAY_ADMIN_LISTEN"])

	// No token: 401 with a Bearer challenge.
	resp, err = http.Get(gw + "/anything")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 401 || !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Bearer realm=") {
		t.Errorf("no token: %d %q", resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
	}

	// Readiness on the admin port, then a clean stop on SIGTERM.
	testenv.Eventually(t, 10*time.Second, "/readyz", func() bool {
		resp, err := http.Get("http://" + env["GATEWAY_ADMIN_LISTEN"] + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
	if err := syscall.Kill(os.Getpid(), syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case code := <-done:
		if code != 0 {
			t.Errorf("serve exited %d after SIGTERM, want 0", code)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("serve did not stop after SIGTERM")
	}
}

func TestTokenSubcommand(t *testing.T) {
	shippedEnv(t)
	cfg := "../../gateway.yaml"
	code, out, _ := runCLI("token", "--user", "auth0|alice", "--scope", "read:a read:b", "--ttl", "2m", "--config", cfg)
	if code != 0 {
		t.Fatalf("exit %d", code)
	}
	parts := strings.Split(strings.TrimSpace(out), ".")
	if len(parts) != 3 {
		t.Fatalf("not a JWT: %q", out)
	}
	payload, _ := base64.RawURLEncoding.DecodeString(parts[1])
	var c map[string]any
	if err := json.Unmarshal(payload, &c); err != nil {
		t.Fatal(err)
	}
	if c["sub"] != "auth0|alice" || c["scope"] != "read:a read:b" || c["exp"].(float64)-c["iat"].(float64) != 120 {
		t.Errorf("claims %v", c)
	}
	if !strings.HasPrefix(c["iss"].(string), "http://127.0.0.1:") || !strings.HasSuffix(c["iss"].(string), "/") {
		t.Errorf("iss %v", c["iss"])
	}
	for _, args := range [][]string{{"token"}, {"token", "--client", "a", "--user", "b"}} {
		if code, _, stderr := runCLI(append(args, "--config", cfg)...); code != 2 || !strings.Contains(stderr, "exactly one of --client") {
			t.Errorf("%v: exit %d, stderr %q", args, code, stderr)
		}
	}
}

func TestCheckSubcommand(t *testing.T) {
	if code, out, stderr := runCLI("check", "--config", "../../gateway.yaml"); code != 0 || !strings.Contains(out, "configuration is valid") {
		t.Fatalf("check on the shipped gateway.yaml: exit %d\n%s%s", code, out, stderr)
	}
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	os.WriteFile(bad, []byte("server:\n  listen: nowhere\n  colour: blue\nroutes: []\n"), 0o600)
	code, _, stderr := runCLI("check", "--config", bad)
	if code != 1 {
		t.Errorf("exit %d, want 1", code)
	}
	for _, want := range []string{bad, "server.colour: unknown key"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr %q does not mention %q", stderr, want)
		}
	}
	if code, _, stderr := runCLI("check", "--config", filepath.Join(t.TempDir(), "missing.yaml")); code != 1 || !strings.Contains(stderr, "missing.yaml") {
		t.Errorf("missing file: exit %d, %q", code, stderr)
	}
}

func TestVersionAndUnknownCommand(t *testing.T) {
	if code, out, _ := runCLI("version"); code != 0 || !strings.HasPrefix(out, "gateway ") {
		t.Errorf("version: %d %q", code, out)
	}
	if code, _, stderr := runCLI("frobnicate"); code != 2 || !strings.Contains(stderr, "unknown command") {
		t.Errorf("unknown command: %d %q", code, stderr)
	}
}

// listeningToken waits until the gateway at gw answers, then mints a dev
// token for svc-billing with the CLI, as a user would.
func listeningToken(t *testing.T, gw, cfg string) string {
	t.Helper()
	testenv.Eventually(t, 10*time.Second, "the gateway to listen", func() bool {
		resp, err := http.Get(gw + "/")
		if err == nil {
			resp.Body.Close()
		}
		return err == nil
	})
	code, tok, stderr := runCLI("token", "--client", "svc-billing", "--config", cfg)
	if code != 0 {
		t.Fatalf("token: exit %d: %s", code, stderr)
	}
	return strings.TrimSpace(tok)
}
