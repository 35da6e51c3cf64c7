package assertion

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package if a test leaves a goroutine behind: Close
// must stop the assertion cache's maintenance goroutines.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
