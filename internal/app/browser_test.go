package app

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// browserConfig: the dev issuer with alice and a SPA client, local
// metadata, and the caller's own endpoint with CORS for one origin. Both
// pages' origins may log in (dev_issuer.cors_origins); only the first may
// read /me.
const browserConfig = `
server:
  listen: 127.0.0.1:0
  admin_listen: 127.0.0.1:0
  drain_delay: 0s
dev_issuer:
  enabled: true
  listen: 127.0.0.1:0
  audience: https://api.example.local/
  key_file: ${KEY_FILE}
  cors_origins: ["${SPA_ORIGIN}", "${OTHER_ORIGIN}"]
  clients:
    - id: spa
      secret: spa-dev-secret
      grants: [password]
  users:
    - id: "auth0|alice"
      username: alice@example.com
      password: alice-dev-password
      scopes: [read:invoices]
metadata:
  source: local
  local:
    users:
      "auth0|alice":
        app_metadata: {plan: pro, org: acme, internal_note: not-for-the-browser}
self_service:
  enabled: true
  metadata_keys: [plan, org]
  cors_origins: ["${SPA_ORIGIN}"]
routes:
  - match: {path_prefix: /}
    upstreams: [http://127.0.0.1:9]
`

// spaPage logs alice in with the password grant, reads her own metadata
// from the gateway with fetch, and shows it (or the error) in #out.
const spaPage = `<!doctype html>
<title>spa</title>
<pre id="out"></pre>
<script>
(async () => {
  const out = document.getElementById("out");
  try {
    const login = await fetch("%[1]s/oauth/token", {
      method: "POST",
      headers: {"Content-Type": "application/x-www-form-urlencoded"},
      body: new URLSearchParams({grant_type: "password", client_id: "spa", client_secret: "spa-dev-secret",
        username: "alice@example.com", password: "alice-dev-password", audience: "https://api.example.local/"}),
    });
    const token = (await login.json()).access_token;
    out.dataset.login = login.status;
    const me = await fetch("%[2]s/.well-known/gateway/me", {headers: {Authorization: "Bearer " + token}});
    out.textContent = JSON.stringify({status: me.status, body: await me.json()});
  } catch (e) {
    out.textContent = JSON.stringify({error: e.name});
  }
  const done = document.createElement("p");
  done.id = "done";
  done.textContent = "done";
  document.body.appendChild(done);
})();
</script>`

// chromium is the browser's path; the test skips where it is absent
// (make deps installs it).
func chromium(t *testing.T) string {
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Skip("chromium is not installed: run `make deps` (Debian's chromium package) to run the browser test")
	return ""
}

// TestBrowserSPAReadsItsOwnMetadata (seed 002): in headless Chromium, a
// page served from another origin logs alice in with the dev issuer's
// password grant, calls /.well-known/gateway/me with fetch and shows her
// allow-listed app_metadata; the same page from an origin not in
// self_service.cors_origins cannot read it: the browser refuses.
func TestBrowserSPAReadsItsOwnMetadata(t *testing.T) {
	browser := chromium(t)
	var mu sync.Mutex
	var issuer, gateway string
	page := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprintf(w, spaPage, issuer, gateway)
	})
	spa, other := httptest.NewServer(page), httptest.NewServer(page)
	t.Cleanup(spa.Close)
	t.Cleanup(other.Close)
	file := filepath.Join(t.TempDir(), "gateway.yaml")
	if err := os.WriteFile(file, []byte(browserConfig), 0o600); err != nil {
		t.Fatal(err)
	}
	a := startFile(t, file, map[string]string{
		"KEY_FILE": filepath.Join(t.TempDir(), "dev-key.pem"), "SPA_ORIGIN": spa.URL, "OTHER_ORIGIN": other.URL,
	}, nil)
	mu.Lock()
	issuer, gateway = "http://"+a.Addr("dev issuer"), "http://"+a.Addr("gateway")
	mu.Unlock()

	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(browser),
		chromedp.NoSandbox, chromedp.DisableGPU, chromedp.UserDataDir(t.TempDir()),
		chromedp.Flag("disable-quic", true), chromedp.Flag("no-first-run", true),
		chromedp.Flag("disable-background-networking", true), chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(ctx, opts...)
	defer cancelAlloc()
	browserCtx, cancelBrowser := chromedp.NewContext(allocCtx)
	defer func() {
		cancelBrowser()
		// Cancel closes the browser and waits for its process and
		// chromedp's goroutines (goleak checks the package).
		_ = chromedp.Cancel(browserCtx)
	}()

	show := func(url string) (login string, result map[string]any) {
		t.Helper()
		if err := chromedp.Do(browserCtx, chromedp.Navigate(url), chromedp.WaitVisible(chromedp.ID("done"))); err != nil {
			t.Fatalf("%s: %v", url, err)
		}
		text, err := chromedp.Run(browserCtx, chromedp.Text(chromedp.ID("out")))
		if err != nil {
			t.Fatalf("%s: %v", url, err)
		}
		attr, err := chromedp.Run(browserCtx, chromedp.AttributeValue(chromedp.ID("out"), "data-login"))
		if err != nil {
			t.Fatalf("%s: %v", url, err)
		}
		if err := json.Unmarshal([]byte(text), &result); err != nil {
			t.Fatalf("%s shows %q: %v", url, text, err)
		}
		return attr.Value, result
	}

	login, got := show(spa.URL)
	body, _ := got["body"].(map[string]any)
	md, _ := body["metadata"].(map[string]any)
	if login != "200" || got["status"] != 200.0 || body["id"] != "auth0|alice" || md["plan"] != "pro" || md["org"] != "acme" {
		t.Fatalf("the SPA page shows %v (login %s), want alice's plan and org", got, login)
	}
	if _, leaked := md["internal_note"]; leaked || len(md) != 2 {
		t.Errorf("the page sees metadata keys outside self_service.metadata_keys: %v", md)
	}

	login, got = show(other.URL)
	if login != "200" || got["error"] != "TypeError" {
		t.Errorf("a page from an origin not in cors_origins shows %v (login %s), want the browser's TypeError for /me", got, login)
	}
	// What the browser was answered: no CORS grant for that origin.
	req, _ := http.NewRequest(http.MethodOptions, gateway+"/.well-known/gateway/me", nil)
	req.Header.Set("Origin", other.URL)
	req.Header.Set("Access-Control-Request-Method", "GET")
	req.Header.Set("Access-Control-Request-Headers", "authorization")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if acao := resp.Header.Get("Access-Control-Allow-Origin"); acao != "" || !strings.HasPrefix(resp.Status, "403") {
		t.Errorf("preflight from %s: %s, Access-Control-Allow-Origin %q", other.URL, resp.Status, acao)
	}
}
