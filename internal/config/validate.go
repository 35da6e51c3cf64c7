package config

import (
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/net/http/httpguts"

	"github.com/metagate/gateway/cache"

	"github.com/metagate/gateway/internal/gctune"
	"github.com/metagate/gateway/proxy/headername"
)

// maxLeeway bounds clock-skew tolerance: more than this would keep expired
// tokens alive for longer than any clock drift explains.
const maxLeeway = 5 * time.Minute

// allowedAlgorithms are the asymmetric JWS algorithms the gateway verifies.
// Symmetric (HS*) and "none" are never accepted: a gateway holding a shared
// secret could be tricked into key confusion, and "none" is no signature.
var allowedAlgorithms = map[string]bool{
	"RS256": true, "RS384": true, "RS512": true,
	"PS256": true, "PS384": true, "PS512": true,
	"ES256": true, "ES384": true, "ES512": true,
	"EdDSA": true,
}

type checker struct {
	file string
	errs Errors
	// set are the keys the file sets, for messages about a defaulted
	// value that a set key made wrong.
	set keyLines
}

func (c *checker) add(path, format string, args ...any) {
	c.errs = append(c.errs, &Error{File: c.file, Path: path, Msg: fmt.Sprintf(format, args...)})
}

func (c *checker) hostPort(path, v string) {
	if _, port, err := net.SplitHostPort(v); err != nil || port == "" {
		c.add(path, "%q is not a host:port address", v)
	}
}

// httpURL accepts https anywhere and plain http only for loopback hosts, so
// keys and tokens never travel in clear text outside the machine.
func (c *checker) httpURL(path, v string) *url.URL {
	u, err := url.Parse(v)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		c.add(path, "%q is not an absolute http(s) URL", v)
		return nil
	}
	if u.Scheme == "http" && !isLoopback(u.Hostname()) {
		c.add(path, "%q uses plain http to a non-loopback host; use https", v)
	}
	return u
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func (c *checker) oneOf(path, v string, allowed ...string) {
	for _, a := range allowed {
		if v == a {
			return
		}
	}
	c.add(path, "%q is not one of %s", v, strings.Join(allowed, ", "))
}

func (c *checker) headerName(path, v string) {
	if !httpguts.ValidHeaderFieldName(v) {
		c.add(path, "%q is not a valid header name", v)
	}
}

func (cfg *Config) validate(set keyLines) Errors {
	c := &checker{file: cfg.File, set: set}
	s := cfg.Server
	c.hostPort("server.listen", s.Listen)
	if s.AdminListen != "" {
		c.hostPort("server.admin_listen", s.AdminListen)
	}
	if s.MaxTokenBytes <= 0 || s.MaxTokenBytes > 1<<20 {
		c.add("server.max_token_bytes", "must be between 1 and 1048576, got %d", s.MaxTokenBytes)
	}
	if s.MaxHeaderBytes < 4096 {
		c.add("server.max_header_bytes", "must be at least 4096, got %d", s.MaxHeaderBytes)
	}
	if s.ReadTimeout.D() < 100*time.Millisecond {
		c.add("server.read_timeout", "must be at least 100ms, got %s", s.ReadTimeout.D())
	}
	if s.MaxConnections < 1 {
		c.add("server.max_connections", "must be at least 1, got %d", s.MaxConnections)
	}
	if s.UpstreamMaxConnections < 1 {
		c.add("server.upstream_max_connections", "must be at least 1, got %d", s.UpstreamMaxConnections)
	}
	if s.Realm == "" || strings.ContainsAny(s.Realm, "\"\\\r\n") {
		c.add("server.realm", "must be non-empty and contain no quotes, backslashes or line breaks")
	}
	c.oneOf("log.format", cfg.Log.Format, "json", "console")
	c.oneOf("log.level", cfg.Log.Level, "debug", "info", "warn", "error")

	seen := map[string]bool{}
	for i, is := range cfg.Issuers {
		p := fmt.Sprintf("issuers[%d]", i)
		cfg.checkIssuer(c, p, is)
		if seen[is.Issuer] {
			c.add(p+".issuer", "%q is configured twice", is.Issuer)
		}
		seen[is.Issuer] = true
	}
	cfg.checkDevIssuer(c)
	if len(cfg.Issuers) == 0 && !cfg.DevIssuer.Enabled {
		c.add("issuers", "at least one issuer is required (or enable dev_issuer for local development)")
	}
	cfg.checkMetadata(c)
	cfg.checkCache(c)
	cfg.checkHeaders(c)
	cfg.checkFeatures(c)
	cfg.checkReplicas(c)
	if len(cfg.Routes) == 0 {
		c.add("routes", "at least one route is required")
	}
	for i := range cfg.Routes {
		cfg.checkRoute(c, i)
	}
	cfg.checkPolicies(c)
	cfg.checkRateLimits(c)
	if (s.TLS.CertFile == "") != (s.TLS.KeyFile == "") {
		c.add("server.tls", "set both cert_file and key_file, or neither")
	}
	cfg.Server.TrustedPrefixes = nil
	for i, p := range s.TrustedProxies {
		pp, err := netip.ParsePrefix(p)
		if err != nil {
			c.add(fmt.Sprintf("server.trusted_proxies[%d]", i), "%q is not a CIDR such as 10.0.0.0/8", p)
			continue
		}
		// Kept as parsed: building the runtime never parses again.
		cfg.Server.TrustedPrefixes = append(cfg.Server.TrustedPrefixes, pp)
	}
	if cfg.DemoUpstream.Enabled {
		c.hostPort("demo_upstream.listen", cfg.DemoUpstream.Listen)
	}
	if s.DrainDelay < 0 || s.DrainDelay.D() > 5*time.Minute {
		c.add("server.drain_delay", "must be between 0s and 5m, got %s", s.DrainDelay.D())
	}
	if s.ShutdownTimeout <= 0 {
		c.add("server.shutdown_timeout", "must be positive, got %s", s.ShutdownTimeout.D())
	}
	if s.WatchConfig != 0 && s.WatchConfig.D() < 100*time.Millisecond {
		c.add("server.watch_config", "must be 0s (off) or at least 100ms, got %s", s.WatchConfig.D())
	}
	cfg.checkGC(c)
	cfg.checkTracing(c)
	return c.errs
}

