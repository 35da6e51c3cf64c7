package assertion

import (
	"net/http"
	"strconv"
)

// JWKSHandler serves the public keys an upstream verifies assertions
// with (config.AssertionJWKSPath): the signing key first, then every
// retired key whose assertions may still be in flight. A verifier that
// sees an unknown kid fetches the set again, so a max-age of a minute
// delays no rotation; it only spares the gateway a fetch per request.
func (s *Signer) JWKSHandler() http.Handler {
	return http.HandlerFunc(s.serveJWKS)
}

func (s *Signer) serveJWKS(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	body := s.jwks()
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "public, max-age=60")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodGet {
		_, _ = w.Write(body)
	}
}

// jwks encodes the published keys, dropping the retired keys that are no
// longer needed first.
func (s *Signer) jwks() []byte {
	s.mu.Lock()
	s.pruneLocked(s.now())
	b := append([]byte(`{"keys":[`), s.cur.Load().jwk...)
	for _, k := range s.retired {
		b = append(append(b, ','), k.jwk...)
	}
	s.mu.Unlock()
	return append(b, "]}\n"...)
}
