package auth0_test

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/metagate/gateway/enrich"
	"github.com/metagate/gateway/enrich/auth0"
	"github.com/metagate/gateway/internal/testenv/auth0emu"
)

// TestCircuitOpensAndProbes: after the threshold of failed calls no call
// goes out but one probe per open period, lookups fail at once, and a
// probe that succeeds closes the circuit.
func TestCircuitOpensAndProbes(t *testing.T) {
	for _, fault := range []auth0emu.Fault{auth0emu.Fault500, auth0emu.FaultHang} {
		t.Run(map[auth0emu.Fault]string{auth0emu.Fault500: "500", auth0emu.FaultHang: "hang"}[fault], func(t *testing.T) {
			tn := newTenant(t)
			opts, _ := options(t, tn)
			const openFor = 400 * time.Millisecond
			opts.MaxRetries, opts.CircuitThreshold, opts.CircuitOpenFor, opts.Timeout = 0, 3, openFor, 100*time.Millisecond
			var mu sync.Mutex
			var states []string
			opts.OnCircuit = func(s string) { mu.Lock(); states = append(states, s); mu.Unlock() }
			s := newSource(t, opts)
			lookup(t, s, billing) // the token is fetched and the API answers
			tn.ResetCalls()
			tn.SetFault("clients", fault)

			for i := 0; i < 3; i++ {
				if _, err := s.Lookup(context.Background(), billing); !errors.Is(err, auth0.ErrUnavailable) {
					t.Fatalf("failing call %d: %v", i, err)
				}
			}
			wantCalls(t, tn, map[string]int{"clients": 3})
			// Open: 20 lookups, no call, each answered at once.
			for i := 0; i < 20; i++ {
				start := time.Now()
				_, err := s.Lookup(context.Background(), billing)
				if !errors.Is(err, auth0.ErrUnavailable) {
					t.Fatalf("open circuit: %v", err)
				}
				if d := time.Since(start); d > 50*time.Millisecond {
					t.Errorf("open circuit answered after %s, want under 50ms", d)
				}
			}
			wantCalls(t, tn, map[string]int{"clients": 3})
			// One probe per open period; it fails, the circuit opens again.
			time.Sleep(openFor + 50*time.Millisecond)
			for i := 0; i < 5; i++ {
				_, _ = s.Lookup(context.Background(), billing)
			}
			wantCalls(t, tn, map[string]int{"clients": 4})
			// Auth0 recovers: the next probe closes the circuit.
			tn.SetFault("clients", auth0emu.FaultNone)
			time.Sleep(openFor + 50*time.Millisecond)
			lookup(t, s, billing)
			lookup(t, s, billing)
			wantCalls(t, tn, map[string]int{"clients": 6})
			mu.Lock()
			defer mu.Unlock()
			want := []string{auth0.CircuitOpen, auth0.CircuitHalfOpen, auth0.CircuitOpen, auth0.CircuitHalfOpen, auth0.CircuitClosed}
			if !slices.Equal(states, want) {
				t.Errorf("circuit states %v, want %v", states, want)
			}
		})
	}
}

// TestRefreshesGetBudgetBeforeMisses: with the budget nearly spent by new
// callers, the refresh of a cached caller still goes out, and a miss
// waits for a token beyond the one kept for refreshes.
func TestRefreshesGetBudgetBeforeMisses(t *testing.T) {
	tn := newTenant(t)
	opts, _ := options(t, tn)
	opts.RatePerSecond, opts.Burst = 0.5, 2
	s := newSource(t, opts)
	lookup(t, s, billing) // a miss: takes one token of two, leaves the refresh reserve

	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if _, err := s.Lookup(ctx, alice); !errors.Is(err, auth0.ErrRateLimited) {
		t.Fatalf("a second miss took the refresh reserve: %v", err)
	}
	ctx, cancel = context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if _, err := s.Lookup(enrich.WithRefresh(ctx), billing); err != nil {
		t.Fatalf("the refresh did not get the reserved token: %v", err)
	}
	wantCalls(t, tn, map[string]int{"clients": 2, "users": 0})
}
