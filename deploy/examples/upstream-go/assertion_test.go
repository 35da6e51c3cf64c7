package main

// These tests verify the gateway's real signer (internal/assertion) with
// this example's verifier alone, as an upstream would: the keys come from
// Signer.JWKSHandler over HTTP, through keyfunc, never from the signer.

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/metagate/gateway/enrich"
	"github.com/metagate/gateway/internal/assertion"
	"github.com/metagate/gateway/proxy"
)

const (
	gatewayIssuer = "urn:metagate:gateway"
	apiAudience   = "http://127.0.0.1:8081"
	tokenIssuer   = "https://tenant.auth0.com/"
)

// gateway is the gateway's signer with its JWKS served on a real
// listener, and the example's verifier pointed at it.
type gateway struct {
	signer   *assertion.Signer
	keyFile  string
	jwks     *httptest.Server
	verifier *AssertionVerifier
}

func newGateway(t *testing.T, now func() time.Time) *gateway {
	t.Helper()
	g := &gateway{keyFile: filepath.Join(t.TempDir(), "assertion-key.pem")}
	g.signer = newSigner(t, g.keyFile, now)
	g.jwks = httptest.NewServer(g.signer.JWKSHandler())
	t.Cleanup(g.jwks.Close)
	// Cancelled before the server closes (cleanups run last-in first-out),
	// so keyfunc's refresh goroutine ends first.
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	v, err := NewAssertionVerifier(ctx, g.jwks.URL+"/.well-known/gateway/jwks.json", gatewayIssuer, apiAudience)
	if err != nil {
		t.Fatal(err)
	}
	g.verifier = v
	return g
}