// minMemoryLimit catches a unit slip ("512KiB" for "512MiB"): below it the
// collector would run nearly all the time.
const minMemoryLimit = 32 << 20

func (cfg *Config) checkGC(c *checker) {
	s := cfg.Server
	limit, auto, err := gctune.ParseMemoryLimit(s.MemoryLimit)
	switch {
	case err != nil:
		c.add("server.memory_limit", "%v", err)
	case !auto && limit != 0 && limit < minMemoryLimit:
		c.add("server.memory_limit", "%q is below the minimum of 32MiB (0 means no limit)", s.MemoryLimit)
	}
	if p := s.GCPercent; p != nil {
		switch {
		case *p == -1 && err == nil && !auto && limit == 0:
			c.add("server.gc_percent", "-1 turns the garbage collector off, which needs a memory limit, and server.memory_limit is 0 (none)")
		case *p != -1 && *p < 1:
			c.add("server.gc_percent", "must be -1 (off, with a memory limit) or a positive percent, got %d", *p)
		}
	}
}

func (cfg *Config) checkTracing(c *checker) {
	t := cfg.Tracing
	if t.OTLPEndpoint == "" {
		return
	}
	// Plain http is fine here: collectors usually sit in-cluster, and spans
	// carry no tokens or metadata values.
	if u, err := url.Parse(t.OTLPEndpoint); err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		c.add("tracing.otlp_endpoint", "%q is not an absolute http(s) URL such as http://otel-collector:4318", t.OTLPEndpoint)
	}
	if t.ServiceName == "" {
		c.add("tracing.service_name", "must not be empty")
	}
	if t.SampleRatio < 0 || t.SampleRatio > 1 {
		c.add("tracing.sample_ratio", "must be between 0 and 1, got %v", t.SampleRatio)
	}
	if t.Timeout <= 0 {
		c.add("tracing.timeout", "must be positive, got %s", t.Timeout.D())
	}
}

