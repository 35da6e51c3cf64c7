package proxy

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net/netip"
	"os"
	"path/filepath"
	"sort"

	"go.uber.org/zap"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/metagate/gateway/enrich"
	"github.com/metagate/gateway/internal/testenv"
)

// upstream is a real HTTP server that records what reached it.
type upstream struct {
	*httptest.Server
	hits atomic.Int64
	mu   sync.Mutex
	last *http.Request
}

func newUpstream(t *testing.T) *upstream {
	u := &upstream{}
	u.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.hits.Add(1)
		u.mu.Lock()
		u.last = r.Clone(context.Background())
		u.mu.Unlock()
		w.Header().Set("Content-Type", "text/plain")
		_, _ = w.Write([]byte("upstream ok"))
	}))
	t.Cleanup(u.Close)
	return u
}

func (u *upstream) lastHeader() http.Header {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.last == nil {
		return nil
	}
	return u.last.Header
}

// localResolver is a real, smaller resolver: the local source, prepared,
// without a cache.
type localResolver struct {
	src    *enrich.LocalSource
	issuer string // the one issuer served; "" serves any
}

func (l localResolver) Resolve(ctx context.Context, c enrich.Caller) (*enrich.Metadata, error) {
	if l.issuer != "" && c.Issuer != l.issuer {
		return nil, fmt.Errorf("%w: %w", enrich.ErrNoSource, enrich.ErrUnknownCaller)
	}
	r, err := l.src.Lookup(ctx, c)
	if err != nil {
		return nil, err
	}
	return enrich.Prepare(r)
}

func testResolver() localResolver {
	return localResolver{src: enrich.NewLocalSource(
		map[string]enrich.Record{
			"svc-billing": {Name: "Billing Service", Metadata: map[string]any{"tier": "gold", "region": "eu-west-1", "tenant_id": "acme"}},
		},
		map[string]enrich.Record{
			"auth0|alice": {Metadata: map[string]any{"plan": "pro", "roles": []any{"admin"}, "beta": true},
				UserMetadata: map[string]any{"theme": "dark"}},
		},
	)}
}

func defaultHeaders() HeaderConfig {
	return HeaderConfig{
		Namespace: []string{"X-Client-", "X-User-"},
		ClientID:  "X-Client-Id", Issuer: "X-Client-Issuer", ClientName: "X-Client-Name", Kind: "X-Client-Kind", Scopes: "X-Client-Scopes",
		UserID: "X-User-Id", MetadataPrefix: "X-Client-Metadata-", MetadataJSON: "X-Client-Metadata",
		UserMetadataJSON: "X-User-Metadata",
		MaxValueBytes:    1024, MaxJSONBytes: 4096,
	}
}

type fixture struct {
	issuer   *testenv.Issuer
	up       *upstream
	gw       *httptest.Server
	verifier *Verifier
}

type fixtureOpts struct {
	algorithms     []string
	unknownKID     time.Duration
	forwardUnknown bool
	routes         func(up *url.URL) []RouteConfig
	resolver       MetadataResolver
	extraKeys      []string          // algorithms of keys published before the verifier starts
	trusted        []string          // trusted proxy CIDRs
	claims         map[string]string // headers.claims
	// endpoints are the gateway-owned handlers, built once the verifier is.
	endpoints func(f *fixture) map[string]http.Handler
}

func newFixture(t *testing.T, o fixtureOpts) *fixture {
	t.Helper()
	f := &fixture{issuer: testenv.NewIssuer(t), up: newUpstream(t)}
	for _, alg := range o.extraKeys {
		f.issuer.AddKey(t, alg)
	}
	if o.algorithms == nil {
		o.algorithms = []string{"RS256"}
	}
	if o.unknownKID == 0 {
		o.unknownKID = time.Minute
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	v, err := NewVerifier(ctx, VerifierOptions{
		Issuers: []IssuerConfig{{
			Issuer: f.issuer.URL, Audiences: []string{f.issuer.Audience, "https://other-api.test/"}, JWKSURL: f.issuer.JWKSURL,
			Algorithms: o.algorithms, Leeway: 5 * time.Second, JWKSRefresh: time.Hour, UnknownKIDRefresh: o.unknownKID,
		}},
		MaxTokenBytes: 16 << 10,
		Claims:        sortedClaimNames(o.claims),
	})
	if err != nil {
		t.Fatalf("NewVerifier: %v", err)
	}
	t.Cleanup(v.Close)
	f.verifier = v
	upURL, _ := url.Parse(f.up.URL)
	routes := []RouteConfig{{Name: "api", PathPrefix: "/", Upstreams: []*url.URL{upURL}}}
	if o.routes != nil {
		routes = o.routes(upURL)
	}
	var res MetadataResolver = testResolver()
	if o.resolver != nil {
		res = o.resolver
	}
	var trusted []netip.Prefix
	for _, p := range o.trusted {
		trusted = append(trusted, netip.MustParsePrefix(p))
	}
	hc := defaultHeaders()
	hc.Claims = o.claims
	var eps map[string]http.Handler
	if o.endpoints != nil {
		eps = o.endpoints(f)
	}
	gw := New(Options{
		TrustedProxies: trusted,
		Routes:         routes, Verifier: v, Resolver: res, Headers: hc,
		Realm: "gateway", ForwardUnknown: o.forwardUnknown, Endpoints: eps,
	})
	f.gw = httptest.NewServer(gw)
	t.Cleanup(f.gw.Close)
	return f
}

// do sends a request through the gateway with the given token ("" for
// none) and extra headers.
func (f *fixture) do(t *testing.T, method, path, token string, hdr http.Header) *http.Response {
	t.Helper()
	req, err := http.NewRequest(method, f.gw.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, vs := range hdr {
		req.Header[k] = vs
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := f.gw.Client().Do(req)
	if err != nil {
		t.Fatalf("request: %v", err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

func nopLogger() *zap.Logger { return zap.NewNop() }

func sortedClaimNames(m map[string]string) []string {
	names := make([]string, 0, len(m))
	for k := range m {
		names = append(names, k)
	}
	sort.Strings(names)
	return names
}

// writeCert writes a fresh self-signed certificate for cn into dir.
func writeCert(t *testing.T, dir, name, cn string) (certFile, keyFile string) {
	certFile, keyFile = filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key")
	writeCertAt(t, certFile, keyFile, cn)
	return certFile, keyFile
}

func writeCertAt(t *testing.T, certFile, keyFile, cn string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		DNSNames: []string{"localhost"}, IPAddresses: nil,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalPKCS8PrivateKey(key)
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}
