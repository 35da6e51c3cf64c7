package attack

import (
	"strings"
	"testing"

	"github.com/golang-jwt/jwt/v5"
)

// TestAttackScopesOnlyASCIISpaceSeparates: scope is split on ASCII space
// only; a scope token or permissions entry with anything outside RFC 6749's
// scope-token characters makes the whole token invalid (401), so "read:inv
// <NBSP>admin" can never be read as two scopes, one of them admin.
func TestAttackScopesOnlyASCIISpaceSeparates(t *testing.T) {
	t.Parallel()
	w := newWorld(t, nil, nil)
	bad := []struct {
		name  string
		scope string
		perms []string
	}{
		{"NBSP joins admin to a read scope", "read:inv\u00a0admin", nil},
		{"tab joins admin", "read:inv\tadmin", nil},
		{"LF joins admin", "read:inv\nadmin", nil},
		{"CR joins admin", "read:inv\radmin", nil},
		{"vertical tab joins admin", "read:inv\vadmin", nil},
		{"form feed joins admin", "read:inv\fadmin", nil},
		{"NEL joins admin", "read:inv\u0085admin", nil},
		{"EM SPACE joins admin", "read:inv\u2003admin", nil},
		{"IDEOGRAPHIC SPACE joins admin", "read:inv\u3000admin", nil},
		{"LINE SEPARATOR joins admin", "read:inv\u2028admin", nil},
		{"ZERO WIDTH SPACE after admin", "admin\u200b", nil},
		{"double quote in a scope", `admin"`, nil},
		{"backslash in a scope", `admin\`, nil},
		{"non-ASCII letter in a scope", "admïn", nil},
		{"DEL in a scope", "admin\x7f", nil},
		{"NUL in a scope", "admin\x00", nil},
		{"NBSP inside a permission", "", []string{"read:inv\u00a0admin"}},
		{"space inside a permission", "", []string{"read:inv admin"}},
		{"tab inside a permission", "", []string{"admin\t"}},
		{"double quote in a permission", "", []string{`admin"`}},
		{"non-ASCII permission beside a good one", "", []string{"admin", "ädmin"}},
	}
	for _, c := range bad {
		t.Run(c.name, func(t *testing.T) {
			tok := token(t, w.iss, "svc-billing", c.scope, func(m jwt.MapClaims) {
				if c.perms != nil {
					m["permissions"] = c.perms
				}
			})
			for _, target := range []string{"/admin", "/opt/x", "/inv/1"} {
				w.reset()
				req := rq("GET", target, bearer(tok))
				r := send(t, w.gw.addr, req)
				expectError(t, req, r, 401, "invalid_token")
				w.expectNoUpstream(t, req)
			}
		})
	}
	good := []struct {
		name   string
		scope  string
		perms  []string
		header string
	}{
		{"two scopes with one ASCII space", "read:inv admin", nil, "read:inv admin"},
		{"every scope-token punctuation is allowed", "admin a!#$%&'()*+,-./:;<=>?@[]^_`{|}~", nil, "admin a!#$%&'()*+,-./:;<=>?@[]^_`{|}~"},
		{"admin as a permission", "", []string{"admin"}, "admin"},
	}
	for _, c := range good {
		t.Run(c.name, func(t *testing.T) {
			tok := token(t, w.iss, "svc-billing", c.scope, func(m jwt.MapClaims) {
				if c.perms != nil {
					m["permissions"] = c.perms
				}
			})
			w.reset()
			req := rq("GET", "/admin", bearer(tok))
			r := send(t, w.gw.addr, req)
			expectStatus(t, req, r, 200)
			if h, ok := w.expectLanded(t, req, upAdmin); ok {
				checkHeaders(t, req, h.Header, wantHeaders{"X-Client-Scopes": c.header})
			}
		})
	}
	t.Run("scope as a JSON array never grants admin", func(t *testing.T) {
		tok := token(t, w.iss, "svc-billing", "", func(m jwt.MapClaims) { m["scope"] = []string{"admin"} })
		w.reset()
		req := rq("GET", "/admin", bearer(tok))
		r := send(t, w.gw.addr, req)
		if r.Status == 200 {
			t.Errorf("request %q: got %s, want a refusal", req, r)
		}
		w.expectNoUpstream(t, req)
	})
}

// flipUnusedBits returns seg with the unused low bits of its last base64url
// character set: the same bytes when decoded leniently, a different string.
// ok is false when seg has no unused bits (length a multiple of 4).
func flipUnusedBits(seg string) (string, bool) {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	if len(seg)%4 == 0 || len(seg)%4 == 1 {
		return seg, false
	}
	i := strings.IndexByte(alphabet, seg[len(seg)-1])
	return seg[:len(seg)-1] + string(alphabet[i|1]), true
}

// TestAttackCredentialsMalformedAuthorization: on every route (public and
// optional included) a present Authorization header that is not exactly one
// "Bearer <token68>" is 400 invalid_request and is never forwarded: an
// upstream that re-reads Authorization must not see a credential the
// gateway did not verify.
func TestAttackCredentialsMalformedAuthorization(t *testing.T) {
	t.Parallel()
	w := newWorld(t, nil, nil)
	tok := token(t, w.iss, "svc-billing", "admin", nil)
	bad := []struct {
		name    string
		headers []string
	}{
		{"tab after Bearer", []string{"Authorization: Bearer\t" + tok}},
		{"comma after Bearer", []string{"Authorization: Bearer," + tok}},
		{"Basic credentials", []string{"Authorization: Basic YWRtaW46YWRtaW4="}},
		{"Digest credentials", []string{`Authorization: Digest username="admin", response="x"`}},
		{"Negotiate credentials", []string{"Authorization: Negotiate YIIBhgYGKwYBBQUCoIIBejCCAXag"}},
		{"Bearer alone", []string{"Authorization: Bearer"}},
		{"empty Authorization", []string{"Authorization:"}},
		{"two spaces after Bearer", []string{"Authorization: Bearer  " + tok}},
		{"two Authorization headers", []string{bearer(tok), bearer(tok)}},
		{"two Authorization headers, second differs in case", []string{bearer(tok), "authorization: Basic YTpi"}},
		{"two tokens separated by a comma", []string{"Authorization: Bearer " + tok + ",Bearer " + tok}},
		{"two tokens separated by a space", []string{"Authorization: Bearer " + tok + " " + tok}},
		{"quoted token", []string{`Authorization: Bearer "` + tok + `"`}},
		{"token with a non-token68 character", []string{"Authorization: Bearer " + tok + "!"}},
		{"token with a NBSP", []string{"Authorization: Bearer\u00a0" + tok}},
		{"Bearer spelled with a Cyrillic e", []string{"Authorization: B\u0435arer " + tok}},
	}
	for _, c := range bad {
		for _, target := range []string{"/pub/x", "/opt/x", "/admin", "/ws"} {
			t.Run(c.name+" on "+target, func(t *testing.T) {
				w.reset()
				req := rq("GET", target, c.headers...)
				r := send(t, w.gw.addr, req)
				expectError(t, req, r, 400, "invalid_request")
				w.expectNoUpstream(t, req)
			})
		}
	}
	good := []struct{ name, header string }{
		{"lower-case bearer", "Authorization: bearer " + tok},
		{"upper-case BEARER", "Authorization: BEARER " + tok},
		{"lower-case header name", "authorization: Bearer " + tok},
		// Whitespace around a field value is not part of it (RFC 9110
		// §5.5): every server reads the same token.
		{"trailing space after the token", "Authorization: Bearer " + tok + " "},
		{"trailing tab after the token", "Authorization: Bearer " + tok + "\t"},
	}
	for _, c := range good {
		t.Run(c.name+" is accepted and forwarded canonically", func(t *testing.T) {
			w.reset()
			req := rq("GET", "/admin", c.header)
			r := send(t, w.gw.addr, req)
			expectStatus(t, req, r, 200)
			if h, ok := w.expectLanded(t, req, upAdmin); ok {
				if got := h.Header["Authorization"]; len(got) != 1 || got[0] != "Bearer "+tok {
					t.Errorf("request %q: upstream Authorization %q, want exactly \"Bearer <token>\"", req, got)
				}
			}
		})
	}
}

// TestAttackCredentialsNonCanonicalSignature: a JWT whose signature (or
// other segment) is a non-canonical base64url spelling of valid bytes is
// refused with 401, even right after the canonical token was accepted and
// cached.
func TestAttackCredentialsNonCanonicalSignature(t *testing.T) {
	t.Parallel()
	w := newWorld(t, nil, nil)
	tok := token(t, w.iss, "svc-billing", "admin", nil)
	parts := strings.Split(tok, ".")
	// Warm the verified-token cache with the canonical spelling.
	if r := send(t, w.gw.addr, rq("GET", "/admin", bearer(tok))); r.Status != 200 {
		t.Fatalf("canonical token: %s", r)
	}
	variants := map[string]string{}
	if sig, ok := flipUnusedBits(parts[2]); ok {
		variants["signature with its unused low bits set"] = parts[0] + "." + parts[1] + "." + sig
	} else {
		t.Fatalf("an RSA-2048 signature must have unused bits (len %d)", len(parts[2]))
	}
	variants["signature with base64 padding"] = tok + "=="
	if p, ok := flipUnusedBits(parts[1]); ok {
		variants["payload with its unused low bits set"] = parts[0] + "." + p + "." + parts[2]
	}
	if h, ok := flipUnusedBits(parts[0]); ok {
		variants["header with its unused low bits set"] = h + "." + parts[1] + "." + parts[2]
	}
	for name, v := range variants {
		for _, target := range []string{"/admin", "/opt/x"} {
			t.Run(name+" on "+target, func(t *testing.T) {
				w.reset()
				req := rq("GET", target, bearer(v))
				r := send(t, w.gw.addr, req)
				expectError(t, req, r, 401, "invalid_token")
				w.expectNoUpstream(t, req)
			})
		}
	}
}

// TestAttackCredentialsInTheQueryAreRefused: RFC 6750 allows the token in
// an access_token query parameter; the gateway never reads it there, so
// it must not reach an upstream that might, on any route.
func TestAttackCredentialsInTheQueryAreRefused(t *testing.T) {
	t.Parallel()
	w := newWorld(t, nil, nil)
	tok := token(t, w.iss, "svc-billing", "admin", nil)
	for _, q := range []string{"access_token=" + tok, "x=1&access_token=" + tok, "ACCESS_TOKEN=" + tok, "access%5Ftoken=" + tok, "access_token"} {
		for _, target := range []string{"/pub/x", "/opt/x", "/admin"} {
			t.Run(target+"?"+q[:min(len(q), 20)], func(t *testing.T) {
				w.reset()
				req := rq("GET", target+"?"+q)
				r := send(t, w.gw.addr, req)
				expectError(t, req, r, 400, "invalid_request")
				w.expectNoUpstream(t, req)
			})
		}
	}
}
