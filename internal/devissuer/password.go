package devissuer

import (
	"crypto/sha256"
	"crypto/subtle"
	"maps"
	"net/http"
	"slices"
	"strings"

	"github.com/golang-jwt/jwt/v5"
)

// defaultRealm is the one connection the dev issuer has, under the name
// of the database connection every Auth0 tenant starts with, so a test
// written for the password-realm grant needs no change.
const defaultRealm = "Username-Password-Authentication"

// User may log in with the password grants (seed 003: a test that needs a
// token carrying a user's identity, without a front end).
type User struct {
	ID       string // the sub of the user's tokens, e.g. auth0|alice
	Username string // matched without regard to case, like Auth0's
	Password string
	// Scopes are the scopes the user may be granted (what RBAC
	// permissions give a user in Auth0).
	Scopes []string
	// Claims are added to the user's access and ID tokens, like claims
	// an Auth0 Action sets. They never replace the issuer's own.
	Claims map[string]any
}

// user is a User ready to log in: the password is kept only as its
// SHA-256, so that comparing takes the same time whatever its length.
type user struct {
	User
	hash [32]byte
}

func newUsers(us []User) map[string]*user {
	m := make(map[string]*user, len(us))
	for _, u := range us {
		m[strings.ToLower(u.Username)] = &user{User: u, hash: hashPassword(u.Password)}
	}
	return m
}

func hashPassword(p string) [32]byte { return sha256.Sum256([]byte(p)) }

// isOIDCScope reports the OpenID Connect scopes any user is granted when
// asked.
// offline_access is not among them: the dev issuer issues no refresh
// tokens, so it drops that scope as Auth0 does for an API that does not
// allow offline access.
func isOIDCScope(s string) bool { return s == "openid" || s == "profile" || s == "email" }

// login checks a username and password. Every call compares one hash
// against another, an unknown username against a hash no password
// yields, so neither a wrong username nor the length of a password shows
// in the response time.
func (is *Issuer) login(username, password string) (*user, bool) {
	u, known := is.users[strings.ToLower(username)]
	want := is.unknownPassword
	if known {
		want = u.hash
	}
	got := hashPassword(password)
	if subtle.ConstantTimeCompare(want[:], got[:]) != 1 || !known {
		return nil, false
	}
	return u, true
}

// servePassword answers the password and password-realm grants for an
// authenticated client allowed to use them, on audience aud.
func (is *Issuer) servePassword(w http.ResponseWriter, c Client, p tokenParams, aud string) {
	switch {
	case p.GrantType == GrantPasswordRealm && p.Realm == "":
		tokenError(w, http.StatusBadRequest, "invalid_request", "Missing required parameter: realm")
		return
	case p.GrantType == GrantPasswordRealm && p.Realm != defaultRealm:
		// In Auth0 the realm names a connection of the tenant; the
		// dev issuer has only the default database connection.
		tokenError(w, http.StatusBadRequest, "invalid_request", "Unknown realm: "+p.Realm+" (the dev issuer has only "+defaultRealm+")")
		return
	case p.Username == "":
		tokenError(w, http.StatusBadRequest, "invalid_request", "Missing required parameter: username")
		return
	case p.Password == "":
		tokenError(w, http.StatusBadRequest, "invalid_request", "Missing required parameter: password")
		return
	}
	// Brute-force protection counts the attempt before the password is
	// checked, so that while a username is blocked even its right
	// password is refused, and concurrent guesses cannot slip past the
	// count.
	if !is.attempts.allow(p.Username) {
		tokenError(w, http.StatusTooManyRequests, "too_many_attempts",
			"Your account has been blocked after multiple consecutive login attempts. Wait a minute, or restart the dev issuer.")
		return
	}
	u, ok := is.login(p.Username, p.Password)
	if !ok {
		tokenError(w, http.StatusForbidden, "invalid_grant", "Wrong email or password.")
		return
	}
	is.attempts.succeeded(p.Username)

	scopes := userScopes(u.Scopes, p.Scope)
	openid := slices.Contains(scopes, "openid")
	now := is.now()
	access := jwt.MapClaims{}
	maps.Copy(access, u.Claims)
	maps.Copy(access, jwt.MapClaims{
		"iss": is.issuer, "sub": u.ID, "azp": c.ID, "aud": aud,
		"iat": now.Unix(), "exp": now.Add(is.ttl).Unix(),
		// Auth0 marks tokens of both password grants so.
		"gty": "password",
	})
	if openid {
		// The access token also lets the user call /userinfo, so
		// Auth0 adds that audience, and aud becomes an array.
		access["aud"] = []string{aud, strings.TrimSuffix(is.issuer, "/") + "/userinfo"}
	}
	if len(scopes) > 0 {
		access["scope"] = strings.Join(scopes, " ")
	}
	tok, err := is.sign(access)
	if err != nil {
		tokenError(w, http.StatusInternalServerError, "server_error", "could not sign token")
		return
	}
	body := map[string]any{
		"access_token": tok,
		"token_type":   "Bearer",
		"expires_in":   int(is.ttl.Seconds()),
		"scope":        strings.Join(scopes, " "),
	}
	if openid {
		id := jwt.MapClaims{}
		maps.Copy(id, u.Claims)
		maps.Copy(id, jwt.MapClaims{"iss": is.issuer, "sub": u.ID, "aud": c.ID, "iat": now.Unix(), "exp": now.Add(is.ttl).Unix()})
		if body["id_token"], err = is.sign(id); err != nil {
			tokenError(w, http.StatusInternalServerError, "server_error", "could not sign token")
			return
		}
	}
	writeToken(w, body)
}

// userScopes is what a user is granted for the scope parameter: the
// asked scopes the user has plus the OpenID Connect ones, in the order
// asked and once each; nothing asked grants all of the user's scopes.
func userScopes(has []string, asked string) []string {
	if asked == "" {
		return slices.Clone(has)
	}
	var out []string
	for _, s := range strings.Fields(asked) {
		if (isOIDCScope(s) || slices.Contains(has, s)) && !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out
}
