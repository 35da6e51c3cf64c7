package canon

import (
	"maps"
	"testing"
)

func TestParseTemplateRejects(t *testing.T) {
	for _, p := range []string{
		"tenants/{t}", "/", "/a/{}", "/a/{1x}", "/a/{t}/b/{t}", "/a/x{t}", "/a/{t}x", "/a/{t-x}",
		"/a/../{t}", "/a/%2F/{t}", "/a//{t}", "/a/{t}/{",
	} {
		if _, err := ParseTemplate(p); err == nil {
			t.Errorf("ParseTemplate(%q) accepted", p)
		}
	}
}

func TestTemplateMatch(t *testing.T) {
	tp, err := ParseTemplate("/tenants/{tenant}/invoices/{id}")
	if err != nil {
		t.Fatal(err)
	}
	for m, want := range map[string]map[string]string{
		"/tenants/acme/invoices/7":   {"tenant": "acme", "id": "7"},
		"/tenants/acme/invoices/7/":  {"tenant": "acme", "id": "7"},
		"/TENANTS/Acme/Invoices/7":   {"tenant": "Acme", "id": "7"},
		"/tenants/a%2Fb/invoices/7":  {"tenant": "a%2Fb", "id": "7"}, // only on a relaxed route
		"/tenants/acme/invoices":     nil,
		"/tenants/acme/invoices/7/x": nil,
		"/tenants//invoices/7":       nil,
		"/tenants/acme/orders/7":     nil,
		"/tenants/acme/invoices/7//": nil,
		"tenants/acme/invoices/7":    nil,
	} {
		got := tp.Values(m)
		if (got == nil) != (want == nil) || !maps.Equal(got, want) {
			t.Errorf("Values(%q) = %v, want %v", m, got, want)
		}
		if tp.Match(m) != (want != nil) {
			t.Errorf("Match(%q) = %v", m, !(want != nil))
		}
	}
	if got := tp.Respell("/TENANTS/Acme/Invoices/7/"); got != "/tenants/Acme/invoices/7" {
		t.Errorf("Respell = %q", got)
	}
	if n := testing.AllocsPerRun(100, func() { tp.Match("/tenants/acme/invoices/7") }); n != 0 {
		t.Errorf("Match allocates %v times", n)
	}
}
