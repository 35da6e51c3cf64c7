package proxy

import (
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/metagate/gateway/enrich"
)

func TestClientTokenReachesUpstreamWithTrustedHeaders(t *testing.T) {
	f := newFixture(t, fixtureOpts{})
	resp := f.do(t, "GET", "/anything?q=1", f.issuer.Token(t, "svc-billing"), nil)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d, want 200", resp.StatusCode)
	}
	h := f.up.lastHeader()
	want := map[string]string{
		"X-Client-Id":                 "svc-billing",
		"X-Client-Kind":               "client",
		"X-Client-Name":               "Billing Service",
		"X-Client-Scopes":             "read:things",
		"X-Client-Metadata-Tier":      "gold",
		"X-Client-Metadata-Region":    "eu-west-1",
		"X-Client-Metadata-Tenant-Id": "acme",
	}
	for k, v := range want {
		if got := h.Get(k); got != v {
			t.Errorf("%s = %q, want %q", k, got, v)
		}
	}
	if h.Get("X-User-Id") != "" {
		t.Errorf("X-User-Id set for a client token: %q", h.Get("X-User-Id"))
	}
	var md map[string]any
	if err := json.Unmarshal([]byte(h.Get("X-Client-Metadata")), &md); err != nil || md["tier"] != "gold" {
		t.Errorf("X-Client-Metadata = %q (%v), want JSON with tier gold", h.Get("X-Client-Metadata"), err)
	}
	if h.Get("Authorization") == "" {
		t.Error("Authorization was not forwarded to the upstream")
	}
	if got := h.Get("X-Forwarded-For"); got != "127.0.0.1" {
		t.Errorf("X-Forwarded-For = %q, want 127.0.0.1", got)
	}
	if f.up.last.URL.RequestURI() != "/anything?q=1" {
		t.Errorf("upstream path = %q", f.up.last.URL.RequestURI())
	}
}

func TestUserTokenCarriesAppMetadata(t *testing.T) {
	f := newFixture(t, fixtureOpts{})
	c := f.issuer.Claims("spa-app")
	c["sub"] = "auth0|alice"
	c["aud"] = []string{f.issuer.Audience, f.issuer.URL + "userinfo"}
	c["permissions"] = []string{"read:things", "write:things"}
	delete(c, "gty")
	resp := f.do(t, "GET", "/", f.issuer.Sign(t, f.issuer.Key(), c, nil), nil)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d, want 200", resp.StatusCode)
	}
	h := f.up.lastHeader()
	for k, v := range map[string]string{
		"X-Client-Kind":          "user",
		"X-User-Id":              "auth0|alice",
		"X-Client-Id":            "spa-app",
		"X-Client-Scopes":        "read:things write:things",
		"X-Client-Metadata-Plan": "pro",
		"X-Client-Metadata-Beta": "true",
	} {
		if got := h.Get(k); got != v {
			t.Errorf("%s = %q, want %q", k, got, v)
		}
	}
	if got := h.Get("X-Client-Metadata-Roles"); got != "" {
		t.Errorf("nested value forwarded as a per-key header: %q", got)
	}
	if got := h.Get("X-Client-Metadata"); !strings.Contains(got, `"roles":["admin"]`) {
		t.Errorf("X-Client-Metadata = %q, want nested roles in the JSON header", got)
	}
	if h.Get("X-Client-Name") != "" {
		t.Errorf("X-Client-Name set for a user: %q", h.Get("X-Client-Name"))
	}
	// user_metadata is user-editable: its own header, never a trusted per-key one.
	if got := h.Get("X-User-Metadata"); got != `{"theme":"dark"}` {
		t.Errorf("X-User-Metadata = %q", got)
	}
	if h.Get("X-Client-Metadata-Theme") != "" || strings.Contains(h.Get("X-Client-Metadata"), "theme") {
		t.Error("user_metadata leaked into the trusted metadata headers")
	}
}

