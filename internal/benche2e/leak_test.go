package benche2e

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain: every goroutine this package's tests start has ended by the
// time they finish.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
