package config

import (
	"math"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

// forever is the largest duration there is: the top of every range the
// validator leaves open.
var forever = time.Duration(math.MaxInt64).String()

// validDurations are, for every duration key, the values the README and
// the validator call valid: the smallest, typical ones, and the largest.
// A new duration key fails TestEveryDurationKeyAcceptsItsValidRange until
// its range is written here.
var validDurations = map[string][]string{
	"server.read_header_timeout":         {"0s", "10s", forever},
	"server.read_timeout":                {"100ms", "30s", forever},
	"server.idle_timeout":                {"0s", "120s", forever},
	"server.drain_delay":                 {"0s", "5s", "5m"},
	"server.shutdown_timeout":            {"1ns", "30s", forever},
	"server.watch_config":                {"0s", "100ms", "10s", forever},
	"tracing.timeout":                    {"1ns", "10s", forever},
	"issuers[0].leeway":                  {"0s", "30s", "5m"},
	"issuers[0].jwks_refresh":            {"1s", "1h", forever},
	"issuers[0].unknown_kid_refresh":     {"1ns", "1m", forever},
	"dev_issuer.token_ttl":               {"1s", "1h", forever},
	"metadata.auth0.timeout":             {"1ns", "1s", "5s", "9s", "30s", "59s", "1m", forever},
	"metadata.auth0.circuit.open_for":    {"100ms", "1s", "10s", forever},
	"metadata.auth0.lookup_deadline":     {"1ns", "1s", forever},
	"cache.ttl":                          {"1ns", "50ms", "100ms", "2s", "5s", "5m", forever},
	"cache.negative_ttl":                 {"0s", "1m", forever},
	"cache.stale_while_revalidate":       {"0s", "1m", forever},
	"cache.stale_if_error":               {"0s", "1h", forever},
	"cache.error_ttl":                    {"0s", "5s", "1m"},
	"cache.redis.timeout":                {"1ns", "100ms", forever},
	"cache.redis.claim_ttl":              {"100ms", "10s", "1m"},
	"cache.redis.disconnected_ttl":       {"100ms", "5s", "5m"}, // up to cache.ttl, 5m by default
	"routes[0].timeouts.dial":            {"0s", "30s", forever},
	"routes[0].timeouts.response_header": {"0s", "60s", forever},
	"routes[0].unhealthy_for":            {"0s", "10s", forever},
	"token_endpoint.timeout":             {"1ns", "10s", forever},
	"assertion.ttl":                      {"5s", "1m", "1h"},
}

// durationBases are the configs each key is set in: the smallest valid
// one, the same with Redis, and one with every optional part on, so a key
// that is only checked when its section is in use is checked.
var durationBases = map[string]string{
	"minimal":    minimal,
	"with redis": minimal + "cache:\n  redis:\n    url: redis://127.0.0.1:6379/0\n",
	"everything on": minimal + `
cache:
  redis:
    url: redis://127.0.0.1:6379/0
metadata:
  source: auth0
  auth0: {client_id: gw, client_secret: a-secret-from-the-env}
tracing:
  otlp_endpoint: http://127.0.0.1:4318
dev_issuer:
  enabled: true
  allow_with_issuers: true
token_endpoint:
  enabled: true
  metadata_keys: [tier]
self_service:
  enabled: true
  metadata_keys: [tier]
assertion:
  enabled: true
`,
}

// TestEveryDurationKeyAcceptsItsValidRange: a config that sets only one
// duration key, to any value documented as valid, passes check, whatever
// the defaults of the keys it bounds (issue 19: cache.ttl 2s with Redis
// was refused over a disconnected_ttl the user never wrote). The keys
// come from the Config type, so a new one is covered by itself.
func TestEveryDurationKeyAcceptsItsValidRange(t *testing.T) {
	keys := durationKeys(reflect.TypeOf(Config{}), "")
	if len(keys) < 20 {
		t.Fatalf("found only %d duration keys: %v", len(keys), keys)
	}
	for _, key := range keys {
		if _, ok := validDurations[key]; !ok {
			t.Errorf("%s is a duration key without a documented valid range in validDurations", key)
		}
	}
	for key := range validDurations {
		if !slices.Contains(keys, key) {
			t.Errorf("validDurations lists %s, which Config does not have", key)
		}
	}
	for name, base := range durationBases {
		for _, key := range keys {
			for _, v := range validDurations[key] {
				doc := withKey(t, base, key, v)
				cfg, err := Parse("gw.yaml", doc, env(nil))
				if err != nil {
					t.Errorf("%s, only %s: %s set: check fails:\n%v", name, key, v, err)
					continue
				}
				want, _ := time.ParseDuration(v)
				if got := durationAt(t, reflect.ValueOf(*cfg), key); got != want {
					t.Errorf("%s, %s: %s: the config holds %s", name, key, v, got)
				}
			}
		}
	}
}

// TestDefaultsFollowTheKeysTheyDependOn: a key left out whose bound is
// another key takes a value inside that bound, and one the file sets is
// kept as written.
func TestDefaultsFollowTheKeysTheyDependOn(t *testing.T) {
	const redis = "cache:\n  redis:\n    url: redis://127.0.0.1:6379/0\n"
	for _, tc := range []struct {
		name, doc           string
		disconnected, claim time.Duration
	}{
		{"defaults", redis, 5 * time.Second, 10 * time.Second},
		{"cache.ttl 2s (issue 19)", "cache:\n  ttl: 2s\n  redis:\n    url: redis://127.0.0.1:6379/0\n", 2 * time.Second, 10 * time.Second},
		{"cache.ttl 50ms", "cache:\n  ttl: 50ms\n  redis:\n    url: redis://127.0.0.1:6379/0\n", 50 * time.Millisecond, 10 * time.Second},
		{"cache.ttl 1h", "cache:\n  ttl: 1h\n  redis:\n    url: redis://127.0.0.1:6379/0\n", 5 * time.Second, 10 * time.Second},
		{"disconnected_ttl set", "cache:\n  ttl: 2s\n  redis:\n    url: redis://127.0.0.1:6379/0\n    disconnected_ttl: 1s\n", time.Second, 10 * time.Second},
		{"auth0 timeout 30s", redis + "metadata:\n  auth0:\n    timeout: 30s\n", 5 * time.Second, 31 * time.Second},
		{"auth0 timeout 59s", redis + "metadata:\n  auth0:\n    timeout: 59s\n", 5 * time.Second, time.Minute},
		{"auth0 timeout 2h", redis + "metadata:\n  auth0:\n    timeout: 2h\n", 5 * time.Second, time.Minute},
		{"claim_ttl set", redis + "    claim_ttl: 3s\nmetadata:\n  auth0:\n    timeout: 30s\n", 5 * time.Second, 3 * time.Second},
	} {
		cfg, err := Parse("gw.yaml", []byte(minimal+tc.doc), env(nil))
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		if r := cfg.Cache.Redis; r.DisconnectedTTL.D() != tc.disconnected || r.ClaimTTL.D() != tc.claim {
			t.Errorf("%s: disconnected_ttl %s, claim_ttl %s; want %s, %s", tc.name, r.DisconnectedTTL.D(), r.ClaimTTL.D(), tc.disconnected, tc.claim)
		}
	}
}

// TestMessagesNameTheKeyTheFileSet: a problem with a value the file left
// to its default says so, and names the key the file did set that makes
// it wrong, with its line.
func TestMessagesNameTheKeyTheFileSet(t *testing.T) {
	for _, tc := range []struct{ name, doc, want string }{
		{"disconnected_ttl above a set cache.ttl",
			"cache:\n  ttl: 2s\n  redis:\n    url: redis://127.0.0.1:6379/0\n    disconnected_ttl: 3s\n",
			"gw.yaml:12: cache.redis.disconnected_ttl: 3s must be at most cache.ttl (2s, set at line 9)"},
		{"disconnected_ttl above the default cache.ttl",
			"cache:\n  redis:\n    url: redis://127.0.0.1:6379/0\n    disconnected_ttl: 6m\n",
			"gw.yaml:11: cache.redis.disconnected_ttl: 6m0s must be at most cache.ttl (default 5m0s, not set)"},
		{"a default header name outside a set namespace",
			"headers:\n  namespace: [X-Acme-]\n",
			`gw.yaml:8: headers.client_id: the default "X-Client-Id" (not set) is outside headers.namespace ([X-Acme-], set at line 9)`},
		{"the default metadata prefix covers a set header name",
			"headers:\n  client_id: X-Client-Metadata-Id\n",
			`gw.yaml:8: headers.metadata_prefix: the default "X-Client-Metadata-" (not set) covers headers.client_id ("X-Client-Metadata-Id", set at line 9)`},
	} {
		_, err := Parse("gw.yaml", []byte(minimal+tc.doc), env(nil))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error\n%v\nwant one saying\n%s", tc.name, err, tc.want)
		}
	}
}

