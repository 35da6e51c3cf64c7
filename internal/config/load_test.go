package config

import (
	"errors"
	"strconv"
	"strings"
	"testing"
)

// where is one expected problem: its line, key path and a piece of its
// message.
type where struct {
	line int
	path string
	msg  string
}

// problemsOf parses doc and returns its Errors, failing the test if Parse
// accepted it or returned anything else.
func problemsOf(t *testing.T, doc string, vars map[string]string) Errors {
	t.Helper()
	cfg, err := Parse("gw.yaml", []byte(doc), env(vars))
	if cfg != nil || err == nil {
		t.Fatalf("Parse accepted:\n%s", doc)
	}
	var es Errors
	if !errors.As(err, &es) {
		t.Fatalf("error %v is %T, not Errors", err, err)
	}
	return es
}

// expectProblems checks that es is exactly want, in that order, and that
// each message says file:line: path.
func expectProblems(t *testing.T, es Errors, want []where) {
	t.Helper()
	if len(es) != len(want) {
		t.Fatalf("%d problem(s), want %d:\n%v", len(es), len(want), es)
	}
	for i, w := range want {
		e := es[i]
		if e.File != "gw.yaml" || e.Line != w.line || e.Path != w.path || !strings.Contains(e.Msg, w.msg) {
			t.Errorf("problem %d = %q (line %d, path %q), want line %d, path %q, a message with %q", i, e, e.Line, e.Path, w.line, w.path, w.msg)
		}
		loc := "gw.yaml: "
		if w.line > 0 {
			loc = "gw.yaml:" + strconv.Itoa(w.line) + ": "
		}
		if w.path != "" {
			loc += w.path + ": "
		}
		if !strings.HasPrefix(e.Error(), loc) {
			t.Errorf("problem %d reads %q, want it to start with %q", i, e, loc)
		}
	}
}

// TestParseReportsEveryProblemAtOnce: an unknown key, an unset variable, a
// bad duration and a string for an int no longer hide each other or the
// validation problems of what did decode; all come back in one Errors,
// ordered by line, each with its line and key path.
func TestParseReportsEveryProblemAtOnce(t *testing.T) {
	doc := `server:
  listen: nowhere
  colour: blue
  read_timeout: 5 minutes
  max_token_bytes: lots
  admin_listen: ${ADMIN}
issuers:
  - issuer: https://tenant.auth0.com/
routes:
  - match: {path_prefix: /}
    upstreams: [http://127.0.0.1:9000]
    auth: sometimes
`
	expectProblems(t, problemsOf(t, doc, nil), []where{
		{2, "server.listen", "is not a host:port address"},
		{3, "server.colour", "unknown key"},
		{4, "server.read_timeout", "not a duration"},
		{5, "server.max_token_bytes", "cannot unmarshal"},
		{6, "server.admin_listen", "ADMIN is not set"},
		// The key is missing: the line is its issuer's.
		{8, "issuers[0].audiences", "at least one audience"},
		{12, "routes[0].auth", `"sometimes" is not one of`},
	})
}

// TestParseDoesNotRepeatAProblem: once a key's value is reported unusable,
// what follows from it (the empty routes, the unexpanded ${VAR} that is no
// host:port, the list decoded into nothing) is not reported again.
func TestParseDoesNotRepeatAProblem(t *testing.T) {
	doc := "issuers:\n  - issuer: https://tenant.auth0.com/\n    audiences: [a]\n" +
		"server:\n  listen: ${LISTEN}\n  tls: [a, b]\n" +
		"routes: {a: 1}\n"
	expectProblems(t, problemsOf(t, doc, nil), []where{
		{5, "server.listen", "LISTEN is not set"},
		{6, "server.tls", "must not be a list"},
		{7, "routes", "must be a list, not a mapping"},
	})
}

// TestParseLinesOfValidationProblems: validation names key paths only;
// Parse adds the line of the key, or of its nearest ancestor in the file,
// and a problem about a top-level key the file lacks has no line and comes
// last.
func TestParseLinesOfValidationProblems(t *testing.T) {
	doc := "log:\n  format: xml\nserver:\n  tls:\n    cert_file: /c.pem\n"
	expectProblems(t, problemsOf(t, doc, nil), []where{
		{2, "log.format", `"xml" is not one of json, console`},
		{4, "server.tls", "set both cert_file and key_file"},
		{0, "issuers", "at least one issuer"},
		{0, "routes", "at least one route"},
	})
}

func TestParseWholeFileProblems(t *testing.T) {
	for _, tc := range []struct {
		name, doc string
		want      where
	}{
		{"syntax error", "server:\n  listen: [\n", where{2, "", "not valid YAML"}},
		{"a list", "- server\n- routes\n", where{1, "", "must be a mapping of keys"}},
		{"a scalar", "42\n", where{1, "", "must be a mapping of keys"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			expectProblems(t, problemsOf(t, tc.doc, nil), []where{tc.want})
		})
	}
}

// TestParseStopsAtADecodeFailure: an error other than a type error (here
// an anchor that contains itself) stops yaml's decode midway, so the
// half-decoded config is not validated: that would report every key the
// decode never reached.
func TestParseStopsAtADecodeFailure(t *testing.T) {
	doc := "metadata:\n  local:\n    clients:\n      x:\n        metadata:\n          a: &a [*a]\n"
	es := problemsOf(t, doc, nil)
	for _, e := range es {
		if e.Path == "routes" || e.Path == "issuers" {
			t.Errorf("validated a config whose decode failed: %v", es)
		}
	}
}

func TestParent(t *testing.T) {
	for in, want := range map[string]string{
		"routes[0].match.path": "routes[0].match", "routes[0].match": "routes[0]", "routes[0]": "routes", "routes": "",
	} {
		if got := parent(in); got != want {
			t.Errorf("parent(%q) = %q, want %q", in, got, want)
		}
	}
}
