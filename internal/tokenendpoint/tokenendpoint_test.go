package tokenendpoint_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/metagate/gateway/cache"
	"github.com/metagate/gateway/enrich"
	"github.com/metagate/gateway/enrich/auth0"
	"github.com/metagate/gateway/internal/devissuer"
	"github.com/metagate/gateway/internal/testenv/auth0emu"
	"github.com/metagate/gateway/internal/tokenendpoint"
	"github.com/metagate/gateway/proxy"
)

const (
	apiAudience   = "https://api.example.test/"
	gatewayID     = "metagate-m2m"
	gatewaySecret = "metagate-mgmt-secret-5b8e"
	clientA       = "svc-billing"
	secretA       = "billing-secret-0f3c9a71"
	clientB       = "svc-reports"
	secretB       = "reports-secret-7d21e4c0"
	// metadataA and metadataB are the allow-listed metadata of A and B,
	// as the endpoint must write them: allow-list order, absent keys left
	// out, unlisted keys never.
	metadataA = `{"tier":"gold","region":"eu-west-1"}`
	metadataB = `{"tier":"bronze","region":"us-east-1"}`
)

// allowList is token_endpoint.metadata_keys: "plan" is listed but
// neither client has it; "cost_center" is not listed.
func allowList() []string { return []string{"tier", "region", "plan"} }

// env is one issuer with what the gateway builds for it: a real
// verifier against its JWKS and a real resolver behind a real cache.
type env struct {
	tokenURL string
	checker  *proxy.Verifier
	resolver *enrich.Resolver
	log      *zap.Logger
	logs     *observer.ObservedLogs
}

// emulated is an Auth0 tenant with clients A and B (each with a grant on
// apiAudience and metadata, some of it not allow-listed) and the
// gateway's own Management API client; metadata comes from the
// Management API, as in production.
func emulated(t *testing.T) (*auth0emu.Tenant, env) {
	t.Helper()
	tn := auth0emu.New(t)
	tn.AddAPI(apiAudience, "read:invoices", "write:invoices")
	tn.AddAPI("https://other-api.test/", "read:other")
	tn.AddClient(auth0emu.Client{
		ID: gatewayID, Secret: gatewaySecret, Name: "MetaGate",
		Grants: map[string][]string{tn.MgmtAudience(): {"read:clients"}},
	})
	tn.AddClient(auth0emu.Client{
		ID: clientA, Secret: secretA, Name: "Billing",
		Metadata: map[string]string{"tier": "gold", "region": "eu-west-1", "cost_center": "cc-42"},
		Grants:   map[string][]string{apiAudience: {"read:invoices", "write:invoices"}, "https://other-api.test/": {"read:other"}},
	})
	tn.AddClient(auth0emu.Client{
		ID: clientB, Secret: secretB, Name: "Reports",
		Metadata: map[string]string{"tier": "bronze", "region": "us-east-1", "cost_center": "cc-7"},
		Grants:   map[string][]string{apiAudience: {"read:invoices"}},
	})
	e := env{tokenURL: tn.TokenURL()}
	e.log, e.logs = observedLogger()
	e.checker = newVerifier(t, tn.Issuer(), tn.JWKSURL())
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	src, err := auth0.New(auth0.Options{
		ManagementURL: tn.URL(), ClientID: gatewayID, ClientSecret: gatewaySecret,
		RatePerSecond: 1000, Burst: 1000, Timeout: 2 * time.Second, MaxRetries: 0,
		HTTPClient: &http.Client{Transport: tr}, Logger: e.log.Named("auth0"),
	})
	if err != nil {
		t.Fatalf("auth0.New: %v", err)
	}
	t.Cleanup(src.CloseIdleConnections)
	e.resolver = newResolver(t, src, tn.Issuer(), e.log)
	return tn, e
}

