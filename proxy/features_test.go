package proxy

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/metagate/gateway/cache"
	"github.com/metagate/gateway/enrich"
)

// TestClaimsBecomeHeaders: headers.claims maps namespaced custom claims to
// trusted headers; nested values arrive as compact JSON, scalars as they
// are, control characters never, and a client's own spelling of those
// headers never.
func TestClaimsBecomeHeaders(t *testing.T) {
	f := newFixture(t, fixtureOpts{claims: map[string]string{
		"https://example.com/org":   "X-Client-Org",
		"https://example.com/roles": "X-Client-Roles",
		"email_verified":            "X-User-Email-Verified",
		"https://example.com/seats": "X-Client-Seats",
		"https://example.com/note":  "X-Client-Note",
		"https://example.com/gone":  "X-Client-Gone",
	}})
	c := f.issuer.Claims("svc-billing")
	c["https://example.com/org"] = map[string]any{"id": "acme", "tier": 3, "name": "Ünïcode"}
	c["https://example.com/roles"] = []any{"admin", "billing"}
	c["email_verified"] = true
	c["https://example.com/seats"] = 12345678901
	c["https://example.com/note"] = "line\r\nX-Evil: 1"
	tok := f.issuer.Sign(t, f.issuer.Key(), c, nil)

	forged := http.Header{"X-Client-Org": {"forged"}, "X_Client_Gone": {"forged"}, "x-client-roles": {"root"}}
	resp := f.do(t, "GET", "/things", tok, forged)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d", resp.StatusCode)
	}
	h := f.up.lastHeader()
	want := map[string]string{
		"X-Client-Org":          `{"id":"acme","name":"\u00dcn\u00efcode","tier":3}`,
		"X-Client-Roles":        `["admin","billing"]`,
		"X-User-Email-Verified": "true",
		"X-Client-Seats":        "12345678901",
		"X-Client-Note":         "lineX-Evil: 1",
	}
	for name, v := range want {
		if got := h.Values(name); len(got) != 1 || got[0] != v {
			t.Errorf("%s = %q, want [%q]", name, got, v)
		}
	}
	for _, name := range []string{"X-Client-Gone", "X_Client_Gone", "X-Evil"} {
		if _, ok := h[name]; ok {
			t.Errorf("%s reached the upstream: %q", name, h[name])
		}
	}
}

// newMeFixture serves /.well-known/gateway/me on a gateway whose
// catch-all route would otherwise take the path, with the real resolver
// and cache (5-minute TTL).
func newMeFixture(t *testing.T, origins ...string) *fixture {
	t.Helper()
	tc, err := cache.New[*enrich.Metadata](cache.Options{TTL: 5 * time.Minute, MaxEntries: 100}, enrich.Codec{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tc.Close() })
	var res *enrich.Resolver
	f := newFixture(t, fixtureOpts{
		resolver: resolverFunc(func() MetadataResolver { return res }),
		endpoints: func(f *fixture) map[string]http.Handler {
			res = enrich.NewResolver(testResolver().src, tc, []string{f.issuer.URL})
			return map[string]http.Handler{"/.well-known/gateway/me": NewSelfService(SelfServiceOptions{
				Verifier: f.verifier, Resolver: res, Realm: "gateway",
				MetadataKeys: []string{"tier", "plan", "roles"}, CORSOrigins: origins,
			})}
		},
	})
	return f
}

// resolverFunc defers to a resolver built after the fixture's verifier.
type resolverFunc func() MetadataResolver

func (r resolverFunc) Resolve(ctx context.Context, c enrich.Caller) (*enrich.Metadata, error) {
	return r().Resolve(ctx, c)
}

func TestSelfServiceAnswersTheCallersOwnAllowListedMetadata(t *testing.T) {
	f := newMeFixture(t)
	resp := f.do(t, "GET", "/.well-known/gateway/me", f.issuer.Token(t, "svc-billing"), nil)
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	if f.up.hits.Load() != 0 {
		t.Fatal("the endpoint's request reached the catch-all upstream")
	}
	var me struct {
		Kind, ID, ClientID, Issuer string
		Scopes                     []string
		Metadata                   map[string]any
	}
	if err := json.Unmarshal(body, &me); err != nil {
		t.Fatalf("%v: %s", err, body)
	}
	if me.Kind != "client" || me.ID != "svc-billing" || me.Issuer != f.issuer.URL || len(me.Scopes) != 1 || me.Scopes[0] != "read:things" {
		t.Errorf("identity: %+v", me)
	}
	// tier is allow-listed; region and tenant_id are not.
	if len(me.Metadata) != 1 || me.Metadata["tier"] != "gold" {
		t.Errorf("metadata = %v, want only tier", me.Metadata)
	}
	if !strings.Contains(string(body), `"client_id":"svc-billing"`) {
		t.Errorf("client_id missing: %s", body)
	}
	cc := resp.Header.Get("Cache-Control")
	age, err := strconv.Atoi(strings.TrimPrefix(cc, "private, max-age="))
	if err != nil || age <= 0 || age > 300 {
		t.Errorf("Cache-Control %q: want private with max-age within the 5-minute metadata TTL", cc)
	}

	// A user's app_metadata, filtered the same way.
	c := f.issuer.Claims("")
	c["sub"], c["azp"], c["gty"] = "auth0|alice", "spa-app", nil
	resp = f.do(t, "GET", "/.well-known/gateway/me", f.issuer.Sign(t, f.issuer.Key(), c, nil), nil)
	body, _ = io.ReadAll(resp.Body)
	if !strings.Contains(string(body), `"kind":"user","id":"auth0|alice","client_id":"spa-app"`) ||
		!strings.Contains(string(body), `"metadata":{"plan":"pro","roles":["admin"]}`) {
		t.Errorf("user answer: %s", body)
	}
}

