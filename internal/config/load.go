package config

import (
	"errors"
	"fmt"
	"os"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Error is one problem with the configuration, located by file and key path
// so that a user can go straight to the line to fix.
type Error struct {
	File string
	Path string
	Line int
	Msg  string
}

func (e *Error) Error() string {
	loc := e.File
	if e.Line > 0 {
		loc += ":" + strconv.Itoa(e.Line)
	}
	if e.Path == "" {
		return loc + ": " + e.Msg
	}
	return loc + ": " + e.Path + ": " + e.Msg
}

// Errors is every problem found in one file; the gateway reports them all at
// once rather than making users fix them one run at a time.
type Errors []*Error

func (es Errors) Error() string {
	parts := make([]string, len(es))
	for i, e := range es {
		parts[i] = e.Error()
	}
	return fmt.Sprintf("invalid configuration (%d problem(s)):\n  %s", len(es), strings.Join(parts, "\n  "))
}

// Load reads, expands, decodes and validates the file. The environment is
// passed in (os.LookupEnv in production) so tests never touch process state.
func Load(file string, lookupEnv func(string) (string, bool)) (*Config, error) {
	raw, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	return Parse(file, raw, lookupEnv)
}

// Parse is Load for bytes already read; file is only used in messages.
func Parse(file string, raw []byte, lookupEnv func(string) (string, bool)) (*Config, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		return nil, Errors{{File: file, Msg: "not valid YAML: " + err.Error()}}
	}
	cfg := Default()
	cfg.File = file
	if len(doc.Content) == 0 {
		return nil, Errors{{File: file, Msg: "the file is empty"}}
	}
	w := walker{file: file, env: lookupEnv, lines: map[int]string{}}
	root := doc.Content[0]
	w.walk(root, reflect.TypeOf(cfg), "")
	if len(w.errs) > 0 {
		return nil, w.errs
	}
	if err := root.Decode(&cfg); err != nil {
		return nil, w.typeErrors(err)
	}
	cfg.File = file
	cfg.applyDefaults()
	if errs := cfg.validate(); len(errs) > 0 {
		return nil, errs
	}
	if err := cfg.loadSecrets(); err != nil {
		return nil, err
	}
	return &cfg, nil
}

// walker checks keys against the Go types before decoding (yaml's own
// strict mode does not say which key path was wrong) and expands ${VAR} and
// ${VAR:-default} in every scalar value, so a typed field can be set from
// the environment.
type walker struct {
	file  string
	env   func(string) (string, bool)
	errs  Errors
	lines map[int]string
	// aliased are the anchored nodes already walked. An alias's target
	// is walked (and its ${VAR}s expanded) once: walking it again would
	// expand text that is already expanded, loop forever on an anchor
	// that contains its own alias, and take exponential time on nested
	// aliases ("billion laughs"), which Decode then refuses by itself.
	aliased map[*yaml.Node]bool
}

func (w *walker) fail(n *yaml.Node, path, format string, args ...any) {
	w.errs = append(w.errs, &Error{File: w.file, Path: path, Line: n.Line, Msg: fmt.Sprintf(format, args...)})
}

