package app

import (
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/metagate/gateway/internal/testenv"
	"github.com/metagate/gateway/internal/testenv/auth0emu"
)

// rateConfig is a gateway whose one route gives each caller the policy
// of its metadata tier; REDIS_URL may be empty (local limits).
const rateConfig = `
server:
  listen: 127.0.0.1:0
  admin_listen: 127.0.0.1:0
  drain_delay: 0s
log:
  access: true
issuers:
  - issuer: ${AUTH0_ISSUER}
    audiences: ["${AUTH0_AUDIENCE}"]
metadata:
  source: auth0
  auth0:
    client_id: gateway-m2m
    client_secret: m2m-secret
    rate_per_second: 100
    burst: 100
cache:
  redis:
    url: ${REDIS_URL:-}
    timeout: 2s
rate_limits:
  fleet:
    key: caller
    limit: ${FLEET_LIMIT:-20}
    per: 1s
  gold: {limit: 5, per: 1h}
  three: {limit: 3, per: 1h}
  truth: {limit: 2, per: 1h}
  basic: {limit: 1, per: 1h}
routes:
  - name: fleet
    match: {path_prefix: /fleet}
    upstreams: ["${UPSTREAM_URL}"]
    rate_limit: fleet
  - name: tiered
    match: {path_prefix: /}
    upstreams: ["${UPSTREAM_URL}"]
    rate_limit:
      tiers:
        field: metadata.tier
        gold: gold
        "3": three
        "true": truth
        default: basic
`

func startRateGateways(t *testing.T, n int, emu *auth0emu.Tenant, redisURL string, extra map[string]string) []*App {
	t.Helper()
	up := newRecorder(t)
	file := filepath.Join(t.TempDir(), "gateway.yaml")
	if err := os.WriteFile(file, []byte(rateConfig), 0o600); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"AUTH0_ISSUER": emu.Issuer(), "AUTH0_AUDIENCE": apiAudience, "UPSTREAM_URL": up.URL, "REDIS_URL": redisURL}
	for k, v := range extra {
		env[k] = v
	}
	var apps []*App
	for range n {
		apps = append(apps, startFile(t, file, env, nil))
	}
	return apps
}

type rateAnswer struct {
	status              int
	retryAfter          string
	policy, limitHeader string
}

func hit(t *testing.T, a *App, path, token string) rateAnswer {
	req, _ := http.NewRequest("GET", "http://"+a.Addr("gateway")+path, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Error(err)
		return rateAnswer{}
	}
	resp.Body.Close()
	return rateAnswer{resp.StatusCode, resp.Header.Get("Retry-After"), resp.Header.Get("RateLimit-Policy"), resp.Header.Get("RateLimit")}
}

// TestRateLimitTiers: a caller's metadata tier picks its policy, whatever
// JSON type the value has; a caller without the field, or with a value
// that is not a scalar, gets the default.
func TestRateLimitTiers(t *testing.T) {
	emu := tenant(t)
	for id, md := range map[string]map[string]any{
		"auth0|gold": {"tier": "gold"}, "auth0|num": {"tier": 3}, "auth0|bool": {"tier": true},
		"auth0|obj": {"tier": map[string]any{"name": "gold"}}, "auth0|list": {"tier": []any{"gold"}},
		"auth0|null": {"tier": nil}, "auth0|none": {"plan": "gold"}, "auth0|float": {"tier": 3.5},
	} {
		emu.AddUser(auth0emu.User{ID: id, AppMetadata: md})
	}
	a := startRateGateways(t, 1, emu, "", nil)[0]
	for id, want := range map[string]int{
		"auth0|gold": 5, "auth0|num": 3, "auth0|bool": 2,
		"auth0|obj": 1, "auth0|list": 1, "auth0|null": 1, "auth0|none": 1, "auth0|float": 1,
	} {
		tok := emu.UserToken(id, "spa", []string{apiAudience}, []string{"read:orders"}, nil, time.Hour)
		allowed := 0
		var last rateAnswer
		for range 7 {
			last = hit(t, a, "/orders", tok)
			if last.status == 200 {
				allowed++
			}
		}
		if allowed != want {
			t.Errorf("%s: %d of 7 allowed, want %d", id, allowed, want)
		}
		if last.status != 429 || last.retryAfter == "" || !strings.HasPrefix(last.policy, `"`) || !strings.Contains(last.limitHeader, ";r=0;") {
			t.Errorf("%s: refusal %+v, want 429 with Retry-After, RateLimit-Policy and RateLimit r=0", id, last)
		}
	}
	// A client's tier is client_metadata (strings only in Auth0).
	tok := emu.ClientToken("svc-billing", apiAudience, time.Hour)
	if got := hit(t, a, "/orders", tok); got.status != 200 || got.policy != `"gold";q=5;w=3600` || got.limitHeader != `"gold";r=4;t=720` {
		t.Errorf("gold client: %+v", got)
	}
	m := scrape(t, a)
	if m[`gateway_rate_limit_decisions_total{policy="basic",result="limited"}`] != 5*6 ||
		m[`gateway_rate_limit_decisions_total{policy="gold",result="allowed"}`] != 6 {
		t.Errorf("decisions: %v", filterPrefix(m, "gateway_rate_limit"))
	}
}

