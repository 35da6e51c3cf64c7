package auth0

import (
	"context"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// blocker remembers until when Auth0 asked us to stop (after a 429).
type blocker struct {
	mu    sync.Mutex
	until time.Time
}

// blockedUntil reports whether lookups must fail fast at now, and until
// when.
func (b *blocker) blockedUntil(now time.Time) (time.Time, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.until, now.Before(b.until)
}

// extend moves the block to t unless it already runs longer.
func (b *blocker) extend(t time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if t.After(b.until) {
		b.until = t
	}
}

// retryAt is when a 429 answer allows the next request: Retry-After
// (seconds or an HTTP date; relative, so immune to clock skew) if present,
// else x-ratelimit-reset (UNIX seconds, Auth0's header), else minBlock from
// now. A time not after now becomes now+minBlock (our clock is ahead of
// Auth0's); anything beyond now+maxBlock is capped.
func retryAt(h http.Header, now time.Time) time.Time {
	at := now.Add(minBlock)
	if v := strings.TrimSpace(h.Get("Retry-After")); v != "" {
		if secs, err := strconv.ParseInt(v, 10, 64); err == nil {
			at = now.Add(time.Duration(min(max(secs, 0), int64(maxBlock/time.Second)+1)) * time.Second)
		} else if t, err := http.ParseTime(v); err == nil {
			at = t
		}
	} else if v := strings.TrimSpace(h.Get("X-Ratelimit-Reset")); v != "" {
		if secs, err := strconv.ParseInt(v, 10, 64); err == nil {
			at = time.Unix(secs, 0)
		}
	}
	switch {
	case !at.After(now):
		return now.Add(minBlock)
	case at.After(now.Add(maxBlock)):
		return now.Add(maxBlock)
	}
	return at
}

// backoff waits before retry number n (1-based): a random time up to
// backoffBase doubled per retry, capped at backoffMax (full jitter), so
// replicas that failed together do not retry together.
func (s *Source) backoff(ctx context.Context, n int) error {
	d := backoffMax
	if n <= 8 {
		d = min(s.backoffBase<<(n-1), backoffMax)
	}
	d = rand.N(d + 1)
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
