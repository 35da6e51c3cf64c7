package proxy

import (
	"errors"
	"strings"
	"time"

	"github.com/metagate/gateway/enrich"
)

// Token is a verified access token, reduced to what the gateway forwards.
// It is immutable once built and shared by every request carrying the same
// token.
type Token struct {
	Issuer  string
	Subject string
	Caller  enrich.Caller
	// ClientID is the application that obtained the token: the client itself
	// for client-credentials tokens, the app the user signed in to for user
	// tokens (azp).
	ClientID string
	// Scopes holds the scope claim and the permissions claim, deduplicated.
	Scopes []string
	// ScopeHeader is Scopes joined with spaces, precomputed for the header.
	ScopeHeader string
	Audience    []string
	Expiry      time.Time

	cacheUntil time.Time
	// The forwarded values (Caller.Kind, ClientID, Caller.ID, ScopeHeader)
	// as one-element slices, built once with the token so that forwarding
	// its requests does not allocate them again (see headerWriter.put).
	// They are nil in a Token built outside identify.
	kindValue, clientIDValue, callerIDValue, scopeValue []string
}

// HasAudience reports whether the token's aud contains a.
func (t *Token) HasAudience(a string) bool {
	for _, have := range t.Audience {
		if have == a {
			return true
		}
	}
	return false
}

// HasScope reports whether the token carries scope s.
func (t *Token) HasScope(s string) bool {
	for _, have := range t.Scopes {
		if have == s {
			return true
		}
	}
	return false
}

const clientsSuffix = "@clients"

// identify decides who is calling. A client-credentials token is recognised
// by Auth0's "<client_id>@clients" subject, by gty (present in practice but
// not promised), or by RFC 9068's sub == client_id; anything else is a user.
func identify(c *claims) (*Token, error) {
	if c.Subject == "" {
		return nil, errors.New("token has no sub")
	}
	if c.ExpiresAt == nil {
		return nil, errors.New("token has no exp")
	}
	clientID := c.AuthorizedParty
	if clientID == "" {
		clientID = c.ClientID
	}
	t := &Token{Issuer: c.Issuer, Subject: c.Subject, Expiry: c.ExpiresAt.Time, Audience: c.Audience}
	isClient := strings.HasSuffix(c.Subject, clientsSuffix) || c.GrantType == "client-credentials" ||
		(c.ClientID != "" && c.Subject == c.ClientID)
	if isClient {
		if clientID == "" {
			clientID = strings.TrimSuffix(c.Subject, clientsSuffix)
		}
		if clientID == "" {
			return nil, errors.New("client token without a client id")
		}
		t.Caller = enrich.Caller{Kind: enrich.KindClient, ID: clientID}
	} else {
		t.Caller = enrich.Caller{Kind: enrich.KindUser, ID: c.Subject}
	}
	t.ClientID = clientID
	seen := map[string]bool{}
	for _, s := range strings.Fields(c.Scope) {
		if !seen[s] {
			seen[s] = true
			t.Scopes = append(t.Scopes, s)
		}
	}
	for _, s := range c.Permissions {
		if s != "" && !seen[s] {
			seen[s] = true
			t.Scopes = append(t.Scopes, s)
		}
	}
	t.ScopeHeader = strings.Join(t.Scopes, " ")
	t.kindValue = []string{t.Caller.Kind.String()}
	t.clientIDValue = []string{t.ClientID}
	t.callerIDValue = []string{t.Caller.ID}
	t.scopeValue = []string{t.ScopeHeader}
	return t, nil
}
