package config

import (
	"fmt"
	"time"
)

// keyLines maps each key path the file sets to the line of its key (the
// key walker's record). It tells a value the user wrote from one Default
// filled in, so a default bounded by another key can follow that key, and
// a message about a defaulted value can say which key of the user's
// caused it.
type keyLines map[string]int

func (s keyLines) has(path string) bool {
	_, ok := s[path]
	return ok
}

// value is a message's subject, which the error's key path already names:
// "3s" when the file sets it, "the default 5s (not set)" when it does not.
func (s keyLines) value(path string, v any) string {
	if s.has(path) {
		return fmt.Sprint(v)
	}
	return fmt.Sprintf("the default %v (not set)", v)
}

// about names another key's value for a message: "cache.ttl (2s, set at line 3)" or
// "cache.redis.disconnected_ttl (default 5s, not set)".
func (s keyLines) about(path string, v any) string {
	if line, ok := s[path]; ok {
		return fmt.Sprintf("%s (%v, set at line %d)", path, v, line)
	}
	return fmt.Sprintf("%s (default %v, not set)", path, v)
}

// Defaults of keys bounded by another key. They are constants only while
// that key leaves room for them; followDefaults derives the rest.
const (
	// defaultDisconnectedTTL is cache.redis.disconnected_ttl's default,
	// at most cache.ttl: an entry is not trusted past its freshness
	// anyway, so the cap never needs to be longer.
	defaultDisconnectedTTL = 5 * time.Second
	// minDisconnectedTTL keeps the re-checks of a deaf replica from
	// running more often than this; a cache.ttl shorter still re-checks
	// as often as the entries expire.
	minDisconnectedTTL = 100 * time.Millisecond
	// defaultClaimTTL is cache.redis.claim_ttl's default while one
	// Management API attempt (metadata.auth0.timeout) fits in it with
	// claimMargin to spare.
	defaultClaimTTL = 10 * time.Second
	claimMargin     = time.Second
	// minClaimTTL and maxClaimTTL are claim_ttl's valid range.
	minClaimTTL = 100 * time.Millisecond
	maxClaimTTL = time.Minute
)

// followDefaults sets the keys the file leaves out whose default depends
// on a key it may set: cache.redis.disconnected_ttl follows cache.ttl
// (min(5s, cache.ttl)), and cache.redis.claim_ttl follows
// metadata.auth0.timeout (10s, or the timeout plus 1s when that is
// longer, at most 1m), so a holder's claim outlasts its Management API
// attempt. A key the file sets is never changed: it is validated as
// written.
func (cfg *Config) followDefaults(set keyLines) {
	k := &cfg.Cache
	if !set.has("cache.redis.disconnected_ttl") && k.TTL > 0 {
		k.Redis.DisconnectedTTL = Duration(min(defaultDisconnectedTTL, k.TTL.D()))
	}
	if !set.has("cache.redis.claim_ttl") {
		claim := maxClaimTTL
		if attempt := cfg.Metadata.Auth0.Timeout.D(); attempt < maxClaimTTL-claimMargin {
			claim = max(defaultClaimTTL, attempt+claimMargin)
		}
		k.Redis.ClaimTTL = Duration(claim)
	}
}

// checkFollowers validates the keys followDefaults derives, naming the
// key the user set when the bound comes from it.
func (cfg *Config) checkFollowers(c *checker) {
	k := cfg.Cache
	if k.Redis.URL == "" {
		return
	}
	if d := k.Redis.ClaimTTL.D(); d < minClaimTTL || d > maxClaimTTL {
		c.add("cache.redis.claim_ttl", "must be between %s and %s, got %s", minClaimTTL, maxClaimTTL, d)
	}
	if k.TTL <= 0 {
		return // cache.ttl is reported itself
	}
	d, ttl := k.Redis.DisconnectedTTL.D(), k.TTL.D()
	const path = "cache.redis.disconnected_ttl"
	switch low := min(minDisconnectedTTL, ttl); {
	case d > ttl:
		c.add(path, "%s must be at most %s", c.set.value(path, d), c.set.about("cache.ttl", ttl))
	case d < low:
		c.add(path, "%s must be at least %s (or cache.ttl when that is shorter)", c.set.value(path, d), low)
	}
}
