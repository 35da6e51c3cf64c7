package devissuer

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"
)

// login is a password grant request for the tests client.
func login(username, password string) map[string]string {
	return map[string]string{
		"grant_type": GrantPassword, "client_id": "tests", "client_secret": secret,
		"username": username, "password": password, "audience": audience,
	}
}

const wrongPassword = `{"error":"invalid_grant","error_description":"Wrong email or password."}`

func TestPasswordGrant(t *testing.T) {
	f := newFixture(t, nil)
	p := login("Alice@Example.com", "correct horse") // usernames match without regard to case
	p["scope"] = "read:things admin write:things read:things"
	r := f.post(t, p, false, false)
	if r.status != http.StatusOK {
		t.Fatalf("%d %s", r.status, r.raw)
	}
	if r.str("token_type") != "Bearer" || r.body["expires_in"] != float64(3600) || r.str("scope") != "read:things write:things" {
		t.Errorf("response = %s", r.raw)
	}
	if _, ok := r.body["id_token"]; ok {
		t.Error("id_token without openid")
	}
	if r.header.Get("Cache-Control") != "no-store" {
		t.Errorf("Cache-Control = %q", r.header.Get("Cache-Control"))
	}
	c := f.verify(t, r.str("access_token"))
	want := map[string]any{
		"iss": f.iss, "sub": "auth0|alice", "azp": "tests", "aud": audience,
		"scope": "read:things write:things", "gty": "password",
		"https://example.com/username": "alice",
	}
	for k, v := range want {
		if c[k] != v {
			t.Errorf("%s = %v, want %v", k, c[k], v)
		}
	}
	if org, _ := c["https://example.com/org"].(map[string]any); org["id"] != "org_1" {
		t.Errorf("nested claim = %v", c["https://example.com/org"])
	}
	iat, _ := c.GetIssuedAt()
	exp, _ := c.GetExpirationTime()
	if iat == nil || exp == nil || exp.Sub(iat.Time) != time.Hour {
		t.Errorf("iat %v, exp %v", iat, exp)
	}

	// No scope asked: all of the user's scopes.
	r = f.post(t, login("bob", "battery staple"), false, false)
	if r.status != http.StatusOK || r.str("scope") != "" {
		t.Fatalf("bob: %d %s", r.status, r.raw)
	}
	if c := f.verify(t, r.str("access_token")); c["sub"] != "auth0|bob" || c["scope"] != nil {
		t.Errorf("bob's claims = %v", c)
	}
}

// TestPasswordRealmOpenID logs in with Auth0's realm grant, as JSON with
// HTTP Basic, asking for openid: an ID token comes back, and the access
// token's aud gains /userinfo.
func TestPasswordRealmOpenID(t *testing.T) {
	f := newFixture(t, nil)
	p := login("alice@example.com", "correct horse")
	p["grant_type"], p["realm"] = GrantPasswordRealm, "Username-Password-Authentication"
	p["scope"] = "openid profile email offline_access read:things"
	r := f.post(t, p, true, true)
	if r.status != http.StatusOK {
		t.Fatalf("%d %s", r.status, r.raw)
	}
	if r.str("scope") != "openid profile email read:things" {
		t.Errorf("scope = %q", r.str("scope"))
	}
	c := f.verify(t, r.str("access_token"))
	aud, _ := c.GetAudience()
	if !slices.Equal(aud, []string{audience, f.iss + "userinfo"}) || c["scope"] != "openid profile email read:things" || c["sub"] != "auth0|alice" {
		t.Errorf("access token claims = %v", c)
	}
	id := f.verify(t, r.str("id_token"))
	if id["aud"] != "tests" || id["sub"] != "auth0|alice" || id["https://example.com/username"] != "alice" || id["scope"] != nil {
		t.Errorf("id token claims = %v", id)
	}
}

func TestPasswordRealmNeedsTheConnection(t *testing.T) {
	f := newFixture(t, nil)
	p := login("alice@example.com", "correct horse")
	p["grant_type"] = GrantPasswordRealm
	if r := f.post(t, p, false, false); r.status != http.StatusBadRequest || r.raw != `{"error":"invalid_request","error_description":"Missing required parameter: realm"}` {
		t.Errorf("no realm: %d %s", r.status, r.raw)
	}
	p["realm"] = "employees"
	if r := f.post(t, p, false, false); r.status != http.StatusBadRequest || r.str("error") != "invalid_request" || !strings.Contains(r.str("error_description"), "employees") {
		t.Errorf("unknown realm: %d %s", r.status, r.raw)
	}
}

func TestPasswordMissingCredentials(t *testing.T) {
	f := newFixture(t, nil)
	for _, field := range []string{"username", "password"} {
		p := login("bob", "battery staple")
		delete(p, field)
		want := `{"error":"invalid_request","error_description":"Missing required parameter: ` + field + `"}`
		if r := f.post(t, p, false, false); r.status != http.StatusBadRequest || r.raw != want {
			t.Errorf("no %s: %d %s", field, r.status, r.raw)
		}
	}
}

// TestWrongCredentials: a wrong password and an unknown username get
// the same bytes, Auth0's, so the answer does not tell which it was.
func TestWrongCredentials(t *testing.T) {
	f := newFixture(t, nil)
	for name, p := range map[string]map[string]string{
		"wrong password":   login("alice@example.com", "correct horse battery"),
		"password prefix":  login("alice@example.com", "correct"),
		"other's password": login("alice@example.com", "battery staple"),
		"unknown username": login("mallory", "correct horse"),
	} {
		if r := f.post(t, p, false, false); r.status != http.StatusForbidden || r.raw != wrongPassword {
			t.Errorf("%s: %d %s", name, r.status, r.raw)
		}
	}
}