// loadFleet sends requests of one caller to every replica at once, from
// `workers` clients per replica, for d, and counts the answers by status.
func loadFleet(t *testing.T, apps []*App, path, tok string, workers int, d time.Duration, during func()) map[int]int {
	t.Helper()
	var mu sync.Mutex
	codes := map[int]int{}
	var wg sync.WaitGroup
	stop := time.Now().Add(d)
	var sent atomic.Int64
	for _, a := range apps {
		for range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for time.Now().Before(stop) {
					got := hit(t, a, path, tok)
					sent.Add(1)
					mu.Lock()
					codes[got.status]++
					mu.Unlock()
					time.Sleep(2 * time.Millisecond)
				}
			}()
		}
	}
	if during != nil {
		during()
	}
	wg.Wait()
	return codes
}

// TestFleetWideRateLimit: three replicas sharing Redis enforce one limit
// for a caller between them: over a sustained load the allowed requests
// are the burst plus the rate over the time, within 10%, not three times
// that; with a limit small enough that each request asks Redis, and with
// one large enough that the replicas take tokens in leases.
func TestFleetWideRateLimit(t *testing.T) {
	for _, limit := range []int{20, 400} {
		t.Run(strconv.Itoa(limit)+"/s", func(t *testing.T) {
			emu := tenant(t)
			redis := testenv.StartRedis(t)
			apps := startRateGateways(t, 3, emu, redis.URL, map[string]string{"FLEET_LIMIT": strconv.Itoa(limit)})
			tok := emu.ClientToken("svc-billing", apiAudience, time.Hour)
			for _, a := range apps { // metadata cached everywhere before the clock starts
				if got := hit(t, a, "/orders", tok); got.status != 200 {
					t.Fatalf("warm-up: %d", got.status)
				}
			}
			start := time.Now()
			codes := loadFleet(t, apps, "/fleet", tok, 2, 3*time.Second, nil)
			elapsed := time.Since(start).Seconds()
			want := float64(limit) + float64(limit)*elapsed
			got := float64(codes[200])
			t.Logf("3 replicas, %.2fs: %d allowed (burst %d + %d/s = %.0f expected), %d refused, other %v",
				elapsed, codes[200], limit, limit, want, codes[429], codes)
			if got < want*0.9 || got > want*1.1 {
				t.Errorf("allowed %v, want %.0f ±10%%: the replicas do not share one limit", got, want)
			}
			if len(codes) != 2 || codes[429] == 0 {
				t.Errorf("answers %v, want only 200 and 429", codes)
			}
		})
	}
}

// TestRateLimitSurvivesRedisKilled: Redis dies under load; every request
// is still answered 200 or 429 (the limit becomes per replica), and the
// decisions taken alone are counted.
func TestRateLimitSurvivesRedisKilled(t *testing.T) {
	emu := tenant(t)
	redis := testenv.StartRedis(t)
	apps := startRateGateways(t, 2, emu, redis.URL, map[string]string{"FLEET_LIMIT": "50"})
	tok := emu.ClientToken("svc-billing", apiAudience, time.Hour)
	for _, a := range apps {
		if got := hit(t, a, "/orders", tok); got.status != 200 {
			t.Fatalf("warm-up: %d", got.status)
		}
	}
	codes := loadFleet(t, apps, "/fleet", tok, 2, 3*time.Second, func() {
		time.Sleep(time.Second)
		redis.Kill()
	})
	t.Logf("answers with Redis killed after 1s of 3s: %v", codes)
	for code, n := range codes {
		if code != 200 && code != 429 {
			t.Errorf("%d answers %d: a Redis outage must not fail requests", n, code)
		}
	}
	var local float64
	for _, a := range apps {
		local += scrape(t, a)[`gateway_rate_limit_local_decisions_total{policy="fleet"}`]
	}
	if local == 0 || codes[200] == 0 {
		t.Errorf("local decisions %v, allowed %d: want the replicas to go on deciding alone", local, codes[200])
	}
}
