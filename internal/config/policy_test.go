package config

import (
	"strings"
	"testing"
)

const policyRoutes = `
issuers:
  - issuer: https://tenant.auth0.com/
    audiences: [https://api.example.com/]
routes:
  - name: invoices
    match:
      path: /tenants/{tenant}/invoices/{id}
    upstreams: [http://127.0.0.1:9000]
    allow_if:
      - metadata.plan in ["pro", "enterprise"]
      - request.path_params.tenant == metadata.tenant_id
  - name: single
    match: {path_prefix: /single}
    upstreams: [http://127.0.0.1:9000]
    allow_if: caller.kind == "client"
`

func TestAllowIfCompiles(t *testing.T) {
	cfg, err := Parse("gw.yaml", []byte(policyRoutes), env(nil))
	if err != nil {
		t.Fatal(err)
	}
	if p := cfg.Routes[0].AllowProgram; p == nil || p.Len() != 2 {
		t.Fatalf("routes[0] program: %v", p)
	}
	if p := cfg.Routes[1].AllowProgram; p == nil || p.Len() != 1 {
		t.Fatalf("routes[1]: a single expression: %v", p)
	}
	if !cfg.KeepClaims() {
		t.Error("a policy route must keep the token's claims")
	}
}

// TestAllowIfErrorsHaveFileLine: every expression that does not compile
// is reported at the line of its own list item (or of allow_if for a
// single expression), with CEL's message.
func TestAllowIfErrorsHaveFileLine(t *testing.T) {
	doc := strings.Replace(policyRoutes, `request.path_params.tenant == metadata.tenant_id`, `request.params.tenant == 1`, 1)
	doc = strings.Replace(doc, `caller.kind == "client"`, `caller.kind ==`, 1)
	doc += `  - name: public
    match: {path_prefix: /pub}
    upstreams: [http://127.0.0.1:9000]
    auth: public
    allow_if: "true"
  - name: prefix-template
    match: {path_prefix: "/a/{b}"}
    upstreams: [http://127.0.0.1:9000]
  - name: bad-template
    match: {path: "/a/{b}/{b}"}
    upstreams: [http://127.0.0.1:9000]
  - name: not-bool
    match: {path_prefix: /nb}
    upstreams: [http://127.0.0.1:9000]
    allow_if: caller.id
`
	_, err := Parse("gw.yaml", []byte(doc), env(nil))
	if err == nil {
		t.Fatal("accepted")
	}
	msg := err.Error()
	for _, want := range []string{
		"gw.yaml:12: routes[0].allow_if[1]: at 1:8: undefined field 'params'",
		"gw.yaml:16: routes[1].allow_if: at 1:15: Syntax error",
		"gw.yaml:21: routes[2].allow_if: a public route",
		"routes[3].match.path_prefix: \"/a/{b}\": {params} are only for match.path",
		"routes[4].match.path: \"/a/{b}/{b}\": parameter {b} appears twice",
		"routes[5].allow_if: must be a bool expression",
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("missing %q in:\n%s", want, msg)
		}
	}
}