// development is the dev issuer, served over HTTP, with A (known to the
// local metadata) and B (a client the metadata does not know).
func development(t *testing.T) env {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(nil)
	iss := "http://" + srv.Listener.Addr().String() + "/"
	di := devissuer.New(devissuer.Options{
		Issuer: iss, Audience: apiAudience, TTL: time.Hour, Key: key,
		Clients: []devissuer.Client{
			{ID: clientA, Secret: secretA, Scopes: []string{"read:invoices"}},
			{ID: clientB, Secret: secretB, Scopes: []string{"read:invoices"}},
		},
	})
	srv.Config.Handler = di.Handler()
	srv.Start()
	t.Cleanup(srv.Close)
	e := env{tokenURL: iss + "oauth/token"}
	e.log, e.logs = observedLogger()
	e.checker = newVerifier(t, iss, iss+".well-known/jwks.json")
	src := enrich.NewLocalSource(map[string]enrich.Record{
		clientA: {Name: "Billing", Metadata: map[string]any{"tier": "gold", "region": "eu-west-1", "cost_center": "cc-42"}},
	}, nil)
	e.resolver = newResolver(t, src, iss, e.log)
	return e
}

func observedLogger() (*zap.Logger, *observer.ObservedLogs) {
	core, logs := observer.New(zap.DebugLevel)
	return zap.New(core), logs
}

// newVerifier is the gateway's verifier for one issuer accepting
// apiAudience only.
func newVerifier(t *testing.T, iss, jwksURL string) *proxy.Verifier {
	t.Helper()
	v, err := proxy.NewVerifier(context.Background(), proxy.VerifierOptions{
		Issuers: []proxy.IssuerConfig{{
			Issuer: iss, Audiences: []string{apiAudience}, JWKSURL: jwksURL, Algorithms: []string{"RS256"},
			Leeway: 5 * time.Second, JWKSRefresh: time.Hour, UnknownKIDRefresh: time.Minute,
		}},
		MaxTokenBytes: 16 << 10,
	})
	if err != nil {
		t.Fatalf("NewVerifier: %v", err)
	}
	t.Cleanup(v.Close)
	return v
}

func newResolver(t *testing.T, src enrich.Source, iss string, log *zap.Logger) *enrich.Resolver {
	t.Helper()
	c, err := cache.New[*enrich.Metadata](cache.Options{
		TTL: time.Minute, NegativeTTL: time.Minute, MaxEntries: 100, Logger: log.Named("cache"),
	}, enrich.Codec{})
	if err != nil {
		t.Fatalf("cache.New: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return enrich.NewResolver(src, c, []string{iss})
}

// fixture is the endpoint served over HTTP in front of one issuer.
type fixture struct {
	url     string
	client  *http.Client
	issuer  *recorder
	results *results
}

// serve starts the endpoint in front of e's issuer (or target, when
// set), with the options edit changes.
func (e env) serve(t *testing.T, edit func(*tokenendpoint.Options)) *fixture {
	t.Helper()
	target, err := url.Parse(e.tokenURL)
	if err != nil {
		t.Fatal(err)
	}
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	f := &fixture{issuer: &recorder{next: tr}, results: &results{}}
	o := tokenendpoint.Options{
		Target: target, MetadataKeys: allowList(), Timeout: 5 * time.Second,
		Checker: e.checker, Resolver: e.resolver, Transport: f.issuer,
		Logger: e.log.Named("token_endpoint"), OnResult: f.results.add,
	}
	if edit != nil {
		edit(&o)
	}
	srv := httptest.NewServer(tokenendpoint.New(o))
	t.Cleanup(srv.Close)
	f.url = srv.URL + "/oauth/token"
	ctr := &http.Transport{}
	t.Cleanup(ctr.CloseIdleConnections)
	f.client = &http.Client{Transport: ctr}
	return f
}

// recorder is the endpoint's transport: it keeps what the issuer
// received and the exact bytes it answered.
type recorder struct {
	next http.RoundTripper
	mu   sync.Mutex
	reqs []recorded
}

type recorded struct {
	header http.Header
	body   []byte // the request's
	answer []byte // the issuer's, as sent
}

func (r *recorder) RoundTrip(req *http.Request) (*http.Response, error) {
	var rec recorded
	rec.header = req.Header.Clone()
	if req.Body != nil {
		b, err := io.ReadAll(req.Body)
		if err != nil {
			return nil, err
		}
		rec.body = b
		req.Body = io.NopCloser(bytes.NewReader(b))
	}
	resp, err := r.next.RoundTrip(req)
	if err == nil {
		rec.answer, err = io.ReadAll(resp.Body)
		resp.Body.Close()
		resp.Body = io.NopCloser(bytes.NewReader(rec.answer))
	}
	r.mu.Lock()
	r.reqs = append(r.reqs, rec)
	r.mu.Unlock()
	return resp, err
}

func (r *recorder) calls() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.reqs)
}

