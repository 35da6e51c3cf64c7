// Package invalidation turns news of a change made in Auth0 into cache
// invalidations on every replica: a receiver for Auth0's log stream
// (custom webhook) on the public listener, and an admin API on the admin
// listener. Both call an Invalidator (enrich.Resolver), whose cache
// deletes the shared entry and tells every replica on the Redis bus.
package invalidation

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"net/http"
	"strconv"

	"github.com/metagate/gateway/cache"
	"github.com/metagate/gateway/enrich"
)

// Invalidator forgets cached callers (enrich.Resolver implements it).
type Invalidator interface {
	Invalidate(ctx context.Context, c enrich.Caller) error
	InvalidateAll(ctx context.Context) error
	Entry(c enrich.Caller) (cache.Entry[*enrich.Metadata], bool)
}

// Sources of an invalidation, as counted by OnInvalidate.
const (
	SourceLogStream = "log_stream"
	SourceAdmin     = "admin"
	SourceAdminAll  = "admin_all"
)

// secretEqual compares a presented credential with the configured one in
// constant time, whatever their lengths (both are hashed first, so the
// comparison time says nothing about the secret's length either).
func secretEqual(got, want string) bool {
	g, w := sha256.Sum256([]byte(got)), sha256.Sum256([]byte(want))
	return want != "" && subtle.ConstantTimeCompare(g[:], w[:]) == 1
}

// writeJSON answers v as JSON, never cached.
func writeJSON(w http.ResponseWriter, status int, v any) {
	b, _ := json.Marshal(v)
	b = append(b, '\n')
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

// errorBody is the shape of every error answer, like the gateway's own.
type errorBody struct {
	Error       string `json:"error"`
	Description string `json:"error_description,omitempty"`
}

func writeError(w http.ResponseWriter, status int, code, desc string) {
	writeJSON(w, status, errorBody{Error: code, Description: desc})
}
