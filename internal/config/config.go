// Package config holds the gateway's configuration as plain data: loaded
// from YAML once, expanded from the environment, validated with the key path
// and file in every message, and only then handed to the code that builds
// the runtime objects. Runtime code never re-reads it or checks for defaults.
package config

import (
	"fmt"
	"net/netip"
	"net/url"
	"time"

	"github.com/metagate/gateway/proxy/expr"
)

// Config is the whole gateway.yaml.
type Config struct {
	Server       Server       `yaml:"server"`
	Log          Log          `yaml:"log"`
	Issuers      []Issuer     `yaml:"issuers"`
	DevIssuer    DevIssuer    `yaml:"dev_issuer"`
	Metadata     Metadata     `yaml:"metadata"`
	Cache        Cache        `yaml:"cache"`
	Headers      Headers      `yaml:"headers"`
	Routes       []Route      `yaml:"routes"`
	DemoUpstream DemoUpstream `yaml:"demo_upstream"`
	Tracing      Tracing      `yaml:"tracing"`
	// The optional features beyond headers (features.go).
	TokenEndpoint TokenEndpoint `yaml:"token_endpoint"`
	SelfService   SelfService   `yaml:"self_service"`
	Assertion     Assertion     `yaml:"assertion"`
	// Many replicas (replicas.go).
	Invalidation Invalidation `yaml:"invalidation"`
	// RateLimits are the named rate-limit policies routes pick
	// (ratelimit.go).
	RateLimits map[string]RateLimit `yaml:"rate_limits"`

	// File is the path the config was loaded from, for messages.
	File string `yaml:"-"`
}

// Server is the public listener and request-level limits.
type Server struct {
	Listen            string   `yaml:"listen"`
	AdminListen       string   `yaml:"admin_listen"`
	Realm             string   `yaml:"realm"`
	MaxTokenBytes     int      `yaml:"max_token_bytes"`
	MaxHeaderBytes    int      `yaml:"max_header_bytes"`
	ReadHeaderTimeout Duration `yaml:"read_header_timeout"`
	// ReadTimeout is the longest a client may stay silent while sending a
	// request body (between two reads, not for the whole body): a stalled
	// client gets 408 and frees its upstream connection.
	ReadTimeout Duration `yaml:"read_timeout"`
	IdleTimeout Duration `yaml:"idle_timeout"`
	// MaxConnections caps concurrent client connections on the public
	// listener; beyond it new connections wait in the accept queue.
	MaxConnections int `yaml:"max_connections"`
	// UpstreamMaxConnections caps connections to each upstream host;
	// requests beyond it wait for a free connection.
	UpstreamMaxConnections int `yaml:"upstream_max_connections"`
	// DrainDelay is how long the gateway keeps serving after SIGTERM with
	// /readyz already failing, so load balancers stop sending new
	// connections before the listener closes.
	DrainDelay Duration `yaml:"drain_delay"`
	// ShutdownTimeout bounds the wait for in-flight requests, WebSockets
	// and streams after the drain; what is still open then is closed.
	ShutdownTimeout Duration `yaml:"shutdown_timeout"`
	// WatchConfig, when non-zero, re-reads the config file this often and
	// reloads it when its content changed (as SIGHUP does). It catches
	// Kubernetes ConfigMap updates, which swap a symlink.
	WatchConfig Duration `yaml:"watch_config"`
	// Pprof serves /debug/pprof on the admin listener. Off by default: a
	// profile can reveal request data.
	Pprof bool `yaml:"pprof"`
	TLS   TLS  `yaml:"tls"`
	// TrustedProxies are CIDRs whose X-Forwarded-* headers are kept.
	TrustedProxies []string `yaml:"trusted_proxies"`
	// TrustedPrefixes are TrustedProxies as validation parsed them: the
	// runtime uses these and never parses again.
	TrustedPrefixes []netip.Prefix `yaml:"-"`
	// GCPercent is the garbage collector's GOGC for the process. Nil
	// picks GOGC from the environment, else 400 under a memory limit
	// (the limit protects the process as the heap nears it) and Go's 100
	// without one; -1 turns the collector off and needs a memory limit.
	GCPercent *int `yaml:"gc_percent"`
	// MemoryLimit is the Go runtime's soft memory limit: a size such as
	// "512MiB", "0" for none, or "auto": GOMEMLIMIT from the environment,
	// else 90% of the cgroup's memory limit, else none. See gctune.
	MemoryLimit string `yaml:"memory_limit"`
}

