// Package devissuer is the gateway's built-in token issuer for local
// development and integration tests: it mints Auth0-shaped access tokens
// with a key kept on disk, serves their JWKS, and answers the
// client-credentials grant on POST /oauth/token, so code written against
// Auth0 runs unchanged against a laptop. It must never be enabled in
// production; the shipped production examples leave it off.
package devissuer

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"mime"
	"net/http"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/metagate/gateway/internal/keyfile"
)

// Client may use the client-credentials grant against the dev issuer.
type Client struct {
	ID     string
	Secret string
	Scopes []string
}

// Issuer signs tokens as the dev issuer.
type Issuer struct {
	issuer   string
	audience string
	ttl      time.Duration
	key      *rsa.PrivateKey
	kid      string
	clients  map[string]Client
	now      func() time.Time
}

// Options configures an Issuer.
type Options struct {
	Issuer   string // the iss claim, e.g. http://127.0.0.1:8081/
	Audience string // the default aud claim
	TTL      time.Duration
	Key      *rsa.PrivateKey
	Clients  []Client
	Now      func() time.Time // nil: time.Now
}

// New builds an Issuer from a loaded key.
func New(o Options) *Issuer {
	now := o.Now
	if now == nil {
		now = time.Now
	}
	clients := make(map[string]Client, len(o.Clients))
	for _, c := range o.Clients {
		clients[c.ID] = c
	}
	return &Issuer{issuer: o.Issuer, audience: o.Audience, ttl: o.TTL, key: o.Key, kid: thumbprint(&o.Key.PublicKey), clients: clients, now: now}
}

// TokenRequest describes a token to mint.
type TokenRequest struct {
	ClientID string        // mint a client-credentials token for this client...
	UserID   string        // ...or a user token for this subject
	Scopes   []string      // scope claim; for a known client, its configured scopes when empty
	Audience string        // empty: the issuer's default audience
	TTL      time.Duration // zero: the issuer's default
}

// Mint signs an access token with the same claims Auth0 puts in one: for a
// client sub "<id>@clients", azp and gty client-credentials; for a user sub
// and an aud array.
func (is *Issuer) Mint(r TokenRequest) (string, error) {
	if (r.ClientID == "") == (r.UserID == "") {
		return "", errors.New("mint: exactly one of client or user is required")
	}
	aud := r.Audience
	if aud == "" {
		aud = is.audience
	}
	ttl := r.TTL
	if ttl <= 0 {
		ttl = is.ttl
	}
	scopes := r.Scopes
	now := is.now()
	claims := jwt.MapClaims{
		"iss": is.issuer,
		"iat": now.Unix(),
		"exp": now.Add(ttl).Unix(),
	}
	if r.ClientID != "" {
		if len(scopes) == 0 {
			scopes = is.clients[r.ClientID].Scopes
		}
		claims["sub"] = r.ClientID + "@clients"
		claims["azp"] = r.ClientID
		claims["gty"] = "client-credentials"
		claims["aud"] = aud
	} else {
		claims["sub"] = r.UserID
		claims["azp"] = "gateway-dev"
		claims["aud"] = []string{aud, strings.TrimSuffix(is.issuer, "/") + "/userinfo"}
	}
	if len(scopes) > 0 {
		claims["scope"] = strings.Join(scopes, " ")
	}
	tok := jwt.NewWithClaims(jwt.SigningMethodRS256, claims)
	tok.Header["kid"] = is.kid
	s, err := tok.SignedString(is.key)
	if err != nil {
		return "", fmt.Errorf("sign dev token: %w", err)
	}
	return s, nil
}

// Handler serves the issuer's public endpoints, at Auth0's paths.
func (is *Issuer) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/jwks.json", is.serveJWKS)
	mux.HandleFunc("GET /.well-known/openid-configuration", is.serveDiscovery)
	mux.HandleFunc("POST /oauth/token", is.serveToken)
	return mux
}

func (is *Issuer) serveJWKS(w http.ResponseWriter, _ *http.Request) {
	pub := &is.key.PublicKey
	writeJSON(w, http.StatusOK, map[string]any{"keys": []map[string]string{{
		"kty": "RSA", "use": "sig", "alg": "RS256", "kid": is.kid,
		"n": b64(pub.N.Bytes()), "e": b64(big.NewInt(int64(pub.E)).Bytes()),
	}}})
}

