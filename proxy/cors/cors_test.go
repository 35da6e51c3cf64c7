package cors

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

func TestApply(t *testing.T) {
	p := New([]string{"http://localhost:3000"}, []string{"GET"}, []string{"Authorization"}, []string{"ETag"})
	for _, tc := range []struct {
		name, method, origin, ask string
		want                      Result
		acao                      string
	}{
		{"listed origin", "GET", "http://localhost:3000", "", Result{Allowed: true}, "http://localhost:3000"},
		{"unlisted origin", "GET", "http://evil.test", "", Result{}, ""},
		{"look-alike origin", "GET", "http://localhost:3000.evil.test", "", Result{}, ""},
		{"no origin", "GET", "", "", Result{}, ""},
		{"preflight", "OPTIONS", "http://localhost:3000", "GET", Result{Preflight: true, Allowed: true}, "http://localhost:3000"},
		{"preflight for another method", "OPTIONS", "http://localhost:3000", "DELETE", Result{Preflight: true}, ""},
		{"preflight of an unlisted origin", "OPTIONS", "http://evil.test", "GET", Result{Preflight: true}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest(tc.method, "/", nil)
			if tc.origin != "" {
				r.Header.Set("Origin", tc.origin)
			}
			if tc.ask != "" {
				r.Header.Set("Access-Control-Request-Method", tc.ask)
			}
			w := httptest.NewRecorder()
			if got := p.Apply(w, r); got != tc.want {
				t.Errorf("Apply = %+v, want %+v", got, tc.want)
			}
			if got := w.Header().Get("Access-Control-Allow-Origin"); got != tc.acao {
				t.Errorf("Access-Control-Allow-Origin %q, want %q", got, tc.acao)
			}
			if w.Header().Get("Vary") != "Origin" {
				t.Errorf("Vary %q, want Origin", w.Header().Get("Vary"))
			}
		})
	}
	var off *Policy
	w := httptest.NewRecorder()
	if got := off.Apply(w, httptest.NewRequest(http.MethodGet, "/", nil)); got != (Result{}) || len(w.Header()) != 0 {
		t.Errorf("a nil policy set %v", w.Header())
	}
}
