package auth0_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/metagate/gateway/enrich"
	"github.com/metagate/gateway/enrich/auth0"
	"github.com/metagate/gateway/internal/testenv/auth0emu"
)

const (
	gatewayID     = "metagate-gateway"
	gatewaySecret = "gateway-secret-never-logged"
	billingID     = "billing-service"
	aliceID       = "auth0|alice"
)

var (
	billing = enrich.Caller{Kind: enrich.KindClient, ID: billingID}
	alice   = enrich.Caller{Kind: enrich.KindUser, ID: aliceID}
)

// newTenant is a tenant where the gateway's M2M application may read
// clients and users, with one client and one user to read.
func newTenant(t *testing.T) *auth0emu.Tenant {
	t.Helper()
	tn := auth0emu.New(t)
	tn.AddClient(auth0emu.Client{
		ID: gatewayID, Secret: gatewaySecret, Name: "MetaGate",
		Grants: map[string][]string{tn.MgmtAudience(): {"read:clients", "read:users"}},
	})
	tn.AddClient(auth0emu.Client{
		ID: billingID, Secret: "billing-secret", Name: "Billing service",
		Metadata: map[string]string{"tier": "gold", "team": "billing"},
	})
	tn.AddUser(auth0emu.User{
		ID:           aliceID,
		AppMetadata:  map[string]any{"plan": "pro", "seats": 5, "roles": []any{"admin"}},
		UserMetadata: map[string]any{"theme": "dark"},
	})
	return tn
}

// options are Options for tn with a generous budget (tests that are not
// about the budget must not wait on it), a transport closed at cleanup and
// an observed logger.
func options(t *testing.T, tn *auth0emu.Tenant) (auth0.Options, *observer.ObservedLogs) {
	t.Helper()
	core, logs := observer.New(zap.DebugLevel)
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	return auth0.Options{
		ManagementURL: tn.URL(),
		ClientID:      gatewayID,
		ClientSecret:  gatewaySecret,
		RatePerSecond: 1000,
		Burst:         1000,
		Timeout:       2 * time.Second,
		MaxRetries:    auth0.DefaultMaxRetries,
		HTTPClient:    &http.Client{Transport: tr},
		Logger:        zap.New(core),
	}, logs
}

func newSource(t *testing.T, opts auth0.Options) *auth0.Source {
	t.Helper()
	s, err := auth0.New(opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(s.CloseIdleConnections)
	return s
}

func lookup(t *testing.T, s *auth0.Source, c enrich.Caller) enrich.Record {
	t.Helper()
	rec, err := s.Lookup(context.Background(), c)
	if err != nil {
		t.Fatalf("Lookup(%v): %v", c, err)
	}
	return rec
}

func wantCalls(t *testing.T, tn *auth0emu.Tenant, want map[string]int) {
	t.Helper()
	for ep, n := range want {
		if got := tn.Calls(ep); got != n {
			t.Errorf("%s calls = %d, want %d", ep, got, n)
		}
	}
}

// noSecretsLogged fails if a log line carries the client secret or a JWT.
func noSecretsLogged(t *testing.T, logs *observer.ObservedLogs) {
	t.Helper()
	for _, e := range logs.All() {
		line := e.Message + " " + fmt.Sprint(e.ContextMap())
		if strings.Contains(line, gatewaySecret) || strings.Contains(line, "eyJ") {
			t.Errorf("log line leaks a credential: %s", line)
		}
	}
}

func TestLookup(t *testing.T) {
	tn := newTenant(t)
	opts, _ := options(t, tn)
	s := newSource(t, opts)
	for _, tc := range []struct {
		name     string
		caller   enrich.Caller
		endpoint string
		uri      string
		want     enrich.Record
	}{
		{"machine client", billing, "clients",
			"/api/v2/clients/billing-service?fields=client_id,name,client_metadata&include_fields=true",
			enrich.Record{Name: "Billing service", Metadata: map[string]any{"tier": "gold", "team": "billing"}}},
		{"user id with a pipe is escaped", alice, "users",
			"/api/v2/users/auth0%7Calice?fields=user_id,app_metadata&include_fields=true",
			enrich.Record{Metadata: map[string]any{"plan": "pro", "seats": json.Number("5"), "roles": []any{"admin"}}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := lookup(t, s, tc.caller)
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("record\n got %#v\nwant %#v", got, tc.want)
			}
			if uri := tn.LastRequestURI(tc.endpoint); uri != tc.uri {
				t.Errorf("request URI\n got %s\nwant %s", uri, tc.uri)
			}
		})
	}
}

