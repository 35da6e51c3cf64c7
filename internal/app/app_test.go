package app

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/metagate/gateway/internal/config"
	"github.com/metagate/gateway/internal/testenv"
	"github.com/metagate/gateway/internal/testenv/auth0emu"
)

const apiAudience = "https://orders.example.com/"

// tenant is an emulated Auth0 tenant with a gateway M2M app, one API
// client with client_metadata and one user with app_metadata.
func tenant(t *testing.T) *auth0emu.Tenant {
	emu := auth0emu.New(t)
	emu.AddAPI(apiAudience, "read:orders")
	emu.AddClient(auth0emu.Client{ID: "gateway-m2m", Secret: "m2m-secret", Name: "Gateway",
		Grants: map[string][]string{emu.MgmtAudience(): {"read:clients", "read:users"}}})
	emu.AddClient(auth0emu.Client{ID: "svc-billing", Secret: "s", Name: "Billing Service",
		Metadata: map[string]string{"tier": "gold", "region": "eu-west-1"},
		Grants:   map[string][]string{apiAudience: {"read:orders"}}})
	emu.AddUser(auth0emu.User{ID: "auth0|alice", AppMetadata: map[string]any{"plan": "pro", "org": "acme"}})
	return emu
}

// recorder is the upstream API: it counts requests and keeps the last headers.
type recorder struct {
	*httptest.Server
	hits atomic.Int64
	mu   sync.Mutex
	hdr  http.Header
}

func newRecorder(t *testing.T) *recorder {
	r := &recorder{}
	r.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		r.hits.Add(1)
		r.mu.Lock()
		r.hdr = req.Header.Clone()
		r.mu.Unlock()
	}))
	t.Cleanup(r.Close)
	return r
}

// startExampleWith runs deploy/examples/auth0.yaml as shipped, with only
// its documented environment variables set; tweak may adjust the loaded
// config.
func startExampleWith(t *testing.T, emu *auth0emu.Tenant, redisURL, upstream string, tweak func(*config.Config)) *App {
	t.Helper()
	return startFile(t, exampleFile, exampleEnv(emu, redisURL, upstream), tweak)
}

// exampleEnv is the environment deploy/examples/auth0.yaml documents.
func exampleEnv(emu *auth0emu.Tenant, redisURL, upstream string) map[string]string {
	return map[string]string{
		"GATEWAY_LISTEN": "127.0.0.1:0", "GATEWAY_ADMIN_LISTEN": "127.0.0.1:0",
		"AUTH0_ISSUER": emu.Issuer(), "AUTH0_AUDIENCE": apiAudience,
		"AUTH0_CLIENT_ID": "gateway-m2m", "AUTH0_CLIENT_SECRET": "m2m-secret",
		"REDIS_URL": redisURL, "UPSTREAM_URL": upstream,
	}
}

// startFile loads file with env as the environment and runs it until the
// test ends. tweak sees the loaded config (a reload does not: it reads the
// file again).
func startFile(t *testing.T, file string, env map[string]string, tweak func(*config.Config)) *App {
	t.Helper()
	cfg, lookup := loadFile(t, file, env)
	if tweak != nil {
		tweak(cfg)
	}
	a, stop := runApp(t, cfg, lookup)
	t.Cleanup(func() {
		if err := stop(); err != nil {
			t.Errorf("shutdown: %v", err)
		}
	})
	return a
}

const exampleFile = "../../deploy/examples/auth0.yaml"

// loadFile loads file with env as the environment, without the drain
// delay (tests stop many gateways).
func loadFile(t *testing.T, file string, env map[string]string) (*config.Config, func(string) (string, bool)) {
	t.Helper()
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	cfg, err := config.Load(file, lookup)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Server.DrainDelay = 0
	return cfg, lookup
}

// runApp runs cfg; stop cancels Run (as SIGTERM does) and returns what
// Run returned.
func runApp(t *testing.T, cfg *config.Config, lookup func(string) (string, bool)) (a *App, stop func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	a, err := New(ctx, cfg, Options{Logger: zap.NewNop(), LookupEnv: lookup})
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	var once sync.Once
	var runErr error
	return a, func() error {
		once.Do(func() { cancel(); runErr = <-done })
		return runErr
	}
}

