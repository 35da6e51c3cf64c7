package auth0emu

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1" // x5t is a SHA-1 thumbprint by definition (RFC 7517 §4.8)
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/metagate/gateway/internal/jose"
)

// newKey generates the tenant's RS256 signing key and the self-signed
// certificate Auth0 publishes with it (x5c/x5t in the JWKS).
func (t *Tenant) newKey(tb testing.TB) {
	tb.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		tb.Fatalf("auth0emu: generate RSA key: %v", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "auth0emu"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		tb.Fatalf("auth0emu: self-sign certificate: %v", err)
	}
	jk, err := jose.NewKey(key)
	if err != nil {
		tb.Fatalf("auth0emu: %v", err)
	}
	t.key = key
	t.certDER = der
	// Auth0 kids are opaque base64url strings; the RFC 7638 thumbprint
	// the gateway's own issuers use is as good.
	t.kid = jk.Kid()
}

// signer is the tenant's key for internal/jose. Deriving it is a hash of
// the public key, cheap next to an RSA signature, so it is not kept.
func (t *Tenant) signer() *jose.Key {
	jk, err := jose.NewKey(t.key)
	if err != nil {
		// newKey made the key and derived it once already.
		panic("auth0emu: " + err.Error())
	}
	return jk
}

// jwks is the body of /.well-known/jwks.json: the key as internal/jose
// publishes it, plus the certificate Auth0 adds.
func (t *Tenant) jwks() map[string]any {
	sum := sha1.Sum(t.certDER)
	jwk := t.signer().PublicJWK()
	jwk["x5t"] = base64.RawURLEncoding.EncodeToString(sum[:])
	jwk["x5c"] = []string{base64.StdEncoding.EncodeToString(t.certDER)}
	return map[string]any{"keys": []map[string]any{jwk}}
}

// sign signs claims the way Auth0 does: RS256, header typ and kid.
func (t *Tenant) sign(claims jwt.MapClaims, typ string) string {
	s, err := t.signer().Sign(claims, map[string]any{"typ": typ})
	if err != nil {
		// Signing with a valid RSA key cannot fail short of a broken
		// crypto/rand; there is no test goroutine to report to here.
		panic("auth0emu: " + err.Error())
	}
	return s
}

// grantedScopes is the scope string a client gets for audience: its grant,
// narrowed to requested when the request named scopes. ok is false when
// the client has no grant on the audience.
func (t *Tenant) grantedScopes(c Client, audience, requested string) (scope string, ok bool) {
	granted, ok := c.Grants[audience]
	if !ok {
		return "", false
	}
	if requested == "" {
		return strings.Join(granted, " "), true
	}
	want := map[string]bool{}
	for _, s := range strings.Fields(requested) {
		want[s] = true
	}
	var out []string
	for _, s := range granted {
		if want[s] {
			out = append(out, s)
		}
	}
	return strings.Join(out, " "), true
}

// clientClaims are the claims of a client-credentials access token as
// Auth0 issues it (DESIGN §3).
func (t *Tenant) clientClaims(clientID, audience, scope string, ttl time.Duration) jwt.MapClaims {
	now := time.Now()
	return jwt.MapClaims{
		"iss":   t.Issuer(),
		"sub":   clientID + "@clients",
		"aud":   audience,
		"iat":   now.Unix(),
		"exp":   now.Add(ttl).Unix(),
		"scope": scope,
		"gty":   "client-credentials",
		"azp":   clientID,
	}
}

// issueClientToken mints a client-credentials token and, for the
// Management API, remembers it so RevokeMgmtTokens can revoke it.
func (t *Tenant) issueClientToken(clientID, audience, scope string, ttl time.Duration) string {
	tok := t.sign(t.clientClaims(clientID, audience, scope, ttl), "JWT")
	if audience == t.MgmtAudience() {
		t.mu.Lock()
		t.revoked[tok] = false
		t.mu.Unlock()
	}
	return tok
}

// ClientToken mints a client-credentials access token for clientID on
// audience, like POST /oauth/token would, without counting a token call:
// header {alg RS256, typ JWT, kid}, claims iss, sub "<id>@clients", aud,
// iat, exp, scope (the client's grant on audience, if any), gty
// "client-credentials", azp. The client and the API need not exist, so
// tests can mint tokens the tenant would refuse to issue.
func (t *Tenant) ClientToken(clientID, audience string, ttl time.Duration) string {
	t.mu.Lock()
	c := t.clients[clientID]
	t.mu.Unlock()
	scope, _ := t.grantedScopes(c, audience, "")
	return t.issueClientToken(clientID, audience, scope, ttl)
}

// ClientTokenRFC9068 is ClientToken in Auth0's "RFC 9068" token profile:
// header typ "at+jwt", client_id instead of azp, no gty.
func (t *Tenant) ClientTokenRFC9068(clientID, audience string, ttl time.Duration) string {
	t.mu.Lock()
	c := t.clients[clientID]
	t.mu.Unlock()
	scope, _ := t.grantedScopes(c, audience, "")
	claims := t.clientClaims(clientID, audience, scope, ttl)
	delete(claims, "gty")
	delete(claims, "azp")
	claims["client_id"] = clientID
	return t.sign(claims, "at+jwt")
}

// UserToken mints a user access token: sub userID, azp clientID, aud a
// string for one audience and an array for several (pass URL()+"/userinfo"
// among them to get what a login with openid returns), scope, and a
// permissions array when permissions is not nil (RBAC on).
func (t *Tenant) UserToken(userID, clientID string, audiences []string, scopes, permissions []string, ttl time.Duration) string {
	now := time.Now()
	claims := jwt.MapClaims{
		"iss":   t.Issuer(),
		"sub":   userID,
		"iat":   now.Unix(),
		"exp":   now.Add(ttl).Unix(),
		"azp":   clientID,
		"scope": strings.Join(scopes, " "),
	}
	switch len(audiences) {
	case 0:
	case 1:
		claims["aud"] = audiences[0]
	default:
		claims["aud"] = append([]string(nil), audiences...)
	}
	if permissions != nil {
		claims["permissions"] = append([]string{}, permissions...)
	}
	return t.sign(claims, "JWT")
}
