package auth0_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/metagate/gateway/enrich/auth0"
	"github.com/metagate/gateway/internal/testenv/auth0emu"
)

// TestImmediate500IsRetriedWithinTensOfMilliseconds: with the default
// budget (1/s, burst 2) and one retry, a new caller's lookup against a
// Management API answering 500 at once makes both attempts in tens of
// milliseconds: the retry neither sleeps seconds of backoff nor waits a
// second for the budget's reserve to fill again.
func TestImmediate500IsRetriedWithinTensOfMilliseconds(t *testing.T) {
	tn := newTenant(t)
	opts, _ := options(t, tn)
	opts.RatePerSecond, opts.Burst = auth0.DefaultRatePerSecond, auth0.DefaultBurst
	opts.Timeout = time.Second
	opts.MaxRetries = 1
	s := newSource(t, opts)
	tn.SetFault("clients", auth0emu.Fault500)
	start := time.Now()
	_, err := s.Lookup(context.Background(), billing)
	elapsed := time.Since(start)
	if !errors.Is(err, auth0.ErrUnavailable) {
		t.Fatalf("err = %v, want ErrUnavailable", err)
	}
	wantCalls(t, tn, map[string]int{"clients": 2})
	t.Logf("two attempts against an immediate 500 took %s", elapsed.Round(time.Millisecond))
	// The backoff is at most 50ms; the bound is for a loaded machine.
	if elapsed > 500*time.Millisecond {
		t.Errorf("lookup took %s, want the retry within tens of milliseconds", elapsed)
	}
}
