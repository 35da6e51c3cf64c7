package proxy

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/metagate/gateway/enrich"
	"github.com/metagate/gateway/proxy/cors"
)

// SelfServiceOptions configures the caller's own endpoint.
type SelfServiceOptions struct {
	Verifier TokenVerifier
	Resolver MetadataResolver // nil: the answer has empty metadata
	Realm    string
	// ForwardUnknown answers a caller unknown to the source with empty
	// metadata instead of 403, as metadata.on_unknown: forward does.
	ForwardUnknown bool
	// MetadataKeys is the allow-list of metadata keys the caller may read
	// about itself (required: metadata is not published by default).
	MetadataKeys []string
	// CORSOrigins are the browser origins allowed to call the endpoint.
	CORSOrigins []string
	Logger      *zap.Logger
	Now         func() time.Time
}

// freshnessReporter is the part of a resolver that knows how long a
// caller's cached metadata stays fresh (enrich.Resolver does).
type freshnessReporter interface {
	FreshFor(c enrich.Caller) time.Duration
}

// selfService answers a caller's own identity and allow-listed metadata
// (seed 002: a SPA that needs its user's app_metadata without a fat ID
// token and without calling the Management API from the page). It runs
// the same pipeline as the proxy, so what it says about a caller is what
// an upstream would be told.
type selfService struct {
	pipeline
	keys []string
	cors *cors.Policy
	now  func() time.Time
}

// meBody is the answer of the caller's own endpoint.
type meBody struct {
	Kind     string          `json:"kind"`
	ID       string          `json:"id"`
	ClientID string          `json:"client_id"`
	Issuer   string          `json:"issuer"`
	Scopes   []string        `json:"scopes"`
	Metadata json.RawMessage `json:"metadata"`
}

// NewSelfService returns the handler of /.well-known/gateway/me (mounted
// by the caller, usually through Options.Endpoints). GET answers JSON
// {kind, id, client_id, issuer, scopes, metadata} for a valid bearer
// token, with an ETag, 304 on a matching If-None-Match, and
// Cache-Control: private, max-age=<how long the answer stays true>.
// Listed origins get CORS headers, and preflights are answered.
func NewSelfService(o SelfServiceOptions) http.Handler {
	if o.Logger == nil {
		o.Logger = zap.NewNop()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	s := &selfService{
		pipeline: pipeline{verifier: o.Verifier, resolver: o.Resolver, realm: o.Realm, forwardUnknown: o.ForwardUnknown, log: o.Logger},
		keys:     append([]string(nil), o.MetadataKeys...),
		cors: cors.New(o.CORSOrigins, []string{http.MethodGet, http.MethodHead},
			[]string{"Authorization", "If-None-Match"}, []string{"ETag", "WWW-Authenticate"}),
		now: o.Now,
	}
	return s
}

func (s *selfService) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	c := s.cors.Apply(w, r)
	if r.Method == http.MethodOptions {
		// A preflight is allowed for listed origins asking for GET with
		// the Authorization header, refused otherwise (403 without CORS
		// headers, which the browser reports as a CORS failure).
		if !c.Preflight || !c.Allowed {
			writeError(w, http.StatusForbidden, "cors_refused", "This origin may not call this endpoint")
			return
		}
		w.WriteHeader(http.StatusNoContent)
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		h.Set("Allow", "GET, HEAD, OPTIONS")
		writeError(w, http.StatusMethodNotAllowed, "method_not_allowed", "Use GET")
		return
	}
	h.Add("Vary", "Authorization")
	body, maxAge, rf := s.answer(r.Context(), r.Header)
	if rf != nil {
		rf.write(w)
		return
	}
	sum := sha256.Sum256(body)
	etag := `"` + base64.RawURLEncoding.EncodeToString(sum[:18]) + `"`
	h.Set("ETag", etag)
	h.Set("Cache-Control", "private, max-age="+strconv.Itoa(int(maxAge/time.Second)))
	if etagMatch(r.Header.Get("If-None-Match"), etag) {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		_, _ = w.Write(body)
	}
}

// answer runs the pipeline for the request's credential and encodes the
// caller's view of itself, with how long that view stays true: until the
// token expires or the cached metadata stops being fresh, whichever is
// first.
func (s *selfService) answer(ctx context.Context, hdr http.Header) ([]byte, time.Duration, *refusal) {
	cred, err := bearerToken(hdr)
	if err != nil {
		return nil, 0, s.authRefusal(ReasonBadRequest)
	}
	t, rf := s.authenticate(ctx, cred, AuthRequired, nil)
	if rf != nil {
		return nil, 0, rf
	}
	md, rf := s.resolve(ctx, t)
	if rf != nil {
		return nil, 0, rf
	}
	maxAge := t.Expiry.Sub(s.now())
	sel := json.RawMessage("{}")
	if md != nil {
		if sel, err = md.Select(s.keys); err != nil {
			s.log.Error("selecting metadata", zap.String("caller_id", t.Caller.Key()), zap.Error(err))
			return nil, 0, &refusal{status: http.StatusServiceUnavailable, code: "metadata_unavailable",
				desc: "Caller metadata is temporarily unavailable", retryAfter: "5"}
		}
		if fr, ok := s.resolver.(freshnessReporter); ok {
			maxAge = min(maxAge, fr.FreshFor(t.Caller))
		}
	}
	scopes := t.Scopes
	if scopes == nil {
		scopes = []string{}
	}
	body, err := json.Marshal(meBody{
		Kind: t.Caller.Kind.String(), ID: t.Caller.ID, ClientID: t.ClientID, Issuer: t.Issuer,
		Scopes: scopes, Metadata: sel,
	})
	if err != nil {
		return nil, 0, &refusal{status: http.StatusInternalServerError, code: "internal_error", desc: "The answer could not be encoded"}
	}
	return append(body, '\n'), max(maxAge, 0), nil
}

// etagMatch is If-None-Match's weak comparison (RFC 9110 §13.1.2): "*" or
// any listed tag equal to etag once W/ is ignored.
func etagMatch(header, etag string) bool {
	if header == "" {
		return false
	}
	return slices.ContainsFunc(strings.Split(header, ","), func(t string) bool {
		t = strings.TrimSpace(t)
		return t == "*" || strings.TrimPrefix(t, "W/") == etag
	})
}
