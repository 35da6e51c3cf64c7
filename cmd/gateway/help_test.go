package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// commandFlags is every command with the flags its help must show.
var commandFlags = map[string][]string{
	"serve":      {"-config"},
	"check":      {"-config"},
	"token":      {"-client", "-user", "-scope", "-ttl", "-audience", "-config"},
	"health":     {"-addr", "-ready", "-timeout"},
	"invalidate": {"-client", "-user", "-all", "-issuer", "-admin", "-token", "-timeout"},
	"version":    nil,
	"help":       nil,
}

// TestHelpListsEveryCommand: the three ways a new user asks what the
// binary does all list every command, with the exit codes, on stdout.
func TestHelpListsEveryCommand(t *testing.T) {
	for _, args := range [][]string{{"--help"}, {"-h"}, {"help"}} {
		code, out, stderr := runCLI(args...)
		if code != 0 || stderr != "" {
			t.Errorf("%v: exit %d, stderr %q", args, code, stderr)
		}
		for name := range commandFlags {
			if !strings.Contains(out, "\n  "+name+" ") {
				t.Errorf("%v does not list %s:\n%s", args, name, out)
			}
		}
		for _, want := range []string{"Exit codes:", "0  success", "1  runtime or configuration error", "2  usage error"} {
			if !strings.Contains(out, want) {
				t.Errorf("%v does not say %q:\n%s", args, want, out)
			}
		}
	}
}

// TestBareGatewayListsCommands: with no arguments at all the list goes to
// stderr and the exit is 2, so a supervisor that still starts a bare
// `gateway` to serve sees a failure, told how to serve.
func TestBareGatewayListsCommands(t *testing.T) {
	code, out, stderr := runCLI()
	if code != 2 || out != "" {
		t.Errorf("exit %d, stdout %q", code, out)
	}
	for _, want := range []string{"\n  serve ", "\n  check ", "gateway serve --config FILE"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr does not say %q:\n%s", want, stderr)
		}
	}
}

// TestFlagsWithoutACommandStillServe: `gateway --config FILE` predates the
// subcommands and is in scripts: it still means serve (here it fails at
// once, on a missing file, without listening).
func TestFlagsWithoutACommandStillServe(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "missing.yaml")
	code, _, stderr := runCLI("--config", missing)
	if code != 1 || !strings.Contains(stderr, "read config") || !strings.Contains(stderr, "missing.yaml") {
		t.Errorf("exit %d, stderr %q", code, stderr)
	}
	if code, out, _ := runCLI("--config", missing, "--help"); code != 0 || !strings.Contains(out, "Usage: gateway serve") {
		t.Errorf("--config FILE --help: exit %d, %q", code, out)
	}
}

// TestCommandHelp: `gateway CMD --help`, `-h` and `gateway help CMD` show the
// same text: the usage line, every flag, an example, exit 0.
func TestCommandHelp(t *testing.T) {
	for name, flags := range commandFlags {
		code, out, stderr := runCLI(name, "--help")
		if code != 0 || stderr != "" {
			t.Errorf("%s --help: exit %d, stderr %q", name, code, stderr)
		}
		for _, want := range append([]string{"Usage: gateway " + name, "\nExample:\n  ", "Exit codes:"}, flags...) {
			if !strings.Contains(out, want) {
				t.Errorf("%s --help does not show %q:\n%s", name, want, out)
			}
		}
		for _, args := range [][]string{{name, "-h"}, {"help", name}} {
			if code, again, _ := runCLI(args...); code != 0 || again != out {
				t.Errorf("%v: exit %d, and not the text of %s --help:\n%s", args, code, name, again)
			}
		}
	}
}

// TestUsageErrorsExit2: what cannot run as typed exits 2 with a hint on
// stderr, and nothing on stdout for a script to mistake for output.
func TestUsageErrorsExit2(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want []string
	}{
		{[]string{"frobnicate"}, []string{`unknown command "frobnicate"`, "\n  serve ", "\n  invalidate "}},
		{[]string{"help", "frobnicate"}, []string{`unknown command "frobnicate"`, "\n  check "}},
		{[]string{"help", "check", "token"}, []string{"give one command"}},
		{[]string{"check", "--bogus"}, []string{"check: flag provided but not defined: -bogus", "usage: gateway check", "gateway check --help"}},
		{[]string{"check", "gateway.yaml"}, []string{`unexpected argument "gateway.yaml"`, "usage: gateway check"}},
		{[]string{"health", "--timeout", "soon"}, []string{"health: invalid value", "gateway health --help"}},
		{[]string{"token", "--config", "../../gateway.yaml"}, []string{"exactly one of --client", "usage: gateway token"}},
	} {
		code, out, stderr := runCLI(tc.args...)
		if code != 2 || out != "" {
			t.Errorf("%v: exit %d, stdout %q", tc.args, code, out)
		}
		for _, want := range tc.want {
			if !strings.Contains(stderr, want) {
				t.Errorf("%v: stderr does not say %q:\n%s", tc.args, want, stderr)
			}
		}
	}
}

// TestCheckListsEveryProblem: an unknown key, a bad duration and a
// validation problem in one file are all reported by one check, in line
// order, each as file:line: key path, and check exits 1.
func TestCheckListsEveryProblem(t *testing.T) {
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	doc := `server:
  listen: 127.0.0.1:8080
  colour: blue
  read_timeout: 5 minutes
log:
  format: xml
dev_issuer:
  enabled: true
routes:
  - match: {path_prefix: /}
    upstreams: [http://127.0.0.1:9000]
`
	if err := os.WriteFile(bad, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	code, out, stderr := runCLI("check", "--config", bad)
	if code != 1 || strings.Contains(out, "valid") {
		t.Errorf("exit %d, stdout %q", code, out)
	}
	at := -1
	for _, want := range []string{
		"(3 problem(s))",
		bad + ":3: server.colour: unknown key",
		bad + `:4: server.read_timeout: "5 minutes" is not a duration`,
		bad + `:6: log.format: "xml" is not one of json, console`,
	} {
		i := strings.Index(stderr, want)
		if i < 0 {
			t.Errorf("stderr does not say %q:\n%s", want, stderr)
		} else if i < at {
			t.Errorf("%q is out of line order:\n%s", want, stderr)
		}
		at = max(at, i)
	}
}

// TestCheckRejectsABadPolicy: `gateway check` compiles every allow_if and
// names the file:line of the one that does not compile, with CEL's error.
func TestCheckRejectsABadPolicy(t *testing.T) {
	file := filepath.Join(t.TempDir(), "policy.yaml")
	doc := `dev_issuer:
  enabled: true
routes:
  - name: tenant
    match: {path: "/tenants/{tenant}/invoices"}
    upstreams: [http://127.0.0.1:9000]
    allow_if:
      - metadata.plan in ["pro", "enterprise"]
      - request.path_params.tenant == metadata.tenant_id &&
`
	if err := os.WriteFile(file, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	code, _, stderr := runCLI("check", "--config", file)
	if want := file + ":9: routes[0].allow_if[1]: at 1:"; code != 1 || !strings.Contains(stderr, want) || !strings.Contains(stderr, "Syntax error") {
		t.Errorf("exit %d, stderr %q; want 1 and %q with CEL's syntax error", code, stderr, want)
	}
	fixed := strings.Replace(doc, " &&\n", "\n", 1)
	if err := os.WriteFile(file, []byte(fixed), 0o600); err != nil {
		t.Fatal(err)
	}
	if code, out, stderr := runCLI("check", "--config", file); code != 0 {
		t.Errorf("the fixed policy: exit %d, %s %s", code, out, stderr)
	}
}
