package devissuer

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"math/big"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

const (
	audience = "https://api.test/"
	secret   = "tests-secret"
)

// clock is a settable time for the brute-force tests.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// fixture is a dev issuer served over real HTTP, as a test process would
// call Auth0.
type fixture struct {
	is    *Issuer
	srv   *httptest.Server
	iss   string
	clock *clock
}

// testKey is one RSA key for the package's tests: generating one per
// test would dominate the run time.
var testKey = sync.OnceValue(func() *rsa.PrivateKey {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	return k
})

func newFixture(t *testing.T, edit func(*Options)) *fixture {
	t.Helper()
	srv := httptest.NewUnstartedServer(nil)
	f := &fixture{srv: srv, iss: "http://" + srv.Listener.Addr().String() + "/", clock: &clock{t: time.Now()}}
	o := Options{
		Issuer: f.iss, Audience: audience, TTL: time.Hour, Key: testKey(), Now: f.clock.now,
		Clients: []Client{
			{ID: "tests", Secret: secret, Scopes: []string{"read:things"}},
			{ID: "m2m-only", Secret: secret, Scopes: []string{"read:things"}, Grants: []string{GrantClientCredentials}},
			{ID: "users-only", Secret: secret, Grants: []string{GrantPassword, GrantPasswordRealm}},
		},
		Users: []User{
			{ID: "auth0|alice", Username: "alice@example.com", Password: "correct horse", Scopes: []string{"read:things", "write:things"},
				Claims: map[string]any{"https://example.com/username": "alice", "https://example.com/org": map[string]any{"id": "org_1"}}},
			{ID: "auth0|bob", Username: "bob", Password: "battery staple"},
		},
	}
	if edit != nil {
		edit(&o)
	}
	f.is = New(o)
	srv.Config.Handler = f.is.Handler()
	srv.Start()
	t.Cleanup(srv.Close)
	return f
}

// response is an answer of POST /oauth/token.
type response struct {
	status int
	header http.Header
	raw    string
	body   map[string]any
}

func (r response) str(k string) string { s, _ := r.body[k].(string); return s }

// post sends a token request as a form, or as JSON when asJSON; basic
// moves client_id and client_secret into HTTP Basic.
func (f *fixture) post(t *testing.T, params map[string]string, asJSON, basic bool) response {
	t.Helper()
	params = maps.Clone(params)
	var user, pass string
	if basic {
		user, pass = params["client_id"], params["client_secret"]
		delete(params, "client_id")
		delete(params, "client_secret")
	}
	var body io.Reader
	ct := "application/x-www-form-urlencoded"
	if asJSON {
		b, err := json.Marshal(params)
		if err != nil {
			t.Fatal(err)
		}
		body, ct = bytes.NewReader(b), "application/json"
	} else {
		v := url.Values{}
		for k, s := range params {
			v.Set(k, s)
		}
		body = strings.NewReader(v.Encode())
	}
	req, err := http.NewRequest(http.MethodPost, f.srv.URL+"/oauth/token", body)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", ct)
	if basic {
		req.SetBasicAuth(user, pass)
	}
	resp, err := f.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	r := response{status: resp.StatusCode, header: resp.Header, raw: strings.TrimSpace(string(raw))}
	if err := json.Unmarshal(raw, &r.body); err != nil {
		t.Fatalf("body %q: %v", raw, err)
	}
	return r
}