func TestIncludeUserMetadata(t *testing.T) {
	for _, tc := range []struct {
		name    string
		include bool
		fields  string
		want    map[string]any
	}{
		{"off: user_metadata neither requested nor returned", false, "fields=user_id,app_metadata&", nil},
		{"on: user_metadata requested and returned", true, "fields=user_id,app_metadata,user_metadata&", map[string]any{"theme": "dark"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tn := newTenant(t)
			opts, _ := options(t, tn)
			opts.IncludeUserMetadata = tc.include
			rec := lookup(t, newSource(t, opts), alice)
			if !reflect.DeepEqual(rec.UserMetadata, tc.want) {
				t.Errorf("UserMetadata = %v, want %v", rec.UserMetadata, tc.want)
			}
			if rec.Metadata["plan"] != "pro" {
				t.Errorf("Metadata = %v", rec.Metadata)
			}
			if uri := tn.LastRequestURI("users"); !strings.Contains(uri, tc.fields) {
				t.Errorf("request URI %s lacks %s", uri, tc.fields)
			}
		})
	}
}

func TestUnknownCaller(t *testing.T) {
	tn := newTenant(t)
	opts, _ := options(t, tn)
	s := newSource(t, opts)
	for _, tc := range []struct {
		name     string
		caller   enrich.Caller
		endpoint string
		calls    int
	}{
		{"deleted client", enrich.Caller{Kind: enrich.KindClient, ID: "ghost"}, "clients", 1},
		{"unknown user", enrich.Caller{Kind: enrich.KindUser, ID: "auth0|ghost"}, "users", 1},
		{"empty client id is never sent (it would list clients)", enrich.Caller{Kind: enrich.KindClient}, "clients", 0},
		{"dot-dot user id is never sent", enrich.Caller{Kind: enrich.KindUser, ID: ".."}, "users", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tn.ResetCalls()
			_, err := s.Lookup(context.Background(), tc.caller)
			if !errors.Is(err, enrich.ErrUnknownCaller) {
				t.Fatalf("err = %v, want ErrUnknownCaller", err)
			}
			if errors.Is(err, auth0.ErrUnavailable) || errors.Is(err, auth0.ErrRateLimited) || errors.Is(err, auth0.ErrUnauthorized) {
				t.Errorf("a miss also wraps a failure sentinel: %v", err)
			}
			wantCalls(t, tn, map[string]int{tc.endpoint: tc.calls})
		})
	}
}

func TestTokenFetchedOnceForManyLookups(t *testing.T) {
	tn := newTenant(t)
	opts, _ := options(t, tn)
	s := newSource(t, opts)
	for range 5 {
		lookup(t, s, billing)
		lookup(t, s, alice)
	}
	wantCalls(t, tn, map[string]int{"token": 1, "clients": 5, "users": 5})
}

