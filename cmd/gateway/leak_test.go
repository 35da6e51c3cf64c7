package main

import (
	"fmt"
	"net/http"
	"os"
	"testing"

	"go.uber.org/goleak"
)

// TestMain checks that every goroutine `gateway serve` starts (servers,
// signal handling, the access-log flusher, reloads) has ended once its
// test stopped it. The tests' own idle client connections are closed
// first: they belong to the test, not to the gateway.
func TestMain(m *testing.M) {
	code := m.Run()
	http.DefaultClient.CloseIdleConnections()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}
	os.Exit(code)
}
