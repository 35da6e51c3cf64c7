package auth0emu_test

import (
	"context"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"math/big"
	"net/http"
	"net/url"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/metagate/gateway/internal/testenv/auth0emu"
)

const (
	m2mID     = "m2m-client"
	m2mSecret = "m2m-secret"
	userID    = "auth0|63d1abc"
)

// newTenant is a tenant with one M2M client allowed to read the Management
// API, one API and one user.
func newTenant(t *testing.T) *auth0emu.Tenant {
	t.Helper()
	tn := auth0emu.New(t)
	tn.AddAPI("https://api.example.com/", "read:things", "write:things")
	tn.AddClient(auth0emu.Client{
		ID: m2mID, Secret: m2mSecret, Name: "Billing service",
		Metadata: map[string]string{"tier": "gold", "team": "billing"},
		Grants: map[string][]string{
			tn.MgmtAudience():          {"read:clients", "read:users"},
			"https://api.example.com/": {"read:things"},
		},
	})
	tn.AddUser(auth0emu.User{
		ID:           userID,
		AppMetadata:  map[string]any{"plan": "pro", "roles": []any{"admin"}},
		UserMetadata: map[string]any{"theme": "dark"},
	})
	return tn
}

type response struct {
	status int
	header http.Header
	body   []byte
}

func do(t *testing.T, req *http.Request) response {
	t.Helper()
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	resp, err := (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read body: %v", err)
	}
	return response{resp.StatusCode, resp.Header, b}
}

func postForm(t *testing.T, tn *auth0emu.Tenant, v url.Values) response {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, tn.TokenURL(), strings.NewReader(v.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return do(t, req)
}

func get(t *testing.T, rawURL, token string) response {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, rawURL, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	return do(t, req)
}

// wantJSON compares a body with the expected JSON, ignoring key order.
func wantJSON(t *testing.T, got []byte, want string) {
	t.Helper()
	var g, w any
	if err := json.Unmarshal(got, &g); err != nil {
		t.Fatalf("body %q is not JSON: %v", got, err)
	}
	if err := json.Unmarshal([]byte(want), &w); err != nil {
		t.Fatalf("bad expectation %q: %v", want, err)
	}
	if !reflect.DeepEqual(g, w) {
		t.Errorf("body\n got %s\nwant %s", got, want)
	}
}

func decode(t *testing.T, b []byte) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("body %q is not a JSON object: %v", b, err)
	}
	return m
}

// mgmtToken gets a Management API token through the token endpoint.
func mgmtToken(t *testing.T, tn *auth0emu.Tenant) string {
	t.Helper()
	r := postForm(t, tn, url.Values{"grant_type": {"client_credentials"}, "client_id": {m2mID}, "client_secret": {m2mSecret}, "audience": {tn.MgmtAudience()}})
	if r.status != http.StatusOK {
		t.Fatalf("token: %d %s", r.status, r.body)
	}
	return decode(t, r.body)["access_token"].(string)
}

// verify checks a token against the published JWKS, as a verifier would.
func verify(t *testing.T, tn *auth0emu.Tenant, raw string) (jwt.MapClaims, map[string]any) {
	t.Helper()
	var set struct {
		Keys []map[string]any `json:"keys"`
	}
	if err := json.Unmarshal(get(t, tn.JWKSURL(), "").body, &set); err != nil || len(set.Keys) != 1 {
		t.Fatalf("jwks: %v %v", err, set)
	}
	k := set.Keys[0]
	n, _ := base64.RawURLEncoding.DecodeString(k["n"].(string))
	e, _ := base64.RawURLEncoding.DecodeString(k["e"].(string))
	pub := &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: int(new(big.Int).SetBytes(e).Int64())}
	claims := jwt.MapClaims{}
	tok, err := jwt.ParseWithClaims(raw, claims, func(tok *jwt.Token) (any, error) {
		if tok.Header["kid"] != k["kid"] {
			return nil, errors.New("kid not in JWKS")
		}
		return pub, nil
	}, jwt.WithValidMethods([]string{"RS256"}), jwt.WithIssuer(tn.Issuer()), jwt.WithExpirationRequired())
	if err != nil {
		t.Fatalf("token does not verify against the JWKS: %v", err)
	}
	return claims, tok.Header
}