func (r *recorder) last(t *testing.T) recorded {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.reqs) == 0 {
		t.Fatal("the issuer was never called")
	}
	return r.reqs[len(r.reqs)-1]
}

// results collects OnResult.
type results struct {
	mu  sync.Mutex
	got []string
}

func (r *results) add(s string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.got = append(r.got, s)
}

func (r *results) want(t *testing.T, want ...string) {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	if !slices.Equal(r.got, want) {
		t.Errorf("results = %q, want %q", r.got, want)
	}
}

// tokenRequest is one request to a token endpoint.
type tokenRequest struct {
	form        url.Values        // a form body...
	json        map[string]string // ...or a JSON one
	basic       [2]string         // client_secret_basic, when set
	header      http.Header
	method      string
	rawBody     io.Reader // instead of form or json
	contentType string
}

func (tr tokenRequest) build(t *testing.T, target string) *http.Request {
	t.Helper()
	method := tr.method
	if method == "" {
		method = http.MethodPost
	}
	var body io.Reader = strings.NewReader(tr.form.Encode())
	ct := "application/x-www-form-urlencoded"
	switch {
	case tr.rawBody != nil:
		body, ct = tr.rawBody, tr.contentType
	case tr.json != nil:
		b, err := json.Marshal(tr.json)
		if err != nil {
			t.Fatal(err)
		}
		body, ct = bytes.NewReader(b), "application/json"
	}
	req, err := http.NewRequest(method, target, body)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range tr.header {
		req.Header[k] = v
	}
	if ct != "" {
		req.Header.Set("Content-Type", ct)
	}
	if tr.basic[0] != "" {
		req.SetBasicAuth(tr.basic[0], tr.basic[1])
	}
	return req
}

// answer is what a client received.
type answer struct {
	status int
	header http.Header
	body   []byte
}

func do(t *testing.T, c *http.Client, req *http.Request) answer {
	t.Helper()
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return answer{status: resp.StatusCode, header: resp.Header, body: b}
}

// both sends tr to the endpoint and, the same request, straight to the
// issuer.
func (f *fixture) both(t *testing.T, issuerURL string, tr tokenRequest) (via, direct answer) {
	t.Helper()
	via = do(t, f.client, tr.build(t, f.url))
	direct = do(t, f.client, tr.build(t, issuerURL))
	return via, direct
}

func ccForm(id, secret string) url.Values {
	return url.Values{"grant_type": {"client_credentials"}, "client_id": {id}, "client_secret": {secret}, "audience": {apiAudience}}
}

// wantNoStore checks the cache headers every answer must carry.
func wantNoStore(t *testing.T, a answer) {
	t.Helper()
	if got := a.header.Get("Cache-Control"); got != "no-store" {
		t.Errorf("Cache-Control = %q, want no-store", got)
	}
	if got := a.header.Get("Pragma"); got != "no-cache" {
		t.Errorf("Pragma = %q, want no-cache", got)
	}
}

// wantAugmented checks an augmented answer against the bytes the issuer
// sent for it: the same bytes with `,"metadata":<md>` before the final
// brace, a correct Content-Length, and a standard part that reads like
// a direct call's answer.
func wantAugmented(t *testing.T, got answer, issuerSent []byte, direct answer, md string) {
	t.Helper()
	if got.status != http.StatusOK {
		t.Fatalf("status %d, want 200; body %s", got.status, got.body)
	}
	end := bytes.LastIndexByte(issuerSent, '}')
	want := string(issuerSent[:end]) + `,"metadata":` + md + string(issuerSent[end:])
	if string(got.body) != want {
		t.Errorf("body\n got %s\nwant %s", got.body, want)
	}
	if !bytes.HasPrefix(got.body, issuerSent[:end]) {
		t.Errorf("the issuer's fields are not byte-identical:\n got %s\nsent %s", got.body, issuerSent)
	}
	if got.header.Get("Content-Length") != strconv.Itoa(len(got.body)) {
		t.Errorf("Content-Length %q, body is %d bytes", got.header.Get("Content-Length"), len(got.body))
	}
	wantNoStore(t, got)
	var g, d map[string]json.RawMessage
	if err := json.Unmarshal(got.body, &g); err != nil {
		t.Fatalf("augmented answer is not JSON: %v", err)
	}
	if err := json.Unmarshal(direct.body, &d); err != nil {
		t.Fatalf("direct answer is not JSON: %v", err)
	}
	if string(g["metadata"]) != md {
		t.Errorf("metadata %s, want %s", g["metadata"], md)
	}
	if _, ok := d["metadata"]; ok {
		t.Errorf("the issuer itself sent metadata: %s", direct.body)
	}
	for _, k := range []string{"token_type", "expires_in", "scope"} {
		if string(g[k]) != string(d[k]) {
			t.Errorf("%s = %s, a direct call says %s", k, g[k], d[k])
		}
	}
	if len(g) != len(d)+1 {
		t.Errorf("fields %d, want the direct call's %d plus metadata", len(g), len(d))
	}
}

