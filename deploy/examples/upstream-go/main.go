// Command upstream-go is the smallest useful API behind the metagate
// gateway: it reads who is calling from the X-Client-* headers the gateway
// sets or, with GATEWAY_JWKS_URL, from the assertion the gateway signs,
// and never verifies the caller's access token itself.
//
// # Why it may trust these headers, and when it may not
//
// The gateway removes every X-Client-* / X-User-* header a client sends
// (whatever its case or spelling) and then sets its own from a verified
// token. The headers are therefore only as trustworthy as the guarantee that
// every request reached this process THROUGH the gateway. That holds when:
//
//   - sidecar: this API listens on 127.0.0.1 (LISTEN_ADDR below) in the
//     gateway's pod, so nothing outside the pod can connect
//     (deploy/kubernetes/sidecar); or
//   - shared gateway: a NetworkPolicy admits connections to this API only
//     from the gateway pods, and no other Service, Ingress or port publishes
//     it (deploy/kubernetes/ingress/upstreams).
//
// If the API is reachable any other way, anyone can send
// "X-Client-Id: svc-admin" and these headers are worthless: verify the
// gateway's signed assertion instead (below), or the bearer token (the
// gateway forwards Authorization unchanged).
//
// Try it locally behind `make run`'s gateway (whose dev issuer already uses
// 127.0.0.1:8081, the sidecar default): from deploy/,
//
//	LISTEN_ADDR=127.0.0.1:8083 go run ./examples/upstream-go
//
// and point a route's upstreams at http://127.0.0.1:8083.
//
// # Verifying the gateway assertion instead
//
// With assertion.enabled in gateway.yaml, the gateway also sends
// X-Gateway-Assertion (headerAssertion in assertion.go: change it if
// assertion.header renames it): a short-lived JWT (ES256 or EdDSA) it
// signs itself, saying what the headers say, and publishes its keys at
// /.well-known/gateway/jwks.json on both its listeners. Set
//
//	GATEWAY_JWKS_URL=http://127.0.0.1:9090/.well-known/gateway/jwks.json
//
// and this API trusts the assertion alone: every request but GET /healthz
// must carry a valid one (signature, alg, iss, aud, exp), or gets a 401,
// and the caller comes from its claims; the X-Client-* headers are not
// read. GATEWAY_ASSERTION_ISSUER is the expected iss (default
// urn:metagate:gateway, the gateway's assertion.issuer) and
// GATEWAY_ASSERTION_AUDIENCE the expected aud (default
// http://LISTEN_ADDR, the gateway's default audience being the route's
// upstream URL). GET /healthz stays open because the kubelet probes it
// through a public route, where no token means no assertion.
//
// An assertion is a bearer credential for its short lifetime
// (assertion.ttl) at this audience, so keep the network rules above too:
// the assertion makes a forged header useless, not a leaked assertion.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"log"
	"net/http"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"
)

// The header names the gateway sets by default (README: "What the upstream
// receives"); change them here if gateway.yaml renames them.
const (
	headerClientID       = "X-Client-Id"
	headerClientKind     = "X-Client-Kind" // "client" or "user"
	headerClientName     = "X-Client-Name" // clients only
	headerUserID         = "X-User-Id"     // users only
	headerScopes         = "X-Client-Scopes"
	headerMetadataPrefix = "X-Client-Metadata-" // one per top-level scalar
	headerMetadataJSON   = "X-Client-Metadata"  // the whole object, when it fits
)

// Caller is the identity the gateway vouches for.
type Caller struct {
	ID     string   `json:"id"`
	Kind   string   `json:"kind"`
	Name   string   `json:"name,omitempty"`
	UserID string   `json:"user_id,omitempty"`
	Scopes []string `json:"scopes"`
	// Metadata holds the per-key headers, keyed by their header form:
	// tenant_id arrives as X-Client-Metadata-Tenant-Id, key "Tenant-Id".
	Metadata map[string]string `json:"metadata"`
	// MetadataJSON is the X-Client-Metadata header decoded: original key
	// names, nested values included. Nil when the gateway left it out (too
	// large for headers.max_json_bytes, or a route with metadata_headers).
	MetadataJSON map[string]any `json:"metadata_json,omitempty"`
}