// TLS terminates HTTPS on the public listener; the files are re-read when
// they change, so a renewed certificate needs no restart.
type TLS struct {
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
}

// Tracing exports OpenTelemetry spans for the gateway's own work (verify,
// resolve, upstream) over OTLP/HTTP. Off unless OTLPEndpoint is set;
// W3C traceparent/tracestate are passed through either way.
type Tracing struct {
	// OTLPEndpoint is the collector's OTLP/HTTP base URL, for example
	// http://otel-collector:4318 (spans go to <endpoint>/v1/traces).
	OTLPEndpoint string `yaml:"otlp_endpoint"`
	ServiceName  string `yaml:"service_name"`
	// SampleRatio applies to traces the gateway starts; a caller's sampled
	// flag in traceparent is followed.
	SampleRatio float64           `yaml:"sample_ratio"`
	Headers     map[string]string `yaml:"headers"` // sent with every export, e.g. an API key
	Timeout     Duration          `yaml:"timeout"`
}

// Log selects the zap encoder and level, and whether requests are logged.
type Log struct {
	Format string `yaml:"format"` // console | json
	Level  string `yaml:"level"`  // debug | info | warn | error
	// Access writes one line per request. The lines are buffered and
	// flushed every second and on shutdown, so logging every request
	// costs no write per request; never sampled.
	Access bool `yaml:"access"`
}

// Issuer is one trusted token issuer (an Auth0 tenant or any OIDC issuer).
type Issuer struct {
	Issuer            string   `yaml:"issuer"`
	Audiences         []string `yaml:"audiences"`
	JWKSURL           string   `yaml:"jwks_url"`
	Algorithms        []string `yaml:"algorithms"`
	Leeway            Duration `yaml:"leeway"`
	JWKSRefresh       Duration `yaml:"jwks_refresh"`
	UnknownKIDRefresh Duration `yaml:"unknown_kid_refresh"`
}

// DevIssuer is the built-in issuer for local development: it signs tokens
// with a key kept in KeyFile, serves its JWKS and an Auth0-shaped
// POST /oauth/token on its own listener.
type DevIssuer struct {
	Enabled  bool        `yaml:"enabled"`
	Listen   string      `yaml:"listen"`
	Issuer   string      `yaml:"issuer"`
	Audience string      `yaml:"audience"`
	KeyFile  string      `yaml:"key_file"`
	TokenTTL Duration    `yaml:"token_ttl"`
	Clients  []DevClient `yaml:"clients"`
	// Users may log in with the password grants (devusers.go).
	Users []DevUser `yaml:"users"`
	// CORSOrigins may call POST /oauth/token from a browser page (exact
	// origins such as http://localhost:3000), as a client's Allowed Web
	// Origins may at Auth0.
	CORSOrigins []string `yaml:"cors_origins"`
	// AllowWithIssuers lets the dev issuer run beside real issuers. Off by
	// default: its key sits on disk and it mints tokens for anyone who
	// can reach its listener, which must never happen by accident in
	// production.
	AllowWithIssuers bool `yaml:"allow_with_issuers"`
}

