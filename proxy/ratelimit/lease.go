package ratelimit

import (
	"context"
	"sync"
	"time"

	"github.com/go-redis/redis_rate/v10"
)

// A replica asks Redis once per request for a caller it sees rarely. For
// a caller it sees often, two things spare round trips without giving up
// the one fleet-wide count:
//
//   - A lease: the replica takes a few tokens at once (redis_rate's
//     AllowAtMost, only out of what Redis last said remained) and spends
//     them on the caller's next requests; the requests that come while a
//     lease is on its way wait for it rather than each asking Redis.
//     Every token is counted in Redis before it is spent, so the fleet
//     never admits more than the limit; tokens not spent within leaseTTL
//     are dropped, so what a lease can hold back from the other replicas
//     is at most Policy.lease tokens per replica. The size starts at one
//     and doubles each time a lease is spent within leaseTTL (halves when
//     one expires unspent), up to 1% of the burst and at most maxLease:
//     a policy with a burst under 200 never leases.
//   - A refusal: Redis's GCRA answers when the next token is due
//     (RetryAfter); until then no replica can be allowed one, so the
//     replica refuses the caller's requests itself until that time. This
//     is exact, not an estimate, and a flood from one refused caller
//     costs Redis one call per emission interval instead of one per
//     request.
const (
	leaseTTL = 50 * time.Millisecond
	maxLease = 64
)

// leaseSize is a policy's largest lease.
func leaseSize(burst int) int { return min(max(burst/100, 1), maxLease) }

// leaseKey is per policy object, so a reload that changes a policy
// starts afresh.
type leaseKey struct {
	policy *Policy
	key    string
}

// lease is what one replica knows of one key's count in Redis.
type lease struct {
	mu        sync.Mutex
	tokens    int           // counted in Redis, not yet spent
	expires   time.Time     // tokens are dropped then
	ask       int           // tokens the next lease asks for
	refill    chan struct{} // closed when the lease on its way is in
	err       error         // that lease's failure
	blocked   time.Time     // no token is due before then (a refusal)
	remaining int           // Redis's remaining at the last answer
	resetAt   time.Time     // when the key is back to a full burst
}

// take spends a leased token or repeats a standing refusal; ok is false
// when Redis must be asked.
func (s *lease) take(now time.Time) (d Decision, ok bool) {
	if now.Before(s.blocked) {
		return Decision{RetryAfter: s.blocked.Sub(now), ResetAfter: max(s.resetAt.Sub(now), 0)}, true
	}
	if s.tokens > 0 {
		if now.Before(s.expires) {
			s.tokens--
			return Decision{Allowed: true, Remaining: s.remaining + s.tokens, ResetAfter: max(s.resetAt.Sub(now), 0)}, true
		}
		s.tokens = 0 // expired unspent: ask for less next time
		s.ask = max(s.ask/2, 1)
	} else if now.Before(s.expires) {
		s.ask = min(s.ask*2, maxLease) // spent within leaseTTL: ask for more
	}
	return Decision{}, false
}

// grant records Redis's answer to a request for one token or a lease,
// one of whose tokens is this request's.
func (s *lease) grant(now time.Time, res *redis_rate.Result) Decision {
	reset := max(res.ResetAfter, 0)
	s.remaining, s.resetAt = res.Remaining, now.Add(reset)
	if res.Allowed == 0 {
		s.blocked = now.Add(res.RetryAfter)
		return Decision{RetryAfter: max(res.RetryAfter, 0), ResetAfter: reset}
	}
	if res.Allowed > 1 || s.tokens == 0 {
		s.expires = now.Add(leaseTTL)
	}
	s.tokens += res.Allowed - 1
	return Decision{Allowed: true, Remaining: res.Remaining + s.tokens, ResetAfter: reset}
}

// leaseOf is the key's lease, made on first use.
func (l *Limiter) leaseOf(p *Policy, key string) *lease {
	k := leaseKey{p, key}
	s, ok := l.leases.GetIfPresent(k)
	if !ok {
		s, _ = l.leases.SetIfAbsent(k, &lease{ask: 1})
	}
	return s
}

// allowRedis decides from the key's lease or with one round trip, whose
// time is bounded by the client's own read and write timeouts
// (cache.redis.timeout for the cache's client); past them the request is
// decided locally.
func (l *Limiter) allowRedis(ctx context.Context, p *Policy, key string) (Decision, error) {
	s := l.leaseOf(p, key)
	s.mu.Lock()
	for {
		if d, ok := s.take(l.now()); ok {
			s.mu.Unlock()
			return d, nil
		}
		if s.refill == nil {
			break
		}
		// A lease is on its way: its tokens are for the requests that
		// wait for it, not a round trip each.
		wait := s.refill
		s.mu.Unlock()
		select {
		case <-wait:
		case <-ctx.Done():
			return Decision{}, ctx.Err()
		}
		s.mu.Lock()
		if s.err != nil {
			err := s.err
			s.mu.Unlock()
			return Decision{}, err
		}
	}
	// A lease is asked for only out of what Redis last said remained:
	// redis_rate's AllowAtMost charges a fractional remainder in full,
	// so near the limit, where that would waste tokens, every request
	// asks for its own, and those share pipelines instead.
	s.ask = min(s.ask, p.lease)
	n := max(min(s.ask, s.remaining), 1)
	var done chan struct{}
	if n > 1 {
		done = make(chan struct{})
		s.refill, s.err = done, nil
	}
	s.mu.Unlock()

	// One hash-tagged key per counter, so a cluster keeps each on one
	// node; redis_rate adds its "rate:" in front.
	rkey := l.prefix + ":v1:rl:{" + p.Name + "\x00" + key + "}"
	var res *redis_rate.Result
	var err error
	if n == 1 {
		res, err = l.redis.Allow(ctx, rkey, p.limit)
	} else {
		res, err = l.redis.AllowAtMost(ctx, rkey, p.limit, n)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if done != nil {
		s.refill, s.err = nil, err
		close(done)
	}
	if err != nil {
		return Decision{}, err
	}
	return s.grant(l.now(), res), nil
}
