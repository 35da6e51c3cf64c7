// Package demo is the echo upstream that `make run` puts behind the
// gateway, so a newcomer can see exactly which headers an API receives.
package demo

import (
	"encoding/json"
	"net/http"
	"sort"
)

// Echo is what the demo upstream answers with.
type Echo struct {
	Method  string            `json:"method"`
	Path    string            `json:"path"`
	Host    string            `json:"host"`
	Headers map[string]string `json:"headers"`
}

// Handler answers every request with the request line and headers it
// received, as indented JSON.
func Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		e := Echo{Method: r.Method, Path: r.URL.RequestURI(), Host: r.Host, Headers: map[string]string{}}
		keys := make([]string, 0, len(r.Header))
		for k := range r.Header {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			if k == "Authorization" {
				e.Headers[k] = "(present, not echoed)"
				continue
			}
			e.Headers[k] = r.Header.Get(k)
		}
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(e)
	})
}