// durationKeys lists the key path of every Duration field under t, with
// [0] for the first item of a list.
func durationKeys(t reflect.Type, path string) []string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t == reflect.TypeOf(Duration(0)) {
		return []string{path}
	}
	switch t.Kind() {
	case reflect.Slice:
		return durationKeys(t.Elem(), path+"[0]")
	case reflect.Struct:
		var keys []string
		for _, name := range sortedKeys(yamlFields(t)) {
			keys = append(keys, durationKeys(yamlFields(t)[name], join(path, name))...)
		}
		return keys
	}
	return nil
}

var listItem = regexp.MustCompile(`^(.*)\[(\d+)\]$`)

// withKey returns base with key set to value, the rest as it was.
func withKey(t *testing.T, base, key, value string) []byte {
	t.Helper()
	var doc map[string]any
	if err := yaml.Unmarshal([]byte(base), &doc); err != nil {
		t.Fatal(err)
	}
	var node any = doc
	parts := strings.Split(key, ".")
	for i, part := range parts {
		name, index := part, -1
		if m := listItem.FindStringSubmatch(part); m != nil {
			name, index = m[1], atoi(t, m[2])
		}
		m := node.(map[string]any)
		last := i == len(parts)-1
		switch {
		case last && index < 0:
			m[name] = value
			continue
		case index >= 0:
			list, _ := m[name].([]any)
			if len(list) <= index {
				t.Fatalf("%s: the base has no %s", key, part)
			}
			node = list[index]
		default:
			if _, ok := m[name].(map[string]any); !ok {
				m[name] = map[string]any{}
			}
			node = m[name]
		}
	}
	out, err := yaml.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// durationAt reads the Duration at key in v (a Config).
func durationAt(t *testing.T, v reflect.Value, key string) time.Duration {
	t.Helper()
	for _, part := range strings.Split(key, ".") {
		index := -1
		if m := listItem.FindStringSubmatch(part); m != nil {
			part, index = m[1], atoi(t, m[2])
		}
		v = fieldByYAML(v, part)
		if index >= 0 {
			v = v.Index(index)
		}
	}
	return v.Interface().(Duration).D()
}

func fieldByYAML(v reflect.Value, name string) reflect.Value {
	for i := 0; i < v.NumField(); i++ {
		if n, _, _ := strings.Cut(v.Type().Field(i).Tag.Get("yaml"), ","); n == name {
			return v.Field(i)
		}
	}
	panic("no field " + name)
}

func atoi(t *testing.T, s string) int {
	t.Helper()
	n, err := strconv.Atoi(s)
	if err != nil {
		t.Fatal(err)
	}
	return n
}
