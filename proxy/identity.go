package proxy

import (
	"errors"
	"fmt"
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
	// Claims are the token's claims that VerifierOptions.Claims asked
	// for, as header values (enrich.HeaderValue), in that order; absent
	// and null claims are left out.
	Claims []ClaimValue
	// AllClaims holds every claim, when VerifierOptions.KeepClaims asked
	// for them (route policies read them); nil otherwise. Shared by the
	// token's requests: never modify it.
	AllClaims map[string]any

	cacheUntil time.Time
	// The forwarded values (Caller.Kind, ClientID, Caller.ID, ScopeHeader)
	// as one-element slices, built once with the token so that forwarding
	// its requests does not allocate them again (see headerWriter.put).
	// They are nil in a Token built outside identify.
	kindValue, clientIDValue, callerIDValue, scopeValue, issuerValue []string
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

// ClaimValue is one claim of a token, in its header form.
type ClaimValue struct {
	Name  string
	Value string
	// values is Value as a one-element slice, shared by every request
	// with this token (see headerWriter.put).
	values []string
}

const clientsSuffix = "@clients"

// identify is the identity stage: it decides who is calling from verified
// claims. A token is a client's only when it says so unambiguously:
//   - Auth0's client-credentials subject, sub == "<azp or client_id>@clients";
//   - gty == "client-credentials" (present in practice, not promised) with
//     a client id in azp or client_id;
//   - RFC 9068's sub == client_id.
//
// Anything else is a user, whatever its sub looks like: a user id that
// happens to end in "@clients" (a SAML NameID, an imported user) must not
// be forwarded as an application. Every caller is bound to the issuer that
// signed its token, so two tenants' "svc-billing" never share metadata.
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
	if id, ok := clientOf(c); ok {
		clientID = id
		t.Caller = enrich.NewCaller(c.Issuer, enrich.KindClient, id)
	} else {
		t.Caller = enrich.NewCaller(c.Issuer, enrich.KindUser, c.Subject)
	}
	t.ClientID = clientID
	scopes, err := scopeList(c.Scope, c.Permissions)
	if err != nil {
		return nil, err
	}
	t.Scopes = scopes
	t.ScopeHeader = strings.Join(t.Scopes, " ")
	// One backing array for the five, each a slice of capacity 1: an
	// append to one copies instead of writing into its neighbour.
	v := []string{t.Caller.Kind.String(), t.ClientID, t.Caller.ID, t.ScopeHeader, t.Issuer}
	t.kindValue, t.clientIDValue, t.callerIDValue, t.scopeValue, t.issuerValue = v[0:1:1], v[1:2:2], v[2:3:3], v[3:4:4], v[4:5:5]
	return t, nil
}

// clientOf returns the client id of a client token (see identify).
func clientOf(c *claims) (string, bool) {
	azp, cid, sub := c.AuthorizedParty, c.ClientID, c.Subject
	switch {
	case azp != "" && sub == azp+clientsSuffix:
		return azp, true
	case cid != "" && (sub == cid+clientsSuffix || sub == cid):
		return cid, true
	case c.GrantType == "client-credentials" && azp != "":
		return azp, true
	case c.GrantType == "client-credentials" && cid != "":
		return cid, true
	}
	return "", false
}

// scopeList merges the scope claim (split on ASCII space only, RFC 6749
// §3.3) and the permissions claim, deduplicated. A scope token outside
// RFC 6749's scope-token characters (%x21 / %x23-5B / %x5D-7E) refuses
// the token: "read:a\u00a0admin" is one scope here, but an upstream that
// splits X-Client-Scopes on Unicode whitespace would read "admin".
func scopeList(scope string, permissions []string) ([]string, error) {
	var out []string
	seen := map[string]bool{}
	add := func(s string) error {
		if !isScopeToken(s) {
			return fmt.Errorf("scope %q is not an RFC 6749 scope-token", s)
		}
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
		return nil
	}
	for s := range strings.SplitSeq(scope, " ") {
		if s == "" {
			continue
		}
		if err := add(s); err != nil {
			return nil, err
		}
	}
	for _, s := range permissions {
		if err := add(s); err != nil {
			return nil, fmt.Errorf("permissions: %w", err)
		}
	}
	return out, nil
}

func isScopeToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x21 || c > 0x7e || c == '"' || c == '\\' {
			return false
		}
	}
	return true
}