func (cfg *Config) checkRoute(c *checker, i int) {
	r := &cfg.Routes[i]
	p := fmt.Sprintf("routes[%d]", i)
	c.oneOf(p+".auth", r.Auth, "required", "optional", "public")
	m := r.Match
	switch {
	case m.PathPrefix == "" && m.Path == "":
		c.add(p+".match", "set path_prefix or path")
	case m.PathPrefix != "" && m.Path != "":
		c.add(p+".match", "set path_prefix or path, not both")
	}
	for key, v := range map[string]string{".match.path_prefix": m.PathPrefix, ".match.path": m.Path, ".strip_prefix": r.StripPrefix, ".add_prefix": r.AddPrefix} {
		if v == "" {
			continue
		}
		checkPathPattern(c, p, key, v)
	}
	for j, x := range r.Relax {
		c.oneOf(fmt.Sprintf("%s.relax[%d]", p, j), x, "encoded_slash")
	}
	if r.MaxUpstreamConnections < 0 {
		c.add(p+".max_upstream_connections", "must not be negative")
	}
	for j, h := range m.Hosts {
		bare := strings.TrimPrefix(h, "*.")
		if h == "" || strings.ContainsAny(bare, "*/: ") {
			c.add(fmt.Sprintf("%s.match.hosts[%d]", p, j), "%q is not a host name or *.domain wildcard", h)
		}
	}
	for j, meth := range m.Methods {
		if !httpguts.ValidHeaderFieldName(meth) || strings.ToUpper(meth) != meth {
			c.add(fmt.Sprintf("%s.match.methods[%d]", p, j), "%q is not an upper-case HTTP method", meth)
		}
		if meth == "CONNECT" || meth == "TRACE" {
			c.add(fmt.Sprintf("%s.match.methods[%d]", p, j), "%s is never forwarded (the gateway answers it 405)", meth)
		}
	}
	if len(r.Upstreams) == 0 {
		c.add(p+".upstreams", "at least one upstream URL is required")
	}
	r.UpstreamURLs = nil
	for j, u := range r.Upstreams {
		pu, err := url.Parse(u)
		if err != nil || pu.Host == "" || (pu.Scheme != "http" && pu.Scheme != "https") {
			c.add(fmt.Sprintf("%s.upstreams[%d]", p, j), "%q is not an absolute http(s) URL", u)
			continue
		}
		r.UpstreamURLs = append(r.UpstreamURLs, pu) // kept as parsed, like trusted_proxies
	}
	for j, k := range r.Callers {
		c.oneOf(fmt.Sprintf("%s.callers[%d]", p, j), k, "client", "user")
	}
	if r.Auth == "public" && (len(r.Scopes.AllOf)+len(r.Scopes.AnyOf)+len(r.Callers)+len(r.Audiences) > 0) {
		c.add(p+".auth", "a public route cannot require scopes, callers or audiences")
	}
	if r.MaxBodyBytes < 0 {
		c.add(p+".max_body_bytes", "must not be negative")
	}
	if r.Timeouts.Dial < 0 || r.Timeouts.ResponseHeader < 0 || r.UnhealthyFor < 0 {
		c.add(p+".timeouts", "durations must not be negative")
	}
}

func (cfg *Config) checkIssuer(c *checker, p string, is Issuer) {
	if is.Issuer == "" {
		c.add(p+".issuer", "is required")
	} else if strings.ContainsFunc(is.Issuer, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
		c.add(p+".issuer", "%q contains whitespace or control characters", is.Issuer)
	} else {
		c.httpURL(p+".issuer", is.Issuer)
	}
	if len(is.Audiences) == 0 {
		c.add(p+".audiences", "at least one audience is required")
	}
	for j, a := range is.Audiences {
		if a == "" {
			c.add(fmt.Sprintf("%s.audiences[%d]", p, j), "must not be empty")
		}
	}
	if is.JWKSURL != "" {
		c.httpURL(p+".jwks_url", is.JWKSURL)
	}
	for j, a := range is.Algorithms {
		if !allowedAlgorithms[a] {
			c.add(fmt.Sprintf("%s.algorithms[%d]", p, j), "%q is not an accepted algorithm (asymmetric only: RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, ES512, EdDSA)", a)
		}
	}
	if is.Leeway < 0 || is.Leeway.D() > maxLeeway {
		c.add(p+".leeway", "must be between 0s and %s, got %s", maxLeeway, is.Leeway.D())
	}
	if is.JWKSRefresh.D() < time.Second {
		c.add(p+".jwks_refresh", "must be at least 1s, got %s", is.JWKSRefresh.D())
	}
	if is.UnknownKIDRefresh <= 0 {
		c.add(p+".unknown_kid_refresh", "must be positive, got %s", is.UnknownKIDRefresh.D())
	}
}

