package main

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"reflect"
	"testing"
)

// gatewayHeaders are what the gateway sends for svc-billing (README example).
func gatewayHeaders() http.Header {
	h := http.Header{}
	h.Set("X-Client-Id", "svc-billing")
	h.Set("X-Client-Kind", "client")
	h.Set("X-Client-Name", "Billing Service")
	h.Set("X-Client-Scopes", "read:invoices read:orders")
	h.Set("X-Client-Metadata-Tier", "gold")
	h.Set("X-Client-Metadata-Tenant-Id", "acme")
	h.Set("X-Client-Metadata", `{"region":"eu-west-1","tenant_id":"acme","tier":"gold","roles":["a","b"]}`)
	return h
}

func serve(t *testing.T, method, target string, h http.Header) *httptest.ResponseRecorder {
	t.Helper()
	r := httptest.NewRequest(method, target, nil)
	for k, v := range h {
		r.Header[k] = v
	}
	w := httptest.NewRecorder()
	newHandler(nil).ServeHTTP(w, r)
	return w
}

func TestWhoami(t *testing.T) {
	w := serve(t, "GET", "/whoami", gatewayHeaders())
	if w.Code != http.StatusOK {
		t.Fatalf("status %d: %s", w.Code, w.Body)
	}
	var got Caller
	if err := json.Unmarshal(w.Body.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	want := Caller{
		ID: "svc-billing", Kind: "client", Name: "Billing Service",
		Scopes:   []string{"read:invoices", "read:orders"},
		Metadata: map[string]string{"Tier": "gold", "Tenant-Id": "acme"},
		MetadataJSON: map[string]any{
			"region": "eu-west-1", "tenant_id": "acme", "tier": "gold",
			"roles": []any{"a", "b"},
		},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got  %+v\nwant %+v", got, want)
	}
}

func TestUser(t *testing.T) {
	h := http.Header{}
	h.Set("X-Client-Id", "spa-app")
	h.Set("X-Client-Kind", "user")
	h.Set("X-User-Id", "auth0|alice")
	c, ok := CallerFromRequest(&http.Request{Header: h})
	if !ok || c.Kind != "user" || c.UserID != "auth0|alice" || len(c.Scopes) != 0 || c.MetadataJSON != nil {
		t.Errorf("got %+v, %v", c, ok)
	}
}

func TestNoCaller(t *testing.T) {
	// A public/optional route without a token: no X-Client-Id.
	if w := serve(t, "GET", "/whoami", nil); w.Code != http.StatusUnauthorized {
		t.Errorf("status %d, want 401", w.Code)
	}
	if w := serve(t, "GET", "/healthz", nil); w.Code != http.StatusOK {
		t.Errorf("healthz: status %d", w.Code)
	}
}

func TestMalformedJSONHeaderIgnored(t *testing.T) {
	h := gatewayHeaders()
	h.Set("X-Client-Metadata", "{not json")
	c, ok := CallerFromRequest(&http.Request{Header: h})
	if !ok || c.MetadataJSON != nil || c.Metadata["Tier"] != "gold" {
		t.Errorf("got %+v, %v", c, ok)
	}
}

func TestScopeAndMetadataDecision(t *testing.T) {
	w := serve(t, "GET", "/orders", gatewayHeaders())
	if w.Code != http.StatusOK {
		t.Fatalf("status %d: %s", w.Code, w.Body)
	}
	var body struct{ Tenant string }
	if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil || body.Tenant != "acme" {
		t.Errorf("body %s (%v)", w.Body, err)
	}

	h := gatewayHeaders()
	h.Set("X-Client-Scopes", "read:invoices")
	if w := serve(t, "GET", "/orders", h); w.Code != http.StatusForbidden {
		t.Errorf("without read:orders: status %d, want 403", w.Code)
	}
}
