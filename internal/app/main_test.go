package app

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package if its tests leave a goroutine behind: an App
// owns its servers, JWKS clients, verified-token and metadata caches,
// reloads and config watcher, and Shutdown must end them all.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