func TestAugmentsEmulatorAnswer(t *testing.T) {
	tn, e := emulated(t)
	for _, tc := range []struct {
		name string
		req  tokenRequest
	}{
		{"form body, client_secret_post", tokenRequest{form: ccForm(clientA, secretA)}},
		{"form body, client_secret_basic", tokenRequest{
			form:  url.Values{"grant_type": {"client_credentials"}, "audience": {apiAudience}},
			basic: [2]string{clientA, secretA},
		}},
		{"JSON body", tokenRequest{json: map[string]string{
			"grant_type": "client_credentials", "client_id": clientA, "client_secret": secretA, "audience": apiAudience,
		}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := e.serve(t, nil)
			via, direct := f.both(t, tn.TokenURL(), tc.req)
			sent := f.issuer.last(t)
			wantAugmented(t, via, sent.answer, direct, metadataA)
			f.results.want(t, tokenendpoint.ResultAugmented)
			if !bytes.Equal(sent.body, mustBody(t, tc.req)) {
				t.Errorf("the issuer got body %q, the client sent %q", sent.body, mustBody(t, tc.req))
			}
		})
	}
}

func TestAugmentsDevIssuerAnswer(t *testing.T) {
	e := development(t)
	for _, tc := range []struct {
		name string
		req  tokenRequest
	}{
		{"form body", tokenRequest{form: ccForm(clientA, secretA)}},
		{"JSON body, client_secret_basic", tokenRequest{
			json:  map[string]string{"grant_type": "client_credentials", "audience": apiAudience},
			basic: [2]string{clientA, secretA},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := e.serve(t, nil)
			via, direct := f.both(t, e.tokenURL, tc.req)
			wantAugmented(t, via, f.issuer.last(t).answer, direct, metadataA)
			f.results.want(t, tokenendpoint.ResultAugmented)
		})
	}
}

func TestCustomFieldName(t *testing.T) {
	tn, e := emulated(t)
	f := e.serve(t, func(o *tokenendpoint.Options) { o.Field = "client_info"; o.MetadataKeys = []string{"region"} })
	via, _ := f.both(t, tn.TokenURL(), tokenRequest{form: ccForm(clientA, secretA)})
	sent := f.issuer.last(t).answer
	end := bytes.LastIndexByte(sent, '}')
	want := string(sent[:end]) + `,"client_info":{"region":"eu-west-1"}` + string(sent[end:])
	if string(via.body) != want {
		t.Errorf("body\n got %s\nwant %s", via.body, want)
	}
}