func TestConcurrentLookupsShareOneTokenFetch(t *testing.T) {
	tn := newTenant(t)
	opts, _ := options(t, tn)
	s := newSource(t, opts)
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for i := range 16 {
		c := billing
		if i%2 == 1 {
			c = alice
		}
		wg.Go(func() {
			if _, err := s.Lookup(context.Background(), c); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	wantCalls(t, tn, map[string]int{"token": 1, "clients": 8, "users": 8})
}

func TestRevokedTokenIsReplacedOnce(t *testing.T) {
	tn := newTenant(t)
	opts, _ := options(t, tn)
	s := newSource(t, opts)
	lookup(t, s, billing)
	tn.RevokeMgmtTokens()
	if rec := lookup(t, s, billing); rec.Name != "Billing service" {
		t.Errorf("record after revocation: %+v", rec)
	}
	lookup(t, s, alice)
	// lookup, rejected lookup, its repeat with the new token, user lookup.
	wantCalls(t, tn, map[string]int{"token": 2, "clients": 3, "users": 1})
}

func TestShortLivedToken(t *testing.T) {
	t.Run("TTL within oauth2's 10s expiry margin: a token per lookup", func(t *testing.T) {
		tn := newTenant(t)
		tn.SetMgmtTokenTTL(10 * time.Second)
		opts, _ := options(t, tn)
		s := newSource(t, opts)
		for range 3 {
			lookup(t, s, billing)
		}
		wantCalls(t, tn, map[string]int{"token": 3, "clients": 3})
	})
	t.Run("TTL of 11s: refetched once the margin is reached", func(t *testing.T) {
		tn := newTenant(t)
		tn.SetMgmtTokenTTL(11 * time.Second)
		opts, _ := options(t, tn)
		s := newSource(t, opts)
		lookup(t, s, billing)
		deadline := time.Now().Add(10 * time.Second)
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for tn.Calls("token") < 2 {
			if time.Now().After(deadline) {
				t.Fatalf("token not refetched: %d token calls after %d lookups", tn.Calls("token"), tn.Calls("clients"))
			}
			<-tick.C
			lookup(t, s, billing)
		}
		if n := tn.Calls("token"); n != 2 {
			t.Errorf("token calls = %d, want 2", n)
		}
	})
}

func TestCredentialsRefused(t *testing.T) {
	for _, tc := range []struct {
		name   string
		setup  func(t *testing.T, tn *auth0emu.Tenant, opts *auth0.Options)
		caller enrich.Caller
		calls  map[string]int
		logged string // expected in the Error log line
	}{
		{
			name: "missing read:clients scope (403)",
			setup: func(t *testing.T, tn *auth0emu.Tenant, _ *auth0.Options) {
				tn.AddClient(auth0emu.Client{ID: gatewayID, Secret: gatewaySecret, Grants: map[string][]string{tn.MgmtAudience(): {"read:users"}}})
			},
			caller: billing, calls: map[string]int{"token": 1, "clients": 1}, logged: "insufficient_scope",
		},
		{
			name: "token from another tenant keeps being rejected (401 twice)",
			setup: func(t *testing.T, tn *auth0emu.Tenant, opts *auth0.Options) {
				other := auth0emu.New(t)
				other.AddAPI(tn.MgmtAudience(), "read:clients", "read:users")
				other.AddClient(auth0emu.Client{ID: gatewayID, Secret: gatewaySecret, Grants: map[string][]string{tn.MgmtAudience(): {"read:clients", "read:users"}}})
				opts.TokenURL = other.TokenURL()
				t.Cleanup(func() {
					if n := other.Calls("token"); n != 2 {
						t.Errorf("other tenant token calls = %d, want 2 (one refetch)", n)
					}
				})
			},
			caller: billing, calls: map[string]int{"token": 0, "clients": 2}, logged: "Invalid token",
		},
		{
			name: "wrong client secret",
			setup: func(t *testing.T, _ *auth0emu.Tenant, opts *auth0.Options) {
				opts.ClientSecret = "stale-secret"
			},
			caller: alice, calls: map[string]int{"token": 1, "users": 0}, logged: "access_denied",
		},
		{
			name: "no client grant on the Management API",
			setup: func(t *testing.T, tn *auth0emu.Tenant, _ *auth0.Options) {
				tn.AddClient(auth0emu.Client{ID: gatewayID, Secret: gatewaySecret})
			},
			caller: alice, calls: map[string]int{"token": 1, "users": 0}, logged: "client-grant",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tn := newTenant(t)
			opts, logs := options(t, tn)
			tc.setup(t, tn, &opts)
			s := newSource(t, opts)
			_, err := s.Lookup(context.Background(), tc.caller)
			if !errors.Is(err, auth0.ErrUnauthorized) {
				t.Fatalf("err = %v, want ErrUnauthorized", err)
			}
			if errors.Is(err, enrich.ErrUnknownCaller) {
				t.Error("a refusal must not look like a miss")
			}
			wantCalls(t, tn, tc.calls)
			errLogs := logs.FilterLevelExact(zap.ErrorLevel).All()
			if len(errLogs) != 1 || !strings.Contains(fmt.Sprint(errLogs[0].ContextMap()), tc.logged) {
				t.Errorf("want one Error log mentioning %q, got %v", tc.logged, errLogs)
			}
			noSecretsLogged(t, logs)
		})
	}
}

// clock is a settable Options.Now.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func TestRateLimitedByAuth0(t *testing.T) {
	t.Run("429 blocks lookups without network calls until the reset", func(t *testing.T) {
		tn := newTenant(t)
		opts, logs := options(t, tn)
		clk := &clock{now: time.Now()}
		opts.Now = clk.Now
		s := newSource(t, opts)

		tn.SetRateLimit(1, 0.2) // one request, then one every 5s
		lookup(t, s, billing)
		_, err := s.Lookup(context.Background(), billing)
		if !errors.Is(err, auth0.ErrRateLimited) {
			t.Fatalf("err = %v, want ErrRateLimited", err)
		}
		wantCalls(t, tn, map[string]int{"clients": 2})
		if rl := logs.FilterMessageSnippet("rate limit").All(); len(rl) != 1 {
			t.Error("429 not logged")
		} else if rl[0].LoggerName != "" {
			// The gateway passes a logger named "auth0"; naming it again
			// here gave "auth0.auth0".
			t.Errorf("the source renamed its logger to %q; it must use the one it is given", rl[0].LoggerName)
		}

		for _, c := range []enrich.Caller{billing, alice, billing} {
			if _, err := s.Lookup(context.Background(), c); !errors.Is(err, auth0.ErrRateLimited) {
				t.Fatalf("while blocked: err = %v, want ErrRateLimited", err)
			}
		}
		wantCalls(t, tn, map[string]int{"clients": 2, "users": 0})

		// x-ratelimit-reset was ~5s ahead; past it (and past the cap,
		// whatever the rounding) lookups go out again.
		clk.Advance(2 * time.Minute)
		tn.SetRateLimit(100, 100)
		lookup(t, s, alice)
		wantCalls(t, tn, map[string]int{"clients": 2, "users": 1})
	})
	t.Run("429 is not retried inline", func(t *testing.T) {
		tn := newTenant(t)
		opts, _ := options(t, tn)
		s := newSource(t, opts)
		tn.SetFault("mgmt", auth0emu.Fault429)
		_, err := s.Lookup(context.Background(), alice)
		if !errors.Is(err, auth0.ErrRateLimited) {
			t.Fatalf("err = %v, want ErrRateLimited", err)
		}
		wantCalls(t, tn, map[string]int{"users": 1})
	})
	t.Run("429 from the token endpoint", func(t *testing.T) {
		tn := newTenant(t)
		opts, _ := options(t, tn)
		s := newSource(t, opts)
		tn.SetFault("token", auth0emu.Fault429)
		_, err := s.Lookup(context.Background(), alice)
		if !errors.Is(err, auth0.ErrRateLimited) {
			t.Fatalf("err = %v, want ErrRateLimited", err)
		}
		wantCalls(t, tn, map[string]int{"token": 1, "users": 0})
	})
}

func TestClientSideBudget(t *testing.T) {
	tn := newTenant(t)
	opts, _ := options(t, tn)
	const rps, burst, window = 5.0, 2, 300 * time.Millisecond
	opts.RatePerSecond, opts.Burst = rps, burst
	var waits atomic.Int64
	opts.OnBudgetWait = func() { waits.Add(1) }
	s := newSource(t, opts)

	ctx, cancel := context.WithTimeout(context.Background(), window)
	defer cancel()
	// Requests arrive every 5ms (200/s, 40 times the budget) for the whole
	// window; each lookup must fit the budget or fail fast.
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	var ok, limited int
	for ; ctx.Err() == nil; <-tick.C {
		_, err := s.Lookup(ctx, billing)
		switch {
		case err == nil:
			ok++
		case errors.Is(err, auth0.ErrRateLimited):
			limited++
		case ctx.Err() != nil:
			// The window closed during a call.
		default:
			t.Fatalf("unexpected error: %v", err)
		}
	}
	most := burst + int(math.Ceil(window.Seconds()*rps)) + 1
	t.Logf("%d lookups succeeded, %d refused by the budget, tenant saw %d calls (at most %d allowed)", ok, limited, tn.Calls("clients"), most)
	if n := tn.Calls("clients"); n > most || n < burst {
		t.Errorf("tenant saw %d Management API calls in %s, want between %d and %d (rate %g/s, burst %d)", n, window, burst, most, rps, burst)
	}
	if ok > tn.Calls("clients") {
		t.Errorf("%d lookups succeeded but the tenant saw %d calls", ok, tn.Calls("clients"))
	}
	if limited == 0 {
		t.Error("no lookup was refused by the budget")
	}
	// Every call beyond the burst found the bucket empty.
	if w := waits.Load(); w < int64(limited) || w == 0 {
		t.Errorf("OnBudgetWait called %d times, want at least the %d refused lookups", w, limited)
	}
}

func TestRetries(t *testing.T) {
	for _, tc := range []struct {
		name       string
		maxRetries int
		fault      func(tn *auth0emu.Tenant)
		wantErr    error // nil: success
		calls      func(n int) bool
		callsDesc  string
		endpoint   string
	}{
		{"500 once, then success", 2, func(tn *auth0emu.Tenant) { tn.SetFaultN("users", auth0emu.Fault500, 1) },
			nil, func(n int) bool { return n == 2 }, "2", "users"},
		{"500 persisting: MaxRetries+1 attempts", 2, func(tn *auth0emu.Tenant) { tn.SetFault("users", auth0emu.Fault500) },
			auth0.ErrUnavailable, func(n int) bool { return n == 3 }, "3", "users"},
		{"retries disabled", 0, func(tn *auth0emu.Tenant) { tn.SetFault("users", auth0emu.Fault500) },
			auth0.ErrUnavailable, func(n int) bool { return n == 1 }, "1", "users"},
		{"connection dropped once", 2, func(tn *auth0emu.Tenant) { tn.SetFaultN("users", auth0emu.FaultDrop, 1) },
			nil, func(n int) bool { return n >= 2 }, ">= 2", "users"},
		{"connection dropped every time", 1, func(tn *auth0emu.Tenant) { tn.SetFault("users", auth0emu.FaultDrop) },
			auth0.ErrUnavailable, func(n int) bool { return n >= 2 }, ">= 2", "users"},
		{"token endpoint 500 once", 2, func(tn *auth0emu.Tenant) { tn.SetFaultN("token", auth0emu.Fault500, 1) },
			nil, func(n int) bool { return n == 2 }, "2", "token"},
		{"token endpoint down", 1, func(tn *auth0emu.Tenant) { tn.SetFault("token", auth0emu.Fault500) },
			auth0.ErrUnavailable, func(n int) bool { return n == 2 }, "2", "token"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tn := newTenant(t)
			opts, _ := options(t, tn)
			opts.MaxRetries = tc.maxRetries
			s := newSource(t, opts)
			tc.fault(tn)
			rec, err := s.Lookup(context.Background(), alice)
			if tc.wantErr == nil {
				if err != nil || rec.Metadata["plan"] != "pro" {
					t.Fatalf("Lookup = %+v, %v; want alice's record", rec, err)
				}
			} else if !errors.Is(err, tc.wantErr) {
				t.Fatalf("err = %v, want %v", err, tc.wantErr)
			}
			if n := tn.Calls(tc.endpoint); !tc.calls(n) {
				t.Errorf("%s calls = %d, want %s", tc.endpoint, n, tc.callsDesc)
			}
		})
	}
}