func get(t *testing.T, a *App, token string) int {
	req, _ := http.NewRequest("GET", "http://"+a.Addr("gateway")+"/orders", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Error(err)
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

func TestAuth0ExampleEndToEnd(t *testing.T) {
	emu := tenant(t)
	redis := testenv.StartRedis(t)
	up := newRecorder(t)
	// This test is about sharing through Redis, not about Redis being slow:
	// under -race on two cores a 100ms timeout can trip during the burst.
	// Its three new callers in a row also wait for the default budget's
	// reserve (1/s, burst 2) up to a second each, which may outlast the
	// 1s lookup_deadline (a 503, the lookup going on for the retry):
	// TestNewCallerInOutageAnsweredWithinDeadline is about that.
	slowOK := func(c *config.Config) {
		c.Cache.Redis.Timeout = config.Duration(2 * time.Second)
		c.Metadata.Auth0.LookupDeadline = config.Duration(5 * time.Second)
	}
	a := startExampleWith(t, emu, redis.URL, up.URL, slowOK)

	// 500 concurrent first requests from one new client: one Management
	// API call and one token call.
	clientTok := emu.ClientToken("svc-billing", apiAudience, time.Hour)
	var wg sync.WaitGroup
	var bad atomic.Int64
	for i := 0; i < 500; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if get(t, a, clientTok) != 200 {
				bad.Add(1)
			}
		}()
	}
	wg.Wait()
	if bad.Load() != 0 {
		t.Fatalf("%d of 500 requests failed", bad.Load())
	}
	if c, tk := emu.Calls("clients"), emu.Calls("token"); c != 1 || tk != 1 {
		t.Errorf("500 concurrent first requests: %d client reads and %d token calls, want 1 and 1", c, tk)
	}
	t.Logf("500 concurrent first requests: clients=%d token=%d", emu.Calls("clients"), emu.Calls("token"))
	up.mu.Lock()
	h := up.hdr
	up.mu.Unlock()
	for k, v := range map[string]string{"X-Client-Id": "svc-billing", "X-Client-Kind": "client", "X-Client-Name": "Billing Service",
		"X-Client-Metadata-Tier": "gold", "X-Client-Metadata-Region": "eu-west-1", "X-Client-Scopes": "read:orders"} {
		if h.Get(k) != v {
			t.Errorf("client_metadata: upstream got %s = %q, want %q", k, h.Get(k), v)
		}
	}

	// A user token arrives with app_metadata.
	userTok := emu.UserToken("auth0|alice", "spa", []string{apiAudience, emu.Issuer() + "userinfo"}, []string{"openid"}, []string{"read:orders"}, time.Hour)
	if s := get(t, a, userTok); s != 200 {
		t.Fatalf("user token: %d", s)
	}
	up.mu.Lock()
	h = up.hdr
	up.mu.Unlock()
	for k, v := range map[string]string{"X-User-Id": "auth0|alice", "X-Client-Kind": "user", "X-Client-Metadata-Plan": "pro", "X-Client-Metadata-Org": "acme"} {
		if h.Get(k) != v {
			t.Errorf("app_metadata: upstream got %s = %q, want %q", k, h.Get(k), v)
		}
	}

	// An unknown client: 403, remembered as a negative entry.
	ghost := emu.ClientToken("svc-ghost", apiAudience, time.Hour)
	before := up.hits.Load()
	for i := 0; i < 3; i++ {
		if s := get(t, a, ghost); s != 403 {
			t.Errorf("unknown client: %d, want 403", s)
		}
	}
	if up.hits.Load() != before {
		t.Error("an unknown client reached the upstream")
	}
	if c := emu.Calls("clients"); c != 2 {
		t.Errorf("client reads after 3 requests from an unknown client: %d, want 2 (one for it, cached negatively)", c)
	}

	// Metrics moved with the traffic (scraped and parsed like Prometheus does).
	if s := get(t, a, clientTok); s != 200 { // a repeat caller: served from L1
		t.Fatalf("repeat request: %d", s)
	}
	m := scrape(t, a)
	for name, min := range map[string]float64{
		`gateway_requests_total{code="200",method="GET",route="api"}`: 502,
		`gateway_requests_total{code="403",method="GET",route="api"}`: 3,
		`gateway_metadata_cache_lookups_total{result="l1_hit"}`:       1,
		`gateway_metadata_cache_lookups_total{result="negative"}`:     1,
		`gateway_auth0_requests_total{code="200",endpoint="clients"}`: 1,
		`gateway_auth0_requests_total{code="404",endpoint="clients"}`: 1,
		`gateway_auth0_requests_total{code="200",endpoint="token"}`:   1,
		`gateway_jwks_fetches_total{issuer="` + emu.Issuer() + `"}`:   1,
	} {
		if m[name] < min {
			t.Errorf("%s = %v, want at least %v", name, m[name], min)
		}
	}

	// A second replica sharing Redis: no Management API call at all.
	rc := goredis.NewClient(&goredis.Options{Addr: redis.Addr})
	defer rc.Close()
	deadline := time.Now().Add(10 * time.Second)
	for _, key := range []string{"gateway:v1:{client " + emu.Issuer() + " svc-billing}", "gateway:v1:{user " + emu.Issuer() + " auth0|alice}"} {
		for rc.Exists(context.Background(), key).Val() != 1 { // L2 writes happen after the answer
			if time.Now().After(deadline) {
				t.Fatalf("%s never reached Redis", key)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	mgmtBefore := emu.Calls("clients") + emu.Calls("users")
	b := startExampleWith(t, emu, redis.URL, up.URL, slowOK)
	if s := get(t, b, clientTok); s != 200 {
		t.Fatalf("second replica: %d", s)
	}
	if s := get(t, b, userTok); s != 200 {
		t.Fatalf("second replica, user: %d", s)
	}
	if got := emu.Calls("clients") + emu.Calls("users") - mgmtBefore; got != 0 {
		t.Errorf("second replica made %d Management API calls, want 0 (served from Redis)", got)
	}
}

// scrape reads /metrics from the admin listener into "name{labels}" → value.
func scrape(t *testing.T, a *App) map[string]float64 {
	t.Helper()
	resp, err := http.Get("http://" + a.Addr("admin") + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	return testenv.ParseMetrics(t, resp.Body)
}

// TestAuth0RateLimitStorm: Auth0 answers 429 to everything. Callers with a
// cached (now stale) entry keep getting 200; new callers get 503; the
// gateway stops calling while Auth0 says to wait.
func TestAuth0RateLimitStorm(t *testing.T) {
	emu := tenant(t)
	emu.AddClient(auth0emu.Client{ID: "svc-new", Secret: "s", Name: "New", Grants: map[string][]string{apiAudience: {"read:orders"}}})
	up := newRecorder(t)
	a := startExampleWith(t, emu, "", up.URL, func(c *config.Config) {
		c.Cache.TTL = config.Duration(100 * time.Millisecond)
		c.Cache.StaleWhileRevalidate = 0
	})
	known := emu.ClientToken("svc-billing", apiAudience, time.Hour)
	if s := get(t, a, known); s != 200 {
		t.Fatalf("warm-up: %d", s)
	}
	emu.SetFault("mgmt", auth0emu.Fault429)
	time.Sleep(150 * time.Millisecond) // let the entry go stale
	before := emu.Calls("clients")
	for i := 0; i < 20; i++ {
		if s := get(t, a, known); s != 200 {
			t.Fatalf("cached caller during a 429 storm: %d, want 200 (stale metadata)", s)
		}
	}
	up.mu.Lock()
	tier := up.hdr.Get("X-Client-Metadata-Tier")
	up.mu.Unlock()
	if tier != "gold" {
		t.Errorf("stale metadata not forwarded: tier %q", tier)
	}
	newTok := emu.ClientToken("svc-new", apiAudience, time.Hour)
	for i := 0; i < 5; i++ {
		if s := get(t, a, newTok); s != 503 {
			t.Fatalf("new caller during a 429 storm: %d, want 503", s)
		}
	}
	calls := emu.Calls("clients") - before
	t.Logf("Management API calls during 25 requests in a 429 storm: %d", calls)
	if calls > 2 {
		t.Errorf("%d Management API calls during the storm, want at most 2 (the gateway must back off)", calls)
	}
}