func (cfg *Config) checkDevIssuer(c *checker) {
	d := &cfg.DevIssuer
	if !d.Enabled {
		return
	}
	c.hostPort("dev_issuer.listen", d.Listen)
	c.httpURL("dev_issuer.issuer", d.Issuer)
	if d.Audience == "" {
		c.add("dev_issuer.audience", "is required")
	}
	if d.KeyFile == "" {
		c.add("dev_issuer.key_file", "is required")
	}
	if d.TokenTTL.D() < time.Second {
		c.add("dev_issuer.token_ttl", "must be at least 1s, got %s", d.TokenTTL.D())
	}
	ids := map[string]bool{}
	for i, cl := range d.Clients {
		p := fmt.Sprintf("dev_issuer.clients[%d]", i)
		if cl.ID == "" {
			c.add(p+".id", "is required")
		}
		if ids[cl.ID] {
			c.add(p+".id", "%q is declared twice", cl.ID)
		}
		ids[cl.ID] = true
		if (cl.Secret == "") == (cl.SecretFile == "") {
			c.add(p, "set exactly one of secret (may come from ${ENV}) or secret_file")
		}
	}
	for _, is := range cfg.Issuers {
		if is.Issuer == d.Issuer {
			c.add("dev_issuer.issuer", "%q is also listed under issuers", d.Issuer)
		}
	}
	cfg.checkDevUsers(c)
	if len(cfg.Issuers) > 0 && !d.AllowWithIssuers {
		c.add("dev_issuer.enabled", "the dev issuer mints tokens for anyone who can reach it: it cannot run beside real issuers unless dev_issuer.allow_with_issuers is true")
	}
}

func (cfg *Config) checkMetadata(c *checker) {
	m := cfg.Metadata
	c.oneOf("metadata.source", m.Source, "local", "auth0", "none")
	c.oneOf("metadata.on_unknown", m.OnUnknown, "reject", "forward")
	known := map[string]bool{}
	for _, is := range cfg.Issuers {
		known[is.Issuer] = true
	}
	if cfg.DevIssuer.Enabled {
		known[cfg.DevIssuer.Issuer] = true
	}
	for i, is := range m.Issuers {
		if !known[is] {
			c.add(fmt.Sprintf("metadata.issuers[%d]", i), "%q is not a configured issuer (issuers[].issuer or dev_issuer.issuer)", is)
		}
	}
	if m.Source != "auth0" {
		return
	}
	a := &cfg.Metadata.Auth0
	if a.ManagementURL == "" {
		c.add("metadata.auth0.management_url", "is required when no issuer is configured (the tenant's canonical https://TENANT.auth0.com, not a custom domain)")
	} else if u := c.httpURL("metadata.auth0.management_url", a.ManagementURL); u != nil && u.Path != "" && u.Path != "/" {
		c.add("metadata.auth0.management_url", "%q must be a scheme and host only (the /api/v2/ path is added)", a.ManagementURL)
	}
	if a.TokenURL != "" {
		c.httpURL("metadata.auth0.token_url", a.TokenURL)
	}
	if a.ClientID == "" {
		c.add("metadata.auth0.client_id", "is required")
	}
	if (a.ClientSecret == "") == (a.ClientSecretFile == "") {
		c.add("metadata.auth0", "set exactly one of client_secret (from ${ENV}) or client_secret_file")
	}
	if a.RatePerSecond <= 0 {
		c.add("metadata.auth0.rate_per_second", "must be positive, got %g", a.RatePerSecond)
	}
	if a.Burst < 1 {
		c.add("metadata.auth0.burst", "must be at least 1, got %d", a.Burst)
	}
	if a.Timeout <= 0 {
		c.add("metadata.auth0.timeout", "must be positive")
	}
	if a.MaxRetries < 0 || a.MaxRetries > 10 {
		c.add("metadata.auth0.max_retries", "must be between 0 and 10, got %d", a.MaxRetries)
	}
	if a.LookupDeadline <= 0 {
		c.add("metadata.auth0.lookup_deadline", "must be positive")
	}
}

