package testenv

import (
	"testing"
	"time"
)

// pollEvery is how often Eventually and Poll look again: often enough that
// a test waiting for something that takes milliseconds is not slowed, far
// enough apart not to load two shared cores.
const pollEvery = 5 * time.Millisecond

// Eventually waits until cond holds, failing the test with what after
// within. It is the one poll-until of the test suites: arguments are
// always (tb, within, what, cond).
func Eventually(tb testing.TB, within time.Duration, what string, cond func() bool) {
	tb.Helper()
	if !Poll(within, cond) {
		tb.Fatalf("timed out after %s waiting for %s", within, what)
	}
}

// Poll reports whether cond held before within passed, for a test that
// decides itself what a timeout means.
func Poll(within time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(pollEvery)
	}
	return true
}
