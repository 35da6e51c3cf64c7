package assertion

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/metagate/gateway/enrich"
	"github.com/metagate/gateway/proxy"
)

const (
	testIssuer   = "urn:metagate:gateway"
	testAudience = "http://orders.internal:8080"
	callerIssuer = "https://tenant.auth0.com/"
)

// clock is a settable Options.Now.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Unix(1_900_000_000, 0)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func newSigner(t *testing.T, o Options) *Signer {
	t.Helper()
	if o.KeyFile == "" {
		o.KeyFile = filepath.Join(t.TempDir(), "keys", "assertion-key.pem")
	}
	if o.Algorithm == "" {
		o.Algorithm = "ES256"
	}
	if o.Issuer == "" {
		o.Issuer = testIssuer
	}
	if o.TTL == 0 {
		o.TTL = time.Minute
	}
	s, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

func clientToken() *proxy.Token {
	return &proxy.Token{
		Issuer: callerIssuer, Subject: "svc-billing@clients",
		Caller:   enrich.NewCaller(callerIssuer, enrich.KindClient, "svc-billing"),
		ClientID: "svc-billing", Scopes: []string{"read:invoices", "write:invoices"}, ScopeHeader: "read:invoices write:invoices",
		Expiry: time.Now().Add(time.Hour),
	}
}

func userToken() *proxy.Token {
	return &proxy.Token{
		Issuer: callerIssuer, Subject: "auth0|alice",
		Caller:   enrich.NewCaller(callerIssuer, enrich.KindUser, "auth0|alice"),
		ClientID: "spa-app", Expiry: time.Now().Add(time.Hour),
	}
}

func metadata(t *testing.T, name string, m map[string]any) *enrich.Metadata {
	t.Helper()
	md, err := enrich.Prepare(enrich.Record{Name: name, Metadata: m})
	if err != nil {
		t.Fatal(err)
	}
	return md
}

func billingMetadata(t *testing.T) *enrich.Metadata {
	return metadata(t, "Billing Service", map[string]any{"tier": "gold", "tenant_id": "acme", "roles": []any{"a", "b"}})
}

