package jose

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// The RFC 7638 §3.1 example key and its thumbprint.
const (
	rfc7638N     = "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw"
	rfc7638Thumb = "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
)

// The RFC 8037 appendix A Ed25519 key (A.1 private seed d, A.2 public x)
// and its thumbprint (A.3).
const (
	rfc8037D     = "nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A"
	rfc8037X     = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"
	rfc8037Thumb = "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"
)

func decode(t *testing.T, s string) []byte {
	t.Helper()
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestThumbprintRFC7638(t *testing.T) {
	pub := &rsa.PublicKey{N: new(big.Int).SetBytes(decode(t, rfc7638N)), E: 65537}
	got, err := Thumbprint(pub)
	if err != nil {
		t.Fatal(err)
	}
	if got != rfc7638Thumb {
		t.Errorf("thumbprint = %s, want %s", got, rfc7638Thumb)
	}
}

func TestThumbprintRFC8037(t *testing.T) {
	priv := ed25519.NewKeyFromSeed(decode(t, rfc8037D))
	if x := base64.RawURLEncoding.EncodeToString(priv.Public().(ed25519.PublicKey)); x != rfc8037X {
		t.Fatalf("public key x = %s, want RFC 8037's %s", x, rfc8037X)
	}
	k, err := NewKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	if k.Kid() != rfc8037Thumb || k.Alg() != "EdDSA" {
		t.Errorf("kid, alg = %s, %s; want %s, EdDSA", k.Kid(), k.Alg(), rfc8037Thumb)
	}
	jwk := k.PublicJWK()
	want := map[string]any{"kty": "OKP", "crv": "Ed25519", "x": rfc8037X, "use": "sig", "alg": "EdDSA", "kid": rfc8037Thumb}
	if len(jwk) != len(want) {
		t.Errorf("jwk = %v, want %v", jwk, want)
	}
	for name, v := range want {
		if jwk[name] != v {
			t.Errorf("jwk[%s] = %v, want %v", name, jwk[name], v)
		}
	}
}

func generate(t *testing.T, alg string) crypto.Signer {
	t.Helper()
	k, err := Generate(alg)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// TestSignVerifyRoundTrip signs with each algorithm and verifies with a
// key parsed back from the published JWKS, as a verifier would.
func TestSignVerifyRoundTrip(t *testing.T) {
	for _, alg := range []string{"RS256", "ES256", "EdDSA"} {
		t.Run(alg, func(t *testing.T) {
			k, err := NewKey(generate(t, alg))
			if err != nil {
				t.Fatal(err)
			}
			if k.Alg() != alg {
				t.Fatalf("alg = %s, want %s", k.Alg(), alg)
			}
			body, err := json.Marshal(JWKS(k))
			if err != nil {
				t.Fatal(err)
			}
			pub := publicFromJWKS(t, body, k.Kid())
			if th, _ := Thumbprint(pub); th != k.Kid() {
				t.Errorf("kid %s is not the thumbprint %s", k.Kid(), th)
			}
			claims := jwt.MapClaims{"sub": "auth0|alice", "exp": time.Now().Add(time.Minute).Unix()}
			s, err := k.Sign(claims, map[string]any{"typ": "at+jwt"})
			if err != nil {
				t.Fatal(err)
			}
			tok, err := jwt.Parse(s, func(tok *jwt.Token) (any, error) { return pub, nil }, jwt.WithValidMethods([]string{alg}))
			if err != nil {
				t.Fatalf("verify: %v", err)
			}
			if tok.Header["kid"] != k.Kid() || tok.Header["typ"] != "at+jwt" || tok.Header["alg"] != alg {
				t.Errorf("header = %v", tok.Header)
			}
			if sub, _ := tok.Claims.GetSubject(); sub != "auth0|alice" {
				t.Errorf("sub = %q", sub)
			}
			// SignInput makes the same kind of signature over a
			// caller-encoded header.
			input := s[:strings.LastIndexByte(s, '.')]
			sig, err := k.SignInput(input)
			if err != nil {
				t.Fatal(err)
			}
			if err := jwt.GetSigningMethod(alg).Verify(input, sig, pub); err != nil {
				t.Errorf("SignInput signature: %v", err)
			}
		})
	}
}

// publicFromJWKS parses the key with kid out of a JWKS body.
func publicFromJWKS(t *testing.T, body []byte, kid string) crypto.PublicKey {
	t.Helper()
	var set struct {
		Keys []map[string]string `json:"keys"`
	}
	if err := json.Unmarshal(body, &set); err != nil {
		t.Fatal(err)
	}
	for _, j := range set.Keys {
		if j["kid"] != kid || j["use"] != "sig" {
			continue
		}
		switch j["kty"] {
		case "RSA":
			return &rsa.PublicKey{N: new(big.Int).SetBytes(decode(t, j["n"])), E: int(new(big.Int).SetBytes(decode(t, j["e"])).Int64())}
		case "EC":
			pt := append(append([]byte{4}, decode(t, j["x"])...), decode(t, j["y"])...)
			pub, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), pt)
			if err != nil {
				t.Fatal(err)
			}
			return pub
		case "OKP":
			return ed25519.PublicKey(decode(t, j["x"]))
		}
	}
	t.Fatalf("no key %s in %s", kid, body)
	return nil
}

// TestExtraHeaderWins: a test that forges a kid gets that kid, signed
// with the key it used.
func TestExtraHeaderWins(t *testing.T) {
	k, err := NewKey(generate(t, "ES256"))
	if err != nil {
		t.Fatal(err)
	}
	s, err := k.Sign(jwt.MapClaims{"sub": "x"}, map[string]any{"kid": "forged"})
	if err != nil {
		t.Fatal(err)
	}
	tok, _, err := jwt.NewParser().ParseUnverified(s, jwt.MapClaims{})
	if err != nil {
		t.Fatal(err)
	}
	if tok.Header["kid"] != "forged" {
		t.Errorf("kid = %v", tok.Header["kid"])
	}
}

// TestPublicJWKIsACopy: the emulator adds x5c to its copy; the next
// caller must not see it.
func TestPublicJWKIsACopy(t *testing.T) {
	k, err := NewKey(generate(t, "EdDSA"))
	if err != nil {
		t.Fatal(err)
	}
	k.PublicJWK()["x5c"] = []string{"cert"}
	if _, ok := k.PublicJWK()["x5c"]; ok {
		t.Error("PublicJWK returned shared state")
	}
}

func TestNewKeyRefuses(t *testing.T) {
	small, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	for name, priv := range map[string]crypto.Signer{"RSA 1024": small, "P-384": p384} {
		if _, err := NewKey(priv); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if _, err := Thumbprint(nil); err == nil {
		t.Error("Thumbprint(nil) accepted")
	}
}
