package main

import (
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// checkTokenEndpointAndMe is the README's "Beyond headers" on make run's
// gateway at gw: one curl to the token endpoint, one to /me.
func checkTokenEndpointAndMe(t *testing.T, gw string) {
	t.Helper()
	resp, err := http.PostForm(gw+"/oauth/token", url.Values{
		"grant_type": {"client_credentials"}, "client_id": {"svc-billing"}, "client_secret": {"billing-dev-secret"},
		"audience": {"https://api.example.local/"},
	})
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var tok struct {
		AccessToken string         `json:"access_token"`
		TokenType   string         `json:"token_type"`
		Metadata    map[string]any `json:"metadata"`
	}
	if err := json.Unmarshal(body, &tok); err != nil || resp.StatusCode != 200 {
		t.Fatalf("token endpoint: %d %s (%v)", resp.StatusCode, body, err)
	}
	if tok.AccessToken == "" || tok.Metadata["tier"] != "gold" || tok.Metadata["region"] != "eu-west-1" || len(tok.Metadata) != 2 {
		t.Errorf("token endpoint answer: %s", body)
	}
	if cc := resp.Header.Get("Cache-Control"); cc != "no-store" {
		t.Errorf("token endpoint Cache-Control %q", cc)
	}

	req, _ := http.NewRequest("GET", gw+"/.well-known/gateway/me", nil)
	req.Header.Set("Authorization", "Bearer "+tok.AccessToken)
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), `"kind":"client","id":"svc-billing"`) ||
		!strings.Contains(string(body), `"metadata":{"tier":"gold"}`) {
		t.Errorf("/me: %d %s", resp.StatusCode, body)
	}
}

// checkInvalidateCLI drives `gateway invalidate` against make run's admin
// listener: the cached caller is gone, and a wrong token is refused.
func checkInvalidateCLI(t *testing.T, admin string) {
	t.Helper()
	const tok = "dev-admin-token-change-me"
	entry := func() string {
		req, _ := http.NewRequest("GET", admin+"/admin/cache/entry?kind=client&id=svc-billing", nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	if e := entry(); !strings.Contains(e, `"cached":true`) {
		t.Fatalf("svc-billing is not cached after its requests: %s", e)
	}
	if code, out, stderr := runCLI("invalidate", "--client", "svc-billing", "--admin", admin, "--token", tok); code != 0 || !strings.Contains(out, `"id":"svc-billing"`) {
		t.Fatalf("invalidate: exit %d: %s%s", code, out, stderr)
	}
	if e := entry(); !strings.Contains(e, `"cached":false`) {
		t.Errorf("svc-billing still cached after gateway invalidate: %s", e)
	}
	if code, _, stderr := runCLI("invalidate", "--all", "--admin", admin, "--token", "wrong-token"); code != 1 || !strings.Contains(stderr, "401") {
		t.Errorf("wrong token: exit %d: %s", code, stderr)
	}
	if code, _, _ := runCLI("invalidate", "--admin", admin, "--token", tok); code != 2 {
		t.Errorf("invalidate without a target: exit %d, want 2 (usage)", code)
	}
}

// checkAssertion: make run's demo upstream received a gateway assertion,
// signed with a key published on both listeners.
func checkAssertion(t *testing.T, gw, admin, assertion string) {
	t.Helper()
	parts := strings.Split(assertion, ".")
	if len(parts) != 3 {
		t.Fatalf("the upstream got no assertion: %q", assertion)
	}
	hdr, err := base64.RawURLEncoding.DecodeString(parts[0])
	if err != nil {
		t.Fatal(err)
	}
	var h struct{ Alg, Kid string }
	_ = json.Unmarshal(hdr, &h)
	for _, base := range []string{gw, admin} {
		resp, err := http.Get(base + "/.well-known/gateway/jwks.json")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || h.Alg != "ES256" || !strings.Contains(string(body), `"kid":"`+h.Kid+`"`) {
			t.Errorf("%s JWKS: %d %s; assertion header %+v", base, resp.StatusCode, body, h)
		}
	}
}

// checkPasswordGrant is seed 003 on make run: a test logs alice in at the
// dev issuer exactly as it would at Auth0 and calls the gateway as her.
func checkPasswordGrant(t *testing.T, devIssuer, gw string) {
	t.Helper()
	resp, err := http.PostForm(devIssuer+"/oauth/token", url.Values{
		"grant_type": {"password"}, "client_id": {"integration-tests"}, "client_secret": {"tests-dev-secret"},
		"username": {"alice@example.com"}, "password": {"alice-dev-password"},
		"audience": {"https://api.example.local/"}, "scope": {"openid read:invoices"},
	})
	if err != nil {
		t.Fatal(err)
	}
	var tok struct {
		AccessToken string `json:"access_token"`
		IDToken     string `json:"id_token"`
	}
	err = json.NewDecoder(resp.Body).Decode(&tok)
	resp.Body.Close()
	if err != nil || resp.StatusCode != 200 || tok.AccessToken == "" || tok.IDToken == "" {
		t.Fatalf("password grant: %d %+v %v", resp.StatusCode, tok, err)
	}
	req, _ := http.NewRequest("GET", gw+"/anything", nil)
	req.Header.Set("Authorization", "Bearer "+tok.AccessToken)
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{`"X-Client-Kind": "user"`, `"X-User-Id": "auth0|alice"`, `"X-Client-Metadata-Plan": "pro"`} {
		if !strings.Contains(string(body), want) && !strings.Contains(strings.ReplaceAll(string(body), `":"`, `": "`), want) {
			t.Errorf("as alice, the upstream got %s; want %s", body, want)
		}
	}
	// A wrong password is Auth0's invalid_grant.
	resp, err = http.PostForm(devIssuer+"/oauth/token", url.Values{
		"grant_type": {"password"}, "client_id": {"integration-tests"}, "client_secret": {"tests-dev-secret"},
		"username": {"alice@example.com"}, "password": {"wrong"}, "audience": {"https://api.example.local/"},
	})
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 403 || !strings.Contains(string(body), `"error":"invalid_grant"`) || !strings.Contains(string(body), "Wrong email or password.") {
		t.Errorf("wrong password: %d %s", resp.StatusCode, body)
	}
}