// DevClient may obtain tokens from the dev issuer's POST /oauth/token.
type DevClient struct {
	ID         string   `yaml:"id"`
	Secret     string   `yaml:"secret"`
	SecretFile string   `yaml:"secret_file"`
	Scopes     []string `yaml:"scopes"`
	// Grants are the grants the client may use: client_credentials,
	// password, http://auth0.com/oauth/grant-type/password-realm.
	// Empty: all of them.
	Grants []string `yaml:"grants"`
}

// Metadata selects where caller metadata comes from.
type Metadata struct {
	Source    string `yaml:"source"`     // local | auth0 | none
	OnUnknown string `yaml:"on_unknown"` // reject | forward
	// Issuers are the token issuers whose callers the source knows;
	// callers of other issuers are forwarded without metadata. Default:
	// the first entry of issuers (the dev issuer when it is the only one).
	Issuers []string    `yaml:"issuers"`
	Local   LocalSource `yaml:"local"`
	Auth0   Auth0Source `yaml:"auth0"`
}

// LocalSource declares callers inline, for development and for callers that
// do not live in Auth0.
type LocalSource struct {
	Clients map[string]LocalClient `yaml:"clients"`
	Users   map[string]LocalUser   `yaml:"users"`
}

// LocalClient mirrors an Auth0 client's name and client_metadata.
type LocalClient struct {
	Name     string         `yaml:"name"`
	Metadata map[string]any `yaml:"metadata"`
}

// LocalUser mirrors an Auth0 user's app_metadata.
type LocalUser struct {
	AppMetadata map[string]any `yaml:"app_metadata"`
}

// Auth0Source reads metadata from the Auth0 Management API.
type Auth0Source struct {
	ManagementURL       string   `yaml:"management_url"`
	TokenURL            string   `yaml:"token_url"`
	Audience            string   `yaml:"audience"`
	ClientID            string   `yaml:"client_id"`
	ClientSecret        string   `yaml:"client_secret"`
	ClientSecretFile    string   `yaml:"client_secret_file"`
	IncludeUserMetadata bool     `yaml:"include_user_metadata"`
	RatePerSecond       float64  `yaml:"rate_per_second"`
	Burst               int      `yaml:"burst"`
	Timeout             Duration `yaml:"timeout"`
	MaxRetries          int      `yaml:"max_retries"`
	Circuit             Circuit  `yaml:"circuit"`

	// LookupDeadline bounds how long a request waits for its caller's
	// lookup (claim wait, budget, attempts, retries); past it the request
	// gets 503 with Retry-After and the lookup goes on in the background,
	// filling the cache for the next request.
	LookupDeadline Duration `yaml:"lookup_deadline"`
}

// Cache sizes the two metadata cache tiers.
type Cache struct {
	TTL                  Duration `yaml:"ttl"`
	NegativeTTL          Duration `yaml:"negative_ttl"`
	StaleWhileRevalidate Duration `yaml:"stale_while_revalidate"`
	StaleIfError         Duration `yaml:"stale_if_error"`
	MaxEntries           int      `yaml:"max_entries"`
	// ErrorTTL remembers a failed origin lookup per caller: requests in
	// that window get 503 with Retry-After at once instead of calling
	// again (0: off). A stale value, where stale_if_error allows it, wins.
	ErrorTTL Duration `yaml:"error_ttl"`
	Redis    Redis    `yaml:"redis"`
}

// Redis is the optional shared L2 tier. An empty URL means no Redis.
type Redis struct {
	URL     string   `yaml:"url"`
	Prefix  string   `yaml:"prefix"`
	Timeout Duration `yaml:"timeout"`
	// ClaimTTL bounds the fleet-wide claim a replica takes before asking
	// the origin about a caller no replica has fresh: the others wait for
	// its answer instead of calling too. A holder that dies releases it
	// by expiry. Longer than the slowest origin call.
	ClaimTTL Duration `yaml:"claim_ttl"`
	// DisconnectedTTL caps how long an in-process entry is trusted
	// without a re-check while the invalidation bus is down (a replica
	// cannot know what it missed).
	DisconnectedTTL Duration `yaml:"disconnected_ttl"`
}

