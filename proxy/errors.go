package proxy

import (
	"encoding/json"
	"net/http"
	"strconv"
)

// Reason is why a request was refused. It is a small closed set: safe to
// show clients, and low-cardinality for metrics labels.
type Reason string

// Reasons a token is refused.
const (
	ReasonMissing      Reason = "missing"
	ReasonMalformed    Reason = "malformed"
	ReasonTooLarge     Reason = "too_large"
	ReasonExpired      Reason = "expired"
	ReasonNotYetValid  Reason = "not_yet_valid"
	ReasonBadSignature Reason = "bad_signature"
	ReasonUnknownKey   Reason = "unknown_kid"
	ReasonBadAlgorithm Reason = "bad_algorithm"
	ReasonBadHeader    Reason = "bad_header"
	ReasonBadIssuer    Reason = "bad_issuer"
	ReasonBadAudience  Reason = "bad_audience"
	ReasonBadClaims    Reason = "bad_claims"
	ReasonBadRequest   Reason = "bad_request"
)

var reasonText = map[Reason]string{
	ReasonMalformed:    "The access token is malformed",
	ReasonTooLarge:     "The access token is too large",
	ReasonExpired:      "The access token expired",
	ReasonNotYetValid:  "The access token is not valid yet",
	ReasonBadSignature: "The access token signature is invalid",
	ReasonUnknownKey:   "The access token is signed with an unknown key",
	ReasonBadAlgorithm: "The access token algorithm is not accepted",
	ReasonBadHeader:    "The access token header is not accepted",
	ReasonBadIssuer:    "The access token issuer is not trusted",
	ReasonBadAudience:  "The access token audience is not accepted",
	ReasonBadClaims:    "The access token claims are invalid",
	ReasonBadRequest:   "The Authorization header is invalid",
}

// AuthError is a refused token: Reason for the client and metrics, Err for
// the logs.
type AuthError struct {
	Reason Reason
	Err    error
}

func (e *AuthError) Error() string {
	if e.Err == nil {
		return string(e.Reason)
	}
	return string(e.Reason) + ": " + e.Err.Error()
}

func (e *AuthError) Unwrap() error { return e.Err }

func authErr(r Reason, err error) *AuthError { return &AuthError{Reason: r, Err: err} }

// errorBody is every error the gateway itself answers with.
type errorBody struct {
	Error       string `json:"error"`
	Description string `json:"error_description,omitempty"`
	// Route names the route whose allow_if policy refused the request.
	Route string `json:"route,omitempty"`
}

// writeError is the one place the gateway writes an error response, so the
// body shape, content type and cache headers never drift.
func writeError(w http.ResponseWriter, status int, code, desc string) {
	writeErrorBody(w, status, errorBody{Error: code, Description: desc})
}

func writeErrorBody(w http.ResponseWriter, status int, body errorBody) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	b, _ := json.Marshal(body)
	h.Set("Content-Length", strconv.Itoa(len(b)+1))
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}

// authRefusal is a 401 with an RFC 6750 WWW-Authenticate header (400
// for a malformed Authorization header). With no token (reason "missing")
// the challenge carries only the realm, as §3.1 asks; otherwise
// error="invalid_token" and a short, safe description.
func (g *pipeline) authRefusal(r Reason) *refusal {
	if r == ReasonMissing {
		return &refusal{status: http.StatusUnauthorized, code: "unauthorized", desc: "An access token is required",
			reason: r, challenge: `Bearer realm="` + g.realm + `"`}
	}
	code, status := "invalid_token", http.StatusUnauthorized
	if r == ReasonBadRequest {
		code, status = "invalid_request", http.StatusBadRequest
	}
	desc := reasonText[r]
	return &refusal{status: status, code: code, desc: desc, reason: r,
		challenge: `Bearer realm="` + g.realm + `", error="` + code + `", error_description="` + desc + `"`}
}

// scopeRefusal is RFC 6750's insufficient_scope answer.
func (g *pipeline) scopeRefusal(scope string) *refusal {
	return &refusal{status: http.StatusForbidden, code: "insufficient_scope", desc: "The access token lacks a required scope",
		reason: "insufficient_scope", challenge: `Bearer realm="` + g.realm + `", error="insufficient_scope", scope="` + scope + `"`}
}
