package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func env(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

// minimal is the smallest valid config; cases append to it.
const minimal = `
issuers:
  - issuer: https://tenant.auth0.com/
    audiences: [https://api.example.com/]
routes:
  - match: {path_prefix: /}
    upstreams: [http://127.0.0.1:9000]
`

func TestShippedConfigIsValid(t *testing.T) {
	for _, f := range []string{"../../gateway.yaml"} {
		cfg, err := Load(f, env(nil))
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if !cfg.DevIssuer.Enabled || cfg.Metadata.Source != "local" || !cfg.DemoUpstream.Enabled {
			t.Errorf("%s: the embedded defaults must run without Auth0 or Redis", f)
		}
	}
}

func TestDefaultsApply(t *testing.T) {
	cfg, err := Parse("gw.yaml", []byte(minimal), env(nil))
	if err != nil {
		t.Fatal(err)
	}
	is := cfg.Issuers[0]
	if is.JWKSURL != "https://tenant.auth0.com/.well-known/jwks.json" || is.Algorithms[0] != "RS256" || is.Leeway.D() != 30*time.Second {
		t.Errorf("issuer defaults: %+v", is)
	}
	if cfg.Routes[0].Auth != "required" || cfg.Headers.ClientID != "X-Client-Id" || cfg.Cache.TTL.D() != 5*time.Minute {
		t.Errorf("defaults not applied: auth=%q client_id=%q ttl=%s", cfg.Routes[0].Auth, cfg.Headers.ClientID, cfg.Cache.TTL.D())
	}
}

func TestGCAndAccessLogKeys(t *testing.T) {
	cfg, err := Parse("gw.yaml", []byte(minimal), env(nil))
	if err != nil {
		t.Fatal(err)
	}
	if s := cfg.Server; s.GCPercent != nil || s.MemoryLimit != "auto" || !cfg.Log.Access {
		t.Errorf("defaults: gc_percent %v, memory_limit %q, log.access %v; want unset, auto, true", s.GCPercent, s.MemoryLimit, cfg.Log.Access)
	}
	doc := minimal + "server:\n  gc_percent: ${GC:-200}\n  memory_limit: ${LIMIT}\nlog:\n  access: false\n"
	for limit, gc := range map[string]int{"0": 200, "2GiB": 200, "auto": 200} {
		cfg, err := Parse("gw.yaml", []byte(doc), env(map[string]string{"LIMIT": limit}))
		if err != nil {
			t.Fatalf("memory_limit %s: %v", limit, err)
		}
		if s := cfg.Server; s.GCPercent == nil || *s.GCPercent != gc || s.MemoryLimit != limit || cfg.Log.Access {
			t.Errorf("memory_limit %s: got gc_percent %v, memory_limit %q, log.access %v", limit, s.GCPercent, s.MemoryLimit, cfg.Log.Access)
		}
	}
	// GC off is accepted when a limit may be in effect; with "auto" the
	// gateway checks at startup that one was found.
	for _, limit := range []string{"1GiB", "auto"} {
		if _, err := Parse("gw.yaml", []byte(doc), env(map[string]string{"GC": "-1", "LIMIT": limit})); err != nil {
			t.Errorf("gc_percent -1 with memory_limit %s: %v", limit, err)
		}
	}
}

func TestEnvironmentExpansion(t *testing.T) {
	doc := minimal + `
server:
  listen: ${LISTEN}
  max_token_bytes: ${MAX_TOKEN:-4096}
  realm: "${REALM:-api}"
cache:
  ttl: ${TTL:-1m}
`
	cfg, err := Parse("gw.yaml", []byte(doc), env(map[string]string{"LISTEN": "0.0.0.0:8443", "TTL": "90s"}))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Server.Listen != "0.0.0.0:8443" || cfg.Server.MaxTokenBytes != 4096 || cfg.Server.Realm != "api" || cfg.Cache.TTL.D() != 90*time.Second {
		t.Errorf("expanded: %+v ttl=%s", cfg.Server, cfg.Cache.TTL.D())
	}
	// An empty variable falls back to the default too.
	cfg, err = Parse("gw.yaml", []byte(doc), env(map[string]string{"LISTEN": ":1", "REALM": ""}))
	if err != nil || cfg.Server.Realm != "api" {
		t.Errorf("empty REALM: realm=%q err=%v", cfg.Server.Realm, err)
	}
	// A value that looks like YAML stays a plain string.
	cfg, err = Parse("gw.yaml", []byte(doc), env(map[string]string{"LISTEN": ":1", "REALM": "a: [b]"}))
	if err != nil || cfg.Server.Realm != "a: [b]" {
		t.Errorf("realm=%q err=%v", cfg.Server.Realm, err)
	}
}

func TestErrorsNameTheKeyAndTheFile(t *testing.T) {
	cases := []struct {
		name string
		doc  string
		env  map[string]string
		want []string // each must appear in the error
	}{
		{"unknown top-level key", minimal + "listen: :8080\n", nil, []string{"gw.yaml:", "listen: unknown key"}},
		{"unknown nested key", minimal + "server:\n  lisen: :8080\n", nil, []string{"server.lisen: unknown key", "known keys:"}},
		{"unknown key in a list item", minimal + "dev_issuer:\n  clients:\n    - id: a\n      secrets: x\n", nil, []string{"dev_issuer.clients[0].secrets: unknown key"}},
		{"missing environment variable", minimal + "server:\n  listen: ${NOPE}\n", nil, []string{"server.listen", "NOPE is not set"}},
		{"bad duration", minimal + "cache:\n  ttl: 5 minutes\n", nil, []string{"cache.ttl", "not a duration"}},
		{"bare number as duration", minimal + "cache:\n  ttl: 300\n", nil, []string{"cache.ttl", "not a duration"}},
		{"string for an int", minimal + "server:\n  max_token_bytes: lots\n", nil, []string{"server.max_token_bytes", "cannot unmarshal"}},
		{"env value of the wrong type", minimal + "cache:\n  max_entries: ${N}\n", map[string]string{"N": "many"}, []string{"cache.max_entries"}},
		{"bad listen address", minimal + "server:\n  listen: localhost\n", nil, []string{"server.listen", "host:port"}},
		{"no issuer", "routes:\n  - match: {path_prefix: /}\n    upstreams: [http://127.0.0.1:1]\n", nil, []string{"issuers: at least one issuer"}},
		{"issuer over plain http", strings.Replace(minimal, "https://tenant", "http://tenant", 1), nil, []string{"issuers[0].issuer", "plain http"}},
		{"symmetric algorithm", minimal[:strings.Index(minimal, "routes:")] + "    algorithms: [HS256]\n" + minimal[strings.Index(minimal, "routes:"):], nil, []string{"issuers[0].algorithms[0]", "HS256"}},
		{"leeway too large", minimal[:strings.Index(minimal, "routes:")] + "    leeway: 1h\n" + minimal[strings.Index(minimal, "routes:"):], nil, []string{"issuers[0].leeway", "between 0s and 5m0s"}},
		{"no audience", "issuers:\n  - issuer: https://t.auth0.com/\nroutes:\n  - match: {path_prefix: /}\n    upstreams: [http://127.0.0.1:1]\n", nil, []string{"issuers[0].audiences"}},
		{"no routes", "issuers:\n  - issuer: https://t.auth0.com/\n    audiences: [a]\n", nil, []string{"routes: at least one route"}},
		{"bad upstream", strings.Replace(minimal, "http://127.0.0.1:9000", "127.0.0.1:9000", 1), nil, []string{"routes[0].upstreams[0]"}},
		{"bad auth mode", minimal + "    auth: sometimes\n", nil, []string{"routes[0].auth", "sometimes"}},
		{"trusted header outside the namespace", minimal + "headers:\n  client_id: X-Caller\n", nil, []string{"headers.client_id", "outside headers.namespace"}},
		{"unknown metadata source", minimal + "metadata:\n  source: ldap\n", nil, []string{"metadata.source", "ldap"}},
		{"auth0 without management url or issuer", "dev_issuer: {enabled: true}\nroutes:\n  - match: {path_prefix: /}\n    upstreams: [http://127.0.0.1:1]\nmetadata:\n  source: auth0\n  auth0: {client_id: a, client_secret: b}\n", nil, []string{"metadata.auth0.management_url: is required"}},
		{"auth0 without credentials", minimal + "metadata:\n  source: auth0\n  auth0:\n    management_url: https://t.auth0.com\n", nil, []string{"metadata.auth0.client_id: is required", "client_secret"}},
		{"auth0 secret inline and file", minimal + "metadata:\n  source: auth0\n  auth0:\n    management_url: https://t.auth0.com\n    client_id: a\n    client_secret: b\n    client_secret_file: /c\n", nil, []string{"exactly one of client_secret"}},
		{"bad redis url", minimal + "cache:\n  redis:\n    url: http://127.0.0.1:6379\n", nil, []string{"cache.redis.url"}},
		{"negative drain delay", minimal + "server:\n  drain_delay: -1s\n", nil, []string{"server.drain_delay", "between 0s and 5m"}},
		{"config watch too fast", minimal + "server:\n  watch_config: 1ms\n", nil, []string{"server.watch_config", "at least 100ms"}},
		{"tracing endpoint not a URL", minimal + "tracing:\n  otlp_endpoint: otel-collector:4318\n", nil, []string{"tracing.otlp_endpoint", "absolute http(s) URL"}},
		{"tracing sample ratio", minimal + "tracing:\n  otlp_endpoint: http://otel:4318\n  sample_ratio: 2\n", nil, []string{"tracing.sample_ratio", "between 0 and 1"}},
		{"metadata prefix shadows identity headers", minimal + "headers:\n  metadata_prefix: X-Client-\n", nil, []string{"gw.yaml", "headers.metadata_prefix", "X-Client-Id", "overwrite that identity header"}},
		{"metadata prefix shadows the JSON header", minimal + "headers:\n  metadata_prefix: X-Client-Meta\n", nil, []string{"headers.metadata_prefix", "headers.metadata_json"}},
		{"dev issuer beside a real issuer", minimal + "dev_issuer: {enabled: true}\n", nil, []string{"gw.yaml", "dev_issuer.enabled", "allow_with_issuers"}},
		{"route path not canonical", strings.Replace(minimal, "path_prefix: /", "path_prefix: /a/../b", 1), nil, []string{"routes[0].match.path_prefix", "dot segment"}},
		{"route path escaped", strings.Replace(minimal, "path_prefix: /", "path_prefix: /a%2Fb", 1), nil, []string{"routes[0].match.path_prefix", "decoded"}},
		{"unknown relaxation", minimal + "    relax: [semicolons]\n", nil, []string{"routes[0].relax[0]", "encoded_slash"}},
		{"TRACE route", minimal + "    match: {path_prefix: /, methods: [TRACE]}\n", nil, []string{"routes[0].match"}},
		{"metadata issuer not configured", minimal + "metadata:\n  issuers: [https://other.auth0.com/]\n", nil, []string{"metadata.issuers[0]", "not a configured issuer"}},
		{"read timeout too short", minimal + "server:\n  read_timeout: 1ms\n", nil, []string{"server.read_timeout", "at least 100ms"}},
		{"no connections allowed", minimal + "server:\n  max_connections: 0\n", nil, []string{"server.max_connections"}},
		{"memory limit without a unit", minimal + "server:\n  memory_limit: 512\n", nil, []string{"gw.yaml", "server.memory_limit", "not a size"}},
		{"memory limit in decimal units", minimal + "server:\n  memory_limit: 1GB\n", nil, []string{"server.memory_limit", "MiB"}},
		{"memory limit too small", minimal + "server:\n  memory_limit: 512KiB\n", nil, []string{"server.memory_limit", "minimum of 32MiB"}},
		{"gc percent zero", minimal + "server:\n  gc_percent: 0\n", nil, []string{"server.gc_percent", "-1 (off, with a memory limit) or a positive percent"}},
		{"gc percent not a number", minimal + "server:\n  gc_percent: lots\n", nil, []string{"server.gc_percent", "cannot unmarshal"}},
		{"gc off without a memory limit", minimal + "server:\n  gc_percent: -1\n  memory_limit: 0\n", nil, []string{"server.gc_percent", "needs a memory limit"}},
		{"log access not a bool", minimal + "log:\n  access: sometimes\n", nil, []string{"log.access", "cannot unmarshal"}},
		{"not yaml", "a: [", nil, []string{"gw.yaml", "not valid YAML"}},
		{"empty file", "", nil, []string{"gw.yaml", "empty"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("gw.yaml", []byte(tc.doc), env(tc.env))
			if err == nil {
				t.Fatal("accepted")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q\ndoes not mention %q", err, w)
				}
			}
		})
	}
}

