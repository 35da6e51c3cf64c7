// Package testenv holds test fixtures shared across packages: a JWKS issuer
// with real keys, a real redis-server process, and an Auth0 tenant emulator
// (in auth0emu). Nothing here is linked into the gateway binary.
package testenv

import (
	"crypto"
	"encoding/json"
	"maps"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/metagate/gateway/internal/jose"
)

// Key is a signing key of the test issuer. Kid is its RFC 7638
// thumbprint, as the gateway's own issuers use; a test may change Kid on
// a copy to sign with one key under another's kid.
type Key struct {
	Kid     string
	Alg     string // RS256, ES256 or EdDSA
	Private crypto.Signer
	// jose is Private with its JWK derived; Sign derives it again for
	// a Key built by hand or given another Private.
	jose *jose.Key
}

// Issuer is an OIDC-style token issuer with real keys and a JWKS served
// over HTTP, so verification runs exactly as against Auth0.
type Issuer struct {
	URL      string // issuer identifier, with Auth0's trailing slash
	JWKSURL  string
	Audience string

	srv     *httptest.Server
	mu      sync.Mutex
	keys    []Key
	down    atomic.Bool
	fetches atomic.Int64
}

// NewIssuer starts an issuer publishing one RS256 key.
func NewIssuer(t testing.TB) *Issuer {
	t.Helper()
	is := &Issuer{Audience: "https://api.test/"}
	is.srv = httptest.NewServer(http.HandlerFunc(is.serveJWKS))
	t.Cleanup(is.srv.Close)
	is.URL = is.srv.URL + "/"
	is.JWKSURL = is.srv.URL + "/.well-known/jwks.json"
	is.AddKey(t, "RS256")
	return is
}

// NewKey generates a key without publishing it (a foreign key).
func (is *Issuer) NewKey(t testing.TB, alg string) Key {
	t.Helper()
	priv, err := jose.Generate(alg)
	if err != nil {
		t.Fatalf("testenv: generate %s key: %v", alg, err)
	}
	jk, err := jose.NewKey(priv)
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	return Key{Kid: jk.Kid(), Alg: jk.Alg(), Private: priv, jose: jk}
}

// AddKey generates and publishes a key (a rotation).
func (is *Issuer) AddKey(t testing.TB, alg string) Key {
	t.Helper()
	k := is.NewKey(t, alg)
	is.mu.Lock()
	is.keys = append(is.keys, k)
	is.mu.Unlock()
	return k
}

// Key returns the first published key.
func (is *Issuer) Key() Key {
	is.mu.Lock()
	defer is.mu.Unlock()
	return is.keys[0]
}

// SetDown makes the JWKS endpoint answer 503.
func (is *Issuer) SetDown(down bool) { is.down.Store(down) }

// JWKSFetches counts JWKS requests served or refused.
func (is *Issuer) JWKSFetches() int { return int(is.fetches.Load()) }

// Claims returns valid claims for a client-credentials token, which a test
// may change before signing.
func (is *Issuer) Claims(clientID string) jwt.MapClaims {
	now := time.Now()
	return jwt.MapClaims{
		"iss": is.URL, "sub": clientID + "@clients", "azp": clientID, "aud": is.Audience,
		"gty": "client-credentials", "scope": "read:things", "iat": now.Unix(), "exp": now.Add(time.Hour).Unix(),
	}
}

// Sign signs claims with key, setting alg and kid (key.Kid) in the
// header; extra header fields are added as given, and win.
func (is *Issuer) Sign(t testing.TB, key Key, claims jwt.MapClaims, header map[string]any) string {
	t.Helper()
	jk := key.jose
	if pub, ok := key.Private.Public().(interface{ Equal(crypto.PublicKey) bool }); jk == nil || !ok || !pub.Equal(jk.Public()) {
		var err error
		if jk, err = jose.NewKey(key.Private); err != nil {
			t.Fatalf("testenv: %v", err)
		}
	}
	h := map[string]any{"kid": key.Kid}
	maps.Copy(h, header)
	s, err := jk.Sign(claims, h)
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	return s
}

// Token is a valid client-credentials token signed with the first key.
func (is *Issuer) Token(t testing.TB, clientID string) string {
	return is.Sign(t, is.Key(), is.Claims(clientID), nil)
}

func (is *Issuer) serveJWKS(w http.ResponseWriter, r *http.Request) {
	is.fetches.Add(1)
	if is.down.Load() || r.URL.Path != "/.well-known/jwks.json" {
		http.Error(w, "unavailable", http.StatusServiceUnavailable)
		return
	}
	is.mu.Lock()
	keys := make([]*jose.Key, len(is.keys))
	for i, k := range is.keys {
		keys[i] = k.jose
	}
	is.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(jose.JWKS(keys...))
}

// Keys returns the published keys.
func (is *Issuer) Keys() []Key {
	is.mu.Lock()
	defer is.mu.Unlock()
	return append([]Key(nil), is.keys...)
}
