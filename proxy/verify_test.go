package proxy

import (
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/metagate/gateway/internal/testenv"
)

func TestHostileTokensAreRefused(t *testing.T) {
	f := newFixture(t, fixtureOpts{})
	is := f.issuer
	known := is.Key()
	foreign := is.NewKey(t, "RS256")

	// An attacker's JWKS, published at a URL the token points to. The
	// gateway must never fetch it.
	var attackerHits atomic.Int64
	attacker := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		attackerHits.Add(1)
		http.Error(w, "should not be asked", http.StatusTeapot)
	}))
	defer attacker.Close()

	pubDER, err := x509.MarshalPKIXPublicKey(known.Private.Public())
	if err != nil {
		t.Fatal(err)
	}
	pubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER})
	foreignJWK := map[string]any{"kty": "RSA", "kid": foreign.Kid}

	valid := func() jwt.MapClaims { return is.Claims("svc-billing") }
	with := func(k string, v any) jwt.MapClaims { c := valid(); c[k] = v; return c }
	without := func(k string) jwt.MapClaims { c := valid(); delete(c, k); return c }

	noneTok, _ := jwt.NewWithClaims(jwt.SigningMethodNone, valid()).SignedString(jwt.UnsafeAllowNoneSignatureType)
	hsTok := func() string {
		tok := jwt.NewWithClaims(jwt.SigningMethodHS256, valid())
		tok.Header["kid"] = known.Kid
		s, err := tok.SignedString(pubPEM)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}()
	psTok := func() string { // a valid RSA signature, but PS256 is not in the issuer's allowlist
		tok := jwt.NewWithClaims(jwt.SigningMethodPS256, valid())
		tok.Header["kid"] = known.Kid
		s, _ := tok.SignedString(known.Private)
		return s
	}()
	good := is.Sign(t, known, valid(), nil)
	parts := strings.Split(good, ".")
	tampered := func() string {
		c := valid()
		c["sub"] = "svc-admin@clients"
		c["azp"] = "svc-admin"
		b, _ := json.Marshal(c)
		return parts[0] + "." + base64.RawURLEncoding.EncodeToString(b) + "." + parts[2]
	}()
	foreignKnownKid := foreign
	foreignKnownKid.Kid = known.Kid

	cases := []struct {
		name   string
		token  string
		reason string // substring of error_description
	}{
		{"alg none", noneTok, "algorithm"},
		{"HS256 keyed with the RSA public key", hsTok, "algorithm"},
		{"algorithm outside the allowlist (PS256)", psTok, "algorithm"},
		{"unknown kid", is.Sign(t, foreign, valid(), nil), "unknown key"},
		{"known kid, foreign key", is.Sign(t, foreignKnownKid, valid(), nil), "signature"},
		{"embedded jwk header", is.Sign(t, foreign, valid(), map[string]any{"jwk": foreignJWK}), "unknown key"},
		{"embedded jwk with a known kid", is.Sign(t, foreignKnownKid, valid(), map[string]any{"jwk": foreignJWK}), "signature"},
		{"jku header to an attacker's JWKS", is.Sign(t, foreign, valid(), map[string]any{"jku": attacker.URL + "/jwks.json"}), "unknown key"},
		{"x5u header to an attacker's certificate", is.Sign(t, foreign, valid(), map[string]any{"x5u": attacker.URL + "/cert.pem"}), "unknown key"},
		{"unknown crit extension", is.Sign(t, known, valid(), map[string]any{"crit": []string{"urn:example:ext"}, "urn:example:ext": true}), "header"},
		{"no kid", func() string {
			tok := jwt.NewWithClaims(jwt.SigningMethodRS256, valid())
			s, _ := tok.SignedString(known.Private)
			return s
		}(), "unknown key"},
		{"expired", is.Sign(t, known, with("exp", time.Now().Add(-time.Hour).Unix()), nil), "expired"},
		{"nbf in the future", is.Sign(t, known, with("nbf", time.Now().Add(time.Hour).Unix()), nil), "not valid yet"},
		{"missing exp", is.Sign(t, known, without("exp"), nil), "claims"},
		{"wrong iss", is.Sign(t, known, with("iss", "https://evil.example/"), nil), "issuer"},
		{"iss without the trailing slash", is.Sign(t, known, with("iss", strings.TrimSuffix(is.URL, "/")), nil), "issuer"},
		{"missing iss", is.Sign(t, known, without("iss"), nil), "issuer"},
		{"wrong aud", is.Sign(t, known, with("aud", "https://someone-else/"), nil), "audience"},
		{"missing sub", is.Sign(t, known, without("sub"), nil), "claims"},
		{"tampered payload", tampered, "signature"},
		{"stripped signature", parts[0] + "." + parts[1] + ".", "signature"},
		{"two segments", parts[0] + "." + parts[1], "malformed"},
		{"four segments", good + ".x", "malformed"},
		{"not base64", "e30.e30.~~~", "malformed"},
		{"64 KiB token", strings.Repeat("a", 64<<10), "too large"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := f.up.hits.Load()
			resp := f.do(t, "GET", "/", tc.token, nil)
			if resp.StatusCode != http.StatusUnauthorized {
				t.Fatalf("status %d, want 401", resp.StatusCode)
			}
			wa := resp.Header.Get("WWW-Authenticate")
			if !strings.HasPrefix(wa, "Bearer ") || !strings.Contains(wa, `error="invalid_token"`) {
				t.Errorf("WWW-Authenticate = %q", wa)
			}
			if !strings.Contains(wa, tc.reason) {
				t.Errorf("WWW-Authenticate = %q, want a description mentioning %q", wa, tc.reason)
			}
			if n := f.up.hits.Load() - before; n != 0 {
				t.Errorf("upstream hit %d times", n)
			}
		})
	}
	if n := attackerHits.Load(); n != 0 {
		t.Errorf("the gateway fetched key material from a token header URL %d times", n)
	}
	// The valid token passes, so the refusals above are about the tampering.
	if resp := f.do(t, "GET", "/", good, nil); resp.StatusCode != http.StatusOK {
		t.Fatalf("the untampered token got %d", resp.StatusCode)
	}
}

