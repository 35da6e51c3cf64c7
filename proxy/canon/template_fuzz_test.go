package canon

import "testing"

// FuzzTemplate checks, for canonical paths (ParsePath accepted them), the
// properties a policy over path params relies on:
//
//	(a) Match and Values agree, and never panic;
//	(b) a value is a whole segment of the canonical path: it holds no "/"
//	    and is never "", "." or "..";
//	(c) the forwarded spelling (Respell) parses to itself, is matched by
//	    the template again, and gives the same values.
func FuzzTemplate(f *testing.F) {
	for _, s := range []string{
		"/tenants/acme/invoices/7", "/TENANTS/acme/Invoices/7/", "/tenants/a%2Fb/invoices/1",
		"/tenants//invoices/1", "/tenants/acme/invoices", "/tenants/%2E%2E/invoices/1", "/tenants/\u212a/invoices/x",
	} {
		f.Add(s)
	}
	tp, err := ParseTemplate("/tenants/{tenant}/invoices/{id}")
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		p, why := ParsePath(raw)
		if why != "" {
			return
		}
		vals := tp.Values(p.Match)
		if tp.Match(p.Match) != (vals != nil) {
			t.Fatalf("Match and Values disagree on %q", p.Match)
		}
		if vals == nil {
			return
		}
		for k, v := range vals {
			if v == "" || v == "." || v == ".." || containsByte(v, '/') {
				t.Fatalf("%q: param %s = %q is not one segment", p.Match, k, v)
			}
		}
		out := tp.Respell(p.Match)
		q, why := ParsePath(EscapeMatch(out))
		if why != "" || q.Match != out {
			t.Fatalf("respelled %q does not parse to itself: %q %q", out, q.Match, why)
		}
		again := tp.Values(out)
		if len(again) != len(vals) || again["tenant"] != vals["tenant"] || again["id"] != vals["id"] {
			t.Fatalf("respelled %q reads %v, the request read %v", out, again, vals)
		}
	})
}

func containsByte(s string, c byte) bool {
	for i := 0; i < len(s); i++ {
		if s[i] == c {
			return true
		}
	}
	return false
}
