package devissuer

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package if a test leaves a goroutine behind, such
// as a test server's.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
