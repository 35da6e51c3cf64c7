// Package assertion signs the gateway assertion: a short-lived JWT that
// the gateway sends the upstream with every request carrying a verified
// token (assertion.header, X-Gateway-Assertion by default). It says what
// the trusted X-Client-* headers say (the caller, its scopes, its
// forwarded metadata), but an upstream can verify it against the
// gateway's JWKS instead of trusting that nothing but the gateway can
// reach it.
//
// The signing key lives in assertion.key_file. Every replica that an
// upstream may hear from must use the same file (a mounted Secret), since
// the upstream checks each assertion against one JWKS. Replacing the file
// and reloading rotates the key; the old public key stays published until
// the last assertion it signed has expired, so rotation never fails a
// request in flight.
package assertion

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/maypok86/otter/v2"
	"go.uber.org/zap"

	"github.com/metagate/gateway/enrich"
	"github.com/metagate/gateway/proxy"
)

// Options configures a Signer; they are assertion.* of the config file,
// already validated.
type Options struct {
	// KeyFile holds the signing key (PKCS#8 PEM), created on first use.
	KeyFile string
	// Algorithm (ES256 or EdDSA) is the type of a created key. An
	// existing key's type decides instead.
	Algorithm string
	Issuer    string
	// TTL is the assertion's lifetime (exp - iat).
	TTL    time.Duration
	Now    func() time.Time // nil: time.Now
	Logger *zap.Logger      // nil: no logs
}

const (
	// cacheEntries bounds the assertion cache: about one entry per
	// active (token, route), each a few hundred bytes.
	cacheEntries = 100_000
	// retireLeeway keeps a retired key published this long past the
	// expiry of its last assertion, for upstreams whose clock runs
	// behind (Spring's JwtTimestampValidator allows 60s by default).
	retireLeeway = time.Minute
)

// Signer signs assertions and publishes their keys. It is safe for
// concurrent use; the hot path (a cache hit) neither locks nor allocates.
type Signer struct {
	keyFile   string
	algorithm string
	issuer    string
	ttl       time.Duration
	now       func() time.Time
	log       *zap.Logger

	// cur is the signing key, read lock-free on a cache hit.
	cur atomic.Pointer[signingKey]
	// mu is held for reading while a key signs and for writing while the
	// key changes or retired keys are dropped, so a retired key's lastExp
	// is final once it is in retired.
	mu      sync.RWMutex
	retired []*signingKey // published until lastExp + retireLeeway
	// pruneAt is the Unix second from which a retired key may be
	// dropped, 0 when none is retired: signing checks it without mu.
	pruneAt atomic.Int64

	cache *otter.Cache[cacheKey, cached]
}

// cacheKey identifies one assertion. Tokens and metadata are shared,
// immutable values (a verified token is cached by the verifier, metadata
// by the resolver), so their pointers say "same caller, same metadata
// version" without hashing what they hold. keys and nkeys identify the
// route's metadata allow-list (the slice is built once per config), so a
// reload that changes a route's metadata_headers never reuses an
// assertion that carries more than the route now forwards.
type cacheKey struct {
	token    *proxy.Token
	md       *enrich.Metadata
	route    string
	audience string
	keys     *string // &MetadataKeys[0], nil when empty
	nkeys    int     // -1: MetadataKeys is nil (no allow-list)
}

// cached is a signed assertion, good until until and only while key is
// still the signing key.
type cached struct {
	jwt   string
	until time.Time
	key   *signingKey
}

