// Package tokenendpoint puts a client's allow-listed client_metadata into
// the answer of its client-credentials token request (seed 001). Auth0
// cannot add custom fields to a /oauth/token answer, and a machine client
// gets no ID token and no /userinfo; answering its metadata with its token
// spares it a discovery API that would be one more thing to be down.
//
// The gateway serves the endpoint on the public listener and forwards the
// request unchanged to the issuer, which alone authenticates the client.
// Only a successful answer is touched: its access token is verified like
// any bearer token, the client is the one that token names (never the
// client_id the request claims), and its metadata comes from the normal
// cache. Everything else, and every failure to find the metadata, goes
// back to the client exactly as the issuer sent it: metadata is a
// convenience, and it must never stand between a client and its token.
package tokenendpoint

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"go.uber.org/zap"

	"github.com/metagate/gateway/enrich"
	"github.com/metagate/gateway/proxy"
)

// Results OnResult reports: a closed set, safe as a metric label.
const (
	// ResultAugmented: the answer went out with the metadata field.
	ResultAugmented = "augmented"
	// ResultPassthrough: nothing to add to (an error, another grant, not
	// a JSON object, the field already there); sent untouched.
	ResultPassthrough = "passthrough"
	// ResultNotVerified: a successful client-credentials answer whose
	// token the gateway does not accept (issuer, audience, signature) or
	// that is not a client's; sent untouched.
	ResultNotVerified = "not_verified"
	// ResultMetadataFailed: the client's metadata could not be found (the
	// source is down, the client is unknown to it); the token went out
	// untouched, without the field.
	ResultMetadataFailed = "metadata_failed"
	// ResultUpstreamError: the issuer could not be reached, or its answer
	// was too large; the client got a 502.
	ResultUpstreamError = "upstream_error"
)

// Results lists every value OnResult may receive, so that a metric can
// show each series from the start, at zero.
func Results() []string {
	return []string{ResultAugmented, ResultPassthrough, ResultNotVerified, ResultMetadataFailed, ResultUpstreamError}
}

// Defaults for the zero values of Options.
const (
	DefaultField        = "metadata"
	DefaultMaxBodyBytes = 64 << 10
	DefaultTimeout      = 10 * time.Second
)

// MaxAnswerBytes bounds the issuer's answer. A token answer is a few
// kilobytes; anything near this is not one, and buffering more for every
// concurrent token request would let the issuer's side exhaust memory.
const MaxAnswerBytes = 1 << 20

// TokenChecker verifies a token without remembering it: the token in an
// answer is inspected once and belongs to the client, so it must neither
// fill nor be looked up in a verified-token cache. (*proxy.Verifier).Check
// implements it.
type TokenChecker interface {
	Check(ctx context.Context, raw string) (*proxy.Token, error)
}

// Options configures the endpoint. Target and Checker are required;
// every other zero value has a default.
type Options struct {
	// Target is the issuer's token endpoint, e.g. https://TENANT.auth0.com/oauth/token.
	Target *url.URL
	// MetadataKeys is the allow-list of client_metadata keys published in
	// the answer; a key not listed is never sent, so nothing is
	// published by accident. Empty: the field is an empty object.
	MetadataKeys []string
	// Field is the answer's member holding the metadata (DefaultField).
	Field string
	// MaxBodyBytes bounds the token request's body (DefaultMaxBodyBytes);
	// a larger one is refused with 413 and never forwarded.
	MaxBodyBytes int64
	// Timeout bounds the whole exchange (DefaultTimeout): the issuer's
	// answer, then verifying its token and finding the metadata. Time
	// running out after the issuer answered costs the metadata, not the
	// token.
	Timeout time.Duration
	// Checker verifies the answer's access token.
	Checker TokenChecker
	// Resolver finds the client's metadata, through the gateway's cache.
	// Nil: every successful answer counts as ResultMetadataFailed.
	Resolver proxy.MetadataResolver
	// Transport sends the request to Target (nil: http.DefaultTransport).
	// Redirects are not followed: they go back to the client.
	Transport http.RoundTripper
	// Logger receives one line per failure and a debug line per answer.
	// Neither the request (it holds the client secret) nor the answer (it
	// holds the token) is ever logged. Nil: no logs.
	Logger *zap.Logger
	// OnResult, when set, is called once per forwarded request with one
	// of Results (metrics). Requests refused before being forwarded (405,
	// 413, an unreadable body) and clients that went away are not
	// reported.
	OnResult func(result string)
}

// handler is the endpoint built from validated Options.
type handler struct {
	target    string
	targetLog string // target without a password, for logs
	keys      []string
	field     string
	member    []byte // `"<field>":`, encoded once
	maxBody   int64
	timeout   time.Duration
	checker   TokenChecker
	resolver  proxy.MetadataResolver
	transport http.RoundTripper
	log       *zap.Logger
	onResult  func(string)
}