func (w *walker) walk(n *yaml.Node, t reflect.Type, path string) {
	if n.Kind == yaml.AliasNode {
		n = n.Alias
		if n == nil || w.aliased[n] {
			return
		}
	}
	if n.Anchor != "" {
		if w.aliased == nil {
			w.aliased = map[*yaml.Node]bool{}
		}
		if w.aliased[n] {
			return
		}
		w.aliased[n] = true
	}
	if path != "" {
		if _, seen := w.lines[n.Line]; !seen {
			w.lines[n.Line] = path
		}
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t == reflect.TypeOf(Duration(0)) {
		if n.Kind != yaml.ScalarNode {
			w.fail(n, path, "must be a duration such as 30s or 5m")
			return
		}
		w.expand(n, path)
		return
	}
	switch n.Kind {
	case yaml.ScalarNode:
		w.expand(n, path)
		return
	case yaml.SequenceNode:
		if t.Kind() != reflect.Slice && t.Kind() != reflect.Interface {
			w.fail(n, path, "must not be a list")
			return
		}
		elem := t
		if t.Kind() == reflect.Slice {
			elem = t.Elem()
		}
		for i, c := range n.Content {
			w.walk(c, elem, fmt.Sprintf("%s[%d]", path, i))
		}
	case yaml.MappingNode:
		switch t.Kind() {
		case reflect.Struct:
			fields := yamlFields(t)
			for i := 0; i+1 < len(n.Content); i += 2 {
				k, v := n.Content[i], n.Content[i+1]
				p := join(path, k.Value)
				ft, ok := fields[k.Value]
				if !ok {
					w.fail(k, p, "unknown key (known keys: %s)", strings.Join(sortedKeys(fields), ", "))
					continue
				}
				w.lines[k.Line] = p
				w.walk(v, ft, p)
			}
		case reflect.Map:
			for i := 0; i+1 < len(n.Content); i += 2 {
				k, v := n.Content[i], n.Content[i+1]
				w.walk(v, t.Elem(), join(path, k.Value))
			}
		case reflect.Interface:
			for i := 0; i+1 < len(n.Content); i += 2 {
				k, v := n.Content[i], n.Content[i+1]
				w.walk(v, t, join(path, k.Value))
			}
		default:
			w.fail(n, path, "must be a single value, not a mapping")
		}
	}
}

var envRef = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)(:-([^}]*))?\}`)

func (w *walker) expand(n *yaml.Node, path string) {
	if !strings.Contains(n.Value, "${") {
		return
	}
	var missing []string
	out := envRef.ReplaceAllStringFunc(n.Value, func(ref string) string {
		m := envRef.FindStringSubmatch(ref)
		if v, ok := w.env(m[1]); ok && (v != "" || m[2] == "") {
			return v
		}
		if m[2] != "" {
			return m[3]
		}
		missing = append(missing, m[1])
		return ""
	})
	if len(missing) > 0 {
		w.fail(n, path, "environment variable %s is not set (use ${%s:-default} for a fallback)", strings.Join(missing, ", "), missing[0])
		return
	}
	// The node is already parsed, so an expanded value can never become
	// YAML syntax; clearing the tag lets "8080" decode into an int field.
	n.Value, n.Tag, n.Style = out, "", 0
}

var lineRef = regexp.MustCompile(`line (\d+): (.*)`)

// typeErrors turns yaml.v3 type errors ("line 7: cannot unmarshal ...") into
// errors that name the key path.
func (w *walker) typeErrors(err error) error {
	var te *yaml.TypeError
	if !errors.As(err, &te) {
		return Errors{{File: w.file, Msg: err.Error()}}
	}
	var out Errors
	for _, msg := range te.Errors {
		e := &Error{File: w.file, Msg: msg}
		if m := lineRef.FindStringSubmatch(msg); m != nil {
			e.Line, _ = strconv.Atoi(m[1])
			e.Path = w.lines[e.Line]
			e.Msg = m[2]
		}
		out = append(out, e)
	}
	return out
}

func yamlFields(t reflect.Type) map[string]reflect.Type {
	out := map[string]reflect.Type{}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "" || name == "-" {
			continue
		}
		out[name] = f.Type
	}
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// UnmarshalYAML accepts Go duration strings; a bare number is rejected
// because its unit would be a guess.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	v, err := time.ParseDuration(strings.TrimSpace(n.Value))
	if err != nil {
		return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d: %q is not a duration (use a Go duration such as 30s, 5m or 1h)", n.Line, n.Value)}}
	}
	*d = Duration(v)
	return nil
}

// MarshalYAML writes the duration back in Go's notation.
func (d Duration) MarshalYAML() (any, error) { return time.Duration(d).String(), nil }
