package benche2e

import (
	"fmt"
	"os"
	"sync"
	"testing"
)

// The gateway's Management API credentials at the tenant emulator
// (cmd/tenant).
const (
	M2MClientID     = "gateway-m2m"
	M2MClientSecret = "m2m-secret"
)

// ClientID is the id of the benchmark's i-th machine client.
func ClientID(i int) string { return fmt.Sprintf("svc-%05d", i) }

// ClientMetadata is the i-th client's client_metadata: five short string
// keys, the typical size the memory target is stated for.
func ClientMetadata(i int) map[string]string {
	tiers := [...]string{"gold", "silver", "bronze"}
	regions := [...]string{"eu-west-1", "us-east-1", "ap-south-1"}
	return map[string]string{
		"tier":        tiers[i%len(tiers)],
		"region":      regions[i%len(regions)],
		"tenant_id":   fmt.Sprintf("tenant-%05d", i),
		"plan":        "enterprise",
		"cost_center": fmt.Sprintf("cc-%04d", i%10000),
	}
}

// Env is the testing.TB that the fixtures of internal/testenv (the JWKS
// issuer, redis-server, the Auth0 emulator) take, for a program instead of
// a test: Cleanup collects functions that Close runs, Fatalf prints, runs
// them and exits. The fixtures call only the methods defined here; any
// other method of the embedded nil TB would panic.
type Env struct {
	testing.TB

	mu       sync.Mutex
	cleanups []func()
}

// Helper implements testing.TB.
func (*Env) Helper() {}

// Cleanup implements testing.TB.
func (e *Env) Cleanup(f func()) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.cleanups = append(e.cleanups, f)
}

// Logf implements testing.TB.
func (*Env) Logf(format string, args ...any) { fmt.Fprintf(os.Stderr, format+"\n", args...) }

// Errorf implements testing.TB; it is fatal here.
func (e *Env) Errorf(format string, args ...any) { e.Fatalf(format, args...) }

// Fatalf implements testing.TB: it prints, cleans up and exits 1.
func (e *Env) Fatalf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "bench-e2e: "+format+"\n", args...)
	e.Close()
	os.Exit(1)
}

// Fatal implements testing.TB.
func (e *Env) Fatal(args ...any) { e.Fatalf("%s", fmt.Sprint(args...)) }

// TempDir implements testing.TB: a new directory, removed by Close.
func (e *Env) TempDir() string {
	dir, err := os.MkdirTemp("", "bench-e2e-")
	if err != nil {
		e.Fatalf("temp dir: %v", err)
	}
	e.Cleanup(func() { _ = os.RemoveAll(dir) })
	return dir
}

// Close runs the cleanups, last registered first. It may be called more
// than once.
func (e *Env) Close() {
	e.mu.Lock()
	fs := e.cleanups
	e.cleanups = nil
	e.mu.Unlock()
	for i := len(fs) - 1; i >= 0; i-- {
		fs[i]()
	}
}