func TestHangIsCutAtTimeout(t *testing.T) {
	for _, endpoint := range []string{"users", "token"} {
		t.Run(endpoint+" endpoint hangs", func(t *testing.T) {
			tn := newTenant(t)
			opts, _ := options(t, tn)
			opts.Timeout = 200 * time.Millisecond
			opts.MaxRetries = 1
			s := newSource(t, opts)
			tn.SetFault(endpoint, auth0emu.FaultHang)
			start := time.Now()
			_, err := s.Lookup(context.Background(), alice)
			elapsed := time.Since(start)
			if !errors.Is(err, auth0.ErrUnavailable) || !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("err = %v, want ErrUnavailable wrapping a deadline", err)
			}
			// Two attempts of 200ms and one backoff (<=100ms); generous.
			if elapsed > 5*time.Second {
				t.Errorf("took %s", elapsed)
			}
			wantCalls(t, tn, map[string]int{endpoint: 2})
		})
	}
}

func TestCallerContextIsHonoured(t *testing.T) {
	tn := newTenant(t)
	opts, _ := options(t, tn)
	s := newSource(t, opts)
	tn.SetFault("token", auth0emu.FaultHang)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_, err := s.Lookup(ctx, billing)
	if !errors.Is(err, context.DeadlineExceeded) || !errors.Is(err, auth0.ErrUnavailable) {
		t.Fatalf("err = %v, want ErrUnavailable wrapping the caller's deadline", err)
	}
	wantCalls(t, tn, map[string]int{"token": 1}) // not retried past the caller's deadline

	canceled, cancelNow := context.WithCancel(context.Background())
	cancelNow()
	if _, err := s.Lookup(canceled, billing); !errors.Is(err, context.Canceled) {
		t.Fatalf("canceled context: err = %v", err)
	}
}