// verify checks a token's signature against the key the issuer publishes
// at its JWKS URL, fetched over HTTP as the gateway does, and returns its
// claims.
func (f *fixture) verify(t *testing.T, token string) jwt.MapClaims {
	t.Helper()
	resp, err := f.srv.Client().Get(f.srv.URL + "/.well-known/jwks.json")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var set struct {
		Keys []map[string]string `json:"keys"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&set); err != nil {
		t.Fatal(err)
	}
	claims := jwt.MapClaims{}
	_, err = jwt.ParseWithClaims(token, claims, func(tok *jwt.Token) (any, error) {
		for _, k := range set.Keys {
			if k["kid"] == tok.Header["kid"] && k["kty"] == "RSA" && k["alg"] == "RS256" && k["use"] == "sig" {
				n, err1 := base64.RawURLEncoding.DecodeString(k["n"])
				e, err2 := base64.RawURLEncoding.DecodeString(k["e"])
				if err1 != nil || err2 != nil {
					return nil, fmt.Errorf("bad JWK %v", k)
				}
				return &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: int(new(big.Int).SetBytes(e).Int64())}, nil
			}
		}
		return nil, fmt.Errorf("no key %v in the JWKS", tok.Header["kid"])
	}, jwt.WithValidMethods([]string{"RS256"}), jwt.WithIssuer(f.iss), jwt.WithExpirationRequired())
	if err != nil {
		t.Fatalf("verify %s: %v", token, err)
	}
	return claims
}

func TestClientCredentialsUnchanged(t *testing.T) {
	f := newFixture(t, nil)
	for _, tc := range []struct{ json, basic bool }{{false, false}, {true, false}, {false, true}, {true, true}} {
		r := f.post(t, map[string]string{"grant_type": "client_credentials", "client_id": "tests", "client_secret": secret, "audience": audience}, tc.json, tc.basic)
		if r.status != http.StatusOK {
			t.Fatalf("json=%v basic=%v: %d %s", tc.json, tc.basic, r.status, r.raw)
		}
		c := f.verify(t, r.str("access_token"))
		if c["sub"] != "tests@clients" || c["gty"] != "client-credentials" || c["azp"] != "tests" || c["aud"] != audience || c["scope"] != "read:things" {
			t.Errorf("claims = %v", c)
		}
		if r.header.Get("Cache-Control") != "no-store" {
			t.Errorf("Cache-Control = %q", r.header.Get("Cache-Control"))
		}
	}
}

// TestTokenErrors are Auth0's answers for a request no grant accepts.
func TestTokenErrors(t *testing.T) {
	f := newFixture(t, nil)
	for name, tc := range map[string]struct {
		params map[string]string
		status int
		body   string
	}{
		"no grant type":    {map[string]string{"client_id": "tests"}, 400, `{"error":"invalid_request","error_description":"Missing required parameter: grant_type"}`},
		"unknown grant":    {map[string]string{"grant_type": "implicit"}, 400, `{"error":"unsupported_grant_type","error_description":"Unsupported grant type: implicit"}`},
		"unknown client":   {map[string]string{"grant_type": "password", "client_id": "nobody", "client_secret": secret}, 401, `{"error":"access_denied","error_description":"Unauthorized"}`},
		"wrong secret":     {map[string]string{"grant_type": "password", "client_id": "tests", "client_secret": "nope", "username": "bob", "password": "battery staple"}, 401, `{"error":"access_denied","error_description":"Unauthorized"}`},
		"foreign audience": {map[string]string{"grant_type": "password", "client_id": "tests", "client_secret": secret, "audience": "https://other/", "username": "bob", "password": "battery staple"}, 403, `{"error":"access_denied","error_description":"Service not enabled within domain: https://other/"}`},
	} {
		r := f.post(t, tc.params, false, false)
		if r.status != tc.status || r.raw != tc.body {
			t.Errorf("%s: %d %s, want %d %s", name, r.status, r.raw, tc.status, tc.body)
		}
	}
}

func TestDiscoveryListsTheGrants(t *testing.T) {
	f := newFixture(t, nil)
	resp, err := f.srv.Client().Get(f.srv.URL + "/.well-known/openid-configuration")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var d struct {
		Grants []string `json:"grant_types_supported"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&d); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(d.Grants, []string{GrantClientCredentials, GrantPassword, GrantPasswordRealm}) {
		t.Errorf("grant_types_supported = %v", d.Grants)
	}
}

// TestMintKeepsItsClaims: gateway token --user/--client mint what they
// did before the port to internal/jose, with the RFC 7638 kid.
func TestMintKeepsItsClaims(t *testing.T) {
	f := newFixture(t, nil)
	tok, err := f.is.Mint(TokenRequest{UserID: "auth0|carol", Scopes: []string{"read:things"}})
	if err != nil {
		t.Fatal(err)
	}
	c := f.verify(t, tok)
	aud, _ := c.GetAudience()
	if c["sub"] != "auth0|carol" || c["azp"] != "gateway-dev" || !slices.Equal(aud, []string{audience, f.iss + "userinfo"}) {
		t.Errorf("claims = %v", c)
	}
	if _, err := f.is.Mint(TokenRequest{}); err == nil {
		t.Error("Mint without client or user succeeded")
	}
}

func TestLoadOrCreateKeyIsStable(t *testing.T) {
	path := filepath.Join(t.TempDir(), "dev.pem")
	a, err := LoadOrCreateKey(path)
	if err != nil {
		t.Fatal(err)
	}
	b, err := LoadOrCreateKey(path)
	if err != nil {
		t.Fatal(err)
	}
	if !a.Equal(b) {
		t.Error("the second load made a new key")
	}
}

// TestTokenEndpointCORS: a listed web origin may call POST /oauth/token
// from a page (preflight and answer carry its origin); another origin's
// preflight is refused without CORS headers.
func TestTokenEndpointCORS(t *testing.T) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	is := New(Options{Issuer: "http://dev/", Audience: "https://api/", TTL: time.Hour, Key: key,
		Clients: []Client{{ID: "spa", Secret: "s"}}, CORSOrigins: []string{"http://localhost:3000"}})
	srv := httptest.NewServer(is.Handler())
	t.Cleanup(srv.Close)
	do := func(method, origin string, body string) *http.Response {
		req, _ := http.NewRequest(method, srv.URL+"/oauth/token", strings.NewReader(body))
		req.Header.Set("Origin", origin)
		if method == http.MethodOptions {
			req.Header.Set("Access-Control-Request-Method", "POST")
			req.Header.Set("Access-Control-Request-Headers", "content-type")
		} else {
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		}
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	if r := do(http.MethodOptions, "http://localhost:3000", ""); r.StatusCode != 204 || r.Header.Get("Access-Control-Allow-Origin") != "http://localhost:3000" {
		t.Errorf("listed preflight: %d %v", r.StatusCode, r.Header)
	}
	if r := do(http.MethodOptions, "http://evil.test", ""); r.StatusCode != 403 || r.Header.Get("Access-Control-Allow-Origin") != "" {
		t.Errorf("unlisted preflight: %d %v", r.StatusCode, r.Header)
	}
	form := "grant_type=client_credentials&client_id=spa&client_secret=s&audience=https://api/"
	if r := do(http.MethodPost, "http://localhost:3000", form); r.StatusCode != 200 || r.Header.Get("Access-Control-Allow-Origin") != "http://localhost:3000" {
		t.Errorf("listed POST: %d %v", r.StatusCode, r.Header)
	}
	if r := do(http.MethodPost, "http://evil.test", form); r.Header.Get("Access-Control-Allow-Origin") != "" {
		t.Errorf("unlisted POST carries CORS headers: %v", r.Header)
	}
}
