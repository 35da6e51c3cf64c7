package app

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/metagate/gateway/internal/testenv/auth0emu"
)

// policyConfig is a gateway in front of one upstream with three policy
// routes: a plan-gated route, a tenant route whose {tenant} must be the
// caller's own, and a route whose expression reads a field no caller has.
const policyConfig = `
server:
  listen: 127.0.0.1:0
  admin_listen: 127.0.0.1:0
issuers:
  - issuer: ${AUTH0_ISSUER}
    audiences: ["${AUTH0_AUDIENCE}"]
metadata:
  source: auth0
  auth0:
    client_id: gateway-m2m
    client_secret: m2m-secret
    rate_per_second: 50
    burst: 50
invalidation:
  admin_token: policy-admin-token
routes:
  - name: pro-reports
    match:
      path_prefix: /reports
    upstreams: ["${UPSTREAM_URL}"]
    allow_if: metadata.plan in ["pro", "enterprise"]
  - name: tenant-invoices
    match:
      path: /tenants/{tenant}/invoices/{id}
    upstreams: ["${UPSTREAM_URL}"]
    allow_if:
      - caller.kind == "client"
      - request.path_params.tenant == metadata.tenant_id
  - name: broken
    match:
      path_prefix: /broken
    upstreams: ["${UPSTREAM_URL}"]
    allow_if: metadata.no_such_field == "x"
`

// pathRecorder is the upstream: it keeps the path of the last request.
type pathRecorder struct {
	*httptest.Server
	hits atomic.Int64
	mu   sync.Mutex
	path string
}

func newPathRecorder(t *testing.T) *pathRecorder {
	r := &pathRecorder{}
	r.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		r.mu.Lock()
		r.path = req.URL.EscapedPath()
		r.mu.Unlock()
		r.hits.Add(1)
	}))
	t.Cleanup(r.Close)
	return r
}

func startPolicyGateway(t *testing.T) (*App, *auth0emu.Tenant, *pathRecorder) {
	t.Helper()
	emu := tenant(t)
	emu.AddClient(auth0emu.Client{ID: "svc-free", Secret: "s", Name: "Free Service",
		Metadata: map[string]string{"plan": "free", "tenant_id": "acme"},
		Grants:   map[string][]string{apiAudience: {"read:orders"}}})
	up := newPathRecorder(t)
	file := filepath.Join(t.TempDir(), "gateway.yaml")
	if err := os.WriteFile(file, []byte(policyConfig), 0o600); err != nil {
		t.Fatal(err)
	}
	a := startFile(t, file, map[string]string{
		"AUTH0_ISSUER": emu.Issuer(), "AUTH0_AUDIENCE": apiAudience, "UPSTREAM_URL": up.URL,
	}, nil)
	return a, emu, up
}

type answer struct {
	status int
	body   map[string]any
	path   string // the path the upstream received, "" when it was not reached
}

