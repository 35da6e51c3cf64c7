// Package devissuer is the gateway's built-in token issuer for local
// development and integration tests: it mints Auth0-shaped access tokens
// with a key kept on disk, serves their JWKS, and answers the
// client-credentials and password grants on POST /oauth/token, so code
// written against Auth0 (a test that logs a test user in, seed 003) runs
// unchanged against a laptop. It must never be enabled in
// production; the shipped production examples leave it off.
package devissuer

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/metagate/gateway/internal/jose"
	"github.com/metagate/gateway/internal/keyfile"
	"github.com/metagate/gateway/proxy/cors"
)

// The grant types of POST /oauth/token, in Auth0's spelling.
const (
	GrantClientCredentials = "client_credentials"
	GrantPassword          = "password"
	GrantPasswordRealm     = "http://auth0.com/oauth/grant-type/password-realm"
)

// supportedGrants are the grant types the dev issuer answers, for
// discovery and for a client that lists none.
func supportedGrants() []string {
	return []string{GrantClientCredentials, GrantPassword, GrantPasswordRealm}
}

// Client may obtain tokens from the dev issuer's POST /oauth/token.
type Client struct {
	ID     string
	Secret string
	Scopes []string
	// Grants are the grant types the client may use (Auth0's
	// grant_types); empty: all of them.
	Grants []string
}

// allows reports whether the client may use grant.
func (c Client) allows(grant string) bool {
	return len(c.Grants) == 0 || slices.Contains(c.Grants, grant)
}

// Issuer signs tokens as the dev issuer.
type Issuer struct {
	issuer   string
	audience string
	ttl      time.Duration
	key      *jose.Key
	// keyErr is why Options.Key cannot sign (too small an RSA key):
	// New cannot fail, so Mint and the token endpoint report it.
	keyErr   error
	clients  map[string]Client
	users    map[string]*user // by lower-cased username
	attempts *attempts
	// unknownPassword is compared when no user has the username, so
	// that a wrong username costs what a wrong password does.
	unknownPassword [32]byte
	cors            *cors.Policy
	now             func() time.Time
}

// Options configures an Issuer.
type Options struct {
	Issuer   string // the iss claim, e.g. http://127.0.0.1:8081/
	Audience string // the default aud claim
	TTL      time.Duration
	Key      *rsa.PrivateKey
	Clients  []Client
	// Users may log in with the password grants (see User).
	Users []User
	// CORSOrigins may call POST /oauth/token from a browser page, as
	// Auth0 lets a client's "Allowed Web Origins" do (a SPA logging a
	// user in during development).
	CORSOrigins []string
	Now         func() time.Time // nil: time.Now
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
	is := &Issuer{issuer: o.Issuer, audience: o.Audience, ttl: o.TTL, clients: clients, now: now,
		cors: cors.New(o.CORSOrigins, []string{http.MethodPost}, []string{"Content-Type"}, nil)}
	if o.Key == nil {
		is.keyErr = errors.New("dev issuer: no signing key")
	} else if is.key, is.keyErr = jose.NewKey(o.Key); is.keyErr != nil {
		is.keyErr = fmt.Errorf("dev signing key: %w", is.keyErr)
	}
	is.users = newUsers(o.Users)
	is.attempts = newAttempts(now, o.Users)
	is.unknownPassword = hashPassword(rand.Text())
	return is
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
	return is.sign(claims)
}

// sign signs claims with the dev key.
func (is *Issuer) sign(claims jwt.MapClaims) (string, error) {
	if is.keyErr != nil {
		return "", is.keyErr
	}
	s, err := is.key.Sign(claims, nil)
	if err != nil {
		return "", fmt.Errorf("sign dev token: %w", err)
	}
	return s, nil
}