// Headers names the trusted headers and bounds their size.
type Headers struct {
	Namespace []string `yaml:"namespace"`
	// StripUntrusted are removed from requests of clients that are not
	// trusted proxies (URL, method-override and client-address headers).
	StripUntrusted []string `yaml:"strip_untrusted"`
	ClientID       string   `yaml:"client_id"`
	Issuer         string   `yaml:"issuer"`
	ClientName     string   `yaml:"client_name"`
	Kind           string   `yaml:"kind"`
	Scopes         string   `yaml:"scopes"`
	UserID         string   `yaml:"user_id"`
	MetadataPrefix string   `yaml:"metadata_prefix"`
	MetadataJSON   string   `yaml:"metadata_json"`
	// UserMetadataJSON carries user_metadata when the Auth0 source reads it
	// (include_user_metadata); users can edit it, so it gets its own header.
	UserMetadataJSON string `yaml:"user_metadata_json"`
	MaxValueBytes    int    `yaml:"max_value_bytes"`
	MaxJSONBytes     int    `yaml:"max_json_bytes"`
	// Claims maps a token claim (namespaced custom claims included, e.g.
	// https://example.com/org) to a header inside the namespace. Strings,
	// numbers and booleans are sent as they are, objects and arrays as
	// compact JSON, sanitised like metadata values.
	Claims map[string]string `yaml:"claims"`
}

// Route sends matching requests to an upstream under a policy.
type Route struct {
	Name      string   `yaml:"name"`
	Match     Match    `yaml:"match"`
	Upstreams []string `yaml:"upstreams"`
	// UpstreamURLs are Upstreams as validation parsed them.
	UpstreamURLs []*url.URL `yaml:"-"`
	StripPrefix  string     `yaml:"strip_prefix"`
	AddPrefix    string     `yaml:"add_prefix"`
	Auth         string     `yaml:"auth"` // required | optional | public
	Scopes       Scopes     `yaml:"scopes"`
	Callers      []string   `yaml:"callers"` // client, user
	Audiences    []string   `yaml:"audiences"`
	// MetadataHeaders, when set, is the allow-list of metadata keys
	// forwarded on this route; unset forwards all.
	MetadataHeaders *[]string `yaml:"metadata_headers"`
	MaxBodyBytes    int64     `yaml:"max_body_bytes"`
	Timeouts        Timeouts  `yaml:"timeouts"`
	H2C             bool      `yaml:"h2c"`
	UnhealthyFor    Duration  `yaml:"unhealthy_for"`
	// Relax lists the path strictness rules this route waives; the only
	// one is encoded_slash ("%2F" inside a segment, forwarded encoded).
	Relax []string `yaml:"relax"`
	// MaxUpstreamConnections overrides server.upstream_max_connections
	// for this route's upstreams.
	MaxUpstreamConnections int `yaml:"max_upstream_connections"`
	// AllowIf are CEL expressions that must all hold once the caller's
	// metadata is resolved (policy.go, proxy/expr).
	AllowIf Exprs `yaml:"allow_if"`
	// AllowProgram is AllowIf as validation compiled it.
	AllowProgram *expr.Program `yaml:"-"`
	// RateLimit picks the route's rate_limits policy, or one by tier.
	RateLimit *RouteRateLimit `yaml:"rate_limit"`
}

// Match selects requests for a route.
type Match struct {
	Hosts      []string `yaml:"hosts"`
	PathPrefix string   `yaml:"path_prefix"`
	Path       string   `yaml:"path"`
	Methods    []string `yaml:"methods"`
}

// Scopes are a route's required scopes or permissions.
type Scopes struct {
	AllOf []string `yaml:"all_of"`
	AnyOf []string `yaml:"any_of"`
}

// Timeouts bound the upstream connection of a route.
type Timeouts struct {
	Dial           Duration `yaml:"dial"`
	ResponseHeader Duration `yaml:"response_header"`
}

