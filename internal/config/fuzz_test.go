package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

// fuzzFile is the file name Parse is given: every error must name it.
const fuzzFile = "fuzz/gateway.yaml"

// fuzzEnv is the environment of FuzzParse: the variables the shipped
// examples require, none of them empty (see skipSpecialFiles).
func fuzzEnv(k string) (string, bool) {
	v, ok := map[string]string{
		"AUTH0_ISSUER":        "https://tenant.auth0.com/",
		"AUTH0_AUDIENCE":      "https://api.example.com/",
		"AUTH0_CLIENT_ID":     "gateway-m2m",
		"AUTH0_CLIENT_SECRET": "m2m-secret",
		"UPSTREAM_URL":        "http://127.0.0.1:9000",
		"LISTEN":              "127.0.0.1:8080",
		"TTL":                 "1m",
	}[k]
	return v, ok
}

// FuzzParse checks that config.Parse never panics and always terminates,
// and that it returns either a Config (whose File is the file name) and no
// error, or no Config and an error that names the file, every Error in an
// Errors having File set to it.
func FuzzParse(f *testing.F) {
	seeds := []string{"../../gateway.yaml"}
	examples, err := filepath.Glob("../../deploy/examples/*.yaml")
	if err != nil || len(examples) == 0 {
		f.Fatalf("no deploy/examples/*.yaml (%v)", err)
	}
	seeds = append(seeds, examples...)
	for _, file := range seeds {
		raw, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(raw)
		// Broken variants: cut short, a tab for indentation, an unknown
		// key, an unset variable, a bad duration, a list for a mapping.
		f.Add(raw[:len(raw)/2])
		f.Add(raw[:len(raw)/3])
		f.Add([]byte(strings.Replace(string(raw), "  ", "\t", 1)))
		f.Add(append(append([]byte{}, raw...), "\nbogus_key: 1\n"...))
		f.Add(append(append([]byte{}, raw...), "\nserver:\n  listen: ${FUZZ_UNSET}\n"...))
		f.Add(append(append([]byte{}, raw...), "\ncache:\n  ttl: 5\n"...))
		f.Add(append(append([]byte{}, raw...), "\nroutes: {a: 1}\n"...))
	}
	for _, s := range []string{
		"", "\n", "---\n", "# only a comment\n", "[]", "{}", "null", "~", "42", "\"str\"", "- a\n- b\n",
		"server: [1, 2]\n", "server:\n  listen: {a: b}\n", "server:\n  drain_delay: [1s]\n",
		"server:\n  drain_delay: 1fortnight\n", "server:\n  max_token_bytes: lots\n",
		"server:\n  listen: ${LISTEN}\n  realm: ${REALM:-api}\n", "server:\n  listen: ${LISTEN\n",
		"routes:\n  - match: {path_prefix: /}\n    upstreams: [http://127.0.0.1:9000]\n",
		"issuers:\n  - issuer: ${AUTH0_ISSUER}\n    audiences: [\"${AUTH0_AUDIENCE}\"]\nroutes:\n  - match: {path_prefix: /a%2Fb}\n    upstreams: [http://127.0.0.1:9000]\n",
		"a: &a 1\nb: *a\n", "server: &s {listen: x}\nlog: *s\n", "server: *nope\n",
		"metadata:\n  local:\n    clients:\n      x:\n        metadata:\n          a: &a [1, 2]\n          b: [*a, *a]\n",
		"dev_issuer:\n  clients:\n    - id: a\n      secret_file: testdata/missing\n",
		"\xff\xfe", "key: \"\\xff\"\n", "? [a]\n: b\n", "!!binary aGk=\n", "<<: {server: {}}\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		if len(raw) > 64<<10 {
			return
		}
		if skipSpecialFiles(raw) {
			return
		}
		cfg, err := Parse(fuzzFile, raw, fuzzEnv)
		switch {
		case cfg != nil && err != nil:
			t.Fatalf("Parse returned both a Config and an error: %v\ninput: %q", err, raw)
		case cfg == nil && err == nil:
			t.Fatalf("Parse returned neither a Config nor an error\ninput: %q", raw)
		case cfg != nil:
			if cfg.File != fuzzFile {
				t.Fatalf("Config.File = %q, want %q\ninput: %q", cfg.File, fuzzFile, raw)
			}
			return
		}
		if !strings.Contains(err.Error(), fuzzFile) {
			t.Fatalf("error does not name the file %q: %v\ninput: %q", fuzzFile, err, raw)
		}
		var es Errors
		if errors.As(err, &es) {
			if len(es) == 0 {
				t.Fatalf("empty Errors returned as an error\ninput: %q", raw)
			}
			for i, e := range es {
				if e == nil || e.File != fuzzFile {
					t.Fatalf("Errors[%d] = %#v: File is not %q\ninput: %q", i, e, fuzzFile, raw)
				}
			}
		}
		var e *Error
		if errors.As(err, &e) && e.File != fuzzFile {
			t.Fatalf("Error %#v: File is not %q\ninput: %q", e, fuzzFile, raw)
		}
	})
}

