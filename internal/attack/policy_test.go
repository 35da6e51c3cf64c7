package attack

import (
	"strings"
	"testing"

	"github.com/golang-jwt/jwt/v5"
)

// TestAttackPolicyTemplateSpellings: a tenant route decides on
// request.path_params.tenant. Every spelling of another tenant's path an
// upstream framework would read as that path is either refused or
// decided on the same tenant the upstream reads; none reaches the
// upstream for a tenant the caller does not own.
func TestAttackPolicyTemplateSpellings(t *testing.T) {
	t.Parallel()
	w := newWorld(t, nil, []string{"tenant"},
		withClients(`svc-acme: {name: "Acme", metadata: {tenant_id: acme}}`),
		withRoutes("- name: tenant\n  match: {path: \"/tenants/{tenant}/invoices/{id}\"}\n  upstreams: [\"{{up:tenant}}\"]\n"+
			"  allow_if: request.path_params.tenant == metadata.tenant_id"))
	tok := token(t, w.iss, "svc-acme", "read:things", nil)
	own := rq("GET", "/tenants/acme/invoices/1", bearer(tok))
	expectStatus(t, own, send(t, w.gw.addr, own), 200)
	if h, ok := w.expectLanded(t, own, "tenant"); ok && h.RequestURI != "/tenants/acme/invoices/1" {
		t.Errorf("own tenant forwarded as %q", h.RequestURI)
	}
	for _, target := range []string{
		"/tenants/globex/invoices/1",
		"/tenants/acme/../globex/invoices/1",     // dot segments
		"/tenants/acme/%2E%2E/globex/invoices/1", // encoded dot segments
		"/tenants/globex;acme/invoices/1",        // Spring strips ;params: it reads globex
		"/tenants/acme%2Fx/invoices/1",           // encoded slash
		"/tenants/globex%00/invoices/1",          // NUL
		"/tenants/GLOBEX/invoices/1",             // a case-folding upstream still reads globex
		"/tenants/%67lobex/invoices/1",           // percent-encoded letters
		"/tenants//globex/invoices/1",            // empty segment
		"/tenants/globex/invoices/1?tenant=acme", // the query has no say
		"/tenants/ｇlobex/invoices/1",             // fullwidth look-alike
		"/tenants/acme/invoices/1/../../globex/invoices/1",
	} {
		w.reset()
		req := rq("GET", target, bearer(tok))
		r := send(t, w.gw.addr, req)
		if r.Status < 400 || r.Status >= 500 {
			t.Errorf("request %q: got %s, want a 4xx", req, r)
		}
		w.expectNoUpstream(t, req)
	}
	// A forged token claim or header cannot stand in for the metadata.
	forged := token(t, w.iss, "svc-acme", "read:things", func(c jwt.MapClaims) { c["tenant_id"] = "globex" })
	w.reset()
	req := rq("GET", "/tenants/globex/invoices/1", bearer(forged), "X-Client-Metadata-Tenant-Id: globex")
	r := send(t, w.gw.addr, req)
	if r.Status != 403 || !strings.Contains(string(r.Body), `"route":"tenant"`) {
		t.Errorf("request %q: got %s, want 403 naming the route", req, r)
	}
	w.expectNoUpstream(t, req)
}

// TestAttackPolicyQueryAndHeaders: an expression over the query or an
// allow-listed header never decides on one of two values an upstream
// could read.
func TestAttackPolicyQueryAndHeaders(t *testing.T) {
	t.Parallel()
	w := newWorld(t, nil, []string{"q"},
		withClients(`svc-acme: {name: "Acme", metadata: {tenant_id: acme}}`),
		withRoutes("- name: q\n  match: {path_prefix: /q}\n  upstreams: [\"{{up:q}}\"]\n"+
			"  allow_if: request.query.tenant == metadata.tenant_id && request.headers[\"content-type\"] == \"application/json\""))
	tok := token(t, w.iss, "svc-acme", "read:things", nil)
	ok := rq("GET", "/q?tenant=acme", bearer(tok), "Content-Type: application/json")
	expectStatus(t, ok, send(t, w.gw.addr, ok), 200)
	for _, req := range []string{
		rq("GET", "/q?tenant=acme&tenant=globex", bearer(tok), "Content-Type: application/json"),
		rq("GET", "/q?tenant=acme&Tenant=globex", bearer(tok), "Content-Type: application/json"),
		rq("GET", "/q?tenant=acme&tenant[]=globex", bearer(tok), "Content-Type: application/json"),
		rq("GET", "/q?tenant=globex", bearer(tok), "Content-Type: application/json"),
		rq("GET", "/q?tenant=acme", bearer(tok), "Content-Type: application/json", "Content-Type: text/plain"),
		rq("GET", "/q?tenant=acme", bearer(tok), "Content-Type: application/json", "Content_Type: text/plain"),
	} {
		w.reset()
		r := send(t, w.gw.addr, req)
		if r.Status != 403 && r.Status != 400 {
			t.Errorf("request %q: got %s, want 403 (or 400)", req, r)
		}
		w.expectNoUpstream(t, req)
	}
}
