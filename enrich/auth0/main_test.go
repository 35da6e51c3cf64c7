package auth0_test

import (
	"testing"

	"go.uber.org/goleak"
)

// Every test closes its tenant and its transports: no goroutine may outlive
// the package's tests.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