func TestLeewayToleratesSmallClockSkew(t *testing.T) {
	f := newFixture(t, fixtureOpts{}) // leeway 5s
	c := f.issuer.Claims("svc-billing")
	c["exp"] = time.Now().Add(-2 * time.Second).Unix()
	if resp := f.do(t, "GET", "/", f.issuer.Sign(t, f.issuer.Key(), c, nil), nil); resp.StatusCode != http.StatusOK {
		t.Errorf("token expired 2s ago with 5s leeway: status %d, want 200", resp.StatusCode)
	}
}

func TestKeyTypes(t *testing.T) {
	f := newFixture(t, fixtureOpts{algorithms: []string{"RS256", "ES256", "EdDSA"}, extraKeys: []string{"ES256", "EdDSA"}})
	for _, alg := range []string{"RS256", "ES256", "EdDSA"} {
		t.Run(alg, func(t *testing.T) {
			var key testenv.Key
			for _, k := range publishedKeys(f.issuer) {
				if k.Alg == alg {
					key = k
				}
			}
			resp := f.do(t, "GET", "/", f.issuer.Sign(t, key, f.issuer.Claims("svc-billing"), nil), nil)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("%s token: status %d, want 200", alg, resp.StatusCode)
			}
		})
	}
}

func publishedKeys(is *testenv.Issuer) []testenv.Key { return is.Keys() }

func TestKeyRotationPicksUpNewKid(t *testing.T) {
	f := newFixture(t, fixtureOpts{unknownKID: 50 * time.Millisecond})
	fetches := f.issuer.JWKSFetches()
	next := f.issuer.AddKey(t, "RS256") // Auth0 publishes the next key, then signs with it
	resp := f.do(t, "GET", "/", f.issuer.Sign(t, next, f.issuer.Claims("svc-billing"), nil), nil)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("token with the rotated kid: status %d, want 200", resp.StatusCode)
	}
	if got := f.issuer.JWKSFetches() - fetches; got != 1 {
		t.Errorf("JWKS fetched %d times for one rotation, want 1", got)
	}
}

func TestUnknownKidRefreshIsRateLimited(t *testing.T) {
	f := newFixture(t, fixtureOpts{unknownKID: time.Hour})
	fetches := f.issuer.JWKSFetches()
	for i := 0; i < 20; i++ {
		forged := f.issuer.NewKey(t, "RS256")
		resp := f.do(t, "GET", "/", f.issuer.Sign(t, forged, f.issuer.Claims("svc-billing"), nil), nil)
		if resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("forged kid %d: status %d", i, resp.StatusCode)
		}
	}
	if got := f.issuer.JWKSFetches() - fetches; got > 1 {
		t.Errorf("20 tokens with unknown kids caused %d JWKS fetches, want at most 1", got)
	}
}

func TestJWKSDownKeepsLastGoodKeys(t *testing.T) {
	f := newFixture(t, fixtureOpts{unknownKID: 10 * time.Millisecond})
	f.issuer.SetDown(true)
	// A token never seen before, so it is really verified with cached keys.
	c := f.issuer.Claims("svc-billing")
	c["jti"] = "fresh"
	if resp := f.do(t, "GET", "/", f.issuer.Sign(t, f.issuer.Key(), c, nil), nil); resp.StatusCode != http.StatusOK {
		t.Fatalf("JWKS down: status %d, want 200 with the last good keys", resp.StatusCode)
	}
	// An unknown kid triggers a refresh that fails; the known key still works after it.
	if resp := f.do(t, "GET", "/", f.issuer.Sign(t, f.issuer.NewKey(t, "RS256"), f.issuer.Claims("svc-billing"), nil), nil); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("unknown kid while JWKS down: status %d, want 401", resp.StatusCode)
	}
	c["jti"] = "fresher"
	if resp := f.do(t, "GET", "/", f.issuer.Sign(t, f.issuer.Key(), c, nil), nil); resp.StatusCode != http.StatusOK {
		t.Fatalf("after a failed refresh: status %d, want 200", resp.StatusCode)
	}
}
