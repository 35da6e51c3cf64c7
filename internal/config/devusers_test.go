package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// devIssuerDoc is minimal with the dev issuer beside its real issuer and
// the given users and clients blocks (indented under dev_issuer).
func devIssuerDoc(body string) string {
	return minimal + "dev_issuer:\n  enabled: true\n  allow_with_issuers: true\n" + body
}

func TestDevUsersParse(t *testing.T) {
	doc := devIssuerDoc(`  clients:
    - id: tests
      secret: s3cret-s3cret-s3cret
      grants: [password, "http://auth0.com/oauth/grant-type/password-realm"]
  users:
    - id: auth0|alice
      username: alice@example.com
      password: ${ALICE_PASSWORD}
      scopes: [read:things]
      claims:
        https://example.com/username: alice
        https://example.com/roles: [admin, dev]
`)
	cfg, err := Parse("gw.yaml", []byte(doc), env(map[string]string{"ALICE_PASSWORD": "correct horse"}))
	if err != nil {
		t.Fatal(err)
	}
	u := cfg.DevIssuer.Users[0]
	if u.ID != "auth0|alice" || u.Username != "alice@example.com" || u.Password != "correct horse" || len(u.Scopes) != 1 {
		t.Errorf("user = %+v", u)
	}
	if u.Claims["https://example.com/username"] != "alice" {
		t.Errorf("claims = %#v", u.Claims)
	}
	if roles, ok := u.Claims["https://example.com/roles"].([]any); !ok || len(roles) != 2 {
		t.Errorf("list claim = %#v", u.Claims["https://example.com/roles"])
	}
	if g := cfg.DevIssuer.Clients[0].Grants; len(g) != 2 || g[1] != "http://auth0.com/oauth/grant-type/password-realm" {
		t.Errorf("grants = %v", g)
	}
}

func TestDevUsersPasswordFile(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "alice")
	if err := os.WriteFile(file, []byte("from-a-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	doc := devIssuerDoc("  users:\n    - {id: auth0|alice, username: alice, password_file: " + file + "}\n")
	cfg, err := Parse("gw.yaml", []byte(doc), env(nil))
	if err != nil {
		t.Fatal(err)
	}
	if p := cfg.DevIssuer.Users[0].Password; p != "from-a-file" {
		t.Errorf("password = %q", p)
	}
	_, err = Parse("gw.yaml", []byte(strings.Replace(doc, file, filepath.Join(dir, "missing"), 1)), env(nil))
	if err == nil || !strings.Contains(err.Error(), "dev_issuer.users[0].password_file") {
		t.Errorf("missing password file: %v", err)
	}
}

func TestDevUsersInvalid(t *testing.T) {
	for name, tc := range map[string]struct {
		body string
		path string // the key the error must name
	}{
		"no id":             {"  users:\n    - {username: alice, password: pw}\n", "dev_issuer.users[0].id"},
		"no username":       {"  users:\n    - {id: auth0|alice, password: pw}\n", "dev_issuer.users[0].username"},
		"duplicate id":      {"  users:\n    - {id: auth0|a, username: a, password: pw}\n    - {id: auth0|a, username: b, password: pw}\n", "dev_issuer.users[1].id"},
		"duplicate name":    {"  users:\n    - {id: auth0|a, username: Alice, password: pw}\n    - {id: auth0|b, username: alice, password: pw}\n", "dev_issuer.users[1].username"},
		"no password":       {"  users:\n    - {id: auth0|a, username: a}\n", "dev_issuer.users[0]"},
		"both passwords":    {"  users:\n    - {id: auth0|a, username: a, password: pw, password_file: /x}\n", "dev_issuer.users[0]"},
		"reserved sub":      {"  users:\n    - {id: auth0|a, username: a, password: pw, claims: {sub: auth0|admin}}\n", "dev_issuer.users[0].claims.sub"},
		"reserved scope":    {"  users:\n    - {id: auth0|a, username: a, password: pw, claims: {scope: admin}}\n", "dev_issuer.users[0].claims.scope"},
		"reserved gty":      {"  users:\n    - {id: auth0|a, username: a, password: pw, claims: {gty: client-credentials}}\n", "dev_issuer.users[0].claims.gty"},
		"unknown grant":     {"  clients:\n    - {id: c, secret: s, grants: [implicit]}\n", "dev_issuer.clients[0].grants[0]"},
		"grant misspelling": {"  clients:\n    - {id: c, secret: s, grants: [password_realm]}\n", "dev_issuer.clients[0].grants[0]"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := Parse("gw.yaml", []byte(devIssuerDoc(tc.body)), env(nil))
			var errs Errors
			if !errors.As(err, &errs) {
				t.Fatalf("err = %v, want config errors", err)
			}
			for _, e := range errs {
				if e.Path == tc.path {
					return
				}
			}
			t.Errorf("no error at %s: %v", tc.path, err)
		})
	}
}

// TestDevUsersIgnoredWhenOff: users of a disabled dev issuer are not
// checked, like its clients.
func TestDevUsersIgnoredWhenOff(t *testing.T) {
	doc := minimal + "dev_issuer:\n  users:\n    - {id: auth0|a}\n"
	if _, err := Parse("gw.yaml", []byte(doc), env(nil)); err != nil {
		t.Fatal(err)
	}
}
