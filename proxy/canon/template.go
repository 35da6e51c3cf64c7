package canon

import (
	"fmt"
	"strings"
)

// Template is a route path with parameters, "/tenants/{tenant}/invoices/{id}":
// each {name} takes one whole, non-empty segment of the canonical path,
// the other segments match like a route path (case-insensitively), and a
// trailing slash is optional, as for an exact path. It matches the
// decoded canonical path (Path.Match) only, so a parameter never holds a
// dot segment, an encoded separator a route did not allow, or a spelling
// the upstream would read differently.
type Template struct {
	pattern string
	segs    []tmplSeg
	slash   bool // the pattern ends in "/"
}

type tmplSeg struct {
	param  string // the parameter's name; "" for a literal segment
	lit    string // the literal as written
	folded string // lit case-folded (Fold)
}

// IsTemplate reports whether a route path has {params}.
func IsTemplate(p string) bool { return strings.ContainsAny(p, "{}") }

// ParseTemplate checks a route path template: every segment is either a
// literal that CheckPattern accepts or a whole "{name}" (letters, digits
// and "_", not starting with a digit), and no name repeats.
func ParseTemplate(p string) (*Template, error) {
	if !strings.HasPrefix(p, "/") {
		return nil, fmt.Errorf("must start with /, got %q", p)
	}
	t := &Template{pattern: p}
	body, slash := strings.CutSuffix(p[1:], "/")
	t.slash = slash
	if body == "" {
		return nil, fmt.Errorf("%q has no segments", p)
	}
	seen := map[string]bool{}
	check := make([]string, 0, 8)
	for seg := range strings.SplitSeq(body, "/") {
		name, isParam := strings.CutPrefix(seg, "{")
		if isParam {
			name, isParam = strings.CutSuffix(name, "}")
		}
		switch {
		case isParam && !paramName(name):
			return nil, fmt.Errorf("%q: parameter {%s} must be a name of letters, digits and _ not starting with a digit", p, name)
		case isParam && seen[name]:
			return nil, fmt.Errorf("%q: parameter {%s} appears twice", p, name)
		case isParam:
			seen[name] = true
			t.segs = append(t.segs, tmplSeg{param: name})
			check = append(check, "x")
		case strings.ContainsAny(seg, "{}"):
			return nil, fmt.Errorf("%q: a parameter must be a whole segment, as in /orders/{id}, got %q", p, seg)
		default:
			t.segs = append(t.segs, tmplSeg{lit: seg, folded: Fold(seg)})
			check = append(check, seg)
		}
	}
	if err := CheckPattern("/" + strings.Join(check, "/")); err != nil {
		return nil, fmt.Errorf("%q: %w", p, err)
	}
	return t, nil
}

func paramName(s string) bool {
	if s == "" || ('0' <= s[0] && s[0] <= '9') {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}

// Pattern is the template as written.
func (t *Template) Pattern() string { return t.pattern }

// Params lists the parameter names in order.
func (t *Template) Params() []string {
	var out []string
	for _, s := range t.segs {
		if s.param != "" {
			out = append(out, s.param)
		}
	}
	return out
}

// Match reports whether the decoded canonical path m fits the template.
// It does not allocate.
func (t *Template) Match(m string) bool {
	return t.walk(m, nil)
}

// Values returns the parameters' values in m, nil when m does not fit.
func (t *Template) Values(m string) map[string]string {
	out := map[string]string{}
	if !t.walk(m, func(name, v string) { out[name] = v }) {
		return nil
	}
	return out
}

// walk matches m segment by segment, handing each parameter to set.
func (t *Template) walk(m string, set func(name, value string)) bool {
	if !strings.HasPrefix(m, "/") {
		return false
	}
	rest := m[1:]
	if len(rest) > 0 && rest[len(rest)-1] == '/' {
		rest = rest[:len(rest)-1]
	}
	for i, s := range t.segs {
		seg, tail, more := strings.Cut(rest, "/")
		if more != (i < len(t.segs)-1) || seg == "" {
			return false
		}
		if s.param != "" {
			if set != nil {
				set(s.param, seg)
			}
		} else if n, ok := FoldPrefix(seg, s.folded); !ok || n != len(seg) {
			return false
		}
		rest = tail
	}
	return true
}

// Respell is a matching path m spelled as the template: literal
// segments as the pattern writes them, parameters as sent, and the
// pattern's trailing slash, so a case-sensitive upstream reads the path
// the route was chosen for.
func (t *Template) Respell(m string) string {
	var b strings.Builder
	b.Grow(len(m) + 1)
	rest := strings.TrimSuffix(m[1:], "/")
	for _, s := range t.segs {
		seg, tail, _ := strings.Cut(rest, "/")
		b.WriteByte('/')
		if s.param != "" {
			b.WriteString(seg)
		} else {
			b.WriteString(s.lit)
		}
		rest = tail
	}
	if t.slash {
		b.WriteByte('/')
	}
	return b.String()
}
