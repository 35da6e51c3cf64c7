// Package jose is the one place where a signing key becomes a JWS
// algorithm, a kid and a public JWK. The dev issuer, the test issuer, the
// Auth0 emulator and the assertion signer all mint JWTs and publish JWKS;
// deriving those three things once here means a token's header and the
// JWKS that verifies it cannot disagree, whoever minted it.
package jose

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"maps"
	"math/big"

	"github.com/golang-jwt/jwt/v5"
)

// minRSABits is the smallest RSA key accepted: RFC 7518 §3.3 requires
// 2048 bits or more for RS256.
const minRSABits = 2048

// Key is a private signing key with its algorithm, RFC 7638 kid and
// public JWK derived once. It is immutable and safe for concurrent use.
type Key struct {
	priv   crypto.Signer
	method jwt.SigningMethod
	alg    string
	kid    string
	// jwk holds the public JWK's members; PublicJWK copies it, so a
	// caller adding x5c to its copy never changes another's.
	jwk map[string]any
}

// NewKey derives a Key from a private key. The key's type decides the
// algorithm, since a key is only ever valid for one: RSA (2048 bits or
// more) signs RS256, EC P-256 ES256 and Ed25519 EdDSA.
func NewKey(priv crypto.Signer) (*Key, error) {
	k := &Key{priv: priv}
	switch p := priv.(type) {
	case *rsa.PrivateKey:
		if bits := p.N.BitLen(); bits < minRSABits {
			return nil, fmt.Errorf("jose: a %d-bit RSA key; RS256 needs at least %d bits", bits, minRSABits)
		}
		k.method, k.alg = jwt.SigningMethodRS256, "RS256"
	case *ecdsa.PrivateKey:
		if p.Curve != elliptic.P256() {
			return nil, fmt.Errorf("jose: an EC key on %s; only P-256 (ES256) is supported", p.Curve.Params().Name)
		}
		k.method, k.alg = jwt.SigningMethodES256, "ES256"
	case ed25519.PrivateKey:
		k.method, k.alg = jwt.SigningMethodEdDSA, "EdDSA"
	default:
		return nil, fmt.Errorf("jose: unsupported key type %T (RSA, EC P-256 or Ed25519)", priv)
	}
	members, err := publicMembers(priv.Public())
	if err != nil {
		return nil, err
	}
	k.kid = thumbprint(members)
	k.jwk = map[string]any{"use": "sig", "alg": k.alg, "kid": k.kid}
	for name, v := range members {
		k.jwk[name] = v
	}
	return k, nil
}

// Alg is the JWS algorithm the key signs with: RS256, ES256 or EdDSA.
func (k *Key) Alg() string { return k.alg }

// Kid is the key's RFC 7638 JWK thumbprint (SHA-256, base64url), so the
// same key always gets the same kid, across restarts and processes.
func (k *Key) Kid() string { return k.kid }

// Public is the public half of the key.
func (k *Key) Public() crypto.PublicKey { return k.priv.Public() }

// PublicJWK is the key's public JWK (kty, use, alg, kid, and n/e, crv/x/y
// or crv/x). Each call returns a new map that the caller may extend, e.g.
// with x5c.
func (k *Key) PublicJWK() map[string]any { return maps.Clone(k.jwk) }

// Sign signs claims as a compact JWS with header alg, kid and typ JWT.
// extraHeader's fields are added last and win, so a caller can set typ
// at+jwt, or a test can forge a kid or add a jku; the signature is
// always made with this key and its algorithm.
func (k *Key) Sign(claims jwt.Claims, extraHeader map[string]any) (string, error) {
	tok := jwt.NewWithClaims(k.method, claims)
	tok.Header["kid"] = k.kid
	maps.Copy(tok.Header, extraHeader)
	s, err := tok.SignedString(k.priv)
	if err != nil {
		return "", fmt.Errorf("sign %s JWT with key %s: %w", k.alg, k.kid, err)
	}
	return s, nil
}

// SignInput signs an already encoded signing input ("header.payload")
// and returns the raw signature, for a caller that encodes its header
// once and reuses it for every token it signs.
func (k *Key) SignInput(signingInput string) ([]byte, error) {
	sig, err := k.method.Sign(signingInput, k.priv)
	if err != nil {
		return nil, fmt.Errorf("sign with %s key %s: %w", k.alg, k.kid, err)
	}
	return sig, nil
}

// Generate makes a new private key for alg (RS256: RSA-2048, ES256:
// P-256, EdDSA: Ed25519): the one place key types follow algorithm names.
func Generate(alg string) (crypto.Signer, error) {
	switch alg {
	case "RS256":
		return rsa.GenerateKey(rand.Reader, 2048)
	case "ES256":
		return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case "EdDSA":
		_, k, err := ed25519.GenerateKey(rand.Reader)
		return k, err
	}
	return nil, fmt.Errorf("jose: cannot generate a key for algorithm %q (RS256, ES256 or EdDSA)", alg)
}

// JWKS is the JSON Web Key Set publishing keys, in order.
func JWKS(keys ...*Key) map[string]any {
	set := make([]map[string]any, 0, len(keys))
	for _, k := range keys {
		set = append(set, k.PublicJWK())
	}
	return map[string]any{"keys": set}
}

// Thumbprint is the RFC 7638 JWK thumbprint of a public key: the SHA-256
// of its required JWK members, in lexical order without whitespace.
func Thumbprint(pub crypto.PublicKey) (string, error) {
	members, err := publicMembers(pub)
	if err != nil {
		return "", err
	}
	return thumbprint(members), nil
}

// publicMembers are the members RFC 7638 hashes for a key type (RFC 8037
// §2 for OKP); they are also all the key material of its public JWK.
func publicMembers(pub crypto.PublicKey) (map[string]string, error) {
	switch p := pub.(type) {
	case *rsa.PublicKey:
		return map[string]string{"kty": "RSA", "n": b64(p.N.Bytes()), "e": b64(big.NewInt(int64(p.E)).Bytes())}, nil
	case *ecdsa.PublicKey:
		if p.Curve != elliptic.P256() {
			return nil, fmt.Errorf("jose: an EC key on %s; only P-256 is supported", p.Curve.Params().Name)
		}
		pt, err := p.Bytes() // 0x04 || X || Y, 32 bytes each
		if err != nil {
			return nil, fmt.Errorf("jose: encode EC public key: %w", err)
		}
		return map[string]string{"kty": "EC", "crv": "P-256", "x": b64(pt[1:33]), "y": b64(pt[33:65])}, nil
	case ed25519.PublicKey:
		return map[string]string{"kty": "OKP", "crv": "Ed25519", "x": b64(p)}, nil
	case nil:
		return nil, errors.New("jose: no public key")
	}
	return nil, fmt.Errorf("jose: unsupported public key type %T", pub)
}

// thumbprint hashes the members in RFC 7638's form. Their values are
// base64url or fixed names, so none needs JSON escaping, and sorting the
// names by hand keeps the order exact whatever the key type.
func thumbprint(m map[string]string) string {
	var order []string
	switch m["kty"] {
	case "RSA":
		order = []string{"e", "kty", "n"}
	case "EC":
		order = []string{"crv", "kty", "x", "y"}
	default: // OKP
		order = []string{"crv", "kty", "x"}
	}
	b := []byte{'{'}
	for i, name := range order {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `"`+name+`":"`+m[name]+`"`...)
	}
	b = append(b, '}')
	sum := sha256.Sum256(b)
	return b64(sum[:])
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }
