package auth0emu

import (
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

func (t *Tenant) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/.well-known/jwks.json", t.serveJWKS)
	mux.HandleFunc("/oauth/token", t.serveToken)
	mux.HandleFunc("/api/v2/clients/{id}", t.serveClient)
	mux.HandleFunc("/api/v2/users/{id}", t.serveUser)
	mux.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) {
		writeAPIError(w, http.StatusNotFound, apiError{Message: "Not Found"})
	})
	return mux
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// apiError is the Management API error body.
type apiError struct {
	StatusCode int               `json:"statusCode"`
	Error      string            `json:"error"`
	Message    string            `json:"message"`
	ErrorCode  string            `json:"errorCode,omitempty"`
	Attributes map[string]string `json:"attributes,omitempty"`
}

func writeAPIError(w http.ResponseWriter, status int, e apiError) {
	e.StatusCode = status
	e.Error = http.StatusText(status)
	writeJSON(w, status, e)
}

// oauthError is the Authentication API (token endpoint) error body.
type oauthError struct {
	Error       string `json:"error"`
	Description string `json:"error_description"`
}

// hangOrDrop implements FaultHang and FaultDrop; it reports whether it
// handled the request.
func (t *Tenant) hangOrDrop(w http.ResponseWriter, r *http.Request, f Fault) bool {
	switch f {
	case FaultHang:
		select {
		case <-r.Context().Done():
		case <-t.closing:
		}
		return true
	case FaultDrop:
		conn, _, err := http.NewResponseController(w).Hijack()
		if err != nil {
			http.Error(w, "auth0emu: cannot hijack: "+err.Error(), http.StatusInternalServerError)
			return true
		}
		_ = conn.Close()
		return true
	}
	return false
}

func (t *Tenant) serveJWKS(w http.ResponseWriter, r *http.Request) {
	f := t.count(EndpointJWKS, r)
	if t.hangOrDrop(w, r, f) {
		return
	}
	switch {
	case f == Fault429:
		writeAPIError(w, http.StatusTooManyRequests, apiError{Message: "Global limit has been reached", ErrorCode: "too_many_requests"})
	case f == Fault500:
		writeAPIError(w, http.StatusInternalServerError, apiError{Message: "Internal error"})
	case r.Method != http.MethodGet && r.Method != http.MethodHead:
		writeAPIError(w, http.StatusNotFound, apiError{Message: "Not Found"})
	default:
		w.Header().Set("Cache-Control", "public, max-age=15, stale-while-revalidate=15, stale-if-error=86400")
		writeJSON(w, http.StatusOK, t.jwks())
	}
}

// tokenRequest reads a token request from a form-encoded or JSON body,
// with client credentials in the body or in HTTP Basic auth.
func tokenRequest(r *http.Request) (url.Values, error) {
	r.Body = http.MaxBytesReader(nil, r.Body, 64<<10)
	v := url.Values{}
	ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if ct == "application/json" {
		var m map[string]any
		if err := json.NewDecoder(r.Body).Decode(&m); err != nil {
			return nil, fmt.Errorf("invalid JSON body: %w", err)
		}
		for k, x := range m {
			if s, ok := x.(string); ok {
				v.Set(k, s)
			}
		}
	} else {
		if err := r.ParseForm(); err != nil {
			return nil, err
		}
		v = r.PostForm
	}
	if id, secret, ok := r.BasicAuth(); ok {
		// RFC 6749 §2.3.1: form-urlencoded before base64.
		if u, err := url.QueryUnescape(id); err == nil {
			id = u
		}
		if u, err := url.QueryUnescape(secret); err == nil {
			secret = u
		}
		v.Set("client_id", id)
		v.Set("client_secret", secret)
	}
	return v, nil
}

func (t *Tenant) serveToken(w http.ResponseWriter, r *http.Request) {
	f := t.count(EndpointToken, r)
	if t.hangOrDrop(w, r, f) {
		return
	}
	deny := func(status int, code, desc string) {
		writeJSON(w, status, oauthError{Error: code, Description: desc})
	}
	switch f {
	case Fault429:
		deny(http.StatusTooManyRequests, "too_many_requests", "Global limit has been reached")
		return
	case Fault500:
		deny(http.StatusInternalServerError, "server_error", "Internal error")
		return
	}
	if r.Method != http.MethodPost {
		writeAPIError(w, http.StatusNotFound, apiError{Message: "Not Found"})
		return
	}
	v, err := tokenRequest(r)
	if err != nil {
		deny(http.StatusBadRequest, "invalid_request", err.Error())
		return
	}
	grant := v.Get("grant_type")
	switch {
	case grant == "":
		deny(http.StatusBadRequest, "invalid_request", "Missing required parameter: grant_type")
		return
	case grant != "client_credentials":
		deny(http.StatusBadRequest, "unsupported_grant_type", "Unsupported grant type: "+grant)
		return
	case v.Get("client_id") == "":
		deny(http.StatusBadRequest, "invalid_request", "Missing required parameter: client_id")
		return
	}
	audience := v.Get("audience")

	t.mu.Lock()
	c, known := t.clients[v.Get("client_id")]
	a, apiKnown := t.apis[audience]
	mgmtTTL := t.mgmtTTL
	t.mu.Unlock()

	if !known || c.Secret == "" || subtle.ConstantTimeCompare([]byte(c.Secret), []byte(v.Get("client_secret"))) != 1 {
		deny(http.StatusUnauthorized, "access_denied", "Unauthorized")
		return
	}
	if audience == "" {
		deny(http.StatusForbidden, "access_denied", "No audience parameter was provided, and no default audience has been configured")
		return
	}
	if !apiKnown {
		deny(http.StatusForbidden, "access_denied", "Service not found: "+audience)
		return
	}
	scope, granted := t.grantedScopes(c, audience, v.Get("scope"))
	if !granted {
		deny(http.StatusForbidden, "access_denied", fmt.Sprintf("Client is not authorized to access %q. You need to create a \"client-grant\" associated to this API. See: https://auth0.com/docs/api/v2#!/Client_Grants/post_client_grants", audience))
		return
	}
	ttl := a.ttl
	if audience == t.MgmtAudience() {
		ttl = mgmtTTL
	}
	resp := map[string]any{
		"access_token": t.issueClientToken(c.ID, audience, scope, ttl),
		"expires_in":   int64(ttl / time.Second),
		"token_type":   "Bearer",
	}
	if scope != "" {
		resp["scope"] = scope
	}
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Pragma", "no-cache")
	writeJSON(w, http.StatusOK, resp)
}

func (t *Tenant) serveClient(w http.ResponseWriter, r *http.Request) {
	t.serveMgmt(w, r, EndpointClients, "read:clients", func(id string) (map[string]any, bool) {
		c, ok := t.clients[id]
		if !ok {
			return nil, false
		}
		obj := map[string]any{
			"client_id":                  c.ID,
			"tenant":                     "auth0emu",
			"name":                       c.Name,
			"app_type":                   "non_interactive",
			"grant_types":                []string{"client_credentials"},
			"is_first_party":             true,
			"token_endpoint_auth_method": "client_secret_post",
			"jwt_configuration":          map[string]any{"alg": "RS256", "lifetime_in_seconds": 36000, "secret_encoded": false},
		}
		if c.Metadata != nil {
			obj["client_metadata"] = cloneStrings(c.Metadata)
		}
		return obj, true
	}, apiError{Message: "The client does not exist", ErrorCode: "inexistent_client"})
}

func (t *Tenant) serveUser(w http.ResponseWriter, r *http.Request) {
	t.serveMgmt(w, r, EndpointUsers, "read:users", func(id string) (map[string]any, bool) {
		u, ok := t.users[id]
		if !ok {
			return nil, false
		}
		provider, sub, _ := strings.Cut(u.ID, "|")
		obj := map[string]any{
			"user_id":    u.ID,
			"created_at": "2024-01-01T00:00:00.000Z",
			"updated_at": "2024-01-01T00:00:00.000Z",
			"identities": []map[string]any{{"provider": provider, "user_id": sub, "connection": "Username-Password-Authentication", "isSocial": false}},
		}
		// Values are JSON copies made by AddUser and replaced, never
		// mutated, so handing them to the encoder is safe.
		if u.AppMetadata != nil {
			obj["app_metadata"] = u.AppMetadata
		}
		if u.UserMetadata != nil {
			obj["user_metadata"] = u.UserMetadata
		}
		return obj, true
	}, apiError{Message: "The user does not exist.", ErrorCode: "inexistent_user"})
}

// serveMgmt is a Management API read: faults, the tenant's rate limit,
// bearer token checks, fields filtering, in Auth0's order and shapes.
// lookup runs with t.mu held.
func (t *Tenant) serveMgmt(w http.ResponseWriter, r *http.Request, endpoint, scope string, lookup func(id string) (map[string]any, bool), notFound apiError) {
	f := t.count(endpoint, r)
	if t.hangOrDrop(w, r, f) {
		return
	}
	t.mu.Lock()
	latency := t.latency
	t.mu.Unlock()
	if latency > 0 {
		select {
		case <-time.After(latency):
		case <-r.Context().Done():
			return
		case <-t.closing:
			return
		}
	}
	now := time.Now()
	t.mu.Lock()
	allowed := true
	switch f {
	case Fault429:
		t.bucket.refill(now)
		w.Header().Set("X-Ratelimit-Limit", strconv.Itoa(t.bucket.limit))
		w.Header().Set("X-Ratelimit-Remaining", "0")
		w.Header().Set("X-Ratelimit-Reset", strconv.FormatInt(now.Add(time.Second).Unix(), 10))
		allowed = false
	case Fault500:
		t.bucket.refill(now)
		t.bucket.setHeaders(w.Header(), now)
	default:
		allowed = t.bucket.take(now)
		t.bucket.setHeaders(w.Header(), now)
	}
	t.mu.Unlock()

	switch {
	case !allowed:
		writeAPIError(w, http.StatusTooManyRequests, apiError{Message: "Global limit has been reached", ErrorCode: "too_many_requests"})
		return
	case f == Fault500:
		writeAPIError(w, http.StatusInternalServerError, apiError{Message: "Internal error"})
		return
	case r.Method != http.MethodGet:
		writeAPIError(w, http.StatusNotFound, apiError{Message: "Not Found"})
		return
	}

	if status, e := t.authorize(r, scope); status != 0 {
		writeAPIError(w, status, e)
		return
	}

	q := r.URL.Query()
	include := true
	if s := q.Get("include_fields"); s != "" {
		b, err := strconv.ParseBool(s)
		if err != nil || (s != "true" && s != "false") {
			writeAPIError(w, http.StatusBadRequest, apiError{
				Message:   "Query validation error: 'Expected type boolean but found type string' on property include_fields (true if the fields specified are to be included in the result, false otherwise (defaults to true)).",
				ErrorCode: "invalid_query_string",
			})
			return
		}
		include = b
	}

	t.mu.Lock()
	obj, ok := lookup(r.PathValue("id"))
	t.mu.Unlock()
	if !ok {
		writeAPIError(w, http.StatusNotFound, notFound)
		return
	}
	if fields := q.Get("fields"); fields != "" {
		obj = filterFields(obj, strings.Split(fields, ","), include)
	}
	writeJSON(w, http.StatusOK, obj)
}

// filterFields keeps only fields (include) or drops them (!include).
func filterFields(obj map[string]any, fields []string, include bool) map[string]any {
	out := map[string]any{}
	for k, v := range obj {
		if slices.Contains(fields, k) == include {
			out[k] = v
		}
	}
	return out
}

// authorize checks the Management API bearer token. It returns status 0
// when the token may read with scope.
func (t *Tenant) authorize(r *http.Request, scope string) (int, apiError) {
	invalid := func(msg string) (int, apiError) {
		return http.StatusUnauthorized, apiError{Message: msg, Attributes: map[string]string{"error": msg}}
	}
	h := r.Header.Get("Authorization")
	scheme, raw, _ := strings.Cut(h, " ")
	if h == "" || !strings.EqualFold(scheme, "Bearer") {
		return http.StatusUnauthorized, apiError{Message: "Missing authentication"}
	}
	raw = strings.TrimSpace(raw)
	tok, err := jwt.Parse(raw, func(tok *jwt.Token) (any, error) {
		if kid, _ := tok.Header["kid"].(string); kid != t.kid {
			return nil, errors.New("unknown kid")
		}
		return &t.key.PublicKey, nil
	},
		jwt.WithValidMethods([]string{"RS256"}),
		jwt.WithAudience(t.MgmtAudience()),
		jwt.WithIssuer(t.Issuer()),
		jwt.WithExpirationRequired(),
	)
	if errors.Is(err, jwt.ErrTokenExpired) {
		return invalid("Expired token")
	}
	if err != nil {
		return invalid("Invalid token")
	}
	t.mu.Lock()
	revoked := t.revoked[raw]
	t.mu.Unlock()
	if revoked {
		return invalid("Invalid token")
	}
	claims, _ := tok.Claims.(jwt.MapClaims)
	granted, _ := claims["scope"].(string)
	if !slices.Contains(strings.Fields(granted), scope) {
		return http.StatusForbidden, apiError{Message: "Insufficient scope, expected any of: " + scope, ErrorCode: "insufficient_scope"}
	}
	return 0, apiError{}
}