// its own anchor ("a: &a [*a]" where a value may be a list) recurses until
// the process dies, and nested aliases ("billion laughs") take time
// exponential in the input's size; both before yaml.v3's own alias limit
// is reached in Decode. It mirrors walk's traversal (the same types and
// the same keys) and counts its visits. Remove it once Parse bounds alias
// expansion: the seeds that hit it then run as ordinary inputs.
// walk is walker.walk's recursion, without its effects.
// skipSpecialFiles reports whether raw could name a file under /dev, /proc
// or /sys, which Parse would read as a secret file (loadSecrets): reading
// /dev/zero or /dev/stdin never ends. Every scalar is checked as Parse
// sees it, after YAML unescaping and ${VAR} expansion; !!binary values,
// which decode to arbitrary bytes, are skipped altogether.
func skipSpecialFiles(raw []byte) bool {
	var doc yaml.Node
	if yaml.Unmarshal(raw, &doc) != nil {
		return false // Parse stops at the YAML error
	}
	w := walker{file: fuzzFile, env: fuzzEnv, lines: map[int]string{}}
	var special func(n *yaml.Node) bool
	special = func(n *yaml.Node) bool {
		if n.Kind == yaml.ScalarNode {
			if n.ShortTag() == "!!binary" {
				return true
			}
			c := *n
			w.expand(&c, "")
			for _, dir := range []string{"/dev", "/proc", "/sys"} {
				if strings.Contains(c.Value, dir) || strings.Contains(n.Value, dir) {
					return true
				}
			}
		}
		for _, c := range n.Content {
			if special(c) {
				return true
			}
		}
		return false
	}
	return special(&doc)
}

// TestParseBoundsYAMLAliases: an anchor that contains its own alias, and
// nested aliases ("billion laughs", the checked-in fuzz seeds), are
// refused at once instead of hanging the gateway's config check (the
// walker used to follow every alias again).
func TestParseBoundsYAMLAliases(t *testing.T) {
	nested := "metadata:\n  local:\n    clients:\n      x:\n        metadata:\n          l0: &l0 [x, x, x, x, x, x, x, x, x, x]\n"
	for i := 1; i <= 8; i++ {
		nested += fmt.Sprintf("          l%d: &l%d [%s]\n", i, i, strings.TrimSuffix(strings.Repeat(fmt.Sprintf("*l%d, ", i-1), 10), ", "))
	}
	for name, raw := range map[string]string{
		"alias inside its own anchor": "metadata:\n  local:\n    clients:\n      x:\n        metadata:\n          a: &a [*a]\n",
		"map alias inside its anchor": "metadata:\n  local:\n    clients:\n      x:\n        metadata:\n          a: &a {b: *a}\n",
		"nested aliases, 10^9 leaves": nested,
	} {
		t.Run(name, func(t *testing.T) {
			done := make(chan error, 1)
			go func() { _, err := Parse("gw.yaml", []byte(raw), fuzzEnv); done <- err }()
			select {
			case err := <-done:
				if err == nil || !strings.Contains(err.Error(), "gw.yaml") {
					t.Errorf("Parse = %v, want an error naming the file", err)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("Parse did not return within 10s")
			}
		})
	}
}
