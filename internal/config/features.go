package config

import (
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/metagate/gateway/proxy/canon"
	"github.com/metagate/gateway/proxy/headername"
)

// TokenEndpoint puts a client's allow-listed client_metadata into the
// answer of its client-credentials token request (seed 001): the gateway
// serves Path on the public listener, forwards the request unchanged to
// Target, and adds Field to a successful answer. Off unless Enabled.
type TokenEndpoint struct {
	Enabled bool   `yaml:"enabled"`
	Path    string `yaml:"path"`
	// Target is the issuer's token endpoint. Default: the first issuer's
	// <issuer>oauth/token, or the dev issuer's when it is the issuer.
	Target string `yaml:"target"`
	// TargetURL is Target as validation parsed it (nil when the dev
	// issuer's address decides it at start).
	TargetURL *url.URL `yaml:"-"`
	// MetadataKeys is the allow-list of client_metadata keys added to
	// the answer; required, so nothing is published by accident.
	MetadataKeys []string `yaml:"metadata_keys"`
	Field        string   `yaml:"field"`
	// MaxBodyBytes bounds the token request's body; the issuer's answer
	// is bounded at 1 MiB.
	MaxBodyBytes int64    `yaml:"max_body_bytes"`
	Timeout      Duration `yaml:"timeout"`
}

// SelfService answers a caller's own identity and allow-listed metadata
// at Path on the public listener (seed 002): a SPA reads its user's
// app_metadata without a fat ID token and without the Management API.
type SelfService struct {
	Enabled      bool     `yaml:"enabled"`
	Path         string   `yaml:"path"`
	MetadataKeys []string `yaml:"metadata_keys"`
	// CORSOrigins are the browser origins (scheme://host[:port]) allowed
	// to call Path from another origin.
	CORSOrigins []string `yaml:"cors_origins"`
}

// Assertion sends the upstream a short-lived JWT signed by the gateway,
// carrying the caller and its forwarded metadata, so the upstream can
// verify what the headers say instead of trusting the network.
type Assertion struct {
	Enabled bool     `yaml:"enabled"`
	Header  string   `yaml:"header"`
	TTL     Duration `yaml:"ttl"`
	// KeyFile holds the signing key (PKCS#8 PEM), created on first use.
	// Replacing it (and reloading) rotates the key: the old public key
	// stays published until the last assertion it signed has expired.
	KeyFile string `yaml:"key_file"`
	// Algorithm is ES256 (P-256) or EdDSA (Ed25519) for a created key.
	Algorithm string `yaml:"algorithm"`
	// Issuer is the assertion's iss.
	Issuer string `yaml:"issuer"`
	// Audience is the assertion's aud. Default: the route's first
	// upstream URL.
	Audience string `yaml:"audience"`
}

// AssertionJWKSPath is where the gateway publishes the assertion keys,
// on both listeners.
const AssertionJWKSPath = "/.well-known/gateway/jwks.json"

// tokenFields are the standard token response fields, which the added
// metadata field may not replace.
var tokenFields = []string{"access_token", "token_type", "expires_in", "scope", "id_token", "refresh_token", "error", "error_description"}

// featureDefaults fills what the optional sections leave out.
func featureDefaults(cfg *Config) {
	t := &cfg.TokenEndpoint
	if t.Target == "" && len(cfg.Issuers) > 0 {
		t.Target = withSlash(cfg.Issuers[0].Issuer) + "oauth/token"
	}
}

