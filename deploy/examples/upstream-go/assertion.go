package main

import (
	"context"
	"errors"
	"fmt"
	"log"
	"maps"
	"net/http"
	"slices"
	"strings"

	"github.com/MicahParks/keyfunc/v3"
	"github.com/golang-jwt/jwt/v5"
	"github.com/metagate/gateway/enrich"
)

// headerAssertion carries the gateway's signed assertion (gateway.yaml
// assertion.header).
const headerAssertion = "X-Gateway-Assertion"

// AssertionClaims is what the gateway asserts about a request's caller.
type AssertionClaims struct {
	// Subject is the caller: the client id for a client, the user id
	// for a user. Issuer is the gateway (assertion.issuer), Audience
	// this API (assertion.audience, by default the route's upstream URL).
	jwt.RegisteredClaims
	Kind     string `json:"kind"` // "client" or "user"
	ClientID string `json:"client_id"`
	// CallerIssuer is the issuer of the caller's access token: two
	// tenants' "svc-billing" are two callers.
	CallerIssuer string `json:"caller_iss"`
	Scope        string `json:"scope"` // space-separated
	Name         string `json:"name"`  // the client's name, when known
	// Metadata is the forwarded metadata with its original keys, nested
	// values included; nil when the caller has none.
	Metadata map[string]any `json:"metadata"`
}

// Caller is the identity the assertion vouches for, in the same shape
// as CallerFromRequest reads from the headers.
func (c *AssertionClaims) Caller() Caller {
	out := Caller{ID: c.ClientID, Kind: c.Kind, Name: c.Name, Scopes: strings.Fields(c.Scope), Metadata: map[string]string{}, MetadataJSON: c.Metadata}
	if c.Kind == "user" {
		out.UserID = c.Subject
	} else {
		out.ID = c.Subject
	}
	// Sorted, as the gateway does: of two keys that fold to one name,
	// the first wins.
	for _, k := range slices.Sorted(maps.Keys(c.Metadata)) {
		// The gateway's own rules (enrich), so both sources read alike.
		name := enrich.HeaderName(k)
		if _, taken := out.Metadata[name]; name == "" || taken {
			continue
		}
		switch v := c.Metadata[k].(type) {
		case map[string]any, []any:
			// Nested values have no per-key header; they are in MetadataJSON.
		default:
			if s, ok := enrich.HeaderValue(v); ok {
				out.Metadata[name] = s
			}
		}
	}
	return out
}

// AssertionVerifier checks the gateway assertion of every request. Its
// keys come from the gateway's JWKS, refreshed hourly and at once when
// an assertion names a key it does not know yet (the gateway rotated).
type AssertionVerifier struct {
	keys   keyfunc.Keyfunc
	parser *jwt.Parser
}

// NewAssertionVerifier fetches the gateway's JWKS (jwksURL, e.g.
// http://127.0.0.1:9090/.well-known/gateway/jwks.json on the admin
// listener) and refreshes it until ctx ends. Only ES256 and EdDSA are
// accepted, the only algorithms the gateway signs with: a token with
// "none" or an HMAC alg never reaches a key.
func NewAssertionVerifier(ctx context.Context, jwksURL, issuer, audience string) (*AssertionVerifier, error) {
	if issuer == "" || audience == "" {
		return nil, errors.New("assertion verifier: issuer and audience are required")
	}
	k, err := keyfunc.NewDefaultCtx(ctx, []string{jwksURL})
	if err != nil {
		return nil, fmt.Errorf("gateway JWKS %s: %w", jwksURL, err)
	}
	return &AssertionVerifier{
		keys: k,
		parser: jwt.NewParser(
			jwt.WithValidMethods([]string{"ES256", "EdDSA"}),
			jwt.WithIssuer(issuer),
			jwt.WithAudience(audience),
			jwt.WithExpirationRequired(),
			jwt.WithIssuedAt(),
		),
	}, nil
}

// Verify checks an assertion's signature, alg, iss, aud and exp, and
// returns its claims.
func (v *AssertionVerifier) Verify(raw string) (*AssertionClaims, error) {
	if raw == "" {
		return nil, errors.New("no gateway assertion")
	}
	var c AssertionClaims
	if _, err := v.parser.ParseWithClaims(raw, &c, v.keys.Keyfunc); err != nil {
		return nil, err
	}
	if c.Subject == "" || (c.Kind != "client" && c.Kind != "user") {
		return nil, errors.New("gateway assertion without a caller")
	}
	return &c, nil
}

type callerKey struct{}

// Require lets through only requests with a valid assertion, and hands
// next the caller it asserts (callerFromContext); anything else gets a
// 401. The headers are not read at all: with an assertion, a forged
// X-Client-Id is worthless even if the API is reachable directly.
func (v *AssertionVerifier) Require(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := v.Verify(r.Header.Get(headerAssertion))
		if err != nil {
			// The reason is for the logs: a client learns nothing from it.
			log.Printf("%s %s: gateway assertion refused: %v", r.Method, r.URL.Path, err)
			writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "invalid gateway assertion"})
			return
		}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), callerKey{}, c.Caller())))
	})
}

// callerFromContext is the caller Require verified.
func callerFromContext(r *http.Request) (Caller, bool) {
	c, ok := r.Context().Value(callerKey{}).(Caller)
	return c, ok
}
