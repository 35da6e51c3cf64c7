package proxy

import (
	"net/http"
	"strings"
	"testing"

	"github.com/golang-jwt/jwt/v5"
)

// TestIdentityCannotBeConfused signs real tokens and reads what the
// upstream was told: a token is a client's only when it says so without
// ambiguity, and everything else is a user.
func TestIdentityCannotBeConfused(t *testing.T) {
	f := newFixture(t, fixtureOpts{forwardUnknown: true})
	is := f.issuer
	cases := []struct {
		name   string
		edit   func(c jwt.MapClaims)
		kind   string
		id     string // X-Client-Id
		userID string // X-User-Id, "" for clients
	}{
		{"Auth0 client-credentials token", func(jwt.MapClaims) {}, "client", "svc-billing", ""},
		{"client token without gty", func(c jwt.MapClaims) { delete(c, "gty") }, "client", "svc-billing", ""},
		{"RFC 9068 client token (client_id, sub == client_id)", func(c jwt.MapClaims) {
			delete(c, "azp")
			delete(c, "gty")
			c["client_id"], c["sub"] = "svc-billing", "svc-billing"
		}, "client", "svc-billing", ""},
		{"gty with azp but another sub", func(c jwt.MapClaims) { c["sub"] = "anything" }, "client", "svc-billing", ""},
		{"user whose id ends in @clients is still a user", func(c jwt.MapClaims) {
			delete(c, "gty")
			c["sub"], c["azp"] = "samlp|svc-billing@clients", "spa-app"
		}, "user", "spa-app", "samlp|svc-billing@clients"},
		{"@clients sub naming another app than azp", func(c jwt.MapClaims) {
			delete(c, "gty")
			c["sub"], c["azp"] = "svc-billing@clients", "spa-app"
		}, "user", "spa-app", "svc-billing@clients"},
		{"@clients sub without any client id", func(c jwt.MapClaims) {
			delete(c, "gty")
			delete(c, "azp")
			c["sub"] = "svc-billing@clients"
		}, "user", "", "svc-billing@clients"},
		{"gty without a client id", func(c jwt.MapClaims) {
			delete(c, "azp")
			c["sub"] = "auth0|bob"
		}, "user", "", "auth0|bob"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := is.Claims("svc-billing")
			tc.edit(c)
			resp := f.do(t, "GET", "/x", is.Sign(t, is.Key(), c, nil), nil)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("status %d", resp.StatusCode)
			}
			h := f.up.lastHeader()
			if got := h.Get("X-Client-Kind"); got != tc.kind {
				t.Errorf("X-Client-Kind = %q, want %q", got, tc.kind)
			}
			if got := h.Get("X-Client-Id"); got != tc.id {
				t.Errorf("X-Client-Id = %q, want %q", got, tc.id)
			}
			if got := h.Get("X-User-Id"); got != tc.userID {
				t.Errorf("X-User-Id = %q, want %q", got, tc.userID)
			}
			if tc.kind == "user" && h.Get("X-Client-Name") != "" {
				t.Errorf("a user was forwarded with the application's name %q", h.Get("X-Client-Name"))
			}
			if got := h.Get("X-Client-Issuer"); got != is.URL {
				t.Errorf("X-Client-Issuer = %q, want %q", got, is.URL)
			}
		})
	}
}

// TestScopesSplitOnASCIISpaceOnly: a scope string an upstream could split
// differently refuses the token.
func TestScopesSplitOnASCIISpaceOnly(t *testing.T) {
	f := newFixture(t, fixtureOpts{})
	is := f.issuer
	for _, tc := range []struct {
		name        string
		scope       any
		permissions []string
		status      int
		header      string
	}{
		{"plain scopes", "read:a  write:a", nil, 200, "read:a write:a"},
		{"no-break space hides admin", "read:a\u00a0admin", nil, 401, ""},
		{"tab hides admin", "read:a\tadmin", nil, 401, ""},
		{"ideographic space", "read:a\u3000admin", nil, 401, ""},
		{"quote in a scope", `read:"a"`, nil, 401, ""},
		{"permission with a space", "", []string{"read:a admin"}, 401, ""},
		{"permission with a newline", "", []string{"read:a\nadmin"}, 401, ""},
		{"permissions merged and deduplicated", "read:a", []string{"read:a", "admin"}, 200, "read:a admin"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := is.Claims("svc-billing")
			c["scope"] = tc.scope
			if tc.permissions != nil {
				c["permissions"] = tc.permissions
			}
			before := f.up.hits.Load()
			resp := f.do(t, "GET", "/x", is.Sign(t, is.Key(), c, nil), nil)
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d", resp.StatusCode, tc.status)
			}
			if tc.status != 200 {
				if f.up.hits.Load() != before {
					t.Error("a refused token reached the upstream")
				}
				if !strings.Contains(resp.Header.Get("WWW-Authenticate"), `error="invalid_token"`) {
					t.Errorf("WWW-Authenticate = %q", resp.Header.Get("WWW-Authenticate"))
				}
				return
			}
			if got := f.up.lastHeader().Get("X-Client-Scopes"); got != tc.header {
				t.Errorf("X-Client-Scopes = %q, want %q", got, tc.header)
			}
		})
	}
}