func (cfg *Config) checkFeatures(c *checker) {
	paths := map[string]string{}
	path := func(key, p string) {
		if !strings.HasPrefix(p, "/") {
			c.add(key, "%q must start with /", p)
			return
		}
		if err := canon.CheckPattern(p); err != nil {
			c.add(key, "%q: %v", p, err)
		}
		f := canon.Fold(p)
		if other, ok := paths[f]; ok {
			c.add(key, "%q is also %s", p, other)
		}
		paths[f] = key
	}
	keys := func(key string, ks []string) {
		if len(ks) == 0 {
			c.add(key, "is required: list the metadata keys that may be published")
		}
		for i, k := range ks {
			if k == "" {
				c.add(fmt.Sprintf("%s[%d]", key, i), "must not be empty")
			}
		}
	}
	if a := cfg.Assertion; a.Enabled {
		paths[canon.Fold(AssertionJWKSPath)] = "the assertion JWKS"
	}
	if t := &cfg.TokenEndpoint; t.Enabled {
		path("token_endpoint.path", t.Path)
		keys("token_endpoint.metadata_keys", t.MetadataKeys)
		if cfg.Metadata.Source == "none" {
			c.add("token_endpoint.enabled", "needs a metadata source (metadata.source is none)")
		}
		switch {
		case t.Target != "":
			t.TargetURL = c.httpURL("token_endpoint.target", t.Target) // kept as parsed
		case !cfg.DevIssuer.Enabled:
			c.add("token_endpoint.target", "is required when there is no issuer to default to")
		}
		if t.Field == "" {
			c.add("token_endpoint.field", "must not be empty")
		}
		for _, f := range tokenFields {
			if t.Field == f {
				c.add("token_endpoint.field", "%q is a standard token response field", f)
			}
		}
		if t.MaxBodyBytes < 1024 || t.MaxBodyBytes > 1<<20 {
			c.add("token_endpoint.max_body_bytes", "must be between 1024 and 1048576, got %d", t.MaxBodyBytes)
		}
		if t.Timeout.D() <= 0 {
			c.add("token_endpoint.timeout", "must be positive, got %s", t.Timeout.D())
		}
	}
	if s := cfg.SelfService; s.Enabled {
		path("self_service.path", s.Path)
		keys("self_service.metadata_keys", s.MetadataKeys)
		c.origins("self_service.cors_origins", s.CORSOrigins)
	}
	if cfg.DevIssuer.Enabled {
		c.origins("dev_issuer.cors_origins", cfg.DevIssuer.CORSOrigins)
	}
	// Checked even when the assertion is off: the gateway strips this
	// header from every request either way, so an upstream that verifies
	// assertions never gets one a client brought along.
	c.headerName("assertion.header", cfg.Assertion.Header)
	if a := cfg.Assertion; a.Enabled {
		for _, n := range cfg.Headers.identityNames() {
			if n.name != "" && headername.Equal(n.name, a.Header) {
				c.add("assertion.header", "%q is also %s", a.Header, n.key)
			}
		}
		if a.TTL.D() < 5*time.Second || a.TTL.D() > time.Hour {
			c.add("assertion.ttl", "must be between 5s and 1h, got %s", a.TTL.D())
		}
		if a.KeyFile == "" {
			c.add("assertion.key_file", "is required")
		}
		c.oneOf("assertion.algorithm", a.Algorithm, "ES256", "EdDSA")
		if a.Issuer == "" {
			c.add("assertion.issuer", "must not be empty")
		}
	}
	cfg.checkClaimHeaders(c)
}

// namedHeader is one configured header name with its key path.
type namedHeader struct{ key, name string }

// identityNames are the headers the gateway sets for every caller.
func (h Headers) identityNames() []namedHeader {
	return []namedHeader{
		{"headers.client_id", h.ClientID}, {"headers.issuer", h.Issuer}, {"headers.client_name", h.ClientName},
		{"headers.kind", h.Kind}, {"headers.scopes", h.Scopes}, {"headers.user_id", h.UserID},
		{"headers.metadata_json", h.MetadataJSON}, {"headers.user_metadata_json", h.UserMetadataJSON},
	}
}

// checkClaimHeaders holds headers.claims to the rules of the other
// trusted headers: inside the namespace, and never the name of another.
func (cfg *Config) checkClaimHeaders(c *checker) {
	h := cfg.Headers
	var seen []namedHeader
	for _, claim := range sortedKeys(h.Claims) {
		name := h.Claims[claim]
		p := fmt.Sprintf("headers.claims[%q]", claim)
		if claim == "" {
			c.add(p, "the claim name must not be empty")
		}
		c.headerName(p, name)
		if !InNamespace(h.Namespace, name) {
			c.add(p, "%q is outside headers.namespace %v: clients could send it themselves", name, h.Namespace)
		}
		if h.MetadataPrefix != "" && headername.HasPrefix(name, h.MetadataPrefix) {
			c.add(p, "%q is under headers.metadata_prefix %q: a metadata key could overwrite it", name, h.MetadataPrefix)
		}
		for _, n := range append(h.identityNames(), seen...) {
			if n.name != "" && headername.Equal(n.name, name) {
				c.add(p, "%q is also %s", name, n.key)
			}
		}
		seen = append(seen, namedHeader{p, name})
	}
}

// origins checks a CORS allow-list: exact origins, no wildcard (it would
// let any site read what the endpoint answers its visitors).
func (c *checker) origins(key string, list []string) {
	for i, o := range list {
		p := fmt.Sprintf("%s[%d]", key, i)
		if o == "*" {
			c.add(p, "list each origin: a wildcard would let any site read what this endpoint answers its visitors")
			continue
		}
		if u := c.httpURL(p, o); u != nil && (u.Path != "" || u.RawQuery != "" || u.User != nil || u.Fragment != "") {
			c.add(p, "%q is not an origin (scheme://host[:port], nothing after)", o)
		}
	}
}