// mustBody is the body tr sends.
func mustBody(t *testing.T, tr tokenRequest) []byte {
	t.Helper()
	b, err := io.ReadAll(tr.build(t, "http://unused.test/").Body)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// wantUntouched checks that the client got exactly what the issuer
// sent, and what a direct call gets: status, content type and body.
func wantUntouched(t *testing.T, via answer, issuerSent []byte, direct answer) {
	t.Helper()
	if via.status != direct.status {
		t.Errorf("status %d, a direct call gets %d", via.status, direct.status)
	}
	if !bytes.Equal(via.body, issuerSent) {
		t.Errorf("body\n got %s\nsent %s", via.body, issuerSent)
	}
	if via.header.Get("Content-Type") != direct.header.Get("Content-Type") {
		t.Errorf("Content-Type %q, a direct call gets %q", via.header.Get("Content-Type"), direct.header.Get("Content-Type"))
	}
	if via.header.Get("Content-Length") != strconv.Itoa(len(via.body)) {
		t.Errorf("Content-Length %q, body is %d bytes", via.header.Get("Content-Length"), len(via.body))
	}
	wantNoStore(t, via)
}

func TestIssuerErrorsPassThrough(t *testing.T) {
	tn, emu := emulated(t)
	dev := development(t)
	for _, tc := range []struct {
		name   string
		e      env
		issuer string
		req    tokenRequest
		status int
	}{
		{"emulator: wrong secret", emu, tn.TokenURL(), tokenRequest{form: ccForm(clientA, "wrong")}, http.StatusUnauthorized},
		{"emulator: wrong basic secret", emu, tn.TokenURL(), tokenRequest{
			form: url.Values{"grant_type": {"client_credentials"}, "audience": {apiAudience}}, basic: [2]string{clientA, "wrong"},
		}, http.StatusUnauthorized},
		{"emulator: unknown audience", emu, tn.TokenURL(), tokenRequest{form: url.Values{
			"grant_type": {"client_credentials"}, "client_id": {clientA}, "client_secret": {secretA}, "audience": {"https://unknown.test/"},
		}}, http.StatusForbidden},
		{"emulator: other grant", emu, tn.TokenURL(), tokenRequest{form: url.Values{
			"grant_type": {"password"}, "username": {"alice"}, "password": {"pw"},
		}}, http.StatusBadRequest},
		{"dev issuer: wrong secret", dev, dev.tokenURL, tokenRequest{form: ccForm(clientA, "wrong")}, http.StatusUnauthorized},
		{"dev issuer: unknown audience", dev, dev.tokenURL, tokenRequest{json: map[string]string{
			"grant_type": "client_credentials", "client_id": clientA, "client_secret": secretA, "audience": "https://unknown.test/",
		}}, http.StatusForbidden},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := tc.e.serve(t, nil)
			via, direct := f.both(t, tc.issuer, tc.req)
			if direct.status != tc.status {
				t.Fatalf("a direct call gets %d %s, want %d", direct.status, direct.body, tc.status)
			}
			wantUntouched(t, via, f.issuer.last(t).answer, direct)
			if !bytes.Equal(via.body, direct.body) {
				t.Errorf("body %s, a direct call gets %s", via.body, direct.body)
			}
			f.results.want(t, tokenendpoint.ResultPassthrough)
		})
	}
}

func TestTokenIssuedWhenMetadataFails(t *testing.T) {
	t.Run("Management API down", func(t *testing.T) {
		tn, e := emulated(t)
		tn.SetFault(auth0emu.EndpointMgmt, auth0emu.Fault500)
		f := e.serve(t, nil)
		via, direct := f.both(t, tn.TokenURL(), tokenRequest{form: ccForm(clientA, secretA)})
		if via.status != http.StatusOK {
			t.Fatalf("status %d, want 200: %s", via.status, via.body)
		}
		wantUntouched(t, via, f.issuer.last(t).answer, direct)
		if tn.Calls(auth0emu.EndpointClients) == 0 {
			t.Error("the Management API was never asked")
		}
		f.results.want(t, tokenendpoint.ResultMetadataFailed)
	})
	t.Run("Management API hangs", func(t *testing.T) {
		tn, e := emulated(t)
		tn.SetFault(auth0emu.EndpointMgmt, auth0emu.FaultHang)
		f := e.serve(t, func(o *tokenendpoint.Options) { o.Timeout = time.Second })
		via := do(t, f.client, tokenRequest{form: ccForm(clientA, secretA)}.build(t, f.url))
		if via.status != http.StatusOK || !bytes.Equal(via.body, f.issuer.last(t).answer) {
			t.Fatalf("got %d %s, want the issuer's answer untouched", via.status, via.body)
		}
		f.results.want(t, tokenendpoint.ResultMetadataFailed)
	})
	t.Run("client unknown to the metadata", func(t *testing.T) {
		e := development(t) // its local metadata does not know B
		f := e.serve(t, nil)
		via, direct := f.both(t, e.tokenURL, tokenRequest{form: ccForm(clientB, secretB)})
		if via.status != http.StatusOK {
			t.Fatalf("status %d, want 200: %s", via.status, via.body)
		}
		wantUntouched(t, via, f.issuer.last(t).answer, direct)
		f.results.want(t, tokenendpoint.ResultMetadataFailed)
	})
}

