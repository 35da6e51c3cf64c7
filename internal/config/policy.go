package config

import (
	"errors"
	"fmt"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/metagate/gateway/proxy/canon"
	"github.com/metagate/gateway/proxy/expr"
)

// Exprs is routes[].allow_if: one CEL expression, or a list of them that
// must all hold.
type Exprs []string

// UnmarshalYAML takes a single expression or a list of them.
func (e *Exprs) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode {
		*e = Exprs{n.Value}
		return nil
	}
	var list []string
	if err := n.Decode(&list); err != nil {
		return err
	}
	*e = list
	return nil
}

// checkPolicies compiles and type-checks every route's allow_if, keeping
// the programs for the runtime (Route.AllowProgram), so an expression is
// compiled once and `gateway check` reports every one that does not
// compile at its file:line.
func (cfg *Config) checkPolicies(c *checker) {
	var env *expr.Env
	for i := range cfg.Routes {
		r := &cfg.Routes[i]
		r.AllowProgram = nil
		if len(r.AllowIf) == 0 {
			continue
		}
		p := fmt.Sprintf("routes[%d].allow_if", i)
		if r.Auth == "public" {
			c.add(p, "a public route has no caller to decide on: use auth: required or optional")
			continue
		}
		if env == nil {
			var err error
			if env, err = expr.NewEnv(); err != nil {
				c.add(p, "%v", err)
				return
			}
		}
		prog, err := env.Compile(r.AllowIf)
		if err == nil {
			r.AllowProgram = prog
			continue
		}
		for _, e := range unjoin(err) {
			var ce *expr.CompileError
			if !errors.As(e, &ce) {
				c.add(p, "%v", e)
				continue
			}
			at := p
			if len(r.AllowIf) > 1 {
				at = fmt.Sprintf("%s[%d]", p, ce.Index)
			}
			c.add(at, "%s", strings.ReplaceAll(ce.Err.Error(), "\n", "\n    "))
		}
	}
}

// KeepClaims reports whether a route policy or rate limit reads token
// claims, so the verifier must keep every claim of a verified token.
func (cfg *Config) KeepClaims() bool {
	if cfg.rateLimitsReadClaims() {
		return true
	}
	for _, r := range cfg.Routes {
		if r.AllowProgram != nil {
			return true
		}
	}
	return false
}

func unjoin(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

// checkPathPattern checks match.path (a path or a {param} template) and
// the prefixes, which take no templates.
func checkPathPattern(c *checker, path, key, v string) {
	if key == ".match.path" && canon.IsTemplate(v) {
		if _, err := canon.ParseTemplate(v); err != nil {
			c.add(path+key, "%v", err)
		}
		return
	}
	if canon.IsTemplate(v) {
		c.add(path+key, "%q: {params} are only for match.path", v)
		return
	}
	if err := canon.CheckPattern(v); err != nil {
		c.add(path+key, "%v", err)
	}
}
