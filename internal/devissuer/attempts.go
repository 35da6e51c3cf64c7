package devissuer

import (
	"crypto/sha256"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Brute-force protection, like Auth0's: a username gets maxAttempts
// failed logins in a row, then one more per attemptRefill.
const (
	maxAttempts   = 5
	attemptRefill = time.Minute / maxAttempts
	// maxStrangers bounds the usernames no user has that are tracked,
	// so that guessing random usernames cannot grow memory without end.
	maxStrangers = 1024
)

// attempts rate-limits password logins per username. The configured
// users each have a limiter for the life of the issuer, so no flood of
// other names can evict theirs and reset their count. Other usernames
// are limited as well, or a 429 would tell which usernames exist; theirs
// live in a map of at most maxStrangers entries, keyed by a hash so that
// a long username costs no more memory than a short one.
type attempts struct {
	now func() time.Time

	mu        sync.Mutex
	users     map[string]*rate.Limiter   // by lower-cased username
	strangers map[[32]byte]*rate.Limiter // by SHA-256 of the lower-cased username
}

func newAttempts(now func() time.Time, us []User) *attempts {
	a := &attempts{now: now, users: make(map[string]*rate.Limiter, len(us)), strangers: map[[32]byte]*rate.Limiter{}}
	for _, u := range us {
		a.users[strings.ToLower(u.Username)] = newLimiter()
	}
	return a
}

func newLimiter() *rate.Limiter { return rate.NewLimiter(rate.Every(attemptRefill), maxAttempts) }

// allow takes one attempt for username, and is false when none is left.
func (a *attempts) allow(username string) bool {
	now := a.now()
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.limiterLocked(strings.ToLower(username), now).AllowN(now, 1)
}

// succeeded gives a username its attempts back after a login: like
// Auth0's, the count is of consecutive failures.
func (a *attempts) succeeded(username string) {
	name := strings.ToLower(username)
	a.mu.Lock()
	defer a.mu.Unlock()
	if _, ok := a.users[name]; ok {
		a.users[name] = newLimiter()
	}
}

func (a *attempts) limiterLocked(name string, now time.Time) *rate.Limiter {
	if l, ok := a.users[name]; ok {
		return l
	}
	key := sha256.Sum256([]byte(name))
	if l, ok := a.strangers[key]; ok {
		return l
	}
	if len(a.strangers) >= maxStrangers {
		a.evictLocked(now)
	}
	l := newLimiter()
	a.strangers[key] = l
	return l
}

// evictLocked makes room among the strangers: first by forgetting those
// whose attempts have all come back, which changes nothing, else by
// forgetting an eighth of them at random (which only gives those names
// their attempts back early). Freeing an eighth at once keeps a flood of
// new names from paying for a full sweep on every request.
func (a *attempts) evictLocked(now time.Time) {
	for k, l := range a.strangers {
		if l.TokensAt(now) >= maxAttempts {
			delete(a.strangers, k)
		}
	}
	for k := range a.strangers {
		if len(a.strangers) < maxStrangers-maxStrangers/8 {
			return
		}
		delete(a.strangers, k)
	}
}
