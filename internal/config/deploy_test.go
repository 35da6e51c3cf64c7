package config_test

import (
	"os"
	"path/filepath"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/metagate/gateway/internal/config"
)

// TestShippedConfigMapsValidate runs the gateway's own validation on the
// gateway.yaml inside every Kubernetes ConfigMap we ship, with the
// environment their Deployments document, so a typo in a key fails here
// rather than in a rollout.
func TestShippedConfigMapsValidate(t *testing.T) {
	files, err := filepath.Glob("../../deploy/kubernetes/*/configmap.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no ConfigMaps found: %v", err)
	}
	secret := filepath.Join(t.TempDir(), "client-secret")
	if err := os.WriteFile(secret, []byte("s3cret"), 0o600); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{
		"AUTH0_ISSUER": "https://tenant.eu.auth0.com/", "AUTH0_AUDIENCE": "https://api.example.com/",
		"AUTH0_CLIENT_ID": "m2m", "AUTH0_CLIENT_SECRET_FILE": secret,
	}
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var cm struct {
			Kind string            `yaml:"kind"`
			Data map[string]string `yaml:"data"`
		}
		if err := yaml.Unmarshal(raw, &cm); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		body, ok := cm.Data["gateway.yaml"]
		if cm.Kind != "ConfigMap" || !ok {
			t.Fatalf("%s: not a ConfigMap with data.gateway.yaml", f)
		}
		cfg, err := config.Parse(f+"#gateway.yaml", []byte(body), lookup)
		if err != nil {
			t.Errorf("%v", err)
			continue
		}
		if cfg.Server.WatchConfig == 0 {
			t.Errorf("%s: server.watch_config is off: ConfigMap edits would need a restart", f)
		}
	}
}
