// Package testenv holds test fixtures shared across packages: a JWKS issuer
// with real keys, a real redis-server process, and an Auth0 tenant emulator
// (in auth0emu). Nothing here is linked into the gateway binary.
package testenv

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Key is a signing key of the test issuer.
type Key struct {
	Kid     string
	Alg     string // RS256, ES256 or EdDSA
	Private crypto.Signer
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
	seq     atomic.Int64
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
	k := Key{Alg: alg, Kid: "key-" + strconv.FormatInt(is.seq.Add(1), 10)}
	var err error
	switch alg {
	case "RS256":
		k.Private, err = rsa.GenerateKey(rand.Reader, 2048)
	case "ES256":
		k.Private, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case "EdDSA":
		_, k.Private, err = ed25519.GenerateKey(rand.Reader)
	default:
		t.Fatalf("testenv: unsupported alg %q", alg)
	}
	if err != nil {
		t.Fatalf("testenv: generate %s key: %v", alg, err)
	}
	return k
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

// Sign signs claims with key, setting alg and kid in the header; extra
// header fields are added as given.
func (is *Issuer) Sign(t testing.TB, key Key, claims jwt.MapClaims, header map[string]any) string {
	t.Helper()
	var m jwt.SigningMethod
	switch key.Alg {
	case "RS256":
		m = jwt.SigningMethodRS256
	case "ES256":
		m = jwt.SigningMethodES256
	case "EdDSA":
		m = jwt.SigningMethodEdDSA
	}
	tok := jwt.NewWithClaims(m, claims)
	tok.Header["kid"] = key.Kid
	for k, v := range header {
		tok.Header[k] = v
	}
	s, err := tok.SignedString(key.Private)
	if err != nil {
		t.Fatalf("testenv: sign: %v", err)
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
	keys := make([]map[string]string, 0, len(is.keys))
	for _, k := range is.keys {
		keys = append(keys, publicJWK(k))
	}
	is.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{"keys": keys})
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

func publicJWK(k Key) map[string]string {
	j := map[string]string{"kid": k.Kid, "alg": k.Alg, "use": "sig"}
	switch p := k.Private.Public().(type) {
	case *rsa.PublicKey:
		j["kty"], j["n"], j["e"] = "RSA", b64(p.N.Bytes()), b64(big.NewInt(int64(p.E)).Bytes())
	case *ecdsa.PublicKey:
		size := (p.Curve.Params().BitSize + 7) / 8
		j["kty"], j["crv"] = "EC", p.Curve.Params().Name
		if pt, err := p.Bytes(); err == nil { // 0x04 || X || Y
			j["x"], j["y"] = b64(pt[1:1+size]), b64(pt[1+size:])
		}
	case ed25519.PublicKey:
		j["kty"], j["crv"], j["x"] = "OKP", "Ed25519", b64(p)
	}
	return j
}

// Keys returns the published keys.
func (is *Issuer) Keys() []Key {
	is.mu.Lock()
	defer is.mu.Unlock()
	return append([]Key(nil), is.keys...)
}