func TestObserve(t *testing.T) {
	tn := newTenant(t)
	opts, _ := options(t, tn)
	var mu sync.Mutex
	var got []string
	opts.Observe = func(endpoint string, status int, d time.Duration) {
		mu.Lock()
		defer mu.Unlock()
		got = append(got, fmt.Sprintf("%s %d", endpoint, status))
		if d <= 0 {
			t.Errorf("%s: duration %s", endpoint, d)
		}
	}
	opts.MaxRetries = 1
	s := newSource(t, opts)
	tn.SetFaultN("clients", auth0emu.Fault500, 1)
	lookup(t, s, billing)
	tn.SetFaultN("users", auth0emu.FaultDrop, 1)
	_, _ = s.Lookup(context.Background(), enrich.Caller{Kind: enrich.KindUser, ID: "auth0|ghost"})
	mu.Lock()
	defer mu.Unlock()
	want := []string{"token 200", "clients 500", "clients 200"}
	if len(got) < len(want) || !reflect.DeepEqual(got[:3], want) {
		t.Fatalf("observed %v, want it to start with %v", got, want)
	}
	if last := got[len(got)-1]; last != "users 404" {
		t.Errorf("observed %v, want it to end with users 404", got)
	}
}

func TestDefaultHTTPClient(t *testing.T) {
	tn := newTenant(t)
	opts, _ := options(t, tn)
	opts.HTTPClient = nil
	opts.Logger = nil
	s := newSource(t, opts) // its cleanup closes the default transport's idle connections
	if rec := lookup(t, s, billing); rec.Metadata["tier"] != "gold" {
		t.Errorf("record %+v", rec)
	}
}

