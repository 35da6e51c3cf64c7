// Package expr is the route policy language: CEL expressions
// (github.com/google/cel-go, as in Kubernetes and Envoy) over what the
// gateway knows about a request once the token is verified and the
// caller's metadata resolved. The gateway decides "is this caller allowed
// here" itself, with no remote authoriser.
//
// An expression sees four variables:
//
//	caller    kind ("client" | "user"), id, issuer, scopes (list)
//	claims    the verified token's claims (map; nested values included)
//	metadata  the caller's resolved metadata (map; nested values included)
//	request   method, path, segments, path_params, query, headers
//
// Expressions are compiled and type-checked once, when the config is
// checked; a field of caller or request that does not exist is a compile
// error. Evaluation is bounded by a cost limit, and every runtime error
// (a missing metadata key, an overflow, a cost overrun, a non-bool
// result) is reported as an error, which the gateway turns into a denial:
// a policy never fails open.
package expr

import (
	"errors"
	"fmt"
	"reflect"
	"strings"

	"github.com/google/cel-go/cel"
	"github.com/google/cel-go/common/types"
	"github.com/google/cel-go/ext"
	"github.com/google/cel-go/interpreter"
)

// CostLimit bounds the work one evaluation of one expression may do, in
// CEL's cost units (about one per operation, one per element a
// comprehension visits). A policy over metadata needs tens; 10000 stops
// nested comprehensions over large lists long before they cost a
// request measurable time.
const CostLimit = 10_000

// MaxExpressionBytes bounds the source of one expression.
const MaxExpressionBytes = 4096

// Caller is the verified caller as expressions see it.
type Caller struct {
	Kind   string   `cel:"kind"`
	ID     string   `cel:"id"`
	Issuer string   `cel:"issuer"`
	Scopes []string `cel:"scopes"`
}

// Request is the canonical request as expressions see it: the same
// reading the gateway routes on and forwards, never the raw bytes.
type Request struct {
	// Method is the canonical (upper-case) method.
	Method string `cel:"method"`
	// Path is the canonical decoded path; Segments it split on "/".
	Path     string   `cel:"path"`
	Segments []string `cel:"segments"`
	// PathParams are the values of a match.path template's {params}.
	PathParams map[string]string `cel:"path_params"`
	// Query maps each parameter name, lower-cased, to its decoded value.
	// A name sent more than once (in any case) is absent, so an
	// expression reading it fails closed rather than deciding on one
	// value while the upstream reads another.
	Query map[string]string `cel:"query"`
	// Headers holds the allow-listed request headers (AllowedHeaders),
	// by lower-case name, under the same rule for repeats.
	Headers map[string]string `cel:"headers"`
}

// Vars is one evaluation's input. Request is called at most once, and
// only when an expression reads the request.
type Vars struct {
	Caller   Caller
	Claims   map[string]any
	Metadata map[string]any
	Request  func() *Request
}

// Env compiles expressions. One Env serves every route; it is safe for
// concurrent use.
type Env struct {
	env *cel.Env
}

// NewEnv builds the policy environment.
func NewEnv() (*Env, error) {
	env, err := cel.NewEnv(
		ext.NativeTypes(reflect.TypeFor[Caller](), reflect.TypeFor[Request](), ext.ParseStructTags(true)),
		cel.Variable("caller", cel.ObjectType("expr.Caller")),
		cel.Variable("request", cel.ObjectType("expr.Request")),
		cel.Variable("claims", cel.MapType(cel.StringType, cel.DynType)),
		cel.Variable("metadata", cel.MapType(cel.StringType, cel.DynType)),
		// JSON numbers are doubles; "metadata.seats > 5" should hold
		// for 10 without a cast.
		cel.CrossTypeNumericComparisons(true),
		cel.OptionalTypes(),
		ext.Strings(),
		cel.ParserExpressionSizeLimit(MaxExpressionBytes),
		cel.ParserRecursionLimit(64),
	)
	if err != nil {
		return nil, fmt.Errorf("policy environment: %w", err)
	}
	return &Env{env: env}, nil
}

