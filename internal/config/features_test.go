package config

import (
	"strings"
	"testing"
)

func TestFeatureDefaults(t *testing.T) {
	cfg, err := Parse("gw.yaml", []byte(minimal+"token_endpoint: {enabled: true, metadata_keys: [tier]}\nself_service: {enabled: true, metadata_keys: [plan]}\nassertion: {enabled: true}\n"), env(nil))
	if err != nil {
		t.Fatal(err)
	}
	if te := cfg.TokenEndpoint; te.Path != "/oauth/token" || te.Target != "https://tenant.auth0.com/oauth/token" || te.Field != "metadata" {
		t.Errorf("token_endpoint defaults: %+v", te)
	}
	if cfg.SelfService.Path != "/.well-known/gateway/me" {
		t.Errorf("self_service.path = %q", cfg.SelfService.Path)
	}
	if a := cfg.Assertion; a.Header != "X-Gateway-Assertion" || a.TTL.D().String() != "1m0s" || a.Algorithm != "ES256" || a.KeyFile == "" {
		t.Errorf("assertion defaults: %+v", a)
	}
}

func TestFeatureErrorsNameTheKey(t *testing.T) {
	cases := []struct {
		name string
		doc  string
		want []string
	}{
		{"token endpoint without allow-list", "token_endpoint: {enabled: true}\n", []string{"gw.yaml", "token_endpoint.metadata_keys", "is required"}},
		{"token endpoint field is standard", "token_endpoint: {enabled: true, metadata_keys: [a], field: access_token}\n", []string{"token_endpoint.field", "standard token response field"}},
		{"token endpoint target over http", "token_endpoint: {enabled: true, metadata_keys: [a], target: http://idp.example/oauth/token}\n", []string{"token_endpoint.target", "plain http"}},
		{"token endpoint path not canonical", "token_endpoint: {enabled: true, metadata_keys: [a], path: /oauth/../token}\n", []string{"token_endpoint.path"}},
		{"two features on one path", "token_endpoint: {enabled: true, metadata_keys: [a], path: /me}\nself_service: {enabled: true, metadata_keys: [a], path: /ME}\n", []string{"self_service.path", "token_endpoint.path"}},
		{"self service without allow-list", "self_service: {enabled: true}\n", []string{"self_service.metadata_keys", "is required"}},
		{"self service wildcard origin", "self_service: {enabled: true, metadata_keys: [a], cors_origins: ['*']}\n", []string{"self_service.cors_origins[0]", "wildcard"}},
		{"self service origin with a path", "self_service: {enabled: true, metadata_keys: [a], cors_origins: ['https://app.example.com/x']}\n", []string{"self_service.cors_origins[0]", "not an origin"}},
		{"self service on the JWKS path", "assertion: {enabled: true}\nself_service: {enabled: true, metadata_keys: [a], path: /.well-known/gateway/jwks.json}\n", []string{"self_service.path", "assertion JWKS"}},
		{"assertion header is an identity header", "assertion: {enabled: true, header: x-client-id}\n", []string{"assertion.header", "headers.client_id"}},
		{"assertion ttl too long", "assertion: {enabled: true, ttl: 2h}\n", []string{"assertion.ttl", "between 5s and 1h"}},
		{"assertion algorithm", "assertion: {enabled: true, algorithm: RS256}\n", []string{"assertion.algorithm", "ES256, EdDSA"}},
		{"claim header outside the namespace", "headers:\n  claims: {'https://example.com/org': X-Org}\n", []string{`headers.claims["https://example.com/org"]`, "outside headers.namespace"}},
		{"claim header under the metadata prefix", "headers:\n  claims: {org: X-Client-Metadata-Org}\n", []string{`headers.claims["org"]`, "metadata_prefix"}},
		{"claim header is an identity header", "headers:\n  claims: {org: X_Client_Id}\n", []string{`headers.claims["org"]`, "headers.client_id"}},
		{"two claims on one header", "headers:\n  claims: {a: X-Client-Org, b: x-client-org}\n", []string{`headers.claims["b"]`, `headers.claims["a"]`}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("gw.yaml", []byte(minimal+tc.doc), env(nil))
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

// TestRedisURLsAsDeployed: check accepts every Redis URL form the cache
// can use (the README documents them), and names the key otherwise.
func TestRedisURLsAsDeployed(t *testing.T) {
	for _, u := range []string{
		"redis://127.0.0.1:6379/0", "rediss://:secret@redis.example:6380/1", "unix:///run/redis.sock?db=2",
		"redis-sentinel://10.0.0.1:26379?master_name=mymaster&addr=10.0.0.2:26379",
		"redis-cluster://10.0.0.1:7000?addr=10.0.0.2:7000&addr=10.0.0.3:7000",
	} {
		if _, err := Parse("gw.yaml", []byte(minimal+"cache:\n  redis:\n    url: "+u+"\n"), env(nil)); err != nil {
			t.Errorf("%s refused: %v", u, err)
		}
	}
	for u, want := range map[string]string{
		"redis-sentinel://10.0.0.1:26379":        "master_name",
		"http://127.0.0.1:6379":                  "unsupported scheme",
		"redis://:hunter2@127.0.0.1:6379/notadb": "cache.redis.url",
	} {
		_, err := Parse("gw.yaml", []byte(minimal+"cache:\n  redis:\n    url: "+u+"\n"), env(nil))
		if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "cache.redis.url") {
			t.Errorf("%s: error %v, want one naming cache.redis.url and %q", u, err, want)
		}
		if err != nil && strings.Contains(err.Error(), "hunter2") {
			t.Errorf("the error shows the password: %v", err)
		}
	}
}

func TestReplicaKeys(t *testing.T) {
	cfg, err := Parse("gw.yaml", []byte(minimal+"cache:\n  redis:\n    url: redis://127.0.0.1:6379/0\n"), env(nil))
	if err != nil {
		t.Fatal(err)
	}
	if k := cfg.Cache; k.ErrorTTL.D().String() != "5s" || k.Redis.ClaimTTL.D().String() != "10s" || k.Redis.DisconnectedTTL.D().String() != "5s" ||
		cfg.Metadata.Auth0.Circuit.Threshold != 5 || cfg.Invalidation.Auth0LogStream.Path != "/hooks/auth0/log-stream" {
		t.Errorf("defaults: cache %+v, circuit %+v, log stream %+v", k, cfg.Metadata.Auth0.Circuit, cfg.Invalidation.Auth0LogStream)
	}
	for doc, want := range map[string]string{
		"cache:\n  error_ttl: 2m\n": "cache.error_ttl",
		"cache:\n  redis:\n    url: redis://127.0.0.1:6379/0\n    prefix: 'a{b}'\n":                                   "cache.redis.prefix",
		"cache:\n  redis:\n    url: redis://127.0.0.1:6379/0\n    claim_ttl: 1ms\n":                                   "cache.redis.claim_ttl",
		"invalidation:\n  admin_token: short\n":                                                                       "invalidation.admin_token",
		"invalidation:\n  auth0_log_stream:\n    authorization: Bearer x\n":                                           "invalidation.auth0_log_stream.authorization",
		"metadata:\n  auth0:\n    circuit: {threshold: 3, open_for: 1ms}\n":                                           "metadata.auth0.circuit.open_for",
		"metadata:\n  source: none\ninvalidation:\n  auth0_log_stream:\n    authorization: Bearer 0123456789abcdef\n": "needs a metadata source",
	} {
		_, err := Parse("gw.yaml", []byte(minimal+doc), env(nil))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: error %v, want one naming %s", doc, err, want)
		}
	}
}