func TestForgedClientIDCannotChooseMetadata(t *testing.T) {
	t.Run("emulator: basic auth as A, client_id B in the body", func(t *testing.T) {
		tn, e := emulated(t)
		f := e.serve(t, nil)
		req := tokenRequest{
			form:  url.Values{"grant_type": {"client_credentials"}, "client_id": {clientB}, "audience": {apiAudience}},
			basic: [2]string{clientA, secretA},
		}
		via, direct := f.both(t, tn.TokenURL(), req)
		wantAugmented(t, via, f.issuer.last(t).answer, direct, metadataA)
	})
	t.Run("stub issuer: the request names B, the token is A's", func(t *testing.T) {
		tn, e := emulated(t)
		tokA := tn.ClientToken(clientA, apiAudience, time.Hour)
		stub := stubIssuer(t, http.StatusOK, "application/json", `{"access_token":"`+tokA+`","token_type":"Bearer","expires_in":3600}`)
		e.tokenURL = stub.URL + "/oauth/token"
		f := e.serve(t, nil)
		via := do(t, f.client, tokenRequest{form: ccForm(clientB, secretB)}.build(t, f.url))
		want := `{"access_token":"` + tokA + `","token_type":"Bearer","expires_in":3600,"metadata":` + metadataA + `}`
		if string(via.body) != want {
			t.Errorf("body\n got %s\nwant %s", via.body, want)
		}
		f.results.want(t, tokenendpoint.ResultAugmented)
	})
}

// stubIssuer answers every request with status, content type and body.
func stubIssuer(t *testing.T, status int, contentType, body string) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		if contentType != "" {
			w.Header().Set("Content-Type", contentType)
		}
		w.WriteHeader(status)
		_, _ = io.WriteString(w, body)
	}))
	t.Cleanup(srv.Close)
	return srv
}

func TestAnswersLeftUntouched(t *testing.T) {
	tn, e := emulated(t)
	tokA := tn.ClientToken(clientA, apiAudience, time.Hour)
	other := tn.ClientToken(clientA, "https://other-api.test/", time.Hour)
	user := tn.UserToken("auth0|alice", clientA, []string{apiAudience}, []string{"read:invoices"}, nil, time.Hour)
	foreign := auth0emu.New(t).ClientToken(clientA, apiAudience, time.Hour) // an issuer the gateway does not trust
	for _, tc := range []struct {
		name, contentType, body string
		result                  string
	}{
		{"token for an audience the gateway does not accept", "application/json", `{"access_token":"` + other + `","token_type":"Bearer"}`, tokenendpoint.ResultNotVerified},
		{"token of an untrusted issuer", "application/json", `{"access_token":"` + foreign + `","token_type":"Bearer"}`, tokenendpoint.ResultNotVerified},
		{"a user's token", "application/json", `{"access_token":"` + user + `","token_type":"Bearer"}`, tokenendpoint.ResultNotVerified},
		{"no access token", "application/json", `{"token_type":"Bearer"}`, tokenendpoint.ResultNotVerified},
		{"the field is already there", "application/json", `{"access_token":"` + tokA + `","metadata":{"tier":"issuer's"}}`, tokenendpoint.ResultPassthrough},
		{"not JSON", "text/plain", `access_token=` + tokA, tokenendpoint.ResultPassthrough},
		{"JSON, but not an object", "application/json", `["` + tokA + `"]`, tokenendpoint.ResultPassthrough},
		{"invalid JSON", "application/json", `{"access_token":"` + tokA + `",}`, tokenendpoint.ResultPassthrough},
	} {
		t.Run(tc.name, func(t *testing.T) {
			stub := stubIssuer(t, http.StatusOK, tc.contentType, tc.body)
			e.tokenURL = stub.URL
			f := e.serve(t, nil)
			via, direct := f.both(t, stub.URL, tokenRequest{form: ccForm(clientA, secretA)})
			wantUntouched(t, via, []byte(tc.body), direct)
			f.results.want(t, tc.result)
		})
	}
	t.Run("another grant answered with a client token", func(t *testing.T) {
		stub := stubIssuer(t, http.StatusOK, "application/json", `{"access_token":"`+tokA+`"}`)
		e.tokenURL = stub.URL
		f := e.serve(t, nil)
		form := ccForm(clientA, secretA)
		form.Set("grant_type", "urn:ietf:params:oauth:grant-type:token-exchange")
		via := do(t, f.client, tokenRequest{form: form}.build(t, f.url))
		if string(via.body) != `{"access_token":"`+tokA+`"}` {
			t.Errorf("body %s, want the issuer's", via.body)
		}
		f.results.want(t, tokenendpoint.ResultPassthrough)
	})
}