// DemoUpstream is a tiny echo server for trying the gateway out: it answers
// every request with the headers it received, as JSON.
type DemoUpstream struct {
	Enabled bool   `yaml:"enabled"`
	Listen  string `yaml:"listen"`
}

// Default returns the values used for every key the file leaves out.
func Default() Config {
	return Config{
		Server: Server{
			Listen:                 "127.0.0.1:8080",
			AdminListen:            "127.0.0.1:9090",
			Realm:                  "gateway",
			MaxTokenBytes:          16 << 10,
			MaxHeaderBytes:         64 << 10,
			ReadHeaderTimeout:      Duration(10 * time.Second),
			ReadTimeout:            Duration(30 * time.Second),
			IdleTimeout:            Duration(120 * time.Second),
			MaxConnections:         10_000,
			UpstreamMaxConnections: 512,
			DrainDelay:             Duration(5 * time.Second),
			ShutdownTimeout:        Duration(30 * time.Second),
			MemoryLimit:            "auto",
		},
		Log: Log{Format: "json", Level: "info", Access: true},
		DevIssuer: DevIssuer{
			Listen:   "127.0.0.1:8081",
			Audience: "https://api.example.local/",
			KeyFile:  ".gateway/dev-signing-key.pem",
			TokenTTL: Duration(time.Hour),
		},
		Metadata: Metadata{
			Source:    "local",
			OnUnknown: "reject",
			Auth0: Auth0Source{
				RatePerSecond: 1,
				Burst:         2,
				Timeout:       Duration(5 * time.Second),
				MaxRetries:    2,
				Circuit:       Circuit{Threshold: 5, OpenFor: Duration(10 * time.Second)},

				LookupDeadline: Duration(time.Second),
			},
		},
		Cache: Cache{
			TTL:                  Duration(5 * time.Minute),
			NegativeTTL:          Duration(time.Minute),
			StaleWhileRevalidate: Duration(time.Minute),
			StaleIfError:         Duration(time.Hour),
			MaxEntries:           100_000,
			ErrorTTL:             Duration(5 * time.Second),
			Redis: Redis{Prefix: "gateway", Timeout: Duration(100 * time.Millisecond),
				ClaimTTL: Duration(defaultClaimTTL), DisconnectedTTL: Duration(defaultDisconnectedTTL)},
		},
		Headers: Headers{
			Namespace:        []string{"X-Client-", "X-User-"},
			StripUntrusted:   DefaultStripUntrusted(),
			ClientID:         "X-Client-Id",
			Issuer:           "X-Client-Issuer",
			ClientName:       "X-Client-Name",
			Kind:             "X-Client-Kind",
			Scopes:           "X-Client-Scopes",
			UserID:           "X-User-Id",
			MetadataPrefix:   "X-Client-Metadata-",
			MetadataJSON:     "X-Client-Metadata",
			UserMetadataJSON: "X-User-Metadata",
			MaxValueBytes:    1024,
			MaxJSONBytes:     4096,
		},
		DemoUpstream: DemoUpstream{Listen: "127.0.0.1:8082"},
		Tracing:      Tracing{ServiceName: "gateway", SampleRatio: 1, Timeout: Duration(10 * time.Second)},
		TokenEndpoint: TokenEndpoint{
			Path: "/oauth/token", Field: "metadata", MaxBodyBytes: 64 << 10, Timeout: Duration(10 * time.Second),
		},
		SelfService:  SelfService{Path: "/.well-known/gateway/me"},
		Invalidation: invalidationDefaults(),
		Assertion: Assertion{
			Header: "X-Gateway-Assertion", TTL: Duration(time.Minute), KeyFile: ".gateway/assertion-key.pem",
			Algorithm: "ES256", Issuer: "urn:metagate:gateway",
		},
	}
}