func TestJWKSShape(t *testing.T) {
	tn := newTenant(t)
	r := get(t, tn.JWKSURL(), "")
	if r.status != http.StatusOK {
		t.Fatalf("status %d", r.status)
	}
	var set struct {
		Keys []map[string]any `json:"keys"`
	}
	if err := json.Unmarshal(r.body, &set); err != nil {
		t.Fatal(err)
	}
	if len(set.Keys) != 1 {
		t.Fatalf("keys: %v", set.Keys)
	}
	k := set.Keys[0]
	for field, want := range map[string]any{"kty": "RSA", "use": "sig", "alg": "RS256", "kid": tn.Kid(), "e": "AQAB"} {
		if k[field] != want {
			t.Errorf("%s = %v, want %v", field, k[field], want)
		}
	}
	for _, field := range []string{"n", "x5t", "x5c"} {
		if k[field] == nil {
			t.Errorf("%s missing", field)
		}
	}
	if n, _ := base64.RawURLEncoding.DecodeString(k["n"].(string)); len(n) != 256 {
		t.Errorf("modulus is %d bytes, want 256 (RSA-2048)", len(n))
	}
	if tn.Calls("jwks") != 1 {
		t.Errorf("jwks calls = %d", tn.Calls("jwks"))
	}
}

func TestTokenEndpoint(t *testing.T) {
	tn := newTenant(t)
	tn.AddClient(auth0emu.Client{ID: "no-grant", Secret: "s"})
	form := func(kv ...string) url.Values {
		v := url.Values{}
		for i := 0; i < len(kv); i += 2 {
			v.Set(kv[i], kv[i+1])
		}
		return v
	}
	good := form("grant_type", "client_credentials", "client_id", m2mID, "client_secret", m2mSecret, "audience", tn.MgmtAudience())

	t.Run("form body", func(t *testing.T) {
		r := postForm(t, tn, good)
		if r.status != http.StatusOK {
			t.Fatalf("status %d: %s", r.status, r.body)
		}
		m := decode(t, r.body)
		if m["token_type"] != "Bearer" || m["expires_in"] != 86400.0 || m["scope"] != "read:clients read:users" || m["access_token"] == "" {
			t.Errorf("body %s", r.body)
		}
		if len(m) != 4 {
			t.Errorf("unexpected fields in %s", r.body)
		}
		if r.header.Get("Cache-Control") != "no-store" {
			t.Errorf("Cache-Control %q", r.header.Get("Cache-Control"))
		}
	})
	t.Run("JSON body", func(t *testing.T) {
		b, _ := json.Marshal(map[string]string{"grant_type": "client_credentials", "client_id": m2mID, "client_secret": m2mSecret, "audience": "https://api.example.com/"})
		req, _ := http.NewRequest(http.MethodPost, tn.TokenURL(), strings.NewReader(string(b)))
		req.Header.Set("Content-Type", "application/json")
		r := do(t, req)
		if r.status != http.StatusOK {
			t.Fatalf("status %d: %s", r.status, r.body)
		}
		if m := decode(t, r.body); m["scope"] != "read:things" {
			t.Errorf("scope %v", m["scope"])
		}
	})
	t.Run("HTTP Basic client authentication", func(t *testing.T) {
		v := form("grant_type", "client_credentials", "audience", tn.MgmtAudience())
		req, _ := http.NewRequest(http.MethodPost, tn.TokenURL(), strings.NewReader(v.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.SetBasicAuth(m2mID, m2mSecret)
		if r := do(t, req); r.status != http.StatusOK {
			t.Fatalf("status %d: %s", r.status, r.body)
		}
	})
	t.Run("access token claims and header", func(t *testing.T) {
		raw := decode(t, postForm(t, tn, good).body)["access_token"].(string)
		claims, header := verify(t, tn, raw)
		if header["typ"] != "JWT" || header["alg"] != "RS256" || header["kid"] != tn.Kid() {
			t.Errorf("header %v", header)
		}
		want := map[string]any{"iss": tn.Issuer(), "sub": m2mID + "@clients", "azp": m2mID, "aud": tn.MgmtAudience(), "scope": "read:clients read:users", "gty": "client-credentials"}
		for k, v := range want {
			if claims[k] != v {
				t.Errorf("%s = %v, want %v", k, claims[k], v)
			}
		}
		iat, _ := claims.GetIssuedAt()
		exp, _ := claims.GetExpirationTime()
		if iat == nil || exp == nil || exp.Sub(iat.Time) != 86400*time.Second {
			t.Errorf("iat %v exp %v", iat, exp)
		}
	})

	for _, tc := range []struct {
		name   string
		v      url.Values
		status int
		body   string
	}{
		{"wrong secret", form("grant_type", "client_credentials", "client_id", m2mID, "client_secret", "nope", "audience", tn.MgmtAudience()),
			401, `{"error":"access_denied","error_description":"Unauthorized"}`},
		{"unknown client", form("grant_type", "client_credentials", "client_id", "ghost", "client_secret", "x", "audience", tn.MgmtAudience()),
			401, `{"error":"access_denied","error_description":"Unauthorized"}`},
		{"no client grant for the audience", form("grant_type", "client_credentials", "client_id", "no-grant", "client_secret", "s", "audience", tn.MgmtAudience()),
			403, `{"error":"access_denied","error_description":"Client is not authorized to access \"` + tn.MgmtAudience() + `\". You need to create a \"client-grant\" associated to this API. See: https://auth0.com/docs/api/v2#!/Client_Grants/post_client_grants"}`},
		{"unknown audience", form("grant_type", "client_credentials", "client_id", m2mID, "client_secret", m2mSecret, "audience", "https://nope/"),
			403, `{"error":"access_denied","error_description":"Service not found: https://nope/"}`},
		{"no audience", form("grant_type", "client_credentials", "client_id", m2mID, "client_secret", m2mSecret),
			403, `{"error":"access_denied","error_description":"No audience parameter was provided, and no default audience has been configured"}`},
		{"missing grant_type", form("client_id", m2mID, "client_secret", m2mSecret, "audience", tn.MgmtAudience()),
			400, `{"error":"invalid_request","error_description":"Missing required parameter: grant_type"}`},
		{"password grant", form("grant_type", "password", "client_id", m2mID, "client_secret", m2mSecret),
			400, `{"error":"unsupported_grant_type","error_description":"Unsupported grant type: password"}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := postForm(t, tn, tc.v)
			if r.status != tc.status {
				t.Errorf("status %d, want %d", r.status, tc.status)
			}
			wantJSON(t, r.body, tc.body)
		})
	}
}

func TestMgmtTokenTTL(t *testing.T) {
	tn := newTenant(t)
	tn.SetMgmtTokenTTL(11 * time.Second)
	r := postForm(t, tn, url.Values{"grant_type": {"client_credentials"}, "client_id": {m2mID}, "client_secret": {m2mSecret}, "audience": {tn.MgmtAudience()}})
	if m := decode(t, r.body); m["expires_in"] != 11.0 {
		t.Errorf("expires_in %v", m["expires_in"])
	}
}

func TestManagementAPIReads(t *testing.T) {
	tn := newTenant(t)
	tok := mgmtToken(t, tn)
	clientURL := tn.URL() + "/api/v2/clients/" + m2mID
	userURL := tn.URL() + "/api/v2/users/" + url.PathEscape(userID)
	for _, tc := range []struct {
		name, url, body string
	}{
		{"client, fields included", clientURL + "?fields=client_id,name,client_metadata&include_fields=true",
			`{"client_id":"m2m-client","name":"Billing service","client_metadata":{"tier":"gold","team":"billing"}}`},
		{"client, include_fields defaults to true", clientURL + "?fields=name",
			`{"name":"Billing service"}`},
		{"user with escaped pipe, app_metadata only", userURL + "?fields=user_id,app_metadata&include_fields=true",
			`{"user_id":"auth0|63d1abc","app_metadata":{"plan":"pro","roles":["admin"]}}`},
		{"user with user_metadata requested", userURL + "?fields=user_id,app_metadata,user_metadata&include_fields=true",
			`{"user_id":"auth0|63d1abc","app_metadata":{"plan":"pro","roles":["admin"]},"user_metadata":{"theme":"dark"}}`},
		{"user, fields excluded", userURL + "?fields=identities,created_at,updated_at,user_metadata&include_fields=false",
			`{"user_id":"auth0|63d1abc","app_metadata":{"plan":"pro","roles":["admin"]}}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := get(t, tc.url, tok)
			if r.status != http.StatusOK {
				t.Fatalf("status %d: %s", r.status, r.body)
			}
			wantJSON(t, r.body, tc.body)
			for _, h := range []string{"X-Ratelimit-Limit", "X-Ratelimit-Remaining", "X-Ratelimit-Reset"} {
				if r.header.Get(h) == "" {
					t.Errorf("%s missing", h)
				}
			}
		})
	}
	t.Run("no fields returns the whole object", func(t *testing.T) {
		m := decode(t, get(t, clientURL, tok).body)
		for _, k := range []string{"client_id", "name", "client_metadata", "app_type", "grant_types"} {
			if _, ok := m[k]; !ok {
				t.Errorf("%s missing from %v", k, m)
			}
		}
		if _, ok := m["client_secret"]; ok {
			t.Error("client_secret returned")
		}
	})
	t.Run("metadata changes are visible", func(t *testing.T) {
		tn.SetClientMetadata(m2mID, map[string]string{"tier": "silver"})
		tn.SetUserAppMetadata(userID, map[string]any{"plan": "free"})
		wantJSON(t, get(t, clientURL+"?fields=client_metadata&include_fields=true", tok).body, `{"client_metadata":{"tier":"silver"}}`)
		wantJSON(t, get(t, userURL+"?fields=app_metadata&include_fields=true", tok).body, `{"app_metadata":{"plan":"free"}}`)
	})
	t.Run("deleted callers answer 404", func(t *testing.T) {
		tn.DeleteUser(userID)
		tn.DeleteClient(m2mID)
		if r := get(t, userURL, tok); r.status != http.StatusNotFound {
			t.Errorf("deleted user: status %d", r.status)
		}
		if r := get(t, clientURL, tok); r.status != http.StatusNotFound {
			t.Errorf("deleted client: status %d", r.status)
		}
	})
	if got := tn.LastRequestURI("users"); !strings.Contains(got, "/api/v2/users/auth0%7C63d1abc") {
		t.Errorf("last users request URI %q", got)
	}
}

func TestManagementAPIErrors(t *testing.T) {
	tn := newTenant(t)
	tn.AddClient(auth0emu.Client{ID: "users-only", Secret: "s", Grants: map[string][]string{tn.MgmtAudience(): {"read:users"}}})
	tok := mgmtToken(t, tn)
	clientURL := tn.URL() + "/api/v2/clients/"
	userURL := tn.URL() + "/api/v2/users/"
	for _, tc := range []struct {
		name, url, token string
		status           int
		body             string
	}{
		{"unknown client", clientURL + "ghost", tok, 404,
			`{"statusCode":404,"error":"Not Found","message":"The client does not exist","errorCode":"inexistent_client"}`},
		{"unknown user", userURL + url.PathEscape("auth0|ghost"), tok, 404,
			`{"statusCode":404,"error":"Not Found","message":"The user does not exist.","errorCode":"inexistent_user"}`},
		{"no token", clientURL + m2mID, "", 401,
			`{"statusCode":401,"error":"Unauthorized","message":"Missing authentication"}`},
		{"garbage token", clientURL + m2mID, "not.a.jwt", 401,
			`{"statusCode":401,"error":"Unauthorized","message":"Invalid token","attributes":{"error":"Invalid token"}}`},
		{"token for another API", clientURL + m2mID, tn.ClientToken(m2mID, "https://api.example.com/", time.Hour), 401,
			`{"statusCode":401,"error":"Unauthorized","message":"Invalid token","attributes":{"error":"Invalid token"}}`},
		{"expired token", clientURL + m2mID, tn.ClientToken(m2mID, tn.MgmtAudience(), -time.Minute), 401,
			`{"statusCode":401,"error":"Unauthorized","message":"Expired token","attributes":{"error":"Expired token"}}`},
		{"insufficient scope", clientURL + m2mID, tn.ClientToken("users-only", tn.MgmtAudience(), time.Hour), 403,
			`{"statusCode":403,"error":"Forbidden","message":"Insufficient scope, expected any of: read:clients","errorCode":"insufficient_scope"}`},
		{"bad include_fields", clientURL + m2mID + "?fields=name&include_fields=yes", tok, 400,
			`{"statusCode":400,"error":"Bad Request","message":"Query validation error: 'Expected type boolean but found type string' on property include_fields (true if the fields specified are to be included in the result, false otherwise (defaults to true)).","errorCode":"invalid_query_string"}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := get(t, tc.url, tc.token)
			if r.status != tc.status {
				t.Errorf("status %d, want %d", r.status, tc.status)
			}
			wantJSON(t, r.body, tc.body)
			if r.header.Get("X-Ratelimit-Remaining") == "" {
				t.Error("x-ratelimit-remaining missing")
			}
		})
	}
}

func TestRevokeMgmtTokens(t *testing.T) {
	tn := newTenant(t)
	clientURL := tn.URL() + "/api/v2/clients/" + m2mID
	old := mgmtToken(t, tn)
	if r := get(t, clientURL, old); r.status != http.StatusOK {
		t.Fatalf("before revocation: %d %s", r.status, r.body)
	}
	tn.RevokeMgmtTokens()
	r := get(t, clientURL, old)
	if r.status != http.StatusUnauthorized {
		t.Fatalf("revoked token: status %d", r.status)
	}
	wantJSON(t, r.body, `{"statusCode":401,"error":"Unauthorized","message":"Invalid token","attributes":{"error":"Invalid token"}}`)
	if r := get(t, clientURL, mgmtToken(t, tn)); r.status != http.StatusOK {
		t.Fatalf("new token after revocation: %d %s", r.status, r.body)
	}
}

func TestRateLimit(t *testing.T) {
	tn := newTenant(t)
	tok := mgmtToken(t, tn)
	clientURL := tn.URL() + "/api/v2/clients/" + m2mID
	tn.SetRateLimit(2, 0.5) // two requests, then one every two seconds

	before := time.Now().Unix()
	var got []response
	for range 3 {
		got = append(got, get(t, clientURL, tok))
	}
	for i, want := range []struct {
		status    int
		remaining string
	}{{200, "1"}, {200, "0"}, {429, "0"}} {
		r := got[i]
		if r.status != want.status || r.header.Get("X-Ratelimit-Remaining") != want.remaining || r.header.Get("X-Ratelimit-Limit") != "2" {
			t.Errorf("request %d: status %d limit %q remaining %q, want %d, 2, %s", i+1, r.status,
				r.header.Get("X-Ratelimit-Limit"), r.header.Get("X-Ratelimit-Remaining"), want.status, want.remaining)
		}
	}
	wantJSON(t, got[2].body, `{"statusCode":429,"error":"Too Many Requests","message":"Global limit has been reached","errorCode":"too_many_requests"}`)
	reset, err := strconv.ParseInt(got[2].header.Get("X-Ratelimit-Reset"), 10, 64)
	if err != nil || reset <= before || reset > time.Now().Unix()+3 {
		t.Errorf("x-ratelimit-reset %q: want a UNIX second within the next refill (~2s)", got[2].header.Get("X-Ratelimit-Reset"))
	}
	if n := tn.Calls("clients"); n != 3 {
		t.Errorf("clients calls = %d, want 3 (429s are counted)", n)
	}
}

func TestFaults(t *testing.T) {
	tn := newTenant(t)
	tok := mgmtToken(t, tn)
	clientURL := tn.URL() + "/api/v2/clients/" + m2mID
	userURL := tn.URL() + "/api/v2/users/" + url.PathEscape(userID)

	t.Run("500 for the next request only", func(t *testing.T) {
		tn.SetFaultN("clients", auth0emu.Fault500, 1)
		r := get(t, clientURL, tok)
		if r.status != 500 {
			t.Fatalf("status %d", r.status)
		}
		wantJSON(t, r.body, `{"statusCode":500,"error":"Internal Server Error","message":"Internal error"}`)
		if r := get(t, clientURL, tok); r.status != 200 {
			t.Errorf("after the fault: status %d", r.status)
		}
	})
	t.Run("429 on the whole Management API", func(t *testing.T) {
		tn.SetFault("mgmt", auth0emu.Fault429)
		defer tn.SetFault("mgmt", auth0emu.FaultNone)
		for _, u := range []string{clientURL, userURL} {
			r := get(t, u, tok)
			if r.status != 429 || r.header.Get("X-Ratelimit-Remaining") != "0" || r.header.Get("X-Ratelimit-Reset") == "" {
				t.Errorf("%s: status %d headers %v", u, r.status, r.header)
			}
		}
	})
	t.Run("token endpoint 500", func(t *testing.T) {
		tn.SetFaultN("token", auth0emu.Fault500, 1)
		r := postForm(t, tn, url.Values{"grant_type": {"client_credentials"}})
		if r.status != 500 {
			t.Errorf("status %d", r.status)
		}
		wantJSON(t, r.body, `{"error":"server_error","error_description":"Internal error"}`)
	})
	t.Run("dropped connection", func(t *testing.T) {
		tn.SetFault("users", auth0emu.FaultDrop)
		defer tn.SetFault("users", auth0emu.FaultNone)
		tr := &http.Transport{}
		defer tr.CloseIdleConnections()
		req, _ := http.NewRequest(http.MethodGet, userURL, nil)
		resp, err := (&http.Client{Transport: tr}).Do(req)
		if err == nil {
			resp.Body.Close()
			t.Fatalf("got status %d, want a connection error", resp.StatusCode)
		}
	})
	t.Run("hang until the client gives up", func(t *testing.T) {
		tn.SetFault("jwks", auth0emu.FaultHang)
		defer tn.SetFault("jwks", auth0emu.FaultNone)
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		tr := &http.Transport{}
		defer tr.CloseIdleConnections()
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, tn.JWKSURL(), nil)
		resp, err := (&http.Client{Transport: tr}).Do(req)
		if err == nil {
			resp.Body.Close()
			t.Fatalf("got status %d, want a timeout", resp.StatusCode)
		}
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("err = %v, want deadline exceeded", err)
		}
	})
}

func TestHangReleasedOnClose(t *testing.T) {
	// A request hanging on FaultHang must not keep the tenant's cleanup
	// (httptest.Server.Close waits for handlers) from finishing.
	done := make(chan error, 1)
	t.Run("tenant", func(t *testing.T) {
		tn := auth0emu.New(t)
		tn.SetFault("jwks", auth0emu.FaultHang)
		tr := &http.Transport{}
		t.Cleanup(tr.CloseIdleConnections)
		go func() {
			resp, err := (&http.Client{Transport: tr}).Get(tn.JWKSURL())
			if err == nil {
				resp.Body.Close()
			}
			done <- err
		}()
		deadline := time.Now().Add(5 * time.Second)
		for tn.Calls("jwks") == 0 {
			if time.Now().After(deadline) {
				t.Fatal("request never arrived")
			}
			time.Sleep(5 * time.Millisecond)
		}
	})
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("hanging request not released by the tenant's cleanup")
	}
}

func TestCallsAndReset(t *testing.T) {
	tn := newTenant(t)
	tok := mgmtToken(t, tn)
	get(t, tn.URL()+"/api/v2/clients/"+m2mID, tok)
	get(t, tn.URL()+"/api/v2/users/"+url.PathEscape(userID), tok)
	get(t, tn.JWKSURL(), "")
	for ep, want := range map[string]int{"token": 1, "clients": 1, "users": 1, "jwks": 1} {
		if got := tn.Calls(ep); got != want {
			t.Errorf("Calls(%q) = %d, want %d", ep, got, want)
		}
	}
	tn.ResetCalls()
	if tn.Calls("token")+tn.Calls("clients")+tn.Calls("users")+tn.Calls("jwks") != 0 {
		t.Error("ResetCalls left counts")
	}
}

func TestUserAndRFC9068Tokens(t *testing.T) {
	tn := newTenant(t)
	t.Run("user token with userinfo audience and permissions", func(t *testing.T) {
		raw := tn.UserToken(userID, "spa-client", []string{"https://api.example.com/", tn.URL() + "/userinfo"},
			[]string{"openid", "read:things"}, []string{"read:things"}, time.Hour)
		claims, _ := verify(t, tn, raw)
		aud, _ := claims.GetAudience()
		if claims["sub"] != userID || claims["azp"] != "spa-client" || claims["scope"] != "openid read:things" ||
			len(aud) != 2 || aud[1] != tn.URL()+"/userinfo" || !reflect.DeepEqual(claims["permissions"], []any{"read:things"}) {
			t.Errorf("claims %v", claims)
		}
		if _, ok := claims["gty"]; ok {
			t.Error("user token has gty")
		}
	})
	t.Run("RFC 9068 profile", func(t *testing.T) {
		claims, header := verify(t, tn, tn.ClientTokenRFC9068(m2mID, "https://api.example.com/", time.Hour))
		if header["typ"] != "at+jwt" || claims["client_id"] != m2mID || claims["azp"] != nil || claims["gty"] != nil || claims["scope"] != "read:things" {
			t.Errorf("header %v claims %v", header, claims)
		}
	})
}
