package expr

import (
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"
)

func mustEnv(t *testing.T) *Env {
	t.Helper()
	e, err := NewEnv()
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func jsonMap(t *testing.T, s string) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(s), &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func TestCompileRejects(t *testing.T) {
	e := mustEnv(t)
	for name, src := range map[string]string{
		"syntax error":          `metadata.plan in [`,
		"unknown variable":      `user.plan == "pro"`,
		"unknown caller field":  `caller.role == "admin"`,
		"unknown request field": `request.body == ""`,
		"not a bool":            `caller.id`,
		"empty":                 `  `,
		"too long":              `caller.id == "` + strings.Repeat("a", MaxExpressionBytes) + `"`,
		"type error":            `caller.scopes == "x"`,
		"nested too deep":       strings.Repeat("(", 200) + "true" + strings.Repeat(")", 200),
	} {
		t.Run(name, func(t *testing.T) {
			_, err := e.Compile([]string{`true`, src})
			var ce *CompileError
			if !errors.As(err, &ce) || ce.Index != 1 {
				t.Fatalf("Compile(%q) = %v, want a CompileError at index 1", src, err)
			}
		})
	}
}

func TestEval(t *testing.T) {
	e := mustEnv(t)
	md := jsonMap(t, `{"plan":"pro","tenant_id":"acme","seats":10,"beta":true,"limits":{"rps":5},"roles":["admin","billing"],"nothing":null}`)
	claims := jsonMap(t, `{"sub":"svc@clients","https://example.com/org":"acme","exp":1900000000}`)
	vars := func() *Vars {
		return &Vars{
			Caller:   Caller{Kind: "client", ID: "svc", Issuer: "https://t/", Scopes: []string{"read:invoices"}},
			Claims:   claims,
			Metadata: md,
			Request: func() *Request {
				h := http.Header{"User-Agent": {"curl"}}
				return NewRequest("GET", "/tenants/acme/invoices/7", map[string]string{"tenant": "acme", "id": "7"}, "Limit=5&x=1&X=2", h)
			},
		}
	}
	cases := []struct {
		name    string
		src     string
		allowed bool
		err     bool
	}{
		{"plan in list", `metadata.plan in ["pro","enterprise"]`, true, false},
		{"plan not in list", `metadata.plan in ["enterprise"]`, false, false},
		{"tenant from path", `request.path_params.tenant == metadata.tenant_id`, true, false},
		{"number compares with int", `metadata.seats > 5 && metadata.seats == 10`, true, false},
		{"bool metadata", `metadata.beta`, true, false},
		{"nested object", `metadata.limits.rps == 5`, true, false},
		{"nested list", `"admin" in metadata.roles`, true, false},
		{"namespaced claim", `claims["https://example.com/org"] == metadata.tenant_id`, true, false},
		{"scope", `"read:invoices" in caller.scopes && caller.kind == "client"`, true, false},
		{"segments", `request.segments[0] == "tenants" && size(request.segments) == 4`, true, false},
		{"query lower-cased", `request.query.limit == "5"`, true, false},
		{"query repeated in another case is absent", `has(request.query.x)`, false, false},
		{"allowed header", `request.headers["user-agent"] == "curl"`, true, false},
		{"missing metadata field fails closed", `metadata.nope == "x"`, false, true},
		{"has guards a missing field", `!has(metadata.nope)`, true, false},
		{"null metadata value", `metadata.nothing == null`, true, false},
		{"overflow fails closed", `9223372036854775807 + int(metadata.seats) > 0`, false, true},
		{"dyn non-bool fails closed", `metadata.plan`, false, true},
		{"cost limit stops a loop", `[1,2,3,4,5,6,7,8,9,10].all(a, [1,2,3,4,5,6,7,8,9,10].all(b, [1,2,3,4,5,6,7,8,9,10].all(c, [1,2,3,4,5,6,7,8,9,10].all(d, a+b+c+d > 0))))`, false, true},
		{"wrong type at runtime fails closed", `metadata.roles > 3`, false, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p, err := e.Compile([]string{tc.src})
			if err != nil {
				t.Fatalf("compile: %v", err)
			}
			r := p.Eval(vars())
			if r.Allowed != tc.allowed || (r.Err != nil) != tc.err {
				t.Fatalf("Eval(%s) = allowed %v, err %v; want allowed %v, err %v", tc.src, r.Allowed, r.Err, tc.allowed, tc.err)
			}
		})
	}
}

func TestEvalAllMustHold(t *testing.T) {
	e := mustEnv(t)
	p, err := e.Compile([]string{`caller.kind == "client"`, `metadata.plan == "pro"`})
	if err != nil {
		t.Fatal(err)
	}
	r := p.Eval(&Vars{Caller: Caller{Kind: "client"}, Metadata: map[string]any{"plan": "free"}})
	if r.Allowed || r.Denied != 1 || r.Err != nil {
		t.Fatalf("got %+v, want denied by expression 1", r)
	}
	// No metadata at all (a caller forwarded without any): reading it
	// fails closed.
	r = p.Eval(&Vars{Caller: Caller{Kind: "client"}})
	if r.Allowed || r.Err == nil {
		t.Fatalf("got %+v, want an error", r)
	}
}

func TestRequestIsBuiltOnlyWhenRead(t *testing.T) {
	e := mustEnv(t)
	p, err := e.Compile([]string{`caller.kind == "user"`})
	if err != nil {
		t.Fatal(err)
	}
	built := 0
	p.Eval(&Vars{Caller: Caller{Kind: "user"}, Request: func() *Request { built++; return &Request{} }})
	if built != 0 {
		t.Fatalf("request view built %d times for an expression that does not read it", built)
	}
}

func TestQuery(t *testing.T) {
	for raw, want := range map[string]map[string]string{
		"a=1&b=2":                 {"a": "1", "b": "2"},
		"Tenant=evil&tenant=acme": {},
		"tenant.id=1&tenant_id=2": {},
		"t=1&t[]=2":               {},
		"t=1&T[x]=2":              {},
		"a=%ZZ&b=1":               {"b": "1"},
		"q=a+b&r=%2F":             {"q": "a b", "r": "/"},
		"":                        {},
	} {
		got := Query(raw)
		if len(got) != len(want) {
			t.Errorf("Query(%q) = %v, want %v", raw, got, want)
			continue
		}
		for k, v := range want {
			if got[k] != v {
				t.Errorf("Query(%q)[%s] = %q, want %q", raw, k, got[k], v)
			}
		}
	}
}

func TestHeadersAmbiguousAreAbsent(t *testing.T) {
	h := http.Header{"User-Agent": {"a"}, "User_agent": {"b"}, "Accept": {"x", "y"}, "Origin": {"https://o"}, "X-Client-Id": {"forged"}}
	got := Headers(h)
	if _, ok := got["user-agent"]; ok {
		t.Error("User-Agent with an underscore twin is readable")
	}
	if _, ok := got["accept"]; ok {
		t.Error("a repeated Accept is readable")
	}
	if got["origin"] != "https://o" {
		t.Errorf("origin = %q", got["origin"])
	}
	if _, ok := got["x-client-id"]; ok {
		t.Error("a header outside the allow-list is readable")
	}
}