func TestRequestForwardedUnchanged(t *testing.T) {
	tn, e := emulated(t)
	f := e.serve(t, nil)
	req := tokenRequest{
		form:  url.Values{"grant_type": {"client_credentials"}, "audience": {apiAudience}},
		basic: [2]string{clientA, secretA},
		header: http.Header{
			"Connection": {"X-Hop"}, "X-Hop": {"1"}, "Keep-Alive": {"timeout=5"},
			"X-Request-Id": {"req-1"}, "User-Agent": {"billing/1.0"},
		},
	}
	via := do(t, f.client, req.build(t, f.url))
	if via.status != http.StatusOK {
		t.Fatalf("status %d: %s", via.status, via.body)
	}
	sent := f.issuer.last(t)
	want := req.build(t, tn.TokenURL())
	for _, h := range []string{"Authorization", "Content-Type", "X-Request-Id", "User-Agent"} {
		if got := sent.header.Get(h); got != want.Header.Get(h) {
			t.Errorf("%s = %q, the client sent %q", h, got, want.Header.Get(h))
		}
	}
	for _, h := range []string{"Connection", "X-Hop", "Keep-Alive"} {
		if v, ok := sent.header[h]; ok {
			t.Errorf("hop-by-hop %s = %q was forwarded", h, v)
		}
	}
	if !bytes.Equal(sent.body, mustBody(t, req)) {
		t.Errorf("body %q, the client sent %q", sent.body, mustBody(t, req))
	}
}

func TestLogsHoldNoSecrets(t *testing.T) {
	tn, e := emulated(t)
	f := e.serve(t, nil)
	var tokens []string
	send := func(tr tokenRequest) {
		a := do(t, f.client, tr.build(t, f.url))
		var m struct {
			AccessToken string `json:"access_token"`
		}
		if json.Unmarshal(a.body, &m) == nil && m.AccessToken != "" {
			tokens = append(tokens, m.AccessToken)
		}
	}
	send(tokenRequest{form: ccForm(clientA, secretA)})                                                  // augmented
	send(tokenRequest{json: map[string]string{"grant_type": "client_credentials", "client_id": clientB, // augmented, JSON
		"client_secret": secretB, "audience": apiAudience}})
	send(tokenRequest{form: ccForm(clientA, secretA+"-wrong")}) // refused
	other := ccForm(clientA, secretA)
	other.Set("audience", "https://other-api.test/")
	send(tokenRequest{form: other}) // not verified
	tn.SetFault(auth0emu.EndpointMgmt, auth0emu.Fault500)
	if err := e.resolver.Invalidate(context.Background(), enrich.NewCaller(tn.Issuer(), enrich.KindClient, clientA)); err != nil {
		t.Fatal(err)
	}
	send(tokenRequest{form: ccForm(clientA, secretA)}) // metadata failed
	f.results.want(t, tokenendpoint.ResultAugmented, tokenendpoint.ResultAugmented, tokenendpoint.ResultPassthrough,
		tokenendpoint.ResultNotVerified, tokenendpoint.ResultMetadataFailed)
	if len(tokens) != 4 {
		t.Fatalf("got %d tokens, want 4", len(tokens))
	}
	if e.logs.FilterLevelExact(zap.WarnLevel).FilterMessageSnippet("without metadata").Len() == 0 {
		t.Error("the metadata failure was not logged: this test would not see a leak")
	}
	secrets := append([]string{secretA, secretB, url.QueryEscape(secretA + "-wrong")}, tokens...)
	for _, entry := range e.logs.All() {
		line := entry.Message + " " + fmt.Sprint(fieldsOf(entry))
		for _, s := range secrets {
			// A token's signature is its secret part; its payload alone
			// is not, but nothing of it should be logged either.
			parts := strings.Split(s, ".")
			for _, p := range parts {
				if len(p) >= 8 && strings.Contains(line, p) {
					t.Errorf("log %q holds a secret or token part %q", line, p)
				}
			}
		}
	}
}

