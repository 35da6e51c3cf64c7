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
//
// It reports every problem in one pass, so that `gateway check` lists them
// all instead of one per run: the key walker's (unknown keys, unset
// variables, a list where a mapping belongs), then every type error of the
// decode (yaml.v3 collects them and decodes the rest), then validation of
// what did decode, then unreadable secret files. A problem at a key path an
// earlier stage already reported is left out: it would only restate that
// the value there is unusable. Problems are ordered by line; each carries
// the line of its key where the file has it.
func Parse(file string, raw []byte, lookupEnv func(string) (string, bool)) (*Config, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		e := &Error{File: file, Msg: "not valid YAML: " + err.Error()}
		if m := syntaxLine.FindStringSubmatch(err.Error()); m != nil {
			e.Line, _ = strconv.Atoi(m[1])
			e.Msg = "not valid YAML: " + m[2]
		}
		return nil, Errors{e}
	}
	cfg := Default()
	cfg.File = file
	if len(doc.Content) == 0 {
		return nil, Errors{{File: file, Msg: "the file is empty"}}
	}
	root := doc.Content[0]
	if root.Kind != yaml.MappingNode && !(root.Kind == yaml.ScalarNode && root.ShortTag() == "!!null") {
		// Nothing below would hold: every key would be missing.
		return nil, Errors{{File: file, Line: root.Line, Msg: "must be a mapping of keys such as server:, issuers: and routes:"}}
	}
	w := walker{file: file, env: lookupEnv, lines: map[int]string{}, at: map[string]int{}}
	w.walk(root, reflect.TypeOf(cfg), "")
	p := problems{file: file}
	p.add(w.errs)
	err := root.Decode(&cfg)
	p.add(w.typeErrors(err))
	cfg.File = file
	var te *yaml.TypeError
	if err == nil || errors.As(err, &te) {
		// A type error leaves its field as it was (the default) and
		// decodes the rest, so the rest can be validated. Any other
		// error stopped the decode midway: validating it would report
		// the keys it never reached.
		cfg.applyDefaults(w.at)
		p.add(cfg.validate(w.at))
		p.add(cfg.loadSecrets())
	}
	if len(p.errs) > 0 {
		return nil, p.sorted(w.at)
	}
	return &cfg, nil
}

// syntaxLine finds the line in yaml.v3's syntax errors ("yaml: line 3:
// could not find expected ':'"), so they get file:line like the rest.
var syntaxLine = regexp.MustCompile(`^yaml: line (\d+): (?s)(.*)`)

// problems gathers the errors of Parse's stages. Each stage's problems
// are added after the previous stage's, so covered can drop the ones at
// (or under) a key path that is already reported.
type problems struct {
	file    string
	errs    Errors
	covered map[string]bool
}

// add appends a stage's problems: err is nil, Errors, or any other error
// (reported with the file only).
func (p *problems) add(err error) {
	if err == nil {
		return
	}
	var es Errors
	if !errors.As(err, &es) {
		es = Errors{{File: p.file, Msg: err.Error()}}
	}
	var stage []string
	for _, e := range es {
		if p.isCovered(e.Path) {
			continue
		}
		p.errs = append(p.errs, e)
		if e.Path != "" {
			stage = append(stage, e.Path)
		}
	}
	if p.covered == nil {
		p.covered = map[string]bool{}
	}
	for _, path := range stage {
		p.covered[path] = true
	}
}

// isCovered reports whether an earlier stage reported path or one of its
// ancestors ("server" covers "server.listen" and "routes[0]" covers
// "routes[0].match"). Whole-file problems (no path) cover nothing.
func (p *problems) isCovered(path string) bool {
	for ; path != ""; path = parent(path) {
		if p.covered[path] {
			return true
		}
	}
	return false
}

// parent is the key path one level up: "a.b[2]" → "a.b" → "a" → "".
func parent(path string) string {
	i := strings.LastIndexAny(path, ".[")
	if i < 0 {
		return ""
	}
	return path[:i]
}

// sorted fills in the line of the problems that have none (validation
// knows key paths, not lines) from the key's line in the file, or its
// nearest ancestor's when the key itself is missing (issuers[0].audiences
// points at issuers[0]), and orders them by line. Problems still without a
// line (about a top-level key the file lacks) come last, in their order.
func (p *problems) sorted(at map[string]int) Errors {
	for _, e := range p.errs {
		for path := e.Path; e.Line == 0 && path != ""; path = parent(path) {
			e.Line = at[path]
		}
	}
	sort.SliceStable(p.errs, func(i, j int) bool {
		a, b := p.errs[i].Line, p.errs[j].Line
		return a != 0 && (b == 0 || a < b)
	})
	return p.errs
}

// walker checks keys against the Go types before decoding (yaml's own
// strict mode does not say which key path was wrong) and expands ${VAR} and
// ${VAR:-default} in every scalar value, so a typed field can be set from
// the environment.
type walker struct {
	file string
	env  func(string) (string, bool)
	errs Errors
	// lines maps a line to the key path whose key or value starts there,
	// for yaml's type errors, which only say "line 7".
	lines map[int]string
	// at maps a key path to the line of its key (of the item, in a list),
	// for validation's problems, which only know the path.
	at map[string]int
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

// locate records the line of path's key (the first one, if the key is
// repeated), unless the walker was built without the map.
func (w *walker) locate(path string, n *yaml.Node) {
	if _, seen := w.at[path]; !seen && w.at != nil {
		w.at[path] = n.Line
	}
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
		w.locate(path, n)
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
				w.locate(p, k)
				w.walk(v, ft, p)
			}
		case reflect.Map:
			for i := 0; i+1 < len(n.Content); i += 2 {
				k, v := n.Content[i], n.Content[i+1]
				w.locate(join(path, k.Value), k)
				w.walk(v, t.Elem(), join(path, k.Value))
			}
		case reflect.Interface:
			for i := 0; i+1 < len(n.Content); i += 2 {
				k, v := n.Content[i], n.Content[i+1]
				w.walk(v, t, join(path, k.Value))
			}
		case reflect.Slice:
			w.fail(n, path, "must be a list, not a mapping")
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
// errors that name the key path; err is Decode's, nil when it succeeded.
func (w *walker) typeErrors(err error) error {
	if err == nil {
		return nil
	}
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