func TestSelfServiceETagAnd304(t *testing.T) {
	f := newMeFixture(t)
	tok := f.issuer.Token(t, "svc-billing")
	resp := f.do(t, "GET", "/.well-known/gateway/me", tok, nil)
	etag := resp.Header.Get("ETag")
	if resp.StatusCode != 200 || !strings.HasPrefix(etag, `"`) {
		t.Fatalf("status %d, ETag %q", resp.StatusCode, etag)
	}
	resp = f.do(t, "GET", "/.well-known/gateway/me", tok, http.Header{"If-None-Match": {`"other", W/` + etag}})
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusNotModified || len(body) != 0 || resp.Header.Get("ETag") != etag {
		t.Fatalf("matching If-None-Match: status %d, body %q, ETag %q", resp.StatusCode, body, resp.Header.Get("ETag"))
	}
	resp = f.do(t, "GET", "/.well-known/gateway/me", tok, http.Header{"If-None-Match": {`"stale"`}})
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("other If-None-Match: status %d", resp.StatusCode)
	}
	// Another caller has another answer, so another tag.
	resp = f.do(t, "GET", "/.well-known/gateway/me", f.issuer.Token(t, "svc-unknown"), nil)
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("unknown caller: status %d, want 403 (on_unknown: reject)", resp.StatusCode)
	}
}

func TestSelfServiceWithoutAValidTokenIs401(t *testing.T) {
	f := newMeFixture(t)
	for name, tok := range map[string]string{"none": "", "garbage": "not.a.jwt"} {
		resp := f.do(t, "GET", "/.well-known/gateway/me", tok, nil)
		if resp.StatusCode != http.StatusUnauthorized || !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), `Bearer realm="gateway"`) {
			t.Errorf("%s: status %d, WWW-Authenticate %q", name, resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
		}
		if cc := resp.Header.Get("Cache-Control"); cc != "no-store" {
			t.Errorf("%s: Cache-Control %q", name, cc)
		}
	}
	resp := f.do(t, "GET", "/.well-known/gateway/me", "", http.Header{"Authorization": {"Basic Zm9vOmJhcg=="}})
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("Basic credentials: status %d, want 400", resp.StatusCode)
	}
}

func TestSelfServiceCORS(t *testing.T) {
	f := newMeFixture(t, "https://app.example.com")
	pre := func(origin, method string) *http.Response {
		return f.do(t, "OPTIONS", "/.well-known/gateway/me", "", http.Header{
			"Origin": {origin}, "Access-Control-Request-Method": {method}, "Access-Control-Request-Headers": {"authorization"},
		})
	}
	resp := pre("https://app.example.com", "GET")
	if resp.StatusCode != http.StatusNoContent || resp.Header.Get("Access-Control-Allow-Origin") != "https://app.example.com" ||
		!strings.Contains(resp.Header.Get("Access-Control-Allow-Headers"), "Authorization") {
		t.Fatalf("preflight from a listed origin: status %d, headers %v", resp.StatusCode, resp.Header)
	}
	for _, origin := range []string{"https://evil.example", "https://app.example.com.evil.example", "null"} {
		resp = pre(origin, "GET")
		if resp.StatusCode != http.StatusForbidden || resp.Header.Get("Access-Control-Allow-Origin") != "" {
			t.Errorf("preflight from %s: status %d, ACAO %q", origin, resp.StatusCode, resp.Header.Get("Access-Control-Allow-Origin"))
		}
	}
	if resp = pre("https://app.example.com", "DELETE"); resp.StatusCode != http.StatusForbidden {
		t.Errorf("preflight for DELETE: status %d", resp.StatusCode)
	}
	tok := f.issuer.Token(t, "svc-billing")
	resp = f.do(t, "GET", "/.well-known/gateway/me", tok, http.Header{"Origin": {"https://app.example.com"}})
	if resp.Header.Get("Access-Control-Allow-Origin") != "https://app.example.com" || !strings.Contains(resp.Header.Get("Vary"), "Origin") ||
		!strings.Contains(resp.Header.Get("Access-Control-Expose-Headers"), "ETag") {
		t.Errorf("GET from a listed origin: headers %v", resp.Header)
	}
	resp = f.do(t, "GET", "/.well-known/gateway/me", tok, http.Header{"Origin": {"https://evil.example"}})
	if resp.Header.Get("Access-Control-Allow-Origin") != "" {
		t.Errorf("GET from an unlisted origin got ACAO %q", resp.Header.Get("Access-Control-Allow-Origin"))
	}
}
