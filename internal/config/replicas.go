package config

import (
	"strings"
	"time"
)

// Invalidation is how a change made in Auth0 reaches every replica before
// its cached copy expires: a receiver for Auth0's log stream and an admin
// API, both publishing on the Redis invalidation bus.
type Invalidation struct {
	// AdminToken protects the admin API (POST /admin/cache/invalidate,
	// DELETE /admin/cache, GET /admin/cache/entry) on the admin
	// listener; empty turns the API off.
	AdminToken     string `yaml:"admin_token"`
	AdminTokenFile string `yaml:"admin_token_file"`
	// Auth0LogStream receives Auth0's custom webhook log stream on the
	// public listener.
	Auth0LogStream LogStream `yaml:"auth0_log_stream"`
}

// LogStream is the Auth0 custom webhook receiver. It is on when
// Authorization (or AuthorizationFile) is set.
type LogStream struct {
	Path string `yaml:"path"`
	// Authorization is the exact Authorization header value configured
	// in the Auth0 stream ("Bearer <random>"), compared in constant time.
	Authorization     string `yaml:"authorization"`
	AuthorizationFile string `yaml:"authorization_file"`
	MaxBodyBytes      int64  `yaml:"max_body_bytes"`
}

// Circuit stops calls to a failing Management API: after Threshold
// consecutive failures (5xx, timeouts, connection errors) it opens for
// OpenFor, during which only one probe per period goes out.
type Circuit struct {
	Threshold int      `yaml:"threshold"`
	OpenFor   Duration `yaml:"open_for"`
}

func invalidationDefaults() Invalidation {
	return Invalidation{Auth0LogStream: LogStream{Path: "/hooks/auth0/log-stream", MaxBodyBytes: 1 << 20}}
}

func (cfg *Config) checkReplicas(c *checker) {
	ls := cfg.Invalidation.Auth0LogStream
	if ls.Authorization != "" && ls.AuthorizationFile != "" {
		c.add("invalidation.auth0_log_stream", "set authorization or authorization_file, not both")
	}
	if ls.Authorization != "" || ls.AuthorizationFile != "" {
		if ls.MaxBodyBytes < 1024 || ls.MaxBodyBytes > 64<<20 {
			c.add("invalidation.auth0_log_stream.max_body_bytes", "must be between 1024 and 67108864, got %d", ls.MaxBodyBytes)
		}
	}
	if on := ls.Authorization != "" || ls.AuthorizationFile != ""; on && cfg.Metadata.Source == "none" {
		c.add("invalidation.auth0_log_stream", "needs a metadata source (metadata.source is none): there is nothing to invalidate")
	}
	if on := ls.Authorization != "" || ls.AuthorizationFile != ""; on && !strings.HasPrefix(ls.Path, "/") {
		c.add("invalidation.auth0_log_stream.path", "%q must start with /", ls.Path)
	}
	if cfg.Invalidation.AdminToken != "" && cfg.Invalidation.AdminTokenFile != "" {
		c.add("invalidation", "set admin_token or admin_token_file, not both")
	}
	if k := cfg.Cache; k.ErrorTTL < 0 || k.ErrorTTL.D() > time.Minute {
		c.add("cache.error_ttl", "must be between 0s and 1m, got %s", k.ErrorTTL.D())
	}
	if k := cfg.Cache.Redis; k.URL != "" {
		if strings.ContainsAny(k.Prefix, "{}") {
			c.add("cache.redis.prefix", "%q must not contain { or }: they set Redis Cluster hash slots", k.Prefix)
		}
	}
	cfg.checkFollowers(c)
	if ci := cfg.Metadata.Auth0.Circuit; ci.Threshold < 0 || ci.OpenFor.D() < 0 {
		c.add("metadata.auth0.circuit", "threshold (0: off) and open_for must not be negative")
	} else if ci.Threshold > 0 && ci.OpenFor.D() < 100*time.Millisecond {
		c.add("metadata.auth0.circuit.open_for", "must be at least 100ms, got %s", ci.OpenFor.D())
	}
}

// replicaSecrets reads the invalidation secrets like the others, and
// refuses guessable ones: each guards a way to make every replica drop
// its cache.
func (cfg *Config) replicaSecrets(c *checker, read func(path, file string, dst *string)) {
	read("invalidation.admin_token_file", cfg.Invalidation.AdminTokenFile, &cfg.Invalidation.AdminToken)
	ls := &cfg.Invalidation.Auth0LogStream
	read("invalidation.auth0_log_stream.authorization_file", ls.AuthorizationFile, &ls.Authorization)
	if t := cfg.Invalidation.AdminToken; t != "" && len(t) < minSecretLen {
		c.add("invalidation.admin_token", "must be at least %d characters", minSecretLen)
	}
	if a := ls.Authorization; a != "" && len(a) < minSecretLen {
		c.add("invalidation.auth0_log_stream.authorization", "must be at least %d characters (the whole Authorization value, e.g. \"Bearer <random>\")", minSecretLen)
	}
}

// minSecretLen is the shortest shared secret accepted.
const minSecretLen = 16