func TestNewValidatesOptions(t *testing.T) {
	valid := func() auth0.Options {
		return auth0.Options{ManagementURL: "https://tenant.eu.auth0.com", ClientID: "id", ClientSecret: "secret"}
	}
	for _, tc := range []struct {
		name   string
		mutate func(*auth0.Options)
		field  string // "" when valid
	}{
		{"defaults", func(*auth0.Options) {}, ""},
		{"trailing slash", func(o *auth0.Options) { o.ManagementURL += "/" }, ""},
		{"no management URL", func(o *auth0.Options) { o.ManagementURL = "" }, "ManagementURL"},
		{"management URL with a path", func(o *auth0.Options) { o.ManagementURL += "/api/v2/" }, "ManagementURL"},
		{"management URL without scheme", func(o *auth0.Options) { o.ManagementURL = "tenant.auth0.com" }, "ManagementURL"},
		{"token URL not http", func(o *auth0.Options) { o.TokenURL = "ftp://x/oauth/token" }, "TokenURL"},
		{"no client id", func(o *auth0.Options) { o.ClientID = "" }, "ClientID"},
		{"no client secret", func(o *auth0.Options) { o.ClientSecret = "" }, "ClientSecret"},
		{"negative rate", func(o *auth0.Options) { o.RatePerSecond = -1 }, "RatePerSecond"},
		{"infinite rate", func(o *auth0.Options) { o.RatePerSecond = math.Inf(1) }, "RatePerSecond"},
		{"negative burst", func(o *auth0.Options) { o.Burst = -1 }, "Burst"},
		{"negative timeout", func(o *auth0.Options) { o.Timeout = -time.Second }, "Timeout"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := valid()
			tc.mutate(&o)
			_, err := auth0.New(o)
			switch {
			case tc.field == "" && err != nil:
				t.Errorf("unexpected error: %v", err)
			case tc.field != "" && (err == nil || !strings.Contains(err.Error(), tc.field)):
				t.Errorf("err = %v, want one naming %s", err, tc.field)
			}
			if err != nil && strings.Contains(err.Error(), "secret") && o.ClientSecret != "" && strings.Contains(err.Error(), o.ClientSecret) {
				t.Errorf("error leaks the secret: %v", err)
			}
		})
	}
}
