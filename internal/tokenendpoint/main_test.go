package tokenendpoint_test

import (
	"testing"

	"go.uber.org/goleak"
)

// Every test closes its servers, verifiers, caches and transports: no
// goroutine may outlive the package's tests.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