func newSigner(t *testing.T, keyFile string, now func() time.Time) *assertion.Signer {
	t.Helper()
	s, err := assertion.New(assertion.Options{KeyFile: keyFile, Algorithm: "ES256", Issuer: gatewayIssuer, TTL: time.Minute, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

func billing(t *testing.T) proxy.AssertionRequest {
	t.Helper()
	md, err := enrich.Prepare(enrich.Record{Name: "Billing Service", Metadata: map[string]any{
		"tier": "gold", "tenant_id": "acme", "roles": []any{"a", "b"},
	}})
	if err != nil {
		t.Fatal(err)
	}
	return proxy.AssertionRequest{
		Token: &proxy.Token{
			Issuer: tokenIssuer, Subject: "svc-billing@clients",
			Caller:   enrich.NewCaller(tokenIssuer, enrich.KindClient, "svc-billing"),
			ClientID: "svc-billing", Scopes: []string{"read:invoices", "read:orders"}, ScopeHeader: "read:invoices read:orders",
			Expiry: time.Now().Add(time.Hour),
		},
		Metadata: md, Route: "orders", Audience: apiAudience,
	}
}

func sign(t *testing.T, s *assertion.Signer, req proxy.AssertionRequest) string {
	t.Helper()
	a, err := s.Assertion(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

var billingCaller = Caller{
	ID: "svc-billing", Kind: "client", Name: "Billing Service",
	Scopes:       []string{"read:invoices", "read:orders"},
	Metadata:     map[string]string{"Tier": "gold", "Tenant-Id": "acme"},
	MetadataJSON: map[string]any{"tier": "gold", "tenant_id": "acme", "roles": []any{"a", "b"}},
}

func TestAssertionVerifies(t *testing.T) {
	g := newGateway(t, nil)
	c, err := g.verifier.Verify(sign(t, g.signer, billing(t)))
	if err != nil {
		t.Fatal(err)
	}
	if c.Subject != "svc-billing" || c.CallerIssuer != tokenIssuer || c.Issuer != gatewayIssuer {
		t.Errorf("claims %+v", c)
	}
	if got := c.Caller(); !reflect.DeepEqual(got, billingCaller) {
		t.Errorf("caller\n got %+v\nwant %+v", got, billingCaller)
	}
}

func TestUserAssertion(t *testing.T) {
	g := newGateway(t, nil)
	req := proxy.AssertionRequest{
		Token: &proxy.Token{
			Issuer: tokenIssuer, Subject: "auth0|alice", ClientID: "spa-app",
			Caller: enrich.NewCaller(tokenIssuer, enrich.KindUser, "auth0|alice"),
		},
		Route: "orders", Audience: apiAudience,
	}
	c, err := g.verifier.Verify(sign(t, g.signer, req))
	if err != nil {
		t.Fatal(err)
	}
	want := Caller{ID: "spa-app", Kind: "user", UserID: "auth0|alice", Scopes: []string{}, Metadata: map[string]string{}}
	if got := c.Caller(); !reflect.DeepEqual(got, want) {
		t.Errorf("caller\n got %+v\nwant %+v", got, want)
	}
}

func TestAssertionRefused(t *testing.T) {
	g := newGateway(t, nil)
	// Signed two minutes ago with a one-minute TTL, by the same key.
	past := newSigner(t, g.keyFile, func() time.Time { return time.Now().Add(-2 * time.Minute) })
	otherAud := billing(t)
	otherAud.Audience = "http://billing.internal:8080"
	otherIss, err := assertion.New(assertion.Options{KeyFile: g.keyFile, Algorithm: "ES256", Issuer: "urn:someone:else", TTL: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	defer otherIss.Close()
	stranger := newSigner(t, filepath.Join(t.TempDir(), "other-key.pem"), nil)
	none, err := jwt.NewWithClaims(jwt.SigningMethodNone, jwt.MapClaims{
		"iss": gatewayIssuer, "aud": apiAudience, "sub": "svc-admin", "kind": "client", "exp": time.Now().Add(time.Minute).Unix(),
	}).SignedString(jwt.UnsafeAllowNoneSignatureType)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		raw  string
		want error
	}{
		{"expired", sign(t, past, billing(t)), jwt.ErrTokenExpired},
		{"another audience", sign(t, g.signer, otherAud), jwt.ErrTokenInvalidAudience},
		{"another issuer", sign(t, otherIss, billing(t)), jwt.ErrTokenInvalidIssuer},
		{"a key the gateway does not publish", sign(t, stranger, billing(t)), jwt.ErrTokenUnverifiable},
		{"alg none", none, jwt.ErrTokenSignatureInvalid},
		{"not a JWT", "forged", jwt.ErrTokenMalformed},
		{"missing", "", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := g.verifier.Verify(tc.raw)
			if err == nil {
				t.Fatal("accepted")
			}
			if tc.want != nil && !errors.Is(err, tc.want) {
				t.Errorf("error %v, want %v", err, tc.want)
			}
		})
	}
}

func TestAssertionAfterKeyRotation(t *testing.T) {
	g := newGateway(t, nil)
	req := billing(t)
	old := sign(t, g.signer, req)
	if _, err := g.verifier.Verify(old); err != nil { // the verifier now holds the first key
		t.Fatal(err)
	}

	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(g.keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := g.signer.Reload(); err != nil {
		t.Fatal(err)
	}
	fresh := sign(t, g.signer, req)
	if fresh == old {
		t.Fatal("the rotated signer returned its cached assertion")
	}
	// keyfunc has not seen the new kid: it fetches the JWKS again.
	c, err := g.verifier.Verify(fresh)
	if err != nil {
		t.Fatalf("new key's assertion: %v", err)
	}
	if !reflect.DeepEqual(c.Caller(), billingCaller) {
		t.Errorf("caller %+v", c.Caller())
	}
	if _, err := g.verifier.Verify(old); err != nil {
		t.Errorf("the retired key's assertion, still valid: %v", err)
	}
	tok, _, err := jwt.NewParser().ParseUnverified(fresh, jwt.MapClaims{})
	if err != nil || tok.Header["alg"] != "EdDSA" {
		t.Errorf("new assertion's alg %v (%v), want EdDSA", tok.Header["alg"], err)
	}
}

func TestRequireAssertion(t *testing.T) {
	g := newGateway(t, nil)
	api := httptest.NewServer(newHandler(g.verifier))
	defer api.Close()
	get := func(path string, h http.Header) (*http.Response, map[string]any) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, api.URL+path, nil)
		for k, v := range h {
			req.Header[k] = v
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var body map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&body)
		return resp, body
	}

	if resp, _ := get("/healthz", nil); resp.StatusCode != http.StatusOK {
		t.Errorf("healthz without an assertion: %d", resp.StatusCode)
	}
	forged := gatewayHeaders()
	forged.Set("X-Client-Id", "svc-admin")
	forged.Set("X-Client-Scopes", "read:orders")
	if resp, _ := get("/orders", forged); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("headers without an assertion: %d, want 401", resp.StatusCode)
	}
	forged.Set(headerAssertion, "forged")
	if resp, _ := get("/whoami", forged); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("a forged assertion: %d, want 401", resp.StatusCode)
	}

	// A valid assertion: the caller is the assertion's, whatever the headers say.
	forged.Set(headerAssertion, sign(t, g.signer, billing(t)))
	resp, body := get("/whoami", forged)
	if resp.StatusCode != http.StatusOK || body["id"] != "svc-billing" {
		t.Errorf("whoami: %d %v", resp.StatusCode, body)
	}
	if resp, body := get("/orders", forged); resp.StatusCode != http.StatusOK || body["tenant"] != "acme" {
		t.Errorf("orders: %d %v", resp.StatusCode, body)
	}
}