// HasScope reports whether the token carried scope (or permission) s.
func (c Caller) HasScope(s string) bool { return slices.Contains(c.Scopes, s) }

// CallerFromRequest reads the gateway's headers. ok is false when there is
// no caller: a request on an `auth: optional` or `public` route without a
// token (or, if the API is misdeployed, one that bypassed the gateway).
func CallerFromRequest(r *http.Request) (c Caller, ok bool) {
	c.ID = r.Header.Get(headerClientID)
	if c.ID == "" {
		return Caller{}, false
	}
	c.Kind = r.Header.Get(headerClientKind)
	c.Name = r.Header.Get(headerClientName)
	c.UserID = r.Header.Get(headerUserID)
	c.Scopes = strings.Fields(r.Header.Get(headerScopes))
	c.Metadata = map[string]string{}
	for name, values := range r.Header { // names are canonical: X-Client-Metadata-Tier
		if key, found := strings.CutPrefix(name, headerMetadataPrefix); found && key != "" && len(values) > 0 {
			c.Metadata[key] = values[0]
		}
	}
	if raw := r.Header.Get(headerMetadataJSON); raw != "" {
		var m map[string]any
		if err := json.Unmarshal([]byte(raw), &m); err == nil {
			c.MetadataJSON = m
		}
		// A malformed value cannot come from the gateway; ignore it rather
		// than fail the request.
	}
	return c, true
}

// newHandler serves the API. With a verifier (GATEWAY_JWKS_URL), every
// route but /healthz requires the gateway assertion and reads the caller
// from it; without one, the caller comes from the headers.
func newHandler(v *AssertionVerifier) http.Handler {
	root := http.NewServeMux()

	// Health check for the kubelet (through the gateway's public route in
	// the sidecar example).
	root.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("ok\n"))
	})

	mux := http.NewServeMux()
	callerOf := CallerFromRequest
	if v != nil {
		callerOf = callerFromContext
		root.Handle("/", v.Require(mux))
	} else {
		root.Handle("/", mux)
	}

	// Who am I: echoes the caller as the API sees it.
	mux.HandleFunc("GET /whoami", func(w http.ResponseWriter, r *http.Request) {
		c, ok := callerOf(r)
		if !ok {
			writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "no caller"})
			return
		}
		writeJSON(w, http.StatusOK, c)
	})

	// An authorisation decision from the caller: scope plus metadata.
	mux.HandleFunc("GET /orders", func(w http.ResponseWriter, r *http.Request) {
		c, ok := callerOf(r)
		switch {
		case !ok:
			writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "no caller"})
		case !c.HasScope("read:orders"):
			writeJSON(w, http.StatusForbidden, map[string]string{"error": "read:orders scope required"})
		default:
			tenant := c.Metadata["Tenant-Id"]
			writeJSON(w, http.StatusOK, map[string]any{"tenant": tenant, "orders": []string{}})
		}
	})
	return root
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func main() {
	// Loopback by default: the sidecar deployment. Bind anything wider only
	// with a NetworkPolicy that admits the gateway alone.
	addr := os.Getenv("LISTEN_ADDR")
	if addr == "" {
		addr = "127.0.0.1:8081"
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	var verifier *AssertionVerifier
	if jwksURL := os.Getenv("GATEWAY_JWKS_URL"); jwksURL != "" {
		iss := envOr("GATEWAY_ASSERTION_ISSUER", "urn:metagate:gateway")
		aud := envOr("GATEWAY_ASSERTION_AUDIENCE", "http://"+addr)
		v, err := NewAssertionVerifier(ctx, jwksURL, iss, aud)
		if err != nil {
			log.Fatal(err)
		}
		verifier = v
		log.Printf("requiring the gateway assertion: iss %s, aud %s, keys from %s", iss, aud, jwksURL)
	}
	srv := &http.Server{Addr: addr, Handler: newHandler(verifier), ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.ListenAndServe() }()
	log.Printf("listening on %s", addr)

	select {
	case err := <-errc:
		log.Fatal(err)
	case <-ctx.Done():
	}
	// SIGTERM: finish in-flight requests (the gateway has stopped sending
	// new ones by now in the sidecar example's shutdown order).
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Printf("shutdown: %v", err)
	}
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}
