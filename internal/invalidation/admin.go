package invalidation

import (
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/metagate/gateway/enrich"
)

// AdminOptions configure the cache admin API.
type AdminOptions struct {
	// Token is the bearer token every admin request must carry
	// (invalidation.admin_token), compared in constant time.
	Token string
	// Issuers are the issuers whose callers the metadata source serves;
	// a request may leave out its issuer when there is one.
	Issuers      []string
	Invalidator  Invalidator
	Logger       *zap.Logger
	OnInvalidate func(source string)
	Now          func() time.Time
}

// AdminPaths are the admin API's routes, for the admin listener's mux.
const (
	PathInvalidate = "/admin/cache/invalidate"
	PathCache      = "/admin/cache"
	PathEntry      = "/admin/cache/entry"
)

// NewAdmin returns the cache admin API:
//
//	POST   /admin/cache/invalidate  {"kind":"client"|"user","id":"...","issuer":"..."}
//	DELETE /admin/cache             everything
//	GET    /admin/cache/entry?kind=&id=[&issuer=]
//
// Every request needs "Authorization: Bearer <admin_token>" (401
// otherwise). Invalidations reach every replica through the cache's bus.
func NewAdmin(o AdminOptions) http.Handler {
	if o.Logger == nil {
		o.Logger = zap.NewNop()
	}
	if o.OnInvalidate == nil {
		o.OnInvalidate = func(string) {}
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	a := &admin{o: o}
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+PathInvalidate, a.invalidate)
	mux.HandleFunc("DELETE "+PathCache, a.invalidateAll)
	mux.HandleFunc("GET "+PathEntry, a.entry)
	return a.authorized(mux)
}

type admin struct{ o AdminOptions }

func (a *admin) authorized(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		auth := r.Header.Get("Authorization")
		tok, ok := strings.CutPrefix(auth, "Bearer ")
		if !ok || len(r.Header.Values("Authorization")) != 1 || !secretEqual(tok, a.o.Token) {
			w.Header().Set("WWW-Authenticate", `Bearer realm="gateway-admin"`)
			writeError(w, http.StatusUnauthorized, "unauthorized", "The admin API needs invalidation.admin_token as a bearer token")
			return
		}
		next.ServeHTTP(w, r)
	})
}

// target is a caller named by an admin request.
type target struct {
	Kind   string `json:"kind"`
	ID     string `json:"id"`
	Issuer string `json:"issuer,omitempty"`
}

// caller checks a target: a known kind, an id, and an issuer the source
// serves (optional when there is only one).
func (a *admin) caller(t target) (enrich.Caller, string) {
	var kind enrich.Kind
	switch t.Kind {
	case "client":
		kind = enrich.KindClient
	case "user":
		kind = enrich.KindUser
	default:
		return enrich.Caller{}, `kind must be "client" or "user"`
	}
	if t.ID == "" {
		return enrich.Caller{}, "id is required"
	}
	switch {
	case t.Issuer == "" && len(a.o.Issuers) == 1:
		t.Issuer = a.o.Issuers[0]
	case t.Issuer == "":
		return enrich.Caller{}, "issuer is required: the metadata source serves " + strings.Join(a.o.Issuers, ", ")
	case !slices.Contains(a.o.Issuers, t.Issuer):
		return enrich.Caller{}, "issuer " + t.Issuer + " is not served by the metadata source"
	}
	return enrich.NewCaller(t.Issuer, kind, t.ID), ""
}

func (a *admin) invalidate(w http.ResponseWriter, r *http.Request) {
	var t target
	dec := json.NewDecoder(io.LimitReader(r.Body, 64<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&t); err != nil {
		writeError(w, http.StatusBadRequest, "invalid_request", `The body must be {"kind":"client"|"user","id":"...","issuer":"..."}`)
		return
	}
	c, problem := a.caller(t)
	if problem != "" {
		writeError(w, http.StatusBadRequest, "invalid_request", problem)
		return
	}
	if err := a.o.Invalidator.Invalidate(r.Context(), c); err != nil {
		a.o.Logger.Warn("admin invalidation failed", zap.String("caller_id", c.Key()), zap.Error(err))
		writeError(w, http.StatusServiceUnavailable, "invalidation_failed", "Dropped here, but the shared cache could not be reached")
		return
	}
	a.o.OnInvalidate(SourceAdmin)
	a.o.Logger.Info("caller invalidated", zap.String("caller_id", c.Key()), zap.String("source", SourceAdmin))
	writeJSON(w, http.StatusOK, map[string]any{"invalidated": target{Kind: c.Kind.String(), ID: c.ID, Issuer: c.Issuer}})
}

func (a *admin) invalidateAll(w http.ResponseWriter, r *http.Request) {
	if err := a.o.Invalidator.InvalidateAll(r.Context()); err != nil {
		a.o.Logger.Warn("admin invalidation of everything failed", zap.Error(err))
		writeError(w, http.StatusServiceUnavailable, "invalidation_failed", "Dropped here, but the shared cache could not be reached")
		return
	}
	a.o.OnInvalidate(SourceAdminAll)
	a.o.Logger.Info("every caller invalidated", zap.String("source", SourceAdmin))
	writeJSON(w, http.StatusOK, map[string]bool{"invalidated_all": true})
}

// entryBody is what GET /admin/cache/entry answers.
type entryBody struct {
	target
	Cached          bool            `json:"cached"`
	Negative        bool            `json:"negative,omitempty"`
	FetchedAt       *time.Time      `json:"fetched_at,omitempty"`
	AgeSeconds      float64         `json:"age_seconds,omitempty"`
	FreshForSeconds float64         `json:"fresh_for_seconds,omitempty"`
	Name            string          `json:"name,omitempty"`
	Metadata        json.RawMessage `json:"metadata,omitempty"`
}

func (a *admin) entry(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	c, problem := a.caller(target{Kind: q.Get("kind"), ID: q.Get("id"), Issuer: q.Get("issuer")})
	if problem != "" {
		writeError(w, http.StatusBadRequest, "invalid_request", problem)
		return
	}
	body := entryBody{target: target{Kind: c.Kind.String(), ID: c.ID, Issuer: c.Issuer}}
	if e, ok := a.o.Invalidator.Entry(c); ok {
		fetched := e.FetchedAt.UTC()
		body.Cached, body.Negative, body.FetchedAt = true, e.Negative, &fetched
		body.AgeSeconds = a.o.Now().Sub(e.FetchedAt).Seconds()
		body.FreshForSeconds = e.FreshFor.Seconds()
		if e.Value != nil {
			body.Name, body.Metadata = e.Value.Record.Name, e.Value.JSON
		}
	}
	writeJSON(w, http.StatusOK, body)
}
