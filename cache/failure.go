package cache

import (
	"errors"
	"fmt"
	"time"

	"github.com/maypok86/otter/v2"
)

// ErrRecentFailure is wrapped by the error of a Get answered from a
// remembered origin failure (Options.ErrorTTL): the origin was not asked.
// The error is a *RecentFailureError; RetryAfter reads when to try again.
var ErrRecentFailure = errors.New("origin failed recently")

// ErrStillFilling is wrapped by the error of a Get that waited
// Options.MaxWait for a fill still running: the origin was asked (or is
// about to be) and the fill stores its answer when it comes, so a Get soon
// after may find it. RetryAfter reports stillFillingRetry for it.
var ErrStillFilling = errors.New("fill still running")

// stillFillingRetry is RetryAfter's answer for ErrStillFilling: the
// fill's end is unknown, and a second is what an HTTP Retry-After can say
// at the least.
const stillFillingRetry = time.Second

// RecentFailureError is the error of a Get within Options.ErrorTTL of a
// failed load of the same key on this replica. errors.Is matches both
// ErrRecentFailure and the load's error, so a caller that classifies
// origin errors (rate limited, misconfigured) keeps doing so.
type RecentFailureError struct {
	Key string
	// Err is the error the loader returned.
	Err error
	// RetryIn is how long, from the Get, until the origin is asked again:
	// what an HTTP answer would put in Retry-After.
	RetryIn time.Duration
}

func (e *RecentFailureError) Error() string {
	return fmt.Sprintf("cache: load %q failed recently, not retried for %s: %v", e.Key, e.RetryIn.Round(time.Millisecond), e.Err)
}

// Unwrap returns ErrRecentFailure and the loader's error.
func (e *RecentFailureError) Unwrap() []error { return []error{ErrRecentFailure, e.Err} }

// RetryAfter reports how long until the key of a Get that failed with err
// is asked of the origin again, when err comes from a remembered failure
// (it wraps a *RecentFailureError), or from a wait that outlasted
// Options.MaxWait (ErrStillFilling); ok is false for any other error.
func RetryAfter(err error) (d time.Duration, ok bool) {
	var rf *RecentFailureError
	switch {
	case errors.As(err, &rf):
		return rf.RetryIn, true
	case errors.Is(err, ErrStillFilling):
		return stillFillingRetry, true
	}
	return 0, false
}

// failure is a remembered failed load.
type failure struct {
	at  time.Time // when the load started (Options.Now)
	err error
}

// newFailures is the L1 of failed loads: as bounded as L1 itself, each
// dropped by otter ErrorTTL after it was written (Get also checks the age
// on Options.Now, so a test clock decides).
func newFailures(opts Options, now func() time.Time) (*otter.Cache[string, failure], error) {
	c, err := otter.New(&otter.Options[string, failure]{
		MaximumSize: opts.MaxEntries,
		ExpiryCalculator: otter.ExpiryWritingFunc(func(e otter.Entry[string, failure]) time.Duration {
			return max(opts.ErrorTTL-now().Sub(e.Value.at), time.Millisecond)
		}),
	})
	if err != nil {
		return nil, fmt.Errorf("cache: create the L1 of failures: %w", err)
	}
	return c, nil
}

// recordFailure remembers that loading key failed with err, if ErrorTTL is
// set.
func (t *Tiered[V]) recordFailure(key string, err error, at time.Time) {
	if t.failures != nil {
		t.failures.Set(key, failure{at: at, err: err})
	}
}

// recentFailure returns the error for a Get of key at now within ErrorTTL
// of a failed load, or nil.
func (t *Tiered[V]) recentFailure(key string, now time.Time) *RecentFailureError {
	f, left := t.failureOf(key, now)
	if left <= 0 {
		return nil
	}
	return &RecentFailureError{Key: key, Err: f.err, RetryIn: left}
}

// failedRecently is recentFailure without the error (and its allocation).
func (t *Tiered[V]) failedRecently(key string, now time.Time) bool {
	_, left := t.failureOf(key, now)
	return left > 0
}

// failureOf returns key's remembered failure and how much of ErrorTTL it
// has left at now (<= 0: none).
func (t *Tiered[V]) failureOf(key string, now time.Time) (failure, time.Duration) {
	f, ok := t.failures.GetIfPresent(key)
	if !ok {
		return f, 0
	}
	return f, t.opts.ErrorTTL - max(now.Sub(f.at), 0)
}

// forgetFailure drops what was remembered of key (an invalidation: the
// origin changed, so it may answer now).
func (t *Tiered[V]) forgetFailure(key string) {
	if t.failures != nil {
		t.failures.Invalidate(key)
	}
}

func (t *Tiered[V]) forgetFailures() {
	if t.failures != nil {
		t.failures.InvalidateAll()
	}
}