func call(t *testing.T, a *App, up *pathRecorder, path, token string) answer {
	t.Helper()
	before := up.hits.Load()
	req, _ := http.NewRequest("GET", "http://"+a.Addr("gateway")+path, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	ans := answer{status: resp.StatusCode}
	_ = json.Unmarshal(b, &ans.body)
	if up.hits.Load() != before {
		up.mu.Lock()
		ans.path = up.path
		up.mu.Unlock()
	}
	return ans
}

// TestPolicyFollowsMetadataChange: a free caller is refused on the pro
// route; once its plan changes in Auth0 and the change reaches the
// gateway through the invalidation API, the same token passes, with no
// restart.
func TestPolicyFollowsMetadataChange(t *testing.T) {
	a, emu, up := startPolicyGateway(t)
	tok := emu.ClientToken("svc-free", apiAudience, time.Hour)

	got := call(t, a, up, "/reports/q3", tok)
	if got.status != 403 || got.body["error"] != "forbidden" || got.body["route"] != "pro-reports" || got.path != "" {
		t.Fatalf("free caller on the pro route: %d %v (upstream %q), want 403 forbidden naming the route, not forwarded", got.status, got.body, got.path)
	}
	emu.SetClientMetadata("svc-free", map[string]string{"plan": "pro", "tenant_id": "acme"})
	if got := call(t, a, up, "/reports/q3", tok); got.status != 403 {
		t.Fatalf("the cached plan changed without an invalidation: %d", got.status)
	}
	req, _ := http.NewRequest("POST", "http://"+a.Addr("admin")+"/admin/cache/invalidate",
		strings.NewReader(`{"kind":"client","id":"svc-free"}`))
	req.Header.Set("Authorization", "Bearer policy-admin-token")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		t.Fatalf("invalidate: %d", resp.StatusCode)
	}
	if got := call(t, a, up, "/reports/q3", tok); got.status != 200 || got.path == "" {
		t.Fatalf("after the plan changed to pro: %d (upstream %q), want 200 forwarded", got.status, got.path)
	}
	m := scrape(t, a)
	if m[`gateway_policy_decisions_total{result="denied",route="pro-reports"}`] != 2 ||
		m[`gateway_policy_decisions_total{result="allowed",route="pro-reports"}`] != 1 {
		t.Errorf("policy decisions: %v", filterPrefix(m, "gateway_policy_decisions_total"))
	}
}

// TestPolicyTenantFromPath: {tenant} in the path must be the caller's own
// tenant_id, whatever the spelling of the path's literal segments.
func TestPolicyTenantFromPath(t *testing.T) {
	a, emu, up := startPolicyGateway(t)
	tok := emu.ClientToken("svc-free", apiAudience, time.Hour)
	for _, tc := range []struct {
		path      string
		status    int
		forwarded string // the path the upstream reads
	}{
		{"/tenants/acme/invoices/7", 200, "/tenants/acme/invoices/7"},
		// Literal segments are sent as the template spells them.
		{"/TENANTS/acme/Invoices/7/", 200, "/tenants/acme/invoices/7"},
		{"/tenants/globex/invoices/7", 403, ""},
		{"/tenants/ACME/invoices/7", 403, ""}, // the value is compared as sent
		{"/tenants/%61cme/invoices/7", 200, "/tenants/acme/invoices/7"},
		{"/tenants/acme/invoices", 404, ""},
		{"/tenants/acme/invoices/7/extra", 404, ""},
	} {
		got := call(t, a, up, tc.path, tok)
		if got.status != tc.status || got.path != tc.forwarded {
			t.Errorf("%s: %d %v, upstream read %q; want %d, upstream %q", tc.path, got.status, got.body, got.path, tc.status, tc.forwarded)
		}
	}
	// A user of the same tenant is refused by the first expression.
	emu.AddUser(auth0emu.User{ID: "auth0|carol", AppMetadata: map[string]any{"tenant_id": "acme"}})
	utok := emu.UserToken("auth0|carol", "spa", []string{apiAudience}, []string{"read:orders"}, nil, time.Hour)
	if got := call(t, a, up, "/tenants/acme/invoices/7", utok); got.status != 403 {
		t.Errorf("user caller on a client-only tenant route: %d", got.status)
	}
}

// TestPolicyRuntimeErrorFailsClosed: an expression that reads a missing
// field denies (403) and is counted as an error.
func TestPolicyRuntimeErrorFailsClosed(t *testing.T) {
	a, emu, up := startPolicyGateway(t)
	tok := emu.ClientToken("svc-billing", apiAudience, time.Hour)
	if got := call(t, a, up, "/broken", tok); got.status != 403 || got.path != "" {
		t.Fatalf("missing field: %d (upstream %q), want 403 and no upstream request", got.status, got.path)
	}
	if n := scrape(t, a)[`gateway_policy_decisions_total{result="error",route="broken"}`]; n != 1 {
		t.Errorf("policy errors counted: %v", n)
	}
}

func filterPrefix(m map[string]float64, prefix string) map[string]float64 {
	out := map[string]float64{}
	for k, v := range m {
		if strings.HasPrefix(k, prefix) {
			out[k] = v
		}
	}
	return out
}
