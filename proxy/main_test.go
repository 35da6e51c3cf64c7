package proxy

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package if a test leaves a goroutine behind: JWKS
// refreshers, cache maintenance and proxied connections all have owners
// that must stop them.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