func TestSpoofedTrustedHeadersNeverReachUpstream(t *testing.T) {
	f := newFixture(t, fixtureOpts{routes: func(up *url.URL) []RouteConfig {
		return []RouteConfig{
			{Name: "public", PathPrefix: "/public", Upstreams: []*url.URL{up}, Auth: AuthPublic},
			{Name: "optional", PathPrefix: "/optional", Upstreams: []*url.URL{up}, Auth: AuthOptional},
			{Name: "api", PathPrefix: "/", Upstreams: []*url.URL{up}},
		}
	}})
	tok := f.issuer.Token(t, "svc-billing")
	forged := func(extra ...string) http.Header {
		h := http.Header{
			"X-Client-Id":            {"forged"},
			"X-Client-Metadata-Tier": {"platinum"},
			"X-Client-Metadata-Root": {"true"},
			"X-User-Id":              {"auth0|admin"},
			"x_client_kind":          {"forged"}, // underscores: some servers read this as X-Client-Kind
			"X-CLIENT-SCOPES":        {"admin"},
		}
		for i := 0; i+1 < len(extra); i += 2 {
			h[extra[i]] = append(h[extra[i]], extra[i+1])
		}
		return h
	}
	cases := []struct {
		name, path, token string
		hdr               http.Header
		wantID            string
	}{
		{"client sends X-Client-Id with a valid token", "/api", tok, forged(), "svc-billing"},
		{"client lists the trusted header in Connection", "/api", tok, forged("Connection", "X-Client-Id, X-Client-Kind"), "svc-billing"},
		{"public route", "/public/x", "", forged(), ""},
		{"public route with Connection trick", "/public/x", "", forged("Connection", "X-Forwarded-For"), ""},
		{"optional route without token", "/optional/x", "", forged(), ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			resp := f.do(t, "GET", tc.path, tc.token, tc.hdr)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("status %d, want 200", resp.StatusCode)
			}
			h := f.up.lastHeader()
			for k, vs := range h {
				if !strings.HasPrefix(strings.ToLower(strings.ReplaceAll(k, "_", "-")), "x-client-") && !strings.HasPrefix(strings.ToLower(k), "x-user-") {
					continue
				}
				for _, v := range vs {
					if v == "forged" || v == "platinum" || v == "auth0|admin" || v == "admin" || (k == "X-Client-Metadata-Root") {
						t.Errorf("forged header reached upstream: %s: %s", k, v)
					}
				}
			}
			if got := h.Get("X-Client-Id"); got != tc.wantID {
				t.Errorf("X-Client-Id = %q, want %q", got, tc.wantID)
			}
			if tc.wantID != "" && h.Get("X-Client-Kind") != "client" {
				t.Errorf("X-Client-Kind = %q, want client (set by the gateway despite Connection)", h.Get("X-Client-Kind"))
			}
		})
	}
}

func TestRejectionsNeverReachUpstream(t *testing.T) {
	f := newFixture(t, fixtureOpts{})
	unknown := f.issuer.Token(t, "svc-nobody")
	cases := []struct {
		name       string
		hdr        http.Header
		wantStatus int
		wantAuth   string // substring of WWW-Authenticate
		wantError  string
	}{
		{"no token", nil, 401, `Bearer realm="gateway"`, "unauthorized"},
		{"basic auth instead of bearer", http.Header{"Authorization": {"Basic dXNlcjpwYXNz"}}, 400, `error="invalid_request"`, "invalid_request"},
		{"token in query string only (never read, never forwarded)", nil, 400, `error="invalid_request"`, "invalid_request"},
		{"garbage token", http.Header{"Authorization": {"Bearer not-a-jwt"}}, 401, `error="invalid_token"`, "invalid_token"},
		{"empty bearer", http.Header{"Authorization": {"Bearer "}}, 400, `error="invalid_request"`, "invalid_request"},
		{"two Authorization headers", http.Header{"Authorization": {"Bearer a.b.c", "Bearer d.e.f"}}, 400, `error="invalid_request"`, "invalid_request"},
		{"caller unknown to the metadata source", http.Header{"Authorization": {"Bearer " + unknown}}, 403, "", "unknown_caller"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := f.up.hits.Load()
			path := "/x"
			if strings.HasPrefix(tc.name, "token in query string only") {
				path = "/x?access_token=" + f.issuer.Token(t, "svc-billing")
			}
			resp := f.do(t, "GET", path, "", tc.hdr)
			if resp.StatusCode != tc.wantStatus {
				t.Fatalf("status %d, want %d", resp.StatusCode, tc.wantStatus)
			}
			if got := resp.Header.Get("WWW-Authenticate"); !strings.Contains(got, tc.wantAuth) {
				t.Errorf("WWW-Authenticate = %q, want it to contain %q", got, tc.wantAuth)
			}
			var body errorBody
			if err := json.NewDecoder(resp.Body).Decode(&body); err != nil || body.Error != tc.wantError {
				t.Errorf("body error = %q (%v), want %q", body.Error, err, tc.wantError)
			}
			if resp.Header.Get("Content-Type") != "application/json" {
				t.Errorf("Content-Type = %q", resp.Header.Get("Content-Type"))
			}
			if n := f.up.hits.Load() - before; n != 0 {
				t.Errorf("upstream was hit %d times", n)
			}
		})
	}
}