func TestEveryProblemIsListedAtOnce(t *testing.T) {
	doc := "server:\n  listen: nope\n  max_token_bytes: 0\nlog:\n  format: xml\nroutes: []\n"
	_, err := Parse("gw.yaml", []byte(doc), env(nil))
	var errs Errors
	if !errors.As(err, &errs) {
		t.Fatalf("error %v is not Errors", err)
	}
	for _, want := range []string{"server.listen", "server.max_token_bytes", "log.format", "issuers", "routes"} {
		found := false
		for _, e := range errs {
			found = found || e.Path == want
		}
		if !found {
			t.Errorf("no problem reported for %s in:\n%v", want, err)
		}
	}
}

func TestExamplesAreValid(t *testing.T) {
	env := env(map[string]string{
		"AUTH0_ISSUER": "https://tenant.eu.auth0.com/", "AUTH0_AUDIENCE": "https://api.example.com/",
		"AUTH0_CLIENT_ID": "gw", "AUTH0_CLIENT_SECRET": "s", "UPSTREAM_URL": "http://127.0.0.1:9000",
	})
	for _, f := range []string{"../../deploy/examples/auth0.yaml", "../../deploy/examples/ingress.yaml"} {
		cfg, err := Load(f, env)
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if got := cfg.Metadata.Auth0.ManagementURL; got != "https://tenant.eu.auth0.com" {
			t.Errorf("%s: management_url defaulted to %q, want the issuer's scheme and host", f, got)
		}
		if cfg.Cache.Redis.URL != "" {
			t.Errorf("%s: REDIS_URL unset must mean no Redis, got %q", f, cfg.Cache.Redis.URL)
		}
	}
}

func TestSecretsFromFiles(t *testing.T) {
	dir := t.TempDir()
	secret := filepath.Join(dir, "secret")
	if err := os.WriteFile(secret, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	doc := minimal + "metadata:\n  source: auth0\n  auth0:\n    management_url: https://t.auth0.com\n    client_id: gw\n    client_secret_file: " + secret + "\n"
	cfg, err := Parse("gw.yaml", []byte(doc), env(nil))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Metadata.Auth0.ClientSecret != "s3cret" {
		t.Errorf("secret = %q", cfg.Metadata.Auth0.ClientSecret)
	}
	_, err = Parse("gw.yaml", []byte(strings.Replace(doc, secret, filepath.Join(dir, "missing"), 1)), env(nil))
	if err == nil || !strings.Contains(err.Error(), "metadata.auth0.client_secret_file") {
		t.Errorf("missing secret file: %v", err)
	}
}
