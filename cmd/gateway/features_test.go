package main

import (
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