// preflight answers a browser's CORS preflight for POST /oauth/token:
// 204 for a listed origin, 403 without CORS headers otherwise.
func (is *Issuer) preflight(w http.ResponseWriter, r *http.Request) {
	if c := is.cors.Apply(w, r); !c.Preflight || !c.Allowed {
		tokenError(w, http.StatusForbidden, "access_denied", "This origin may not call /oauth/token")
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// Handler serves the issuer's public endpoints, at Auth0's paths.
func (is *Issuer) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/jwks.json", is.serveJWKS)
	mux.HandleFunc("GET /.well-known/openid-configuration", is.serveDiscovery)
	mux.HandleFunc("POST /oauth/token", is.serveToken)
	mux.HandleFunc("OPTIONS /oauth/token", is.preflight)
	return mux
}

func (is *Issuer) serveJWKS(w http.ResponseWriter, _ *http.Request) {
	if is.keyErr != nil {
		writeJSON(w, http.StatusOK, jose.JWKS())
		return
	}
	writeJSON(w, http.StatusOK, jose.JWKS(is.key))
}

func (is *Issuer) serveDiscovery(w http.ResponseWriter, _ *http.Request) {
	base := strings.TrimSuffix(is.issuer, "/")
	writeJSON(w, http.StatusOK, map[string]any{
		"issuer":                                is.issuer,
		"jwks_uri":                              base + "/.well-known/jwks.json",
		"token_endpoint":                        base + "/oauth/token",
		"grant_types_supported":                 supportedGrants(),
		"id_token_signing_alg_values_supported": []string{"RS256"},
	})
}

// tokenParams are the parameters of POST /oauth/token that the dev
// issuer reads, from a form or a JSON body as Auth0 accepts both.
type tokenParams struct {
	GrantType    string `json:"grant_type"`
	ClientID     string `json:"client_id"`
	ClientSecret string `json:"client_secret"`
	Audience     string `json:"audience"`
	Scope        string `json:"scope"`
	Username     string `json:"username"`
	Password     string `json:"password"`
	Realm        string `json:"realm"`
}

// serveToken implements POST /oauth/token as Auth0 does for the
// client-credentials and password grants: form or JSON body, client
// credentials in the body or HTTP Basic, Auth0's status codes and error
// bodies, checked in Auth0's order (grant type, client, the client's
// grant types, audience).
func (is *Issuer) serveToken(w http.ResponseWriter, r *http.Request) {
	is.cors.Apply(w, r)
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	var p tokenParams
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
		f := r.PostForm
		p = tokenParams{
			GrantType: f.Get("grant_type"), ClientID: f.Get("client_id"), ClientSecret: f.Get("client_secret"),
			Audience: f.Get("audience"), Scope: f.Get("scope"),
			Username: f.Get("username"), Password: f.Get("password"), Realm: f.Get("realm"),
		}
	}
	if id, secret, ok := r.BasicAuth(); ok {
		p.ClientID, p.ClientSecret = id, secret
	}
	switch {
	case p.GrantType == "":
		tokenError(w, http.StatusBadRequest, "invalid_request", "Missing required parameter: grant_type")
		return
	case !slices.Contains(supportedGrants(), p.GrantType):
		tokenError(w, http.StatusBadRequest, "unsupported_grant_type", "Unsupported grant type: "+p.GrantType)
		return
	}
	c, ok := is.clients[p.ClientID]
	if !ok || subtle.ConstantTimeCompare([]byte(c.Secret), []byte(p.ClientSecret)) != 1 {
		tokenError(w, http.StatusUnauthorized, "access_denied", "Unauthorized")
		return
	}
	if !c.allows(p.GrantType) {
		tokenError(w, http.StatusForbidden, "unauthorized_client", fmt.Sprintf("Grant type '%s' not allowed for the client.", p.GrantType))
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
	if p.GrantType != GrantClientCredentials {
		is.servePassword(w, c, p, aud)
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
	writeToken(w, map[string]any{
		"access_token": tok,
		"token_type":   "Bearer",
		"expires_in":   int(is.ttl.Seconds()),
		"scope":        strings.Join(scopes, " "),
	})
}

// writeToken answers a successful token request; tokens must not be
// cached (RFC 6749 §5.1).
func writeToken(w http.ResponseWriter, body map[string]any) {
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Pragma", "no-cache")
	writeJSON(w, http.StatusOK, body)
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
	// Refuse here what New could only report on first use.
	if _, err := jose.NewKey(rk); err != nil {
		return nil, fmt.Errorf("dev signing key %s: %w", path, err)
	}
	return rk, nil
}