// New builds the endpoint. It panics without Target or Checker: the
// configuration is validated before anything is built, so their absence
// is a programming error.
func New(o Options) http.Handler {
	if o.Target == nil || o.Checker == nil {
		panic("tokenendpoint: Options.Target and Options.Checker are required")
	}
	if o.Field == "" {
		o.Field = DefaultField
	}
	if o.MaxBodyBytes <= 0 {
		o.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	if o.Transport == nil {
		o.Transport = http.DefaultTransport
	}
	if o.Logger == nil {
		o.Logger = zap.NewNop()
	}
	if o.OnResult == nil {
		o.OnResult = func(string) {}
	}
	name, _ := json.Marshal(o.Field) // a string always encodes
	return &handler{
		target:    o.Target.String(),
		targetLog: o.Target.Redacted(),
		keys:      append([]string(nil), o.MetadataKeys...),
		field:     o.Field,
		member:    append(name, ':'),
		maxBody:   o.MaxBodyBytes,
		timeout:   o.Timeout,
		checker:   o.Checker,
		resolver:  o.Resolver,
		transport: o.Transport,
		log:       o.Logger,
		onResult:  o.OnResult,
	}
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		writeError(w, http.StatusMethodNotAllowed, "method_not_allowed", "The token endpoint only accepts POST")
		return
	}
	body, err := h.readRequest(w, r)
	var tooLarge *http.MaxBytesError
	switch {
	case errors.As(err, &tooLarge):
		writeError(w, http.StatusRequestEntityTooLarge, "request_too_large",
			"The token request body exceeds "+strconv.FormatInt(h.maxBody, 10)+" bytes")
		return
	case err != nil:
		if r.Context().Err() == nil {
			writeError(w, http.StatusBadRequest, "invalid_body", "The token request body could not be read")
		}
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), h.timeout)
	defer cancel()
	a, err := h.exchange(ctx, r.Header, body)
	if err != nil {
		if r.Context().Err() != nil {
			return // the client went away: nobody is left to answer
		}
		h.onResult(ResultUpstreamError)
		h.log.Warn("token endpoint: no usable answer from the issuer", zap.String("target", h.targetLog), zap.Error(err))
		writeError(w, http.StatusBadGateway, "bad_gateway", "The token endpoint is unreachable")
		return
	}
	out, result := a.body, ResultPassthrough
	if a.status == http.StatusOK && isClientCredentials(r.Header, body) {
		out, result = h.augment(ctx, a)
	}
	h.onResult(result)
	writeAnswer(w, a, out)
}

// augment adds the metadata field to a successful client-credentials
// answer. It returns the body to send and what happened; on anything but
// ResultAugmented the body is the issuer's, untouched.
func (h *handler) augment(ctx context.Context, a *answer) ([]byte, string) {
	members, ok := jsonObject(a)
	if !ok {
		return a.body, ResultPassthrough
	}
	if _, ok := members[h.field]; ok {
		return a.body, ResultPassthrough // the issuer's own field wins
	}
	var raw string
	if err := json.Unmarshal(members["access_token"], &raw); err != nil || raw == "" {
		h.log.Debug("token endpoint: successful answer without an access_token string")
		return a.body, ResultNotVerified
	}
	tok, err := h.checker.Check(ctx, raw)
	if err != nil {
		// Expected when clients fetch tokens for APIs this gateway does
		// not front; the reason, not the token, is logged.
		h.log.Debug("token endpoint: answer's token not accepted; sent untouched", zap.String("reason", reasonOf(err)))
		return a.body, ResultNotVerified
	}
	if tok.Caller.Kind != enrich.KindClient {
		h.log.Debug("token endpoint: answer's token is not a client's; sent untouched", zap.String("issuer", tok.Issuer))
		return a.body, ResultNotVerified
	}
	sel, err := h.metadata(ctx, tok.Caller)
	if err != nil {
		h.log.Warn("token endpoint: token sent without metadata",
			zap.String("client_id", tok.Caller.ID), zap.String("issuer", tok.Caller.Issuer), zap.Error(err))
		return a.body, ResultMetadataFailed
	}
	h.log.Debug("token endpoint: metadata added", zap.String("client_id", tok.Caller.ID), zap.String("issuer", tok.Caller.Issuer))
	return insertMember(a.body, h.member, sel), ResultAugmented
}

// metadata is the allow-listed metadata of the verified client, as JSON.
func (h *handler) metadata(ctx context.Context, c enrich.Caller) ([]byte, error) {
	if h.resolver == nil {
		return nil, errors.New("no metadata source")
	}
	md, err := h.resolver.Resolve(ctx, c)
	if err != nil {
		return nil, fmt.Errorf("resolve metadata: %w", err)
	}
	sel, err := md.Select(h.keys)
	if err != nil {
		return nil, fmt.Errorf("select allow-listed metadata: %w", err)
	}
	return sel, nil
}

// reasonOf is a refused token's reason, safe to log: an *AuthError's
// closed-set reason, or the error for anything else.
func reasonOf(err error) string {
	var ae *proxy.AuthError
	if errors.As(err, &ae) {
		return string(ae.Reason)
	}
	return err.Error()
}

// errorBody is the shape of the gateway's own errors, as proxy writes
// them, so a client reads one shape whoever refused it.
type errorBody struct {
	Error       string `json:"error"`
	Description string `json:"error_description,omitempty"`
}

// writeError is the one place this endpoint writes its own error.
func writeError(w http.ResponseWriter, status int, code, desc string) {
	b, _ := json.Marshal(errorBody{Error: code, Description: desc}) // strings always encode
	b = append(b, '\n')
	hdr := w.Header()
	hdr.Set("Content-Type", "application/json")
	hdr.Set("Content-Length", strconv.Itoa(len(b)))
	noStore(hdr)
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

// noStore marks an answer uncacheable (RFC 6749 §5.1): every answer of a
// token endpoint may hold a token, or tell whether a secret was right.
func noStore(hdr http.Header) {
	hdr.Set("Cache-Control", "no-store")
	hdr.Set("Pragma", "no-cache")
}
