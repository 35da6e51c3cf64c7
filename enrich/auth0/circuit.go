package auth0

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/metagate/gateway/enrich"
)

// Circuit states, as reported to Options.OnCircuit.
const (
	CircuitClosed   = "closed"
	CircuitOpen     = "open"
	CircuitHalfOpen = "half_open"
)

// circuit stops calls to a Management API that keeps failing. After
// threshold consecutive failures (5xx, timeouts, connection errors) it
// opens for openFor: lookups fail at once, without a call, so an outage
// costs Auth0 nothing and callers get their 503 without waiting. Once per
// open period one lookup goes out as a probe; its success closes the
// circuit, its failure opens it for another period. A zero threshold
// turns the circuit off.
type circuit struct {
	threshold int
	openFor   time.Duration
	onState   func(state string)

	mu        sync.Mutex
	failures  int
	openUntil time.Time // zero: closed
	probing   bool      // a probe is out
}

// errCircuitOpen is the cause of a lookup refused by the open circuit.
var errCircuitOpen = errors.New("circuit open after repeated failures: no call made")

// peek reports whether a call could go out at now, without taking the
// open period's probe.
func (c *circuit) peek(now time.Time) (ok, open bool) {
	if c.threshold <= 0 {
		return true, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.openUntil.IsZero() {
		return true, false
	}
	return !c.probing && !now.Before(c.openUntil), true
}

// allow reports whether a lookup may call the API at now, and whether it
// is the open period's probe.
func (c *circuit) allow(now time.Time) (ok, probe bool) {
	if c.threshold <= 0 {
		return true, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case c.openUntil.IsZero():
		return true, false
	case c.probing || now.Before(c.openUntil):
		return false, false
	}
	c.probing = true
	c.set(CircuitHalfOpen)
	return true, true
}

// result records the outcome of one call: failed is a 5xx, a timeout or a
// connection failure; anything else (a 2xx, a 404, a 401) shows the API
// answering. A probe always ends the half-open state.
func (c *circuit) result(now time.Time, probe, failed bool) {
	if c.threshold <= 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if probe {
		c.probing = false
	}
	if !failed {
		c.failures = 0
		if !c.openUntil.IsZero() {
			c.openUntil = time.Time{}
			c.set(CircuitClosed)
		}
		return
	}
	c.failures++
	if probe || c.failures >= c.threshold {
		c.openUntil = now.Add(c.openFor)
		c.set(CircuitOpen)
	}
}

// abandon ends a probe that made no call (its context ended first), so
// the next lookup may probe at once.
func (c *circuit) abandon(probe bool) {
	if !probe {
		return
	}
	c.mu.Lock()
	c.probing = false
	c.mu.Unlock()
}

func (c *circuit) set(state string) {
	if c.onState != nil {
		c.onState(state)
	}
}

// takeBudget takes one Management API call from the client-side budget.
// A refresh of a caller already cached (enrich.IsRefresh) takes what is
// there; a miss for a new caller leaves one token for refreshes when the
// burst allows it, so a flood of new or made-up callers cannot spend the
// budget the refreshes of everyone else need. A retry (of a 5xx or a
// network error) takes what is there too: its lookup already passed the
// reserve, and waiting a second for it to fill again would keep the
// caller waiting past metadata.auth0.lookup_deadline for a call that is
// likely to fail. It waits as long as ctx allows.
func (s *Source) takeBudget(ctx context.Context, retry bool) error {
	if retry || enrich.IsRefresh(ctx) || s.limiter.Burst() < 2 {
		if s.limiter.Allow() {
			return nil
		}
		s.onBudgetWait()
		return s.limiter.Wait(ctx)
	}
	// A miss: take a token only while another is left for refreshes.
	// Polled, not reserved: a reservation would queue the refreshes
	// behind the misses. (Tokens and Allow are two steps, so two misses
	// may both pass at once: the reserve is approximate, never negative
	// by more than one call.)
	every := time.Duration(float64(time.Second) / float64(s.limiter.Limit()))
	for first := true; ; first = false {
		if s.limiter.Tokens() >= 2 && s.limiter.Allow() {
			return nil
		}
		if first {
			s.onBudgetWait()
		}
		if err := sleepCtx(ctx, min(every, 100*time.Millisecond)); err != nil {
			return err
		}
	}
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return context.Cause(ctx)
	case <-t.C:
		return nil
	}
}