// New loads the signing key, or creates it on first use.
func New(o Options) (*Signer, error) {
	if o.TTL <= 0 {
		return nil, fmt.Errorf("assertion ttl must be positive, got %s", o.TTL)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = zap.NewNop()
	}
	s := &Signer{keyFile: o.KeyFile, algorithm: o.Algorithm, issuer: o.Issuer, ttl: o.TTL, now: o.Now, log: o.Logger}
	k, err := loadOrCreateKey(s.keyFile, s.algorithm)
	if err != nil {
		return nil, err
	}
	s.warnAlgorithm(k)
	s.cur.Store(k)
	c, err := otter.New(&otter.Options[cacheKey, cached]{
		MaximumSize: cacheEntries,
		ExpiryCalculator: otter.ExpiryCreatingFunc(func(e otter.Entry[cacheKey, cached]) time.Duration {
			return e.Value.until.Sub(s.now())
		}),
	})
	if err != nil {
		return nil, fmt.Errorf("assertion cache: %w", err)
	}
	s.cache = c
	s.log.Info("assertion key loaded", zap.String("key_file", s.keyFile), zap.String("alg", k.alg), zap.String("kid", k.kid))
	return s, nil
}

// warnAlgorithm says when a key's type overrides assertion.algorithm,
// once per key: an upstream configured for the algorithm alone (Spring's
// jws-algorithms) would refuse every assertion.
func (s *Signer) warnAlgorithm(k *signingKey) {
	if k.alg != s.algorithm {
		s.log.Warn("the assertion key's type decides the algorithm, not assertion.algorithm",
			zap.String("key_file", s.keyFile), zap.String("key_alg", k.alg), zap.String("algorithm", s.algorithm))
	}
}

// Close stops the assertion cache's maintenance goroutines. The Signer
// must not be used afterwards.
func (s *Signer) Close() {
	s.cache.StopAllGoroutines()
}

// Reload re-reads the key file. A different key becomes the signing key
// at once: the cached assertions are dropped, and the old public key
// stays in the JWKS until its last assertion has expired (plus a
// leeway). A deleted file is created anew, which rotates the key too; an
// unreadable or invalid one keeps the current key and returns the error.
// Retired keys live in memory only: rotate by reloading, since a
// restart publishes the current key alone.
func (s *Signer) Reload() error {
	k, err := loadOrCreateKey(s.keyFile, s.algorithm)
	if err != nil {
		return err
	}
	s.mu.Lock()
	old := s.cur.Load()
	if k.kid == old.kid {
		s.mu.Unlock()
		return nil
	}
	s.retired = append(s.unretire(k), old)
	s.cur.Store(k)
	s.pruneLocked(s.now())
	s.mu.Unlock()
	// Entries signed by old no longer hit (see Assertion); dropping them
	// frees their memory now.
	s.cache.InvalidateAll()
	s.log.Info("assertion key rotated", zap.String("key_file", s.keyFile),
		zap.String("kid", k.kid), zap.String("alg", k.alg), zap.String("retired_kid", old.kid))
	s.warnAlgorithm(k)
	return nil
}

// unretire removes k from the retired keys when it is rotated back in:
// it is published as the signing key then, and keeps the lastExp of its
// earlier assertions for when it is retired again. s.mu must be held for
// writing.
func (s *Signer) unretire(k *signingKey) []*signingKey {
	keep := s.retired[:0]
	for _, r := range s.retired {
		if r.kid == k.kid {
			k.noteExp(r.lastExp.Load())
			continue
		}
		keep = append(keep, r)
	}
	clear(s.retired[len(keep):])
	return keep
}

// pruneLocked drops the retired keys whose last assertion expired more
// than retireLeeway ago. A retired key's lastExp is final (it signs under
// s.mu's read lock, and was retired under its write lock), so its
// deadline is too. s.mu must be held for writing.
func (s *Signer) pruneLocked(now time.Time) {
	keep := s.retired[:0]
	var next int64
	for _, k := range s.retired {
		until := k.lastExp.Load() + int64(retireLeeway/time.Second)
		if now.Unix() >= until {
			s.log.Info("retired assertion key unpublished", zap.String("kid", k.kid))
			continue
		}
		keep = append(keep, k)
		if next == 0 || until < next {
			next = until
		}
	}
	clear(s.retired[len(keep):])
	s.retired = keep
	s.pruneAt.Store(next)
}