func (cfg *Config) checkCache(c *checker) {
	k := cfg.Cache
	if k.TTL <= 0 {
		c.add("cache.ttl", "must be positive")
	}
	for path, d := range map[string]Duration{"cache.negative_ttl": k.NegativeTTL, "cache.stale_while_revalidate": k.StaleWhileRevalidate, "cache.stale_if_error": k.StaleIfError} {
		if d < 0 {
			c.add(path, "must not be negative")
		}
	}
	if k.MaxEntries <= 0 {
		c.add("cache.max_entries", "must be positive, got %d", k.MaxEntries)
	}
	if k.Redis.URL != "" {
		if err := cache.CheckRedisURL(k.Redis.URL); err != nil {
			c.add("cache.redis.url", "%v", err)
		}
		if k.Redis.Timeout <= 0 {
			c.add("cache.redis.timeout", "must be positive")
		}
		if k.Redis.Prefix == "" || strings.ContainsAny(k.Redis.Prefix, " :") {
			c.add("cache.redis.prefix", "must be non-empty without spaces or colons, got %q", k.Redis.Prefix)
		}
	}
}

func (cfg *Config) checkHeaders(c *checker) {
	h := cfg.Headers
	if len(h.Namespace) == 0 {
		c.add("headers.namespace", "at least one prefix is required")
	}
	for i, ns := range h.Namespace {
		c.headerName(fmt.Sprintf("headers.namespace[%d]", i), ns)
	}
	named := append(h.identityNames(), namedHeader{"headers.metadata_prefix", h.MetadataPrefix})
	for _, n := range named {
		path, name := n.key, n.name
		if name == "" {
			continue // an empty name turns that header off
		}
		c.headerName(path, name)
		if !InNamespace(h.Namespace, name) {
			c.outsideNamespace(path, name, h.Namespace)
		}
		if path != "headers.metadata_prefix" && h.MetadataPrefix != "" && headername.HasPrefix(name, h.MetadataPrefix) {
			c.add("headers.metadata_prefix", "%s covers %s: a metadata key could overwrite that identity header",
				c.set.value("headers.metadata_prefix", strconv.Quote(h.MetadataPrefix)), c.set.about(path, strconv.Quote(name)))
		}
	}
	for i, name := range h.StripUntrusted {
		c.headerName(fmt.Sprintf("headers.strip_untrusted[%d]", i), name)
	}
	if h.MaxValueBytes < 16 {
		c.add("headers.max_value_bytes", "must be at least 16, got %d", h.MaxValueBytes)
	}
	if h.MaxJSONBytes < 2 {
		c.add("headers.max_json_bytes", "must be at least 2, got %d", h.MaxJSONBytes)
	}
}

// outsideNamespace reports a trusted header name outside the namespace.
// A default name is usually outside because the file set its own
// namespace, so the message then names both keys and how to fix it.
func (c *checker) outsideNamespace(path, name string, namespace []string) {
	if c.set.has(path) {
		c.add(path, "%q is outside headers.namespace %v: clients could send it themselves", name, namespace)
		return
	}
	c.add(path, "%s is outside %s: clients could send it themselves; set this key to a name inside the namespace, or to \"\" to turn it off",
		c.set.value(path, strconv.Quote(name)), c.set.about("headers.namespace", fmt.Sprint(namespace)))
}

// InNamespace reports whether a header name falls under one of the trusted
// prefixes, under the rule the proxy strips them by (headername).
func InNamespace(namespace []string, name string) bool {
	for _, ns := range namespace {
		if headername.HasPrefix(name, ns) {
			return true
		}
	}
	return false
}

func (cfg *Config) loadSecrets() error {
	c := &checker{file: cfg.File}
	read := func(path, file string, dst *string) {
		if file == "" {
			return
		}
		b, err := os.ReadFile(file)
		if err != nil {
			c.add(path, "cannot read secret file: %v", err)
			return
		}
		*dst = strings.TrimSpace(string(b))
		if *dst == "" {
			c.add(path, "secret file %s is empty", file)
		}
	}
	read("metadata.auth0.client_secret_file", cfg.Metadata.Auth0.ClientSecretFile, &cfg.Metadata.Auth0.ClientSecret)
	cfg.replicaSecrets(c, read)
	cfg.devUserSecrets(c, read)
	for i := range cfg.DevIssuer.Clients {
		cl := &cfg.DevIssuer.Clients[i]
		read(fmt.Sprintf("dev_issuer.clients[%d].secret_file", i), cl.SecretFile, &cl.Secret)
	}
	if len(c.errs) > 0 {
		return c.errs
	}
	return nil
}
