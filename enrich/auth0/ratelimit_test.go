package auth0

import (
	"context"
	"net/http"
	"testing"
	"time"
)

func TestRetryAt(t *testing.T) {
	now := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name   string
		header map[string]string
		want   time.Time
	}{
		{"x-ratelimit-reset in two seconds", map[string]string{"X-Ratelimit-Reset": "1740830402"}, now.Add(2 * time.Second)},
		{"Retry-After seconds wins over x-ratelimit-reset", map[string]string{"Retry-After": "3", "X-Ratelimit-Reset": "1740830410"}, now.Add(3 * time.Second)},
		{"Retry-After HTTP date", map[string]string{"Retry-After": "Sat, 01 Mar 2025 12:00:05 GMT"}, now.Add(5 * time.Second)},
		{"no headers: minimum block", nil, now.Add(minBlock)},
		{"garbage headers: minimum block", map[string]string{"X-Ratelimit-Reset": "soon"}, now.Add(minBlock)},
		{"reset in the past (our clock ahead): minimum block", map[string]string{"X-Ratelimit-Reset": "1740830000"}, now.Add(minBlock)},
		{"Retry-After 0: minimum block", map[string]string{"Retry-After": "0"}, now.Add(minBlock)},
		{"reset an hour ahead (their clock ahead): capped", map[string]string{"X-Ratelimit-Reset": "1740834000"}, now.Add(maxBlock)},
		{"huge Retry-After: capped", map[string]string{"Retry-After": "99999999999999"}, now.Add(maxBlock)},
		{"negative Retry-After: minimum block", map[string]string{"Retry-After": "-5"}, now.Add(minBlock)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := http.Header{}
			for k, v := range tc.header {
				h.Set(k, v)
			}
			if got := retryAt(h, now); !got.Equal(tc.want) {
				t.Errorf("retryAt = %s, want %s", got, tc.want)
			}
		})
	}
}

func TestBlockerOnlyExtends(t *testing.T) {
	var b blocker
	now := time.Now()
	b.extend(now.Add(10 * time.Second))
	b.extend(now.Add(time.Second)) // a shorter 429 answer must not shorten the block
	if until, blocked := b.blockedUntil(now.Add(5 * time.Second)); !blocked || !until.Equal(now.Add(10*time.Second)) {
		t.Errorf("blockedUntil = %s, %v", until, blocked)
	}
	if _, blocked := b.blockedUntil(now.Add(10 * time.Second)); blocked {
		t.Error("still blocked at the reset time")
	}
}

func TestBackoffHonoursContext(t *testing.T) {
	s := &Source{backoffBase: time.Hour}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := s.backoff(ctx, 3); err != context.Canceled {
		t.Errorf("backoff with a canceled context = %v", err)
	}
}
