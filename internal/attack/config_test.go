package attack

import (
	"strings"
	"testing"

	"github.com/metagate/gateway/internal/config"
)

// minimalConfig is a valid gateway.yaml (nothing is started from it)
// followed by extra YAML.
func minimalConfig(extra string) string {
	return `server:
  listen: 127.0.0.1:0
  admin_listen: ""
issuers:
  - issuer: http://127.0.0.1:1/
    audiences: [https://api.test/]
routes:
  - match: {path_prefix: /}
    upstreams: [http://127.0.0.1:2]
` + extra
}

// TestAttackConfigMetadataPrefixCannotShadowIdentity: a metadata prefix
// under which some metadata key would spell an identity header (X-Client-
// + "id" = X-Client-Id, X-Client- + "metadata" = X-Client-Metadata) lets
// whoever edits metadata forge identity; `gateway check` refuses it,
// naming headers.metadata_prefix and the file.
func TestAttackConfigMetadataPrefixCannotShadowIdentity(t *testing.T) {
	t.Parallel()
	refused := []struct{ name, prefix string }{
		{"X-Client- (key id becomes X-Client-Id)", "X-Client-"},
		{"lower-case x-client-", "x-client-"},
		{"upper-case X-CLIENT-", "X-CLIENT-"},
		// Beyond the spec's one example: the same collision, other spellings.
		{"underscores X_Client_", "X_Client_"},
		{"X-User- (key id becomes X-User-Id)", "X-User-"},
		{"X-Client-I (key d becomes X-Client-ID)", "X-Client-I"},
		{"X-Client-K (key ind becomes X-Client-KInd)", "X-Client-K"},
		{"X-Client-Metadat (key a becomes X-Client-MetadatA)", "X-Client-Metadat"},
		{"X-Client-Iss (key uer becomes X-Client-IssUer)", "X-Client-Iss"},
	}
	for _, c := range refused {
		t.Run("refuses "+c.name, func(t *testing.T) {
			file := writeConfig(t, minimalConfig("headers:\n  metadata_prefix: \""+c.prefix+"\"\n"))
			_, err := config.Load(file, noEnv)
			if err == nil {
				t.Fatalf("config.Load accepted headers.metadata_prefix: %q", c.prefix)
			}
			if msg := err.Error(); !strings.Contains(msg, "headers.metadata_prefix") || !strings.Contains(msg, file) {
				t.Errorf("the refusal names neither headers.metadata_prefix nor the file: %v", err)
			}
		})
	}
	for _, prefix := range []string{"X-Client-Metadata-", "X-Client-Md-", "X-User-Meta-"} {
		t.Run("accepts "+prefix, func(t *testing.T) {
			file := writeConfig(t, minimalConfig("headers:\n  metadata_prefix: \""+prefix+"\"\n"))
			if _, err := config.Load(file, noEnv); err != nil {
				t.Errorf("config.Load refused a harmless prefix %q: %v", prefix, err)
			}
		})
	}
}

// TestAttackConfigDevIssuerBesideRealIssuers: the dev issuer mints any
// token for anyone who can reach its port; enabled next to real issuers
// (a dev flag left on in production) it is refused unless explicitly
// allowed.
func TestAttackConfigDevIssuerBesideRealIssuers(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, yaml string
		ok         bool
	}{
		{"dev issuer beside issuers is refused", minimalConfig("dev_issuer:\n  enabled: true\n"), false},
		{"dev issuer beside issuers with allow_with_issuers", minimalConfig("dev_issuer:\n  enabled: true\n  allow_with_issuers: true\n"), true},
		{"dev issuer alone", "server:\n  listen: 127.0.0.1:0\n  admin_listen: \"\"\ndev_issuer:\n  enabled: true\nroutes:\n  - match: {path_prefix: /}\n    upstreams: [http://127.0.0.1:2]\n", true},
		{"disabled dev issuer beside issuers", minimalConfig("dev_issuer:\n  enabled: false\n"), true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			file := writeConfig(t, c.yaml)
			_, err := config.Load(file, noEnv)
			switch {
			case c.ok && err != nil:
				t.Errorf("config.Load refused it: %v", err)
			case !c.ok && err == nil:
				t.Errorf("config.Load accepted it:\n%s", c.yaml)
			case !c.ok && !strings.Contains(err.Error(), "dev_issuer"):
				t.Errorf("the refusal does not name dev_issuer: %v", err)
			}
		})
	}
}

// TestAttackConfigRelaxIsAClosedSet: relax accepts encoded_slash and
// nothing else (a typo must not silently relax, or fail to relax, a check).
func TestAttackConfigRelaxIsAClosedSet(t *testing.T) {
	t.Parallel()
	route := func(v string) string {
		return strings.Replace(minimalConfig(""), "upstreams: [http://127.0.0.1:2]", "upstreams: [http://127.0.0.1:2]\n    relax: ["+v+"]", 1)
	}
	if _, err := config.Load(writeConfig(t, route("encoded_slash")), noEnv); err != nil {
		t.Errorf("relax: [encoded_slash] refused: %v", err)
	}
	for _, v := range []string{"dot_segments", "encoded_backslash", "all"} {
		if _, err := config.Load(writeConfig(t, route(v)), noEnv); err == nil {
			t.Errorf("relax: [%s] accepted, want it refused", v)
		}
	}
}