func TestClientGrantTypes(t *testing.T) {
	f := newFixture(t, nil)
	p := login("bob", "battery staple")
	p["client_id"] = "m2m-only"
	for _, grant := range []string{GrantPassword, GrantPasswordRealm} {
		p["grant_type"], p["realm"] = grant, "Username-Password-Authentication"
		want := `{"error":"unauthorized_client","error_description":"Grant type '` + grant + `' not allowed for the client."}`
		if r := f.post(t, p, false, false); r.status != http.StatusForbidden || r.raw != want {
			t.Errorf("%s: %d %s", grant, r.status, r.raw)
		}
	}
	cc := map[string]string{"grant_type": GrantClientCredentials, "client_id": "users-only", "client_secret": secret}
	want := `{"error":"unauthorized_client","error_description":"Grant type 'client_credentials' not allowed for the client."}`
	if r := f.post(t, cc, false, false); r.status != http.StatusForbidden || r.raw != want {
		t.Errorf("client_credentials: %d %s", r.status, r.raw)
	}
	p["client_id"], p["grant_type"] = "users-only", GrantPassword
	if r := f.post(t, p, false, false); r.status != http.StatusOK {
		t.Errorf("allowed grant: %d %s", r.status, r.raw)
	}
}

// TestBruteForceProtection: after maxAttempts wrong passwords a username
// is blocked, its right password included, until an attempt comes back.
func TestBruteForceProtection(t *testing.T) {
	f := newFixture(t, nil)
	for i := range maxAttempts {
		if r := f.post(t, login("alice@example.com", fmt.Sprint("guess-", i)), false, false); r.status != http.StatusForbidden {
			t.Fatalf("attempt %d: %d %s", i+1, r.status, r.raw)
		}
	}
	for name, p := range map[string]map[string]string{
		"wrong password": login("alice@example.com", "guess"),
		"right password": login("ALICE@example.com", "correct horse"),
	} {
		r := f.post(t, p, false, false)
		if r.status != http.StatusTooManyRequests || r.str("error") != "too_many_attempts" || r.str("error_description") == "" {
			t.Errorf("blocked, %s: %d %s", name, r.status, r.raw)
		}
	}
	// Another user is not affected.
	if r := f.post(t, login("bob", "battery staple"), false, false); r.status != http.StatusOK {
		t.Errorf("bob: %d %s", r.status, r.raw)
	}
	// One attempt comes back per attemptRefill; a login then restores
	// them all.
	f.clock.advance(attemptRefill)
	if r := f.post(t, login("alice@example.com", "correct horse"), false, false); r.status != http.StatusOK {
		t.Fatalf("after %s: %d %s", attemptRefill, r.status, r.raw)
	}
	for i := range maxAttempts {
		if r := f.post(t, login("alice@example.com", "guess"), false, false); r.status != http.StatusForbidden {
			t.Fatalf("after a login, attempt %d: %d %s", i+1, r.status, r.raw)
		}
	}
}

// TestBruteForceUnknownUsername: a username nobody has is blocked the
// same way, or a 429 would tell which usernames exist.
func TestBruteForceUnknownUsername(t *testing.T) {
	f := newFixture(t, nil)
	for range maxAttempts {
		if r := f.post(t, login("mallory", "guess"), false, false); r.raw != wrongPassword {
			t.Fatalf("%d %s", r.status, r.raw)
		}
	}
	if r := f.post(t, login("Mallory", "guess"), false, false); r.status != http.StatusTooManyRequests {
		t.Errorf("%d %s", r.status, r.raw)
	}
}

// TestAttemptsAreBounded: random usernames never grow the limiter map
// past maxStrangers, and never evict a configured user's count.
func TestAttemptsAreBounded(t *testing.T) {
	c := &clock{t: time.Now()}
	a := newAttempts(c.now, []User{{Username: "alice"}})
	for range maxAttempts {
		a.allow("alice")
	}
	for i := range 3 * maxStrangers {
		a.allow(fmt.Sprint("random-", i))
		if i%100 == 0 {
			c.advance(time.Millisecond) // some, not all, refill
		}
	}
	if n := len(a.strangers); n > maxStrangers {
		t.Errorf("%d strangers tracked, at most %d allowed", n, maxStrangers)
	}
	if a.allow("alice") {
		t.Error("the flood reset alice's count")
	}
	// Long usernames are tracked by hash: the map's size is per entry.
	a.allow(strings.Repeat("x", 60<<10))
	if n := len(a.strangers); n > maxStrangers {
		t.Errorf("%d strangers tracked", n)
	}
}

// TestLoginComparesInConstantTime: login hashes both sides, so it always
// compares two 32-byte digests, whatever the lengths, and compares even
// for an unknown username.
func TestLoginComparesInConstantTime(t *testing.T) {
	f := newFixture(t, nil)
	for _, tc := range []struct {
		username, password string
		ok                 bool
	}{
		{"alice@example.com", "correct horse", true},
		{"ALICE@EXAMPLE.COM", "correct horse", true},
		{"alice@example.com", "correct horsf", false},
		{"alice@example.com", "correct hors", false},
		{"alice@example.com", "correct horse ", false},
		{"alice@example.com", strings.Repeat("a", 10000), false},
		{"alice@example.com", "", false},
		{"nobody", "correct horse", false},
		{"nobody", "", false},
	} {
		if u, ok := f.is.login(tc.username, tc.password); ok != tc.ok || (ok && u.ID != "auth0|alice") {
			t.Errorf("login(%q, %d bytes) = %v, %v", tc.username, len(tc.password), u, ok)
		}
	}
	// The digest an unknown username is compared against is no
	// password's, not even the empty one's.
	if f.is.unknownPassword == hashPassword("") {
		t.Error("unknown usernames compare against the empty password")
	}
}
