package testenv

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain: the fixtures (redis-server processes, Sentinel, Cluster, the
// OTLP receiver) leave no goroutine behind once their test ended.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