func fieldsOf(e observer.LoggedEntry) map[string]any {
	enc := zapcore.NewMapObjectEncoder()
	for _, f := range e.Context {
		f.AddTo(enc)
	}
	return enc.Fields
}

func TestBodyBound(t *testing.T) {
	tn, e := emulated(t)
	f := e.serve(t, func(o *tokenendpoint.Options) { o.MaxBodyBytes = 1024 })
	big := ccForm(clientA, secretA)
	big.Set("padding", strings.Repeat("x", 1024))
	for _, tc := range []struct {
		name string
		req  tokenRequest
	}{
		{"Content-Length over the bound", tokenRequest{form: big}},
		{"chunked body over the bound", tokenRequest{
			rawBody: io.MultiReader(strings.NewReader(big.Encode())), contentType: "application/x-www-form-urlencoded",
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := do(t, f.client, tc.req.build(t, f.url))
			if a.status != http.StatusRequestEntityTooLarge {
				t.Errorf("status %d, want 413", a.status)
			}
			var body struct {
				Error string `json:"error"`
			}
			if err := json.Unmarshal(a.body, &body); err != nil || body.Error != "request_too_large" {
				t.Errorf("body %s, want a request_too_large JSON error", a.body)
			}
			wantNoStore(t, a)
		})
	}
	if n := f.issuer.calls() + tn.Calls(auth0emu.EndpointToken); n != 0 {
		t.Errorf("the issuer was called %d times", n)
	}
	f.results.want(t)
	// Just under the bound is forwarded.
	small := ccForm(clientA, secretA)
	small.Set("padding", strings.Repeat("x", 1024-len(small.Encode())-len("&padding=")))
	if a := do(t, f.client, tokenRequest{form: small}.build(t, f.url)); a.status != http.StatusOK {
		t.Errorf("a body of exactly the bound: status %d %s", a.status, a.body)
	}
}

func TestOnlyPOST(t *testing.T) {
	_, e := emulated(t)
	f := e.serve(t, nil)
	for _, m := range []string{http.MethodGet, http.MethodHead, http.MethodPut, http.MethodOptions} {
		a := do(t, f.client, tokenRequest{method: m, form: ccForm(clientA, secretA)}.build(t, f.url))
		if a.status != http.StatusMethodNotAllowed || a.header.Get("Allow") != http.MethodPost {
			t.Errorf("%s: status %d, Allow %q; want 405 and POST", m, a.status, a.header.Get("Allow"))
		}
	}
	if f.issuer.calls() != 0 {
		t.Errorf("the issuer was called %d times", f.issuer.calls())
	}
}

func TestUpstreamErrors(t *testing.T) {
	_, e := emulated(t)
	gone := httptest.NewServer(http.NotFoundHandler())
	goneURL := gone.URL
	gone.Close()
	huge := stubIssuer(t, http.StatusOK, "application/json", `{"access_token":"`+strings.Repeat("a", tokenendpoint.MaxAnswerBytes)+`"}`)
	for _, tc := range []struct{ name, target string }{
		{"issuer unreachable", goneURL + "/oauth/token"},
		{"answer over 1 MiB", huge.URL},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e.tokenURL = tc.target
			f := e.serve(t, nil)
			a := do(t, f.client, tokenRequest{form: ccForm(clientA, secretA)}.build(t, f.url))
			if a.status != http.StatusBadGateway {
				t.Errorf("status %d, want 502", a.status)
			}
			var body struct {
				Error       string `json:"error"`
				Description string `json:"error_description"`
			}
			if err := json.Unmarshal(a.body, &body); err != nil || body.Error != "bad_gateway" || body.Description == "" {
				t.Errorf("body %s, want a bad_gateway JSON error", a.body)
			}
			wantNoStore(t, a)
			f.results.want(t, tokenendpoint.ResultUpstreamError)
		})
	}
}