func (is *Issuer) serveDiscovery(w http.ResponseWriter, _ *http.Request) {
	base := strings.TrimSuffix(is.issuer, "/")
	writeJSON(w, http.StatusOK, map[string]any{
		"issuer":                                is.issuer,
		"jwks_uri":                              base + "/.well-known/jwks.json",
		"token_endpoint":                        base + "/oauth/token",
		"grant_types_supported":                 []string{"client_credentials"},
		"id_token_signing_alg_values_supported": []string{"RS256"},
	})
}

// serveToken implements the client-credentials grant as Auth0 does: form or
// JSON body, credentials in the body or HTTP Basic, Auth0's error bodies.
func (is *Issuer) serveToken(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	var p struct {
		GrantType    string `json:"grant_type"`
		ClientID     string `json:"client_id"`
		ClientSecret string `json:"client_secret"`
		Audience     string `json:"audience"`
		Scope        string `json:"scope"`
	}
	ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if ct == "application/json" {
		if err := json.NewDecoder(r.Body).Decode(&p); err != nil {
			tokenError(w, http.StatusBadRequest, "invalid_request", "Invalid JSON body")
			return
		}
	} else {
		if err := r.ParseForm(); err != nil {
			tokenError(w, http.StatusBadRequest, "invalid_request", "Invalid form body")
			return
		}
		p.GrantType, p.ClientID, p.ClientSecret = r.PostForm.Get("grant_type"), r.PostForm.Get("client_id"), r.PostForm.Get("client_secret")
		p.Audience, p.Scope = r.PostForm.Get("audience"), r.PostForm.Get("scope")
	}
	if id, secret, ok := r.BasicAuth(); ok {
		p.ClientID, p.ClientSecret = id, secret
	}
	if p.GrantType != "client_credentials" {
		tokenError(w, http.StatusBadRequest, "unsupported_grant_type", "Unsupported grant type: "+p.GrantType)
		return
	}
	c, ok := is.clients[p.ClientID]
	if !ok || subtle.ConstantTimeCompare([]byte(c.Secret), []byte(p.ClientSecret)) != 1 {
		tokenError(w, http.StatusUnauthorized, "access_denied", "Unauthorized")
		return
	}
	aud := p.Audience
	if aud == "" {
		aud = is.audience
	}
	if aud != is.audience {
		tokenError(w, http.StatusForbidden, "access_denied", fmt.Sprintf("Service not enabled within domain: %s", aud))
		return
	}
	scopes := c.Scopes
	if p.Scope != "" {
		scopes = intersect(c.Scopes, strings.Fields(p.Scope))
	}
	tok, err := is.Mint(TokenRequest{ClientID: c.ID, Scopes: scopes, Audience: aud})
	if err != nil {
		tokenError(w, http.StatusInternalServerError, "server_error", "could not sign token")
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, map[string]any{
		"access_token": tok,
		"token_type":   "Bearer",
		"expires_in":   int(is.ttl.Seconds()),
		"scope":        strings.Join(scopes, " "),
	})
}

func intersect(granted, asked []string) []string {
	var out []string
	for _, a := range asked {
		for _, g := range granted {
			if a == g {
				out = append(out, a)
				break
			}
		}
	}
	return out
}

func tokenError(w http.ResponseWriter, status int, code, desc string) {
	writeJSON(w, status, map[string]string{"error": code, "error_description": desc})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// thumbprint is the RFC 7638 JWK thumbprint, used as kid so that the same key
// always gets the same kid.
func thumbprint(pub *rsa.PublicKey) string {
	e := b64(big.NewInt(int64(pub.E)).Bytes())
	sum := sha256.Sum256([]byte(`{"e":"` + e + `","kty":"RSA","n":"` + b64(pub.N.Bytes()) + `"}`))
	return b64(sum[:])
}

// LoadOrCreateKey reads the RSA key at path, creating it on first use. The
// file is written with mode 0600 and linked into place atomically, so a
// `gateway token` and a `gateway serve` started together agree on one key.
func LoadOrCreateKey(path string) (*rsa.PrivateKey, error) {
	k, err := keyfile.LoadOrCreate(path, "dev signing key", func() (any, error) { return rsa.GenerateKey(rand.Reader, 2048) })
	if err != nil {
		return nil, err
	}
	rk, ok := k.(*rsa.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("dev signing key %s: not an RSA key", path)
	}
	return rk, nil
}