func assert(t *testing.T, s *Signer, req proxy.AssertionRequest) string {
	t.Helper()
	if req.Route == "" {
		req.Route = "orders"
	}
	if req.Audience == "" {
		req.Audience = testAudience
	}
	a, err := s.Assertion(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// publishedKeys fetches the JWKS from a real listener and decodes it
// independently of the signer's own encoding.
func publishedKeys(t *testing.T, s *Signer) map[string]any {
	t.Helper()
	srv := httptest.NewServer(s.JWKSHandler())
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var set struct {
		Keys []map[string]string `json:"keys"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&set); err != nil {
		t.Fatal(err)
	}
	keys := map[string]any{}
	for _, k := range set.Keys {
		if k["use"] != "sig" || k["kid"] == "" {
			t.Fatalf("JWK %v: want use sig and a kid", k)
		}
		x, err := base64.RawURLEncoding.DecodeString(k["x"])
		if err != nil {
			t.Fatal(err)
		}
		switch {
		case k["kty"] == "EC" && k["crv"] == "P-256" && k["alg"] == "ES256":
			y, err := base64.RawURLEncoding.DecodeString(k["y"])
			if err != nil {
				t.Fatal(err)
			}
			pub, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), append(append([]byte{4}, x...), y...))
			if err != nil {
				t.Fatal(err)
			}
			keys[k["kid"]] = pub
		case k["kty"] == "OKP" && k["crv"] == "Ed25519" && k["alg"] == "EdDSA":
			keys[k["kid"]] = ed25519.PublicKey(x)
		default:
			t.Fatalf("unexpected JWK %v", k)
		}
	}
	return keys
}

// verify checks an assertion the way an upstream would: against the
// published keys, with iss, aud and exp required.
func verify(raw string, keys map[string]any, now func() time.Time) (*jwt.Token, jwt.MapClaims, error) {
	c := jwt.MapClaims{}
	tok, err := jwt.NewParser(
		jwt.WithValidMethods([]string{"ES256", "EdDSA"}), jwt.WithIssuer(testIssuer), jwt.WithAudience(testAudience),
		jwt.WithExpirationRequired(), jwt.WithIssuedAt(), jwt.WithTimeFunc(now),
	).ParseWithClaims(raw, c, func(t *jwt.Token) (any, error) {
		k, ok := keys[t.Header["kid"].(string)]
		if !ok {
			return nil, errors.New("unknown kid")
		}
		return k, nil
	})
	return tok, c, err
}

func TestClaims(t *testing.T) {
	clk := newClock()
	s := newSigner(t, Options{Now: clk.Now})
	raw := assert(t, s, proxy.AssertionRequest{Token: clientToken(), Metadata: billingMetadata(t)})

	tok, c, err := verify(raw, publishedKeys(t, s), clk.Now)
	if err != nil {
		t.Fatal(err)
	}
	if tok.Header["alg"] != "ES256" || tok.Header["typ"] != "JWT" || tok.Header["kid"] != s.cur.Load().kid || len(tok.Header) != 3 {
		t.Errorf("header %v", tok.Header)
	}
	iat := float64(clk.Now().Unix())
	want := jwt.MapClaims{
		"iss": testIssuer, "sub": "svc-billing", "aud": testAudience, "iat": iat, "exp": iat + 60,
		"kind": "client", "client_id": "svc-billing", "caller_iss": callerIssuer,
		"scope": "read:invoices write:invoices", "name": "Billing Service",
		"metadata": map[string]any{"tier": "gold", "tenant_id": "acme", "roles": []any{"a", "b"}},
	}
	if !reflect.DeepEqual(c, want) {
		t.Errorf("claims\n got %v\nwant %v", c, want)
	}
}

func TestUserClaimsWithoutMetadata(t *testing.T) {
	clk := newClock()
	s := newSigner(t, Options{Now: clk.Now})
	raw := assert(t, s, proxy.AssertionRequest{Token: userToken()})
	_, c, err := verify(raw, publishedKeys(t, s), clk.Now)
	if err != nil {
		t.Fatal(err)
	}
	iat := float64(clk.Now().Unix())
	want := jwt.MapClaims{
		"iss": testIssuer, "sub": "auth0|alice", "aud": testAudience, "iat": iat, "exp": iat + 60,
		"kind": "user", "client_id": "spa-app", "caller_iss": callerIssuer,
	}
	if !reflect.DeepEqual(c, want) {
		t.Errorf("claims\n got %v\nwant %v", c, want)
	}
}

func TestMetadataAllowList(t *testing.T) {
	clk := newClock()
	s := newSigner(t, Options{Now: clk.Now})
	keys := publishedKeys(t, s)
	md := billingMetadata(t)
	for _, tc := range []struct {
		name  string
		keys  []string
		route string
		want  any
	}{
		{"route forwards every key", nil, "all", map[string]any{"tier": "gold", "tenant_id": "acme", "roles": []any{"a", "b"}}},
		{"route forwards tier and an unknown key", []string{"tier", "missing"}, "tier", map[string]any{"tier": "gold"}},
		{"route forwards nothing", []string{}, "none", map[string]any{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			raw := assert(t, s, proxy.AssertionRequest{Token: clientToken(), Metadata: md, Route: tc.route, MetadataKeys: tc.keys})
			_, c, err := verify(raw, keys, clk.Now)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(c["metadata"], tc.want) {
				t.Errorf("metadata %v, want %v", c["metadata"], tc.want)
			}
		})
	}
}

func TestCacheHit(t *testing.T) {
	clk := newClock()
	s := newSigner(t, Options{Now: clk.Now})
	req := proxy.AssertionRequest{Token: clientToken(), Metadata: billingMetadata(t), Route: "orders", Audience: testAudience, MetadataKeys: []string{"tier"}}
	first := assert(t, s, req)
	clk.Advance(29 * time.Second)
	if again := assert(t, s, req); again != first {
		t.Error("a second request within TTL/2 was signed again")
	}
	ctx := context.Background()
	allocs := testing.AllocsPerRun(1000, func() {
		if a, err := s.Assertion(ctx, req); err != nil || a != first {
			t.Fatal("cache hit returned another assertion", err)
		}
	})
	if allocs != 0 {
		t.Errorf("a cache hit allocates %.1f times, want 0", allocs)
	}
	clk.Advance(2 * time.Second) // past TTL/2: signed again, valid for a full TTL
	fresh := assert(t, s, req)
	if fresh == first {
		t.Fatal("an assertion older than TTL/2 was reused")
	}
	_, c, err := verify(fresh, publishedKeys(t, s), clk.Now)
	if err != nil || c["iat"] != float64(clk.Now().Unix()) {
		t.Errorf("fresh assertion: iat %v, %v", c["iat"], err)
	}
}

func TestCacheMiss(t *testing.T) {
	clk := newClock()
	s := newSigner(t, Options{Now: clk.Now})
	keys := publishedKeys(t, s)
	tok, md := clientToken(), billingMetadata(t)
	base := proxy.AssertionRequest{Token: tok, Metadata: md, Route: "orders", Audience: testAudience}
	first := assert(t, s, base)

	newMD := metadata(t, "Billing Service", map[string]any{"tier": "platinum"})
	for _, tc := range []struct {
		name  string
		req   proxy.AssertionRequest
		claim string
		want  any
	}{
		{"metadata refreshed (new pointer)", proxy.AssertionRequest{Token: tok, Metadata: newMD}, "metadata", map[string]any{"tier": "platinum"}},
		{"another route's audience", proxy.AssertionRequest{Token: tok, Metadata: md, Route: "billing", Audience: "http://billing.internal"}, "aud", "http://billing.internal"},
		{"another caller", proxy.AssertionRequest{Token: userToken(), Metadata: md}, "sub", "auth0|alice"},
		{"route reloaded with an allow-list", proxy.AssertionRequest{Token: tok, Metadata: md, MetadataKeys: []string{"tier"}}, "metadata", map[string]any{"tier": "gold"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			raw := assert(t, s, tc.req)
			if raw == first {
				t.Fatal("the cached assertion was reused")
			}
			c := jwt.MapClaims{}
			if _, _, err := jwt.NewParser().ParseUnverified(raw, c); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(c[tc.claim], tc.want) {
				t.Errorf("%s %v, want %v", tc.claim, c[tc.claim], tc.want)
			}
		})
	}
	t.Run("route reloaded with another allow-list of the same length", func(t *testing.T) {
		a := assert(t, s, proxy.AssertionRequest{Token: tok, Metadata: md, MetadataKeys: []string{"tier"}})
		b := assert(t, s, proxy.AssertionRequest{Token: tok, Metadata: md, MetadataKeys: []string{"tenant_id"}})
		_, ca, _ := verify(a, keys, clk.Now)
		_, cb, _ := verify(b, keys, clk.Now)
		if reflect.DeepEqual(ca["metadata"], cb["metadata"]) {
			t.Errorf("both assert %v", ca["metadata"])
		}
	})
}

func TestAssertionNeedsTokenAndAudience(t *testing.T) {
	s := newSigner(t, Options{})
	if _, err := s.Assertion(context.Background(), proxy.AssertionRequest{Route: "r", Audience: testAudience}); err == nil {
		t.Error("no token: signed anyway")
	}
	if _, err := s.Assertion(context.Background(), proxy.AssertionRequest{Token: clientToken(), Route: "r"}); err == nil || !strings.Contains(err.Error(), `"r"`) {
		t.Errorf("no audience: %v", err)
	}
}

func TestKeyFile(t *testing.T) {
	for _, alg := range []string{"ES256", "EdDSA"} {
		t.Run(alg, func(t *testing.T) {
			clk := newClock()
			dir := filepath.Join(t.TempDir(), "gateway")
			file := filepath.Join(dir, "assertion-key.pem")
			s := newSigner(t, Options{KeyFile: file, Algorithm: alg, Now: clk.Now})
			raw := assert(t, s, proxy.AssertionRequest{Token: clientToken()})

			fi, err := os.Stat(file)
			if err != nil {
				t.Fatal(err)
			}
			if fi.Mode().Perm() != 0o600 {
				t.Errorf("key file mode %v, want 0600", fi.Mode().Perm())
			}
			if di, err := os.Stat(dir); err != nil || di.Mode().Perm() != 0o700 {
				t.Errorf("key directory: %v, %v; want 0700", di.Mode().Perm(), err)
			}
			b, _ := os.ReadFile(file)
			if blk, _ := pem.Decode(b); blk == nil || blk.Type != "PRIVATE KEY" {
				t.Errorf("key file is not a PKCS#8 PEM block:\n%s", b)
			}
			if entries, _ := os.ReadDir(dir); len(entries) != 1 {
				t.Errorf("the key directory holds %d files, want the key alone", len(entries))
			}

			// A restart reads the same key: its old assertions still verify.
			again := newSigner(t, Options{KeyFile: file, Algorithm: alg, Now: clk.Now})
			if again.cur.Load().kid != s.cur.Load().kid {
				t.Fatal("a restart created a new key")
			}
			tok, _, err := verify(raw, publishedKeys(t, again), clk.Now)
			if err != nil {
				t.Fatal(err)
			}
			if tok.Header["alg"] != alg {
				t.Errorf("alg %v, want %s", tok.Header["alg"], alg)
			}
		})
	}
}

func writeKey(t *testing.T, file string, priv any) {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(file), 0o700); err != nil {
		t.Fatal(err)
	}
	// Replaced by rename, as a deploy tool or a Secret update does.
	tmp := file + ".new"
	if err := os.WriteFile(tmp, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, file); err != nil {
		t.Fatal(err)
	}
}

func TestExistingKeyDecidesAlgorithm(t *testing.T) {
	file := filepath.Join(t.TempDir(), "key.pem")
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	writeKey(t, file, priv)
	s := newSigner(t, Options{KeyFile: file, Algorithm: "ES256"})
	if alg := s.cur.Load().alg; alg != "EdDSA" {
		t.Errorf("an Ed25519 key file signs %s", alg)
	}
}

func TestBadKeyFile(t *testing.T) {
	dir := t.TempDir()
	rsaFile := filepath.Join(dir, "rsa.pem")
	rk, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	writeKey(t, rsaFile, rk)
	p384File := filepath.Join(dir, "p384.pem")
	ek, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	writeKey(t, p384File, ek)
	junkFile := filepath.Join(dir, "junk.pem")
	if err := os.WriteFile(junkFile, []byte("not a key"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ name, file, want string }{
		{"RSA key", rsaFile, "*rsa.PrivateKey"},
		{"EC key on P-384", p384File, "P-384"},
		{"not PEM", junkFile, "not PEM"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(Options{KeyFile: tc.file, Algorithm: "ES256", Issuer: testIssuer, TTL: time.Minute})
			if err == nil || !strings.Contains(err.Error(), tc.file) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v, want an error naming %s and %q", err, tc.file, tc.want)
			}
		})
	}
}

// TestThumbprint checks the kid against RFC 8037 appendix A.3's Ed25519
// key and thumbprint.
func TestThumbprint(t *testing.T) {
	seed, _ := base64.RawURLEncoding.DecodeString("nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A")
	k, err := newSigningKey("rfc8037", ed25519.NewKeyFromSeed(seed))
	if err != nil {
		t.Fatal(err)
	}
	if k.kid != "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k" {
		t.Errorf("kid %s", k.kid)
	}
	var jwk map[string]string
	if err := json.Unmarshal(k.jwk, &jwk); err != nil || jwk["x"] != "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo" {
		t.Errorf("jwk %s (%v)", k.jwk, err)
	}
}

func TestRotation(t *testing.T) {
	clk := newClock()
	file := filepath.Join(t.TempDir(), "key.pem")
	s := newSigner(t, Options{KeyFile: file, Now: clk.Now})
	oldKid := s.cur.Load().kid
	req := proxy.AssertionRequest{Token: clientToken(), Metadata: billingMetadata(t)}
	old := assert(t, s, req)

	if err := s.Reload(); err != nil { // the same file: nothing changes
		t.Fatal(err)
	}
	if assert(t, s, req) != old {
		t.Error("a reload without a new key dropped the cache")
	}

	clk.Advance(10 * time.Second)
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	writeKey(t, file, priv)
	if err := s.Reload(); err != nil {
		t.Fatal(err)
	}
	newKid := s.cur.Load().kid

	fresh := assert(t, s, req) // would be a cache hit without the rotation
	keys := publishedKeys(t, s)
	if len(keys) != 2 {
		t.Fatalf("JWKS has %d keys, want the new and the retired", len(keys))
	}
	tok, _, err := verify(fresh, keys, clk.Now)
	if err != nil {
		t.Fatal(err)
	}
	if tok.Header["kid"] != newKid || tok.Header["alg"] != "EdDSA" {
		t.Errorf("new assertion signed by %v (%v), want %s", tok.Header["kid"], tok.Header["alg"], newKid)
	}
	if _, _, err := verify(old, keys, clk.Now); err != nil {
		t.Errorf("an assertion of the retired key, still valid, fails: %v", err)
	}

	// The old key's last assertion expires 60s after it was signed; it
	// stays published for retireLeeway more.
	clk.Advance(50*time.Second + retireLeeway - time.Second)
	if _, ok := publishedKeys(t, s)[oldKid]; !ok {
		t.Fatal("the retired key was dropped within the leeway")
	}
	clk.Advance(time.Second)
	assert(t, s, proxy.AssertionRequest{Token: userToken()}) // signing drops it too
	s.mu.RLock()
	n := len(s.retired)
	s.mu.RUnlock()
	if n != 0 {
		t.Errorf("%d retired keys kept after signing", n)
	}
	keys = publishedKeys(t, s)
	if _, ok := keys[oldKid]; ok || len(keys) != 1 {
		t.Errorf("JWKS still has %d keys after the retired key's last assertion expired", len(keys))
	}

	// Rotating back to a key that is still retired publishes it once, as
	// the signing key.
	s2 := newSigner(t, Options{KeyFile: filepath.Join(t.TempDir(), "k.pem"), Now: clk.Now})
	first := s2.cur.Load()
	assert(t, s2, req)
	b, _ := os.ReadFile(s2.keyFile)
	writeKey(t, s2.keyFile, priv)
	if err := s2.Reload(); err != nil {
		t.Fatal(err)
	}
	assert(t, s2, req) // the second key signs too: both stay published
	if err := os.WriteFile(s2.keyFile, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := s2.Reload(); err != nil {
		t.Fatal(err)
	}
	if s2.cur.Load().kid != first.kid || len(publishedKeys(t, s2)) != 2 {
		t.Errorf("rotated back: kid %s, %d keys published", s2.cur.Load().kid, len(publishedKeys(t, s2)))
	}
	// Retired again before signing anything new: its first assertions
	// are still valid, so it stays published.
	third, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	writeKey(t, s2.keyFile, third)
	if err := s2.Reload(); err != nil {
		t.Fatal(err)
	}
	if _, ok := publishedKeys(t, s2)[first.kid]; !ok {
		t.Error("a key retired twice was dropped while its first assertions live")
	}
}

func TestReloadKeepsKeyOnError(t *testing.T) {
	file := filepath.Join(t.TempDir(), "key.pem")
	s := newSigner(t, Options{KeyFile: file})
	kid := s.cur.Load().kid
	if err := os.WriteFile(file, []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := s.Reload(); err == nil || !strings.Contains(err.Error(), file) {
		t.Errorf("reload of a broken file: %v", err)
	}
	if s.cur.Load().kid != kid {
		t.Error("a broken key file replaced the signing key")
	}
	assert(t, s, proxy.AssertionRequest{Token: clientToken()})
}

func TestJWKSHandler(t *testing.T) {
	s := newSigner(t, Options{})
	srv := httptest.NewServer(s.JWKSHandler())
	defer srv.Close()
	for _, tc := range []struct {
		method string
		status int
		body   bool
	}{
		{http.MethodGet, http.StatusOK, true},
		{http.MethodHead, http.StatusOK, false},
		{http.MethodPost, http.StatusMethodNotAllowed, false},
	} {
		t.Run(tc.method, func(t *testing.T) {
			req, _ := http.NewRequest(tc.method, srv.URL, nil)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d", resp.StatusCode, tc.status)
			}
			if tc.status != http.StatusOK {
				if resp.Header.Get("Allow") != "GET, HEAD" {
					t.Errorf("Allow %q", resp.Header.Get("Allow"))
				}
				return
			}
			if ct, cc := resp.Header.Get("Content-Type"), resp.Header.Get("Cache-Control"); ct != "application/json" || cc != "public, max-age=60" {
				t.Errorf("Content-Type %q, Cache-Control %q", ct, cc)
			}
			if tc.body {
				var set struct{ Keys []map[string]string }
				if err := json.Unmarshal(body, &set); err != nil || len(set.Keys) != 1 || set.Keys[0]["kid"] != s.cur.Load().kid {
					t.Errorf("body %s (%v)", body, err)
				}
			} else if len(body) != 0 {
				t.Errorf("HEAD answered a body: %s", body)
			}
		})
	}
}

// TestRotationUnderLoad rotates the key while requests are signed: every
// assertion handed out must verify against the JWKS published after.
func TestRotationUnderLoad(t *testing.T) {
	clk := newClock()
	file := filepath.Join(t.TempDir(), "key.pem")
	s := newSigner(t, Options{KeyFile: file, Now: clk.Now})
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		out  []string
		errs = make(chan error, 4)
		stop = make(chan struct{})
	)
	for range 4 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				a, err := s.Assertion(context.Background(), proxy.AssertionRequest{Token: clientToken(), Route: "orders", Audience: testAudience})
				if err != nil {
					errs <- err
					return
				}
				mu.Lock()
				out = append(out, a)
				mu.Unlock()
			}
		})
	}
	stopWorkers := sync.OnceFunc(func() { close(stop); wg.Wait() })
	defer stopWorkers() // on a failure too: no goroutine outlives the test
	for i := range 6 {
		var priv any
		if i%2 == 0 {
			_, priv, _ = ed25519.GenerateKey(rand.Reader)
		} else {
			priv, _ = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		}
		writeKey(t, file, priv)
		if err := s.Reload(); err != nil {
			t.Fatal(err)
		}
		// Let some requests sign with this key before the next rotation.
		mu.Lock()
		want := len(out) + 8
		mu.Unlock()
		for deadline := time.Now().Add(10 * time.Second); ; {
			mu.Lock()
			n := len(out)
			mu.Unlock()
			if n >= want {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("no assertion signed after rotation %d", i)
			}
			runtime.Gosched()
		}
	}
	stopWorkers()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	keys := publishedKeys(t, s)
	kids := map[any]bool{}
	for _, a := range out {
		tok, _, err := verify(a, keys, clk.Now)
		if err != nil {
			t.Fatalf("an assertion signed during rotation fails: %v", err)
		}
		kids[tok.Header["kid"]] = true
	}
	if len(kids) < 2 {
		t.Errorf("%d assertions, all by %d key(s): the rotation was not exercised", len(out), len(kids))
	}
}
