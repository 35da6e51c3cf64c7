package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestCheckShortCacheTTLWithRedis is issue 19's config: a cache.ttl
// shorter than disconnected_ttl's 5s default, with Redis, and nothing
// else about the cache. check accepts it (the default follows cache.ttl),
// and still refuses a disconnected_ttl the file sets above cache.ttl,
// naming both keys and their lines.
func TestCheckShortCacheTTLWithRedis(t *testing.T) {
	const base = `issuers:
  - issuer: https://tenant.auth0.com/
    audiences: [https://api.example.com/]
routes:
  - match: {path_prefix: /}
    upstreams: [http://127.0.0.1:9000]
cache: {ttl: 2s, redis: {url: "redis://127.0.0.1:6379/0"}}
`
	file := filepath.Join(t.TempDir(), "gateway.yaml")
	if err := os.WriteFile(file, []byte(base), 0o600); err != nil {
		t.Fatal(err)
	}
	if code, out, stderr := runCLI("check", "--config", file); code != 0 || !strings.Contains(out, "configuration is valid") {
		t.Fatalf("check: exit %d\n%s%s", code, out, stderr)
	}

	tooLong := strings.Replace(base, `redis: {url: "redis://127.0.0.1:6379/0"}`, `redis: {url: "redis://127.0.0.1:6379/0", disconnected_ttl: 3s}`, 1)
	if err := os.WriteFile(file, []byte(tooLong), 0o600); err != nil {
		t.Fatal(err)
	}
	code, _, stderr := runCLI("check", "--config", file)
	want := file + ":7: cache.redis.disconnected_ttl: 3s must be at most cache.ttl (2s, set at line 7)"
	if code != 1 || !strings.Contains(stderr, want) {
		t.Errorf("disconnected_ttl 3s over cache.ttl 2s: exit %d, stderr\n%s\nwant it to say\n%s", code, stderr, want)
	}
}
