//go:build race

package proxy

// raceEnabled: under the race detector sync.Pool drops a quarter of what
// is put back, on purpose, so pooled objects are allocated again now and
// then and allocation counts are not exact.
const raceEnabled = true