// DefaultStripUntrusted is the default headers.strip_untrusted: headers
// that upstream frameworks believe about the request's URL, method or
// client, which only a trusted proxy may set. X-Forwarded-For, -Host and
// -Proto are not here: the gateway always rewrites them.
func DefaultStripUntrusted() []string {
	return []string{
		// URL overrides (IIS, Symfony, Zend, some Spring setups)
		"X-Original-URL", "X-Rewrite-URL", "X-Original-URI", "X-Override-URL",
		// method overrides (Express method-override, ASP.NET, Rails)
		"X-HTTP-Method-Override", "X-HTTP-Method", "X-Method-Override",
		// client address and scheme
		"Forwarded", "X-Real-IP", "True-Client-IP", "CF-Connecting-IP", "Fastly-Client-IP",
		"X-Cluster-Client-IP", "X-Forwarded-Server", "X-Forwarded-Port", "X-Forwarded-Prefix",
		"X-Forwarded-Scheme", "X-Forwarded-Ssl", "X-Url-Scheme", "Front-End-Https", "X-Host",
	}
}

// applyDefaults fills, once and in one place, every default that depends
// on other keys (the static ones are in Default). Validation then only
// reports, and the code that builds the runtime never defaults again.
// set are the key paths the file sets (followDefaults).
func (cfg *Config) applyDefaults(set keyLines) {
	for i := range cfg.Issuers {
		p := fmt.Sprintf("issuers[%d].", i)
		issuerDefaults(&cfg.Issuers[i], func(key string) bool { return set.has(p + key) })
	}
	if d := &cfg.DevIssuer; d.Issuer == "" {
		d.Issuer = "http://" + d.Listen + "/"
	}
	for i := range cfg.Routes {
		if cfg.Routes[i].Auth == "" {
			cfg.Routes[i].Auth = "required"
		}
	}
	if a := &cfg.Metadata.Auth0; a.ManagementURL == "" && len(cfg.Issuers) > 0 {
		// The first issuer's scheme and host (https://TENANT.auth0.com/).
		if u, err := url.Parse(cfg.Issuers[0].Issuer); err == nil && u.Host != "" {
			a.ManagementURL = u.Scheme + "://" + u.Host
		}
	}
	featureDefaults(cfg)
	cfg.rateLimitDefaults()
	cfg.followDefaults(set)
}

// DevIssuerEntry is the running dev issuer as an issuers entry, with the
// same defaults every issuer gets: the gateway trusts it like any other.
// issuer and jwksURL are where it really listens (a test may ask for a
// free port).
func DevIssuerEntry(d DevIssuer, issuer, jwksURL string) Issuer {
	is := Issuer{Issuer: issuer, Audiences: []string{d.Audience}, JWKSURL: jwksURL}
	issuerDefaults(&is, func(string) bool { return false })
	return is
}

// issuerDefaults fills what an issuer entry leaves out (isSet reports the
// keys the entry sets: a written 0s is kept, so leeway: 0s means none).
func issuerDefaults(is *Issuer, isSet func(key string) bool) {
	if len(is.Algorithms) == 0 {
		is.Algorithms = []string{"RS256"}
	}
	if !isSet("leeway") {
		is.Leeway = Duration(30 * time.Second)
	}
	if !isSet("jwks_refresh") {
		is.JWKSRefresh = Duration(time.Hour)
	}
	if !isSet("unknown_kid_refresh") {
		is.UnknownKIDRefresh = Duration(time.Minute)
	}
	if is.JWKSURL == "" && is.Issuer != "" {
		is.JWKSURL = withSlash(is.Issuer) + ".well-known/jwks.json"
	}
}

func withSlash(s string) string {
	if len(s) > 0 && s[len(s)-1] == '/' {
		return s
	}
	return s + "/"
}

// Duration is a time.Duration written the Go way in YAML ("30s", "5m").
type Duration time.Duration

// D returns the value as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }
