package proxy

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/MicahParks/keyfunc/v3"
	"github.com/golang-jwt/jwt/v5"
	"github.com/maypok86/otter/v2"
	"go.uber.org/zap"
	"golang.org/x/time/rate"

	"github.com/metagate/gateway/enrich"
)

// IssuerConfig is one trusted issuer, already validated.
type IssuerConfig struct {
	Issuer            string
	Audiences         []string
	JWKSURL           string
	Algorithms        []string
	Leeway            time.Duration
	JWKSRefresh       time.Duration
	UnknownKIDRefresh time.Duration
}

// VerifierOptions configures a Verifier.
type VerifierOptions struct {
	Issuers       []IssuerConfig
	MaxTokenBytes int
	// CacheEntries bounds the verified-token cache; a token seen before is
	// not verified again until CacheFor has passed or it expires.
	CacheEntries int
	CacheFor     time.Duration
	HTTPClient   *http.Client // for JWKS fetches; nil: a client with a 10s timeout
	Logger       *zap.Logger
	Now          func() time.Time
	// OnJWKSRefreshError is called when a JWKS fetch fails (metrics).
	OnJWKSRefreshError func(issuer string)
	// OnJWKSFetch is called when a JWKS fetch starts, whatever its outcome
	// (metrics: with the failures it gives the failure ratio).
	OnJWKSFetch func(issuer string)
	// Claims are the claim names kept with each verified token for
	// headers.claims (Token.Claims).
	Claims []string
	// KeepClaims keeps every claim of each verified token in
	// Token.AllClaims, for route policies (Policy.AllowIf) that read them.
	KeepClaims bool
}

// Verifier turns a bearer token into a verified Token. It trusts a fixed set
// of issuers, each with its own JWKS (fetched and refreshed by keyfunc), its
// own algorithms and audiences. Verified tokens are remembered, so the hot
// path costs one map lookup instead of a signature check.
type Verifier struct {
	issuers  map[string]*issuer
	maxBytes int
	cacheFor time.Duration
	// cache is keyed by the token's SHA-256, not the token: 32 bytes
	// instead of ~650 per cached caller, and no bearer credential kept in
	// memory. A key collision would need a SHA-256 collision.
	cache *otter.Cache[tokenKey, *Token]
	bufs  sync.Pool // *[]byte for keyOf
	now   func() time.Time
	peek  *jwt.Parser
	stop  context.CancelFunc
	// claimNames are VerifierOptions.Claims; empty and keepClaims false:
	// the payload is not decoded a second time.
	claimNames []string
	keepClaims bool
}

type issuer struct {
	cfg     IssuerConfig
	keys    keyfunc.Keyfunc
	parser  *jwt.Parser
	allowed map[string]bool
}

// tokenKey is a verified token's cache key: its SHA-256.
type tokenKey [sha256.Size]byte

// keyOf hashes raw through a pooled buffer: sha256 takes bytes, and
// converting the string would allocate on every request.
func (v *Verifier) keyOf(raw string) tokenKey {
	bp, _ := v.bufs.Get().(*[]byte)
	if bp == nil {
		b := make([]byte, 0, 2048)
		bp = &b
	}
	b := append((*bp)[:0], raw...)
	k := tokenKey(sha256.Sum256(b))
	*bp = b
	v.bufs.Put(bp)
	return k
}

// jwksTimeout bounds one JWKS fetch and the wait for the unknown-kid
// refresh limiter: a request carrying a forged kid fails fast instead of
// queueing behind the limiter.
const jwksTimeout = 5 * time.Second

// NewVerifier starts one JWKS client per issuer. Their refresh goroutines
// live until ctx is cancelled or Close is called. A JWKS that cannot be fetched at start is
// not fatal (the gateway reports not ready until it is: see Ready).
func NewVerifier(ctx context.Context, o VerifierOptions) (*Verifier, error) {
	if o.Logger == nil {
		o.Logger = zap.NewNop()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.HTTPClient == nil {
		o.HTTPClient = &http.Client{Timeout: jwksTimeout}
	}
	if o.CacheEntries <= 0 {
		o.CacheEntries = 100_000
	}
	if o.CacheFor <= 0 {
		o.CacheFor = time.Minute
	}
	if o.OnJWKSFetch != nil {
		byURL := make(map[string]string, len(o.Issuers))
		for _, ic := range o.Issuers {
			byURL[ic.JWKSURL] = ic.Issuer
		}
		c := *o.HTTPClient
		c.Transport = jwksCounter{next: c.Transport, issuerOf: byURL, fetched: o.OnJWKSFetch}
		o.HTTPClient = &c
	}
	ctx, stop := context.WithCancel(ctx)
	v := &Verifier{
		stop:     stop,
		issuers:  make(map[string]*issuer, len(o.Issuers)),
		maxBytes: o.MaxTokenBytes,
		cacheFor: o.CacheFor,
		now:      o.Now,
		// Strict base64url: a token has one spelling, so a signature with
		// altered padding bits neither verifies nor fills the cache again.
		peek:       jwt.NewParser(jwt.WithStrictDecoding()),
		claimNames: append([]string(nil), o.Claims...),
		keepClaims: o.KeepClaims,
	}
	for _, ic := range o.Issuers {
		ic := ic
		kf, err := keyfunc.NewDefaultOverrideCtx(ctx, []string{ic.JWKSURL}, keyfunc.Override{
			Client:            o.HTTPClient,
			HTTPTimeout:       jwksTimeout,
			RateLimitWaitMax:  jwksTimeout,
			RefreshInterval:   ic.JWKSRefresh,
			RefreshUnknownKID: rate.NewLimiter(rate.Every(ic.UnknownKIDRefresh), 1),
			RefreshErrorHandlerFunc: func(u string) func(context.Context, error) {
				return func(_ context.Context, err error) {
					o.Logger.Warn("JWKS fetch failed; keeping the last good keys", zap.String("issuer", ic.Issuer), zap.String("jwks_url", u), zap.Error(err))
					if o.OnJWKSRefreshError != nil {
						o.OnJWKSRefreshError(ic.Issuer)
					}
				}
			},
		})
		if err != nil {
			stop()
			return nil, fmt.Errorf("JWKS for issuer %s: %w", ic.Issuer, err)
		}
		allowed := make(map[string]bool, len(ic.Algorithms))
		for _, a := range ic.Algorithms {
			allowed[a] = true
		}
		v.issuers[ic.Issuer] = &issuer{
			cfg:     ic,
			keys:    kf,
			allowed: allowed,
			parser: jwt.NewParser(
				jwt.WithValidMethods(ic.Algorithms),
				jwt.WithIssuer(ic.Issuer),
				jwt.WithAudience(ic.Audiences...),
				jwt.WithExpirationRequired(),
				jwt.WithLeeway(ic.Leeway),
				jwt.WithTimeFunc(o.Now),
				jwt.WithStrictDecoding(),
			),
		}
	}
	c, err := otter.New(&otter.Options[tokenKey, *Token]{
		MaximumSize: o.CacheEntries,
		ExpiryCalculator: otter.ExpiryCreatingFunc(func(e otter.Entry[tokenKey, *Token]) time.Duration {
			return e.Value.cacheUntil.Sub(o.Now())
		}),
	})
	if err != nil {
		stop()
		return nil, fmt.Errorf("verified-token cache: %w", err)
	}
	v.cache = c
	return v, nil
}

// Close stops the JWKS refreshers and the verified-token cache's
// maintenance goroutine. The Verifier must not be used afterwards.
func (v *Verifier) Close() {
	v.stop()
	v.cache.StopAllGoroutines()
}

// jwksCounter reports each JWKS request by issuer before sending it.
type jwksCounter struct {
	next     http.RoundTripper // nil: http.DefaultTransport
	issuerOf map[string]string
	fetched  func(issuer string)
}

func (c jwksCounter) RoundTrip(r *http.Request) (*http.Response, error) {
	if iss, ok := c.issuerOf[r.URL.String()]; ok {
		c.fetched(iss)
	}
	next := c.next
	if next == nil {
		next = http.DefaultTransport
	}
	return next.RoundTrip(r)
}

// Ready reports whether every issuer's JWKS has been fetched at least once.
func (v *Verifier) Ready(ctx context.Context) bool {
	for _, is := range v.issuers {
		keys, err := is.keys.Storage().KeyReadAll(ctx)
		if err != nil || len(keys) == 0 {
			return false
		}
	}
	return true
}

// claims is what the gateway reads from an access token.
type claims struct {
	jwt.RegisteredClaims
	AuthorizedParty string   `json:"azp"`
	ClientID        string   `json:"client_id"`
	GrantType       string   `json:"gty"`
	Scope           string   `json:"scope"`
	Permissions     []string `json:"permissions"`
}

// Verify checks a raw bearer token. Errors are *AuthError with a reason safe
// to show the client.
func (v *Verifier) Verify(ctx context.Context, raw string) (*Token, error) {
	if len(raw) > v.maxBytes {
		return nil, authErr(ReasonTooLarge, nil)
	}
	now := v.now()
	key := v.keyOf(raw)
	if t, ok := v.cache.GetIfPresent(key); ok && now.Before(t.cacheUntil) {
		return t, nil
	}
	t, err := v.verify(ctx, raw)
	if err != nil {
		return nil, err
	}
	t.cacheUntil = now.Add(v.cacheFor)
	if t.Expiry.Before(t.cacheUntil) {
		t.cacheUntil = t.Expiry
	}
	v.cache.Set(key, t)
	return t, nil
}

func (v *Verifier) verify(ctx context.Context, raw string) (*Token, error) {
	// Read the header and iss without trusting them, to pick the issuer's
	// keys, algorithms and audiences. Nothing here is believed until the
	// signature and claims are verified below.
	var peeked claims
	unverified, _, err := v.peek.ParseUnverified(raw, &peeked)
	if err != nil {
		return nil, authErr(ReasonMalformed, err)
	}
	is, ok := v.issuers[peeked.Issuer]
	if !ok {
		return nil, authErr(ReasonBadIssuer, fmt.Errorf("issuer %q is not trusted", peeked.Issuer))
	}
	if reason, err := checkHeader(unverified.Header, is.allowed); err != nil {
		return nil, authErr(reason, err)
	}
	var c claims
	_, err = is.parser.ParseWithClaims(raw, &c, is.keys.KeyfuncCtx(ctx))
	if err != nil {
		return nil, authErr(reasonFor(err), err)
	}
	t, err := identify(&c)
	if err != nil {
		return nil, authErr(ReasonBadClaims, err)
	}
	if len(v.claimNames) > 0 || v.keepClaims {
		all, err := decodePayload(raw)
		if err != nil {
			return nil, authErr(ReasonBadClaims, err)
		}
		t.Claims = v.extraClaims(all)
		if v.keepClaims {
			t.AllClaims = policyValue(all).(map[string]any)
		}
	}
	return t, nil
}

// Check verifies a raw token like Verify, without the verified-token
// cache: for a token the gateway only inspects (the token endpoint's
// answer), which must be neither remembered nor looked up.
func (v *Verifier) Check(ctx context.Context, raw string) (*Token, error) {
	if len(raw) > v.maxBytes {
		return nil, authErr(ReasonTooLarge, nil)
	}
	return v.verify(ctx, raw)
}

// decodePayload decodes the verified token's payload, numbers as
// json.Number so that header values keep their exact spelling. It runs
// once per token, when the token is verified; its requests then share
// what it gave.
func decodePayload(raw string) (map[string]any, error) {
	parts := strings.Split(raw, ".")
	if len(parts) != 3 {
		return nil, errors.New("token is not a JWS compact serialization")
	}
	payload, err := base64.RawURLEncoding.Strict().DecodeString(parts[1])
	if err != nil {
		return nil, fmt.Errorf("decode payload: %w", err)
	}
	dec := json.NewDecoder(bytes.NewReader(payload))
	dec.UseNumber()
	var all map[string]any
	if err := dec.Decode(&all); err != nil {
		return nil, fmt.Errorf("decode payload: %w", err)
	}
	if all == nil {
		all = map[string]any{}
	}
	return all, nil
}

// policyValue is a decoded claim as policies read it: json.Number becomes
// an int64 when it is one, else a float64 (CEL compares the two).
func policyValue(v any) any {
	switch x := v.(type) {
	case json.Number:
		if i, err := x.Int64(); err == nil {
			return i
		}
		f, _ := x.Float64()
		return f
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			out[k] = policyValue(e)
		}
		return out
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = policyValue(e)
		}
		return out
	}
	return v
}

// extraClaims picks the claims headers.claims names from the verified
// payload, in their header form.
func (v *Verifier) extraClaims(all map[string]any) []ClaimValue {
	var out []ClaimValue
	for _, name := range v.claimNames {
		val, ok := enrich.HeaderValue(all[name])
		if !ok {
			continue
		}
		out = append(out, ClaimValue{Name: name, Value: val})
	}
	vals := make([]string, len(out))
	for i := range out {
		vals[i] = out[i].Value
		out[i].values = vals[i : i+1 : i+1]
	}
	return out
}

// checkHeader rejects what the JOSE header may smuggle in: algorithms the
// issuer does not use (including "none" and HS* key confusion), a missing
// kid, and critical extensions we do not implement (RFC 7515 §4.1.11). Key
// material in jku, x5u, x5c or jwk is never used: keys only come from the
// issuer's configured JWKS.
func checkHeader(h map[string]any, allowed map[string]bool) (Reason, error) {
	alg, _ := h["alg"].(string)
	if !allowed[alg] {
		return ReasonBadAlgorithm, fmt.Errorf("algorithm %q is not allowed", alg)
	}
	if _, ok := h["crit"]; ok {
		return ReasonBadHeader, errors.New("unsupported critical header parameters")
	}
	if kid, _ := h["kid"].(string); kid == "" {
		return ReasonUnknownKey, errors.New("token has no kid")
	}
	return "", nil
}

func reasonFor(err error) Reason {
	switch {
	case errors.Is(err, jwt.ErrTokenExpired):
		return ReasonExpired
	case errors.Is(err, jwt.ErrTokenNotValidYet), errors.Is(err, jwt.ErrTokenUsedBeforeIssued):
		return ReasonNotYetValid
	case errors.Is(err, jwt.ErrTokenRequiredClaimMissing):
		return ReasonBadClaims
	case errors.Is(err, jwt.ErrTokenInvalidIssuer):
		return ReasonBadIssuer
	case errors.Is(err, jwt.ErrTokenInvalidAudience):
		return ReasonBadAudience
	case errors.Is(err, jwt.ErrTokenUnverifiable):
		return ReasonUnknownKey
	case errors.Is(err, jwt.ErrTokenSignatureInvalid):
		return ReasonBadSignature
	case errors.Is(err, jwt.ErrTokenMalformed):
		return ReasonMalformed
	default:
		return ReasonBadClaims
	}
}