// CompileError is an expression that does not compile, with its index in
// the list it came from.
type CompileError struct {
	Index int
	Err   error
}

func (e *CompileError) Error() string { return e.Err.Error() }
func (e *CompileError) Unwrap() error { return e.Err }

// Program is a route's compiled expressions: all of them must hold.
type Program struct {
	src  []string
	prgs []cel.Program
}

// Compile parses and type-checks each expression. Every failing
// expression is reported (errors.Join of *CompileError), so a config
// check lists them all.
func (e *Env) Compile(exprs []string) (*Program, error) {
	p := &Program{src: exprs}
	var errs []error
	for i, src := range exprs {
		prg, err := e.compile(src)
		if err != nil {
			errs = append(errs, &CompileError{Index: i, Err: err})
			continue
		}
		p.prgs = append(p.prgs, prg)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return p, nil
}

func (e *Env) compile(src string) (cel.Program, error) {
	if strings.TrimSpace(src) == "" {
		return nil, errors.New("empty expression")
	}
	ast, iss := e.env.Compile(src)
	if iss.Err() != nil {
		// CEL's own message, with the expression's line and column and
		// a caret under the offending part.
		return nil, errors.New(strings.ReplaceAll(strings.TrimSpace(iss.Err().Error()), "ERROR: <input>:", "at "))
	}
	if t := ast.OutputType(); !t.IsExactType(types.BoolType) && !t.IsExactType(types.DynType) {
		return nil, fmt.Errorf("must be a bool expression, is %s", t)
	}
	prg, err := e.env.Program(ast,
		// The cost limit bounds an evaluation to microseconds, so no
		// context interrupt is needed (it costs a context per call).
		cel.CostLimit(CostLimit),
		cel.EvalOptions(cel.OptOptimize),
	)
	if err != nil {
		return nil, fmt.Errorf("plan: %w", err)
	}
	return prg, nil
}

// Len is the number of expressions.
func (p *Program) Len() int { return len(p.src) }

// Denied is the index of the first expression that was false; Err is set
// when an expression could not be evaluated (the caller must deny).
type Result struct {
	Allowed bool
	Denied  int
	Err     error
}

// Eval runs every expression against v, in order, and stops at the first
// that does not hold. A runtime error is returned in Result.Err with
// Allowed false, so a caller that only reads Allowed still fails closed.
// The error names the expression by index, never a value it read.
func (p *Program) Eval(v *Vars) Result {
	act := &activation{v: v}
	for i, prg := range p.prgs {
		out, _, err := prg.Eval(act)
		if err != nil {
			return Result{Denied: i, Err: fmt.Errorf("allow_if[%d]: %w", i, err)}
		}
		b, ok := out.Value().(bool)
		if !ok {
			return Result{Denied: i, Err: fmt.Errorf("allow_if[%d]: result is %s, not bool", i, out.Type().TypeName())}
		}
		if !b {
			return Result{Denied: i}
		}
	}
	return Result{Allowed: true}
}

// activation hands the interpreter the variables, building the request
// view only if an expression reads it.
type activation struct {
	v   *Vars
	req *Request
}

var _ interpreter.Activation = (*activation)(nil)

func (a *activation) ResolveName(name string) (any, bool) {
	switch name {
	case "caller":
		return &a.v.Caller, true
	case "claims":
		return nonNil(a.v.Claims), true
	case "metadata":
		return nonNil(a.v.Metadata), true
	case "request":
		if a.req == nil {
			if a.v.Request != nil {
				a.req = a.v.Request()
			}
			if a.req == nil {
				a.req = &Request{}
			}
		}
		return a.req, true
	}
	return nil, false
}

func (a *activation) Parent() interpreter.Activation { return nil }

func nonNil(m map[string]any) map[string]any {
	if m == nil {
		return map[string]any{}
	}
	return m
}
