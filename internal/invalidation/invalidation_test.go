package invalidation_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/metagate/gateway/cache"
	"github.com/metagate/gateway/enrich"
	"github.com/metagate/gateway/internal/invalidation"
	"github.com/metagate/gateway/internal/testenv"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const (
	issuer     = "https://tenant.auth0.com/"
	streamAuth = "Bearer 9f2c1d7e-log-stream-secret"
	adminToken = "admin-token-0123456789"
)

// counting is a real local source that counts its lookups, so a test sees
// when the cache asks again.
type counting struct {
	mu    sync.Mutex
	calls map[string]int
	src   *enrich.LocalSource
}

func (c *counting) Lookup(ctx context.Context, cl enrich.Caller) (enrich.Record, error) {
	c.mu.Lock()
	c.calls[cl.ID]++
	c.mu.Unlock()
	return c.src.Lookup(ctx, cl)
}

func (c *counting) n(id string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.calls[id]
}

// newResolver is a real resolver over a real two-tier cache (a real
// redis-server) for clients svc-billing, svc-reports and user auth0|alice.
func newResolver(t *testing.T) (*enrich.Resolver, *counting) {
	t.Helper()
	r := testenv.StartRedis(t)
	rdb, err := cache.NewRedisClient(r.URL, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rdb.Close() })
	tc, err := cache.New[*enrich.Metadata](cache.Options{TTL: time.Hour, MaxEntries: 100, Redis: rdb, RedisTimeout: time.Second}, enrich.Codec{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tc.Close() })
	src := &counting{calls: map[string]int{}, src: enrich.NewLocalSource(
		map[string]enrich.Record{"svc-billing": {Name: "Billing", Metadata: map[string]any{"tier": "gold"}}, "svc-reports": {Name: "Reports"}},
		map[string]enrich.Record{"auth0|alice": {Metadata: map[string]any{"plan": "pro"}}},
	)}
	return enrich.NewResolver(src, tc, []string{issuer}), src
}

func warm(t *testing.T, r *enrich.Resolver, callers ...enrich.Caller) {
	t.Helper()
	for _, c := range callers {
		if _, err := r.Resolve(context.Background(), c); err != nil {
			t.Fatal(err)
		}
	}
}

var (
	billing = enrich.NewCaller(issuer, enrich.KindClient, "svc-billing")
	reports = enrich.NewCaller(issuer, enrich.KindClient, "svc-reports")
	alice   = enrich.NewCaller(issuer, enrich.KindUser, "auth0|alice")
)

func post(t *testing.T, h http.Handler, auth, body string) (int, string) {
	t.Helper()
	srv := httptest.NewServer(h)
	defer srv.Close()
	req, _ := http.NewRequest("POST", srv.URL+"/hooks/auth0/log-stream", strings.NewReader(body))
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// sapi is one Auth0 log stream entry for a Management API operation.
func sapi(method, path string) string {
	b, _ := json.Marshal(map[string]any{"log_id": "9000123", "data": map[string]any{
		"date": "2026-12-01T12:00:00.000Z", "type": "sapi", "description": "Update a client",
		"details": map[string]any{"request": map[string]any{"method": method, "path": path, "body": map[string]any{"client_metadata": map[string]any{"tier": "platinum"}}}},
	}})
	return string(b)
}

func TestLogStreamInvalidatesChangedCallers(t *testing.T) {
	res, src := newResolver(t)
	lines := map[string]int{}
	var mu sync.Mutex
	h := invalidation.NewLogStream(invalidation.LogStreamOptions{
		Authorization: streamAuth, Issuers: []string{issuer}, MaxBodyBytes: 1 << 20, Invalidator: res,
		OnLine: func(r string) { mu.Lock(); lines[r]++; mu.Unlock() },
	})
	for _, tc := range []struct {
		name, body string
		want       []enrich.Caller // invalidated
		kept       []enrich.Caller
	}{
		{"JSON lines", sapi("patch", "/api/v2/clients/svc-billing") + "\n" + sapi("get", "/api/v2/clients/svc-reports") + "\n", []enrich.Caller{billing}, []enrich.Caller{reports, alice}},
		{"JSON array", "[" + sapi("PATCH", "/api/v2/users/auth0%7Calice") + "," + sapi("delete", "/api/v2/clients/svc-reports") + "]", []enrich.Caller{alice, reports}, []enrich.Caller{billing}},
		{"one object, pretty-printed", strings.ReplaceAll(sapi("put", "/api/v2/clients/svc-billing"), ",", ",\n  "), []enrich.Caller{billing}, []enrich.Caller{reports, alice}},
		{"other events and sub-resources", `{"log_id":"1","data":{"type":"s","details":{"request":{"method":"patch","path":"/api/v2/clients/svc-billing"}}}}` + "\n" +
			sapi("patch", "/api/v2/users/auth0%7Calice/roles") + "\n" + sapi("patch", "/api/v2/clients") + "\n" + sapi("post", "/api/v2/clients/svc-billing"), nil, []enrich.Caller{billing, reports, alice}},
		{"malformed lines are skipped", "{not json\n" + sapi("patch", "/api/v2/clients/svc-reports") + "\n\x00\x01\n", []enrich.Caller{reports}, []enrich.Caller{billing, alice}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			warm(t, res, billing, reports, alice)
			before := map[string]int{"svc-billing": src.n("svc-billing"), "svc-reports": src.n("svc-reports"), "auth0|alice": src.n("auth0|alice")}
			if code, body := post(t, h, streamAuth, tc.body); code != 200 {
				t.Fatalf("status %d: %s", code, body)
			}
			warm(t, res, billing, reports, alice)
			for _, c := range tc.want {
				if src.n(c.ID) != before[c.ID]+1 {
					t.Errorf("%s was not invalidated", c.ID)
				}
			}
			for _, c := range tc.kept {
				if src.n(c.ID) != before[c.ID] {
					t.Errorf("%s was invalidated", c.ID)
				}
			}
		})
	}
	mu.Lock()
	defer mu.Unlock()
	if lines["malformed"] != 2 || lines["ignored"] < 5 {
		t.Errorf("lines counted %v, want 2 malformed and the ignored ones", lines)
	}
}

