package expr

import (
	"net/url"
	"strings"
	"testing"
)

// FuzzQuery checks that request.query only holds a parameter every
// framework reads one way: its name appears once in the raw query under
// every folding the frameworks apply, and its value is the one
// url.ParseQuery reads for it.
func FuzzQuery(f *testing.F) {
	for _, s := range []string{"a=1&b=2", "a=1&A=2", "a.b=1&a_b=2", "t=1&t[]=2", "q=a+b", "x=%zz", "&&=&a", "a=1;b=2"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		got := Query(raw)
		std, _ := url.ParseQuery(strings.ReplaceAll(raw, ";", "%3B"))
		for name, v := range got {
			if name != strings.ToLower(name) {
				t.Fatalf("%q: name %q is not lower-case", raw, name)
			}
			n := 0
			for k, vs := range std {
				if fold(k) == fold(name) {
					n += len(vs)
					if strings.ToLower(k) == name && vs[0] != v {
						t.Fatalf("%q: %s = %q, url.ParseQuery reads %q", raw, name, v, vs[0])
					}
				}
			}
			if n != 1 {
				t.Fatalf("%q: %s is kept but appears %d times", raw, name, n)
			}
		}
	})
}

// fold is the spelling frameworks read a query name as (see Query).
func fold(name string) string {
	base, _, _ := strings.Cut(strings.ToLower(name), "[")
	return strings.NewReplacer(".", "_", " ", "_").Replace(base)
}
