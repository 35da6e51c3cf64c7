package app

import (
	"encoding/json"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/metagate/gateway/internal/config"
	"github.com/metagate/gateway/internal/devissuer"
)

// devUsersConfig is a gateway whose only issuer is the dev issuer, with a
// client for integration tests and one test user, alice, whose
// app_metadata the local source holds.
const devUsersConfig = `
server:
  listen: 127.0.0.1:0
dev_issuer:
  enabled: true
  listen: 127.0.0.1:0
  audience: ` + apiAudience + `
  key_file: {{KEY_FILE}}
  clients:
    - id: integration-tests
      secret: ${TESTS_SECRET}
      grants: [password, "http://auth0.com/oauth/grant-type/password-realm"]
  users:
    - id: auth0|alice
      username: alice@example.com
      password: ${ALICE_PASSWORD}
      scopes: [read:orders]
      claims:
        https://example.com/username: alice
headers:
  claims:
    https://example.com/username: X-User-Name
metadata:
  source: local
  local:
    users:
      "auth0|alice":
        app_metadata: {plan: pro}
routes:
  - match: {path_prefix: /}
    upstreams: [{{UPSTREAM}}]
`

// TestDevUserEndToEnd is seed 003 against the dev issuer: a test logs a
// test user in with the password grant over HTTP, exactly as it would
// against Auth0's /oauth/token, and calls the gateway with the user's
// token; the upstream sees the user, its metadata and its custom claim.
func TestDevUserEndToEnd(t *testing.T) {
	up := newRecorder(t)
	dir := t.TempDir()
	doc := strings.NewReplacer("{{KEY_FILE}}", filepath.Join(dir, "dev.pem"), "{{UPSTREAM}}", up.URL).Replace(devUsersConfig)
	file := filepath.Join(dir, "gateway.yaml")
	if err := os.WriteFile(file, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	a := startFile(t, file, map[string]string{"TESTS_SECRET": "tests-secret", "ALICE_PASSWORD": "correct horse"}, nil)

	resp, err := http.PostForm("http://"+a.Addr("dev issuer")+"/oauth/token", url.Values{
		"grant_type": {"password"}, "client_id": {"integration-tests"}, "client_secret": {"tests-secret"},
		"username": {"alice@example.com"}, "password": {"correct horse"},
		"audience": {apiAudience}, "scope": {"openid read:orders"},
	})
	if err != nil {
		t.Fatal(err)
	}
	var tok struct {
		AccessToken string `json:"access_token"`
		IDToken     string `json:"id_token"`
		Scope       string `json:"scope"`
	}
	err = json.NewDecoder(resp.Body).Decode(&tok)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK || tok.AccessToken == "" || tok.IDToken == "" || tok.Scope != "openid read:orders" {
		t.Fatalf("token: %d %+v %v", resp.StatusCode, tok, err)
	}

	if code := get(t, a, tok.AccessToken); code != http.StatusOK {
		t.Fatalf("gateway answered %d", code)
	}
	up.mu.Lock()
	hdr := up.hdr
	up.mu.Unlock()
	for k, want := range map[string]string{
		"X-Client-Kind": "user", "X-User-Id": "auth0|alice", "X-Client-Id": "integration-tests",
		"X-Client-Metadata-Plan": "pro", "X-User-Name": "alice",
	} {
		if got := hdr.Get(k); got != want {
			t.Errorf("%s = %q, want %q", k, got, want)
		}
	}
	var md map[string]any
	if err := json.Unmarshal([]byte(hdr.Get("X-Client-Metadata")), &md); err != nil || md["plan"] != "pro" {
		t.Errorf("X-Client-Metadata = %q (%v)", hdr.Get("X-Client-Metadata"), err)
	}

	// The wrong password gets Auth0's answer, and no token.
	resp, err = http.PostForm("http://"+a.Addr("dev issuer")+"/oauth/token", url.Values{
		"grant_type": {"password"}, "client_id": {"integration-tests"}, "client_secret": {"tests-secret"},
		"username": {"alice@example.com"}, "password": {"wrong"},
	})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("wrong password: %d", resp.StatusCode)
	}
}

func TestDevIssuerUsersMapping(t *testing.T) {
	d := config.DevIssuer{
		Clients: []config.DevClient{{ID: "c", Secret: "s", Scopes: []string{"a"}, Grants: []string{"password"}}},
		Users:   []config.DevUser{{ID: "auth0|u", Username: "u", Password: "p", Scopes: []string{"b"}, Claims: map[string]any{"k": "v"}}},
	}
	clients, users := devIssuerUsers(d)
	if len(clients) != 1 || clients[0].ID != "c" || clients[0].Secret != "s" || clients[0].Scopes[0] != "a" || clients[0].Grants[0] != devissuer.GrantPassword {
		t.Errorf("clients = %+v", clients)
	}
	if len(users) != 1 || users[0].ID != "auth0|u" || users[0].Username != "u" || users[0].Password != "p" || users[0].Scopes[0] != "b" || users[0].Claims["k"] != "v" {
		t.Errorf("users = %+v", users)
	}
	d.Users[0].Claims["k"] = "changed"
	d.Clients[0].Scopes[0] = "changed"
	if users[0].Claims["k"] != "v" || clients[0].Scopes[0] != "a" {
		t.Error("the options share state with the config")
	}
}