// Assertion returns the assertion for req, signed at most half a TTL
// ago: every assertion it returns is valid for at least TTL/2, and a
// caller's requests share one signature. It implements
// proxy.AssertionSigner.
func (s *Signer) Assertion(_ context.Context, req proxy.AssertionRequest) (string, error) {
	if req.Token == nil {
		return "", errors.New("assertion: no verified token")
	}
	if req.Audience == "" {
		return "", fmt.Errorf("assertion for route %q: no audience", req.Route)
	}
	ck := cacheKey{token: req.Token, md: req.Metadata, route: req.Route, audience: req.Audience, nkeys: -1}
	if req.MetadataKeys != nil {
		ck.nkeys = len(req.MetadataKeys)
		if ck.nkeys > 0 {
			ck.keys = &req.MetadataKeys[0]
		}
	}
	now := s.now()
	if e, ok := s.cache.GetIfPresent(ck); ok && e.key == s.cur.Load() && now.Before(e.until) {
		return e.jwt, nil
	}
	jwt, k, err := s.sign(req, now)
	if err != nil {
		return "", err
	}
	s.cache.Set(ck, cached{jwt: jwt, until: now.Add(s.ttl / 2), key: k})
	return jwt, nil
}

// claims is the assertion's payload. Its field order is the JSON's.
type claims struct {
	Issuer   string `json:"iss"`
	Subject  string `json:"sub"`
	Audience string `json:"aud"`
	IssuedAt int64  `json:"iat"`
	Expiry   int64  `json:"exp"`
	Kind     string `json:"kind"`
	ClientID string `json:"client_id,omitempty"`
	// CallerIssuer is the issuer of the caller's access token: the
	// caller is "sub of caller_iss", as in the gateway's cache keys.
	CallerIssuer string          `json:"caller_iss"`
	Scope        string          `json:"scope,omitempty"`
	Name         string          `json:"name,omitempty"`
	Metadata     json.RawMessage `json:"metadata,omitempty"`
}

// sign signs a fresh assertion with the current key and returns the key
// it used.
func (s *Signer) sign(req proxy.AssertionRequest, now time.Time) (string, *signingKey, error) {
	t := req.Token
	c := claims{
		Issuer: s.issuer, Subject: t.Caller.ID, Audience: req.Audience,
		IssuedAt: now.Unix(), Expiry: now.Add(s.ttl).Unix(),
		Kind: t.Caller.Kind.String(), ClientID: t.ClientID, CallerIssuer: t.Caller.Issuer, Scope: t.ScopeHeader,
	}
	if c.Scope == "" && len(t.Scopes) > 0 { // a Token built by hand, without ScopeHeader
		c.Scope = strings.Join(t.Scopes, " ")
	}
	if md := req.Metadata; md != nil {
		c.Name = md.Record.Name
		c.Metadata = md.JSON
		if req.MetadataKeys != nil {
			sel, err := md.Select(req.MetadataKeys)
			if err != nil {
				return "", nil, fmt.Errorf("assertion metadata: %w", err)
			}
			c.Metadata = sel
		}
	}
	payload, err := json.Marshal(c)
	if err != nil {
		return "", nil, fmt.Errorf("encode assertion: %w", err)
	}
	s.mu.RLock()
	k := s.cur.Load()
	var b strings.Builder
	b.Grow(len(k.header) + (len(payload)*4+2)/3 + 1 + 120)
	b.WriteString(k.header)
	b.WriteString(b64(payload))
	sig, err := k.method.Sign(b.String(), k.priv)
	if err == nil {
		k.noteExp(c.Expiry)
	}
	s.mu.RUnlock()
	if err != nil {
		return "", nil, fmt.Errorf("sign assertion with %s key %s: %w", k.alg, k.kid, err)
	}
	if at := s.pruneAt.Load(); at != 0 && now.Unix() >= at {
		s.mu.Lock()
		s.pruneLocked(now)
		s.mu.Unlock()
	}
	b.WriteByte('.')
	b.WriteString(b64(sig))
	return b.String(), k, nil
}
