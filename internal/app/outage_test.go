package app

import (
	"net/http"
	"testing"
	"time"

	"github.com/metagate/gateway/internal/config"
	"github.com/metagate/gateway/internal/testenv"
	"github.com/metagate/gateway/internal/testenv/auth0emu"
)

// timedGet sends one request as token and returns its status, Retry-After
// and how long the answer took.
func timedGet(t *testing.T, a *App, token string) (int, string, time.Duration) {
	t.Helper()
	req, _ := http.NewRequest("GET", "http://"+a.Addr("gateway")+"/orders", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	start := time.Now()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode, resp.Header.Get("Retry-After"), time.Since(start)
}

// TestNewCallerInOutageAnsweredWithinDeadline (issue 19): timeout 1s,
// max_retries 1, the default budget, a Management API answering 500 at
// once. A new caller's first request gets 503 with Retry-After within
// lookup_deadline, retried once; so does the next new caller when the
// budget is spent (its lookup goes on in the background).
func TestNewCallerInOutageAnsweredWithinDeadline(t *testing.T) {
	emu := tenant(t)
	for _, id := range []string{"svc-new-a", "svc-new-b"} {
		emu.AddClient(auth0emu.Client{ID: id, Secret: "s", Grants: map[string][]string{apiAudience: {"read:orders"}}})
	}
	const deadline = time.Second
	apps, _ := startFleet(t, 1, emu, func(c *config.Config) {
		c.Metadata.Auth0.Timeout = config.Duration(time.Second)
		c.Metadata.Auth0.MaxRetries = 1
		c.Metadata.Auth0.LookupDeadline = config.Duration(deadline)
	})
	a := apps[0]
	emu.SetFault("clients", auth0emu.Fault500)
	for _, id := range []string{"svc-new-a", "svc-new-b"} {
		before := emu.Calls("clients")
		code, retry, took := timedGet(t, a, emu.ClientToken(id, apiAudience, time.Hour))
		t.Logf("new caller %s during the outage: %d, Retry-After %q, after %s (%d Management API calls)",
			id, code, retry, took.Round(time.Millisecond), emu.Calls("clients")-before)
		if code != http.StatusServiceUnavailable || retry == "" {
			t.Fatalf("new caller %s: %d, Retry-After %q; want 503 with Retry-After", id, code, retry)
		}
		if took > deadline+500*time.Millisecond {
			t.Errorf("new caller %s waited %s for its 503, want within lookup_deadline (%s)", id, took, deadline)
		}
	}
	if n := emu.Calls("clients"); n < 2 {
		t.Errorf("%d Management API calls, want the first lookup retried once", n)
	}
}

// TestSlowLookupFillsInBackground (issue 19): a Management API slower than
// lookup_deadline. The request gets 503 with Retry-After at about the
// deadline; the lookup goes on, and once it has answered the caller gets
// 200 from the cache with no second Management API read.
func TestSlowLookupFillsInBackground(t *testing.T) {
	emu := tenant(t)
	const deadline = 300 * time.Millisecond
	apps, _ := startFleet(t, 1, emu, func(c *config.Config) {
		c.Metadata.Auth0.LookupDeadline = config.Duration(deadline)
	})
	a := apps[0]
	emu.SetMgmtLatency(time.Second)
	tok := emu.ClientToken("svc-billing", apiAudience, time.Hour)
	code, retry, took := timedGet(t, a, tok)
	t.Logf("first request with a 1s Management API and lookup_deadline %s: %d, Retry-After %q, after %s",
		deadline, code, retry, took.Round(time.Millisecond))
	if code != http.StatusServiceUnavailable || retry == "" {
		t.Fatalf("first request: %d, Retry-After %q; want 503 with Retry-After", code, retry)
	}
	if took < deadline || took > deadline+500*time.Millisecond {
		t.Errorf("first request answered after %s, want about lookup_deadline (%s)", took, deadline)
	}
	testenv.Eventually(t, 5*time.Second, "the background lookup fills the cache", func() bool {
		code, _, took := timedGet(t, a, tok)
		return code == http.StatusOK && took < deadline
	})
	if n := emu.Calls("clients"); n != 1 {
		t.Errorf("%d Management API reads, want 1: the background fill served the later request", n)
	}
}