func TestUnknownCallerForwardedWhenConfigured(t *testing.T) {
	f := newFixture(t, fixtureOpts{forwardUnknown: true})
	resp := f.do(t, "GET", "/", f.issuer.Token(t, "svc-nobody"), nil)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d, want 200", resp.StatusCode)
	}
	h := f.up.lastHeader()
	if h.Get("X-Client-Id") != "svc-nobody" || h.Get("X-Client-Metadata") != "" {
		t.Errorf("X-Client-Id=%q X-Client-Metadata=%q, want identity without metadata", h.Get("X-Client-Id"), h.Get("X-Client-Metadata"))
	}
}

func TestUpstreamUnreachableIs502(t *testing.T) {
	dead, _ := url.Parse("http://127.0.0.1:1")
	f := newFixture(t, fixtureOpts{routes: func(*url.URL) []RouteConfig {
		return []RouteConfig{{Name: "dead", PathPrefix: "/", Upstreams: []*url.URL{dead}}}
	}})
	resp := f.do(t, "GET", "/", f.issuer.Token(t, "svc-billing"), nil)
	if resp.StatusCode != http.StatusBadGateway {
		t.Fatalf("status %d, want 502", resp.StatusCode)
	}
	b, _ := io.ReadAll(resp.Body)
	if !strings.Contains(string(b), "bad_gateway") {
		t.Errorf("body %q", b)
	}
}

func TestNoRouteIs404(t *testing.T) {
	f := newFixture(t, fixtureOpts{routes: func(up *url.URL) []RouteConfig {
		return []RouteConfig{{Name: "api", PathPrefix: "/api", Upstreams: []*url.URL{up}, Auth: AuthPublic}}
	}})
	for _, p := range []string{"/", "/apix", "/other/api"} {
		resp := f.do(t, "GET", p, "", nil)
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("%s: status %d, want 404", p, resp.StatusCode)
		}
	}
	if f.up.hits.Load() != 0 {
		t.Errorf("upstream hit %d times", f.up.hits.Load())
	}
}

func TestHeaderValuesAreSanitisedAndCapped(t *testing.T) {
	long := strings.Repeat("é", 600) // 1200 bytes, over the 1024-byte cap
	res := localResolver{src: enrich.NewLocalSource(map[string]enrich.Record{
		"svc-odd": {Name: "Odd\r\nX-Evil: 1", Metadata: map[string]any{"note": "a\r\nX-Evil: 1\x00b", "long": long, "big": strings.Repeat("x", 5000)}},
	}, nil)}
	f := newFixture(t, fixtureOpts{resolver: res})
	resp := f.do(t, "GET", "/", f.issuer.Token(t, "svc-odd"), nil)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d, want 200", resp.StatusCode)
	}
	h := f.up.lastHeader()
	if h.Get("X-Evil") != "" {
		t.Fatal("a CR/LF in metadata split the header")
	}
	if got := h.Get("X-Client-Metadata-Note"); got != "aX-Evil: 1b" {
		t.Errorf("X-Client-Metadata-Note = %q, want control characters removed", got)
	}
	if got := h.Get("X-Client-Name"); got != "OddX-Evil: 1" {
		t.Errorf("X-Client-Name = %q", got)
	}
	got := h.Get("X-Client-Metadata-Long")
	if len(got) > 1024 || len(got) < 1000 || !strings.HasPrefix(long, got) {
		t.Errorf("X-Client-Metadata-Long: %d bytes, want a whole-rune prefix of at most 1024", len(got))
	}
	if h.Get("X-Client-Metadata") != "" {
		t.Errorf("X-Client-Metadata JSON over max_json_bytes was forwarded (%d bytes)", len(h.Get("X-Client-Metadata")))
	}
}