func TestLogStreamRefusesWrongSecretAndLargeBodies(t *testing.T) {
	res, src := newResolver(t)
	h := invalidation.NewLogStream(invalidation.LogStreamOptions{
		Authorization: streamAuth, Issuers: []string{issuer}, MaxBodyBytes: 4096, Invalidator: res,
	})
	warm(t, res, billing)
	for _, auth := range []string{"", "Bearer wrong", streamAuth + "x", strings.ToLower(streamAuth), "Basic " + streamAuth} {
		if code, _ := post(t, h, auth, sapi("patch", "/api/v2/clients/svc-billing")); code != http.StatusUnauthorized {
			t.Errorf("Authorization %q: status %d, want 401", auth, code)
		}
	}
	big := strings.Repeat(sapi("patch", "/api/v2/clients/svc-billing")+"\n", 40)
	if code, _ := post(t, h, streamAuth, big); code != http.StatusRequestEntityTooLarge {
		t.Errorf("oversized batch: status %d, want 413", code)
	}
	warm(t, res, billing)
	if n := src.n("svc-billing"); n != 1 {
		t.Errorf("refused requests invalidated the caller (%d lookups)", n)
	}
}

func adminDo(t *testing.T, srv *httptest.Server, method, path, token, body string) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(method, srv.URL+path, strings.NewReader(body))
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out
}

func TestAdminAPI(t *testing.T) {
	res, src := newResolver(t)
	var sources []string
	srv := httptest.NewServer(invalidation.NewAdmin(invalidation.AdminOptions{
		Token: adminToken, Issuers: []string{issuer}, Invalidator: res,
		OnInvalidate: func(s string) { sources = append(sources, s) },
	}))
	defer srv.Close()
	warm(t, res, billing, reports, alice)

	for _, tok := range []string{"", "wrong", adminToken + "x"} {
		if code, _ := adminDo(t, srv, "DELETE", "/admin/cache", tok, ""); code != http.StatusUnauthorized {
			t.Errorf("token %q: status %d, want 401", tok, code)
		}
	}
	code, e := adminDo(t, srv, "GET", "/admin/cache/entry?kind=client&id=svc-billing", adminToken, "")
	if code != 200 || e["cached"] != true || e["name"] != "Billing" || e["issuer"] != issuer || e["fresh_for_seconds"].(float64) <= 3500 {
		t.Errorf("entry: %d %v", code, e)
	}
	if code, _ := adminDo(t, srv, "POST", "/admin/cache/invalidate", adminToken, `{"kind":"client","id":"svc-billing"}`); code != 200 {
		t.Fatalf("invalidate: %d", code)
	}
	if _, e := adminDo(t, srv, "GET", "/admin/cache/entry?kind=client&id=svc-billing", adminToken, ""); e["cached"] != false {
		t.Errorf("entry after invalidation: %v", e)
	}
	warm(t, res, billing, reports)
	if src.n("svc-billing") != 2 || src.n("svc-reports") != 1 {
		t.Errorf("lookups billing %d reports %d, want 2 and 1", src.n("svc-billing"), src.n("svc-reports"))
	}
	if code, _ := adminDo(t, srv, "DELETE", "/admin/cache", adminToken, ""); code != 200 {
		t.Fatalf("DELETE /admin/cache: %d", code)
	}
	warm(t, res, billing, reports, alice)
	if src.n("svc-billing") != 3 || src.n("svc-reports") != 2 || src.n("auth0|alice") != 2 {
		t.Errorf("after DELETE /admin/cache every caller is looked up again: %v", src.calls)
	}
	for body, want := range map[string]string{
		`{"kind":"robot","id":"x"}`: "kind", `{"kind":"client"}`: "id is required",
		`{"kind":"client","id":"x","issuer":"https://other/"}`: "not served", `{"kind":"client","id":"x","extra":1}`: "body must be",
	} {
		code, e := adminDo(t, srv, "POST", "/admin/cache/invalidate", adminToken, body)
		if code != 400 || !strings.Contains(e["error_description"].(string), want) {
			t.Errorf("%s: %d %v", body, code, e)
		}
	}
	if strings.Join(sources, ",") != "admin,admin_all" {
		t.Errorf("counted sources %v", sources)
	}
}
