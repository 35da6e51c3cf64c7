package assertion

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"sync/atomic"

	"github.com/golang-jwt/jwt/v5"
	"github.com/metagate/gateway/internal/jose"
	"github.com/metagate/gateway/internal/keyfile"
)

// signingKey is one assertion key with everything derived from it once:
// the JWT header every assertion it signs starts with, and its JWK.
type signingKey struct {
	priv   any // *ecdsa.PrivateKey (P-256) or ed25519.PrivateKey
	method jwt.SigningMethod
	alg    string
	kid    string
	// header is the encoded JOSE header and the dot after it: the
	// signing input of every assertion begins with it.
	header string
	jwk    json.RawMessage
	// lastExp is the latest exp (Unix seconds) of an assertion this key
	// signed, 0 before the first: a retired key stays published until
	// then, so every assertion it signed can still be verified.
	lastExp atomic.Int64
}

// noteExp records that the key signed an assertion expiring at exp.
func (k *signingKey) noteExp(exp int64) {
	for {
		cur := k.lastExp.Load()
		if exp <= cur || k.lastExp.CompareAndSwap(cur, exp) {
			return
		}
	}
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// newSigningKey derives a signingKey from a parsed PKCS#8 key. The key's
// type decides the algorithm: the file is the authority, so a key made
// for EdDSA keeps signing EdDSA whatever assertion.algorithm says now.
// The kid and JWK come from internal/jose, like every other key the
// gateway publishes; the header is encoded here once, because sign
// starts every assertion with it.
func newSigningKey(path string, priv any) (*signingKey, error) {
	var signer crypto.Signer
	switch p := priv.(type) {
	case *ecdsa.PrivateKey:
		if p.Curve != elliptic.P256() {
			return nil, fmt.Errorf("assertion key %s: an EC key on %s; only P-256 (ES256) is supported", path, p.Curve.Params().Name)
		}
		signer = p
	case ed25519.PrivateKey:
		signer = p
	default:
		return nil, fmt.Errorf("assertion key %s: a %T key; assertion keys are EC P-256 (ES256) or Ed25519 (EdDSA)", path, priv)
	}
	jk, err := jose.NewKey(signer)
	if err != nil {
		return nil, fmt.Errorf("assertion key %s: %w", path, err)
	}
	k := &signingKey{priv: priv, method: jwt.GetSigningMethod(jk.Alg()), alg: jk.Alg(), kid: jk.Kid()}
	if k.jwk, err = json.Marshal(jk.PublicJWK()); err != nil {
		return nil, fmt.Errorf("assertion key %s: %w", path, err)
	}
	h, err := json.Marshal(struct {
		Alg string `json:"alg"`
		Kid string `json:"kid"`
		Typ string `json:"typ"`
	}{k.alg, k.kid, "JWT"})
	if err != nil {
		return nil, fmt.Errorf("assertion key %s: %w", path, err)
	}
	k.header = b64(h) + "."
	return k, nil
}

// loadOrCreateKey reads the key at path, creating one for alg on first
// use. Like the dev issuer's key (devissuer.LoadOrCreateKey) it is written
// with mode 0600 under a 0700 directory and linked into place atomically,
// so replicas or processes started together on one volume agree on one
// key, and a half-written file is never read.
func loadOrCreateKey(path, alg string) (*signingKey, error) {
	priv, err := keyfile.LoadOrCreate(path, "assertion key", func() (any, error) {
		if alg != "ES256" && alg != "EdDSA" {
			return nil, fmt.Errorf("cannot create a key for algorithm %q (ES256 or EdDSA)", alg)
		}
		return jose.Generate(alg)
	})
	if err != nil {
		return nil, err
	}
	return newSigningKey(path, priv)
}
