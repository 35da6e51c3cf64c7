package proxy

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/metagate/gateway/enrich"
)

// TestMiddlewareGivesTheHandlerTheCaller: an httptest server with the
// middleware and no proxy in between gets the verified caller and its
// metadata, and a refused request never reaches it.
func TestMiddlewareGivesTheHandlerTheCaller(t *testing.T) {
	f := newFixture(t, fixtureOpts{})
	var reached int
	api := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		reached++
		id, ok := enrich.FromContext(r.Context())
		if !ok {
			_, _ = io.WriteString(w, "anonymous")
			return
		}
		tier, _ := id.Metadata.Get("tier")
		_, _ = io.WriteString(w, id.Caller.Kind.String()+" "+id.Caller.ID+" "+id.ClientID+" tier="+tier+
			" scopes="+strings.Join(id.Scopes, ",")+" header="+r.Header.Get("X-Client-Id")+" forged="+r.Header.Get("X-Client-Metadata-Tier"))
	})
	mw := func(o MiddlewareOptions) *httptest.Server {
		o.Verifier, o.Resolver = f.verifier, testResolver()
		srv := httptest.NewServer(Middleware(o)(api))
		t.Cleanup(srv.Close)
		return srv
	}
	get := func(srv *httptest.Server, tok string) (int, string, http.Header) {
		req, _ := http.NewRequest("GET", srv.URL+"/invoices", nil)
		req.Header.Set("X-Client-Metadata-Tier", "forged")
		if tok != "" {
			req.Header.Set("Authorization", "Bearer "+tok)
		}
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b), resp.Header
	}
	tok := f.issuer.Token(t, "svc-billing")

	required := mw(MiddlewareOptions{Policy: Policy{AllOf: []string{"read:things"}}})
	if code, body, _ := get(required, tok); code != 200 || body != "client svc-billing svc-billing tier=gold scopes=read:things header= forged=forged" {
		t.Errorf("valid token: %d %q", code, body)
	}
	before := reached
	if code, _, h := get(required, ""); code != 401 || !strings.HasPrefix(h.Get("WWW-Authenticate"), `Bearer realm="gateway"`) {
		t.Errorf("no token: %d, WWW-Authenticate %q", code, h.Get("WWW-Authenticate"))
	}
	scoped := mw(MiddlewareOptions{Policy: Policy{AllOf: []string{"write:things"}}})
	if code, _, h := get(scoped, tok); code != 403 || !strings.Contains(h.Get("WWW-Authenticate"), "insufficient_scope") {
		t.Errorf("missing scope: %d %q", code, h.Get("WWW-Authenticate"))
	}
	if code, _, _ := get(required, f.issuer.Token(t, "svc-nobody")); code != 403 {
		t.Errorf("unknown caller: %d, want 403", code)
	}
	if reached != before {
		t.Errorf("refused requests reached the handler %d times", reached-before)
	}

	optional := mw(MiddlewareOptions{Auth: AuthOptional})
	if code, body, _ := get(optional, ""); code != 200 || body != "anonymous" {
		t.Errorf("optional without a token: %d %q", code, body)
	}
	// With Headers, the namespace is stripped and the trusted headers set.
	withHeaders := mw(MiddlewareOptions{Headers: defaultHeaders()})
	if code, body, _ := get(withHeaders, tok); code != 200 || !strings.HasSuffix(body, "header=svc-billing forged=gold") {
		t.Errorf("with headers: %d %q", code, body)
	}
}
