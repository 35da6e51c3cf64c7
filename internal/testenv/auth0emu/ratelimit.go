package auth0emu

import (
	"math"
	"net/http"
	"strconv"
	"time"
)

const (
	defaultRateLimit     = 1000
	defaultRatePerSecond = 1000
)

// bucket is Auth0's per-tenant Management API token bucket: limit requests
// of burst, refilled continuously at perSecond.
type bucket struct {
	limit     int
	perSecond float64
	tokens    float64
	last      time.Time
}

func (b *bucket) reset(limit int, perSecond float64, now time.Time) {
	*b = bucket{limit: limit, perSecond: perSecond, tokens: float64(limit), last: now}
}

func (b *bucket) refill(now time.Time) {
	if el := now.Sub(b.last).Seconds(); el > 0 {
		b.tokens = math.Min(float64(b.limit), b.tokens+el*b.perSecond)
	}
	b.last = now
}

// take spends one request if the bucket allows it.
func (b *bucket) take(now time.Time) bool {
	b.refill(now)
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// resetAt is x-ratelimit-reset: the UNIX second at which at least one more
// request is allowed (now when the bucket is not empty).
func (b *bucket) resetAt(now time.Time) int64 {
	switch {
	case b.tokens >= 1:
		return now.Unix()
	case b.perSecond <= 0:
		return now.Add(24 * time.Hour).Unix()
	}
	wait := time.Duration((1 - b.tokens) / b.perSecond * float64(time.Second))
	return int64(math.Ceil(float64(now.Add(wait).UnixNano()) / 1e9))
}

// setHeaders writes Auth0's x-ratelimit-* headers for the bucket's state.
func (b *bucket) setHeaders(h http.Header, now time.Time) {
	h.Set("X-Ratelimit-Limit", strconv.Itoa(b.limit))
	h.Set("X-Ratelimit-Remaining", strconv.Itoa(int(math.Floor(b.tokens))))
	h.Set("X-Ratelimit-Reset", strconv.FormatInt(b.resetAt(now), 10))
}
