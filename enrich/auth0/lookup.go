package auth0

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"

	"go.uber.org/zap"
	"golang.org/x/oauth2"

	"github.com/metagate/gateway/enrich"
)

var _ enrich.Source = (*Source)(nil)

// errBodyTooLarge marks a response larger than maxBody.
var errBodyTooLarge = fmt.Errorf("response body larger than %d bytes", maxBody)

// Lookup reads the caller from the Management API: client_metadata (and
// name) for a client, app_metadata (and user_metadata when configured) for
// a user. A 404 returns an error wrapping enrich.ErrUnknownCaller; every
// other failure wraps ErrRateLimited, ErrUnauthorized or ErrUnavailable
// (or the context's error) and says nothing about the caller.
func (s *Source) Lookup(ctx context.Context, c enrich.Caller) (enrich.Record, error) {
	var endpoint, fields string
	switch c.Kind {
	case enrich.KindClient:
		endpoint, fields = "clients", s.clientFields
	case enrich.KindUser:
		endpoint, fields = "users", s.userFields
	default:
		return enrich.Record{}, fmt.Errorf("auth0: lookup of %s caller %q: unsupported kind", c.Kind, c.ID)
	}
	// An empty id would read /api/v2/clients (the list); dot segments
	// would be resolved away. Neither names a caller.
	if c.ID == "" || c.ID == "." || c.ID == ".." {
		return enrich.Record{}, fmt.Errorf("auth0: %s %q: not an Auth0 id: %w", c.Kind, c.ID, enrich.ErrUnknownCaller)
	}
	l := lookup{
		Source:   s,
		caller:   c,
		endpoint: endpoint,
		url:      s.base + "/api/v2/" + endpoint + "/" + url.PathEscape(c.ID) + "?fields=" + fields + "&include_fields=true",
	}
	return l.run(ctx)
}

// lookup is one Lookup call: its retry state and error wording.
type lookup struct {
	*Source
	caller   enrich.Caller
	endpoint string
	url      string
	// retrying: an attempt failed with a 5xx or a network error, and
	// this one is its retry.
	retrying bool
}

func (l *lookup) fail(sentinel, cause error) error {
	if cause == nil {
		return fmt.Errorf("auth0: %s %q: %w", l.caller.Kind, l.caller.ID, sentinel)
	}
	return fmt.Errorf("auth0: %s %q: %w: %w", l.caller.Kind, l.caller.ID, sentinel, cause)
}

func (l *lookup) run(ctx context.Context) (enrich.Record, error) {
	if ok, _ := l.circuit.peek(l.now()); !ok {
		// Fail before taking a token: an open circuit costs nothing.
		return enrich.Record{}, l.fail(ErrUnavailable, errCircuitOpen)
	}
	reauthed := false
	for attempt, retries := 1, 0; ; attempt++ {
		if until, blocked := l.block.blockedUntil(l.now()); blocked {
			return enrich.Record{}, l.fail(ErrRateLimited, fmt.Errorf("Auth0 asked to wait until %s", until.UTC().Format(time.RFC3339)))
		}
		rec, retry, err := l.attempt(ctx, &reauthed)
		if err == nil {
			return rec, nil
		}
		if !retry {
			return enrich.Record{}, err
		}
		if ctx.Err() != nil {
			return enrich.Record{}, l.fail(ErrUnavailable, err)
		}
		if retries >= l.maxRetries {
			l.log.Warn("management API unavailable, giving up",
				zap.String("endpoint", l.endpoint), zap.Int("attempts", attempt), zap.Error(err))
			return enrich.Record{}, l.fail(ErrUnavailable, fmt.Errorf("%d attempts, last: %w", attempt, err))
		}
		retries++
		l.retrying = true
		l.log.Debug("management API attempt failed, retrying",
			zap.String("endpoint", l.endpoint), zap.Int("attempt", attempt), zap.Error(err))
		if berr := l.backoff(ctx, retries); berr != nil {
			return enrich.Record{}, l.fail(ErrUnavailable, fmt.Errorf("%w (while backing off after: %w)", berr, err))
		}
	}
}

// attempt makes one Management API request (fetching a token first if
// needed). It returns the record, or an error that is final unless retry
// is set. A first 401 is handled here: the token is dropped and the
// request repeated once with a new one, without counting as a retry.
func (l *lookup) attempt(ctx context.Context, reauthed *bool) (rec enrich.Record, retry bool, err error) {
	for {
		tok, err := l.tokens.get(ctx)
		if err != nil {
			return enrich.Record{}, retryableToken(err), l.tokenError(err)
		}
		// Out of budget, this call waits (or, when the wait would outlast
		// ctx, is refused); operators see it either way (OnBudgetWait).
		if err := l.takeBudget(ctx, l.retrying); err != nil {
			return enrich.Record{}, false, l.fail(ErrRateLimited, fmt.Errorf("client-side budget: %w", err))
		}
		ok, probe := l.circuit.allow(l.now())
		if !ok {
			return enrich.Record{}, false, l.fail(ErrUnavailable, errCircuitOpen)
		}
		status, header, body, err := l.get(ctx, tok)
		if err != nil && ctx.Err() != nil {
			l.circuit.abandon(probe) // our caller left: that says nothing about Auth0
		} else {
			l.circuit.result(l.now(), probe, err != nil || status >= 500)
		}
		switch {
		case errors.Is(err, errBodyTooLarge):
			return enrich.Record{}, false, l.fail(ErrUnavailable, err)
		case err != nil:
			return enrich.Record{}, true, err // network error or timeout
		case status == http.StatusOK:
			rec, err := l.decode(body)
			if err != nil {
				return enrich.Record{}, false, l.fail(ErrUnavailable, err)
			}
			return rec, false, nil
		case status == http.StatusNotFound:
			e := apiErrorOf(status, body)
			if e.ErrorCode != "inexistent_client" && e.ErrorCode != "inexistent_user" {
				// Still a miss, but a 404 without Auth0's error code for
				// every caller means ManagementURL is not the tenant's
				// canonical domain.
				l.log.Warn("management API 404 without inexistent_client/inexistent_user: is management_url the tenant's canonical domain?",
					zap.String("endpoint", l.endpoint), zap.Stringer("auth0_error", e))
			}
			return enrich.Record{}, false, l.fail(enrich.ErrUnknownCaller, e)
		case status == http.StatusUnauthorized && !*reauthed:
			*reauthed = true
			l.log.Info("management API rejected the access token, fetching a new one",
				zap.String("endpoint", l.endpoint), zap.Stringer("auth0_error", apiErrorOf(status, body)))
			l.tokens.drop(tok)
			continue
		case status == http.StatusUnauthorized || status == http.StatusForbidden:
			e := apiErrorOf(status, body)
			l.log.Error("Auth0 Management API refused the gateway's credentials: check the M2M application's client grant (read:clients, read:users) and secret",
				zap.String("endpoint", l.endpoint), zap.Int("status", status),
				zap.String("auth0_message", e.Message), zap.String("auth0_error_code", e.ErrorCode))
			return enrich.Record{}, false, l.fail(ErrUnauthorized, e)
		case status == http.StatusTooManyRequests:
			until := retryAt(header, l.now())
			l.block.extend(until)
			l.log.Warn("Auth0 Management API rate limit reached, pausing lookups",
				zap.String("endpoint", l.endpoint), zap.Time("until", until),
				zap.String("x_ratelimit_limit", header.Get("X-Ratelimit-Limit")),
				zap.String("x_ratelimit_reset", header.Get("X-Ratelimit-Reset")))
			return enrich.Record{}, false, l.fail(ErrRateLimited, apiErrorOf(status, body))
		case status >= 500:
			return enrich.Record{}, true, apiErrorOf(status, body)
		default:
			return enrich.Record{}, false, l.fail(ErrUnavailable, apiErrorOf(status, body))
		}
	}
}

// get performs the HTTP request, cut at the per-attempt timeout, and reads
// at most maxBody bytes of the response.
func (l *lookup) get(ctx context.Context, tok *oauth2.Token) (int, http.Header, []byte, error) {
	ctx, cancel := context.WithTimeout(ctx, l.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, l.url, nil)
	if err != nil {
		return 0, nil, nil, err
	}
	tok.SetAuthHeader(req)
	req.Header.Set("Accept", "application/json")
	start := time.Now()
	resp, err := l.http.Do(req)
	if err != nil {
		l.report(0, start)
		return 0, nil, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBody+1))
	l.report(resp.StatusCode, start)
	if err != nil {
		return 0, nil, nil, fmt.Errorf("read %s response: %w", l.endpoint, err)
	}
	if len(body) > maxBody {
		return 0, nil, nil, errBodyTooLarge
	}
	return resp.StatusCode, resp.Header, body, nil
}

func (l *lookup) report(status int, start time.Time) {
	if l.observe != nil {
		l.observe(l.endpoint, status, time.Since(start))
	}
}

func (l *lookup) decode(body []byte) (enrich.Record, error) {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber() // keep integers in app_metadata exact
	if l.endpoint == "clients" {
		var b struct {
			Name     string         `json:"name"`
			Metadata map[string]any `json:"client_metadata"`
		}
		if err := dec.Decode(&b); err != nil {
			return enrich.Record{}, fmt.Errorf("decode client: %w", err)
		}
		return enrich.Record{Name: b.Name, Metadata: b.Metadata}, nil
	}
	var b struct {
		AppMetadata  map[string]any `json:"app_metadata"`
		UserMetadata map[string]any `json:"user_metadata"`
	}
	if err := dec.Decode(&b); err != nil {
		return enrich.Record{}, fmt.Errorf("decode user: %w", err)
	}
	r := enrich.Record{Metadata: b.AppMetadata}
	if l.includeUM {
		r.UserMetadata = b.UserMetadata
	}
	return r, nil
}

// retryableToken says whether a token fetch failure may be retried: 5xx
// and network errors yes, refusals and 429 no. (run stops retrying anyway
// once the lookup's own context is done.)
func retryableToken(err error) bool {
	var re *oauth2.RetrieveError
	if errors.As(err, &re) {
		return re.Response != nil && re.Response.StatusCode >= 500
	}
	return true
}

// tokenError wraps a token fetch failure. Refusals are configuration
// problems and logged at Error level, with Auth0's error code and
// description only.
func (l *lookup) tokenError(err error) error {
	var re *oauth2.RetrieveError
	if !errors.As(err, &re) || re.Response == nil {
		return fmt.Errorf("token endpoint: %w", err) // network: Lookup wraps or retries
	}
	status := re.Response.StatusCode
	cause := fmt.Errorf("token endpoint: status %d %s: %s", status, re.ErrorCode, re.ErrorDescription)
	switch {
	case status >= 500:
		return cause
	case status == http.StatusTooManyRequests:
		return l.fail(ErrRateLimited, cause)
	default:
		l.log.Error("Auth0 refused the gateway's Management API token request: check client_id, client_secret and the client grant on the Management API audience",
			zap.Int("status", status), zap.String("auth0_error", re.ErrorCode), zap.String("auth0_error_description", re.ErrorDescription))
		return l.fail(ErrUnauthorized, cause)
	}
}

// apiError is a Management API error body.
type apiError struct {
	StatusCode int    `json:"statusCode"`
	Err        string `json:"error"`
	Message    string `json:"message"`
	ErrorCode  string `json:"errorCode"`
}

// apiErrorOf reads Auth0's error body, best effort: a body that is not
// Auth0's JSON (a proxy's HTML page) leaves only the status.
func apiErrorOf(status int, body []byte) apiError {
	var e apiError
	_ = json.Unmarshal(body, &e)
	e.StatusCode = status
	const maxMsg = 200
	if len(e.Message) > maxMsg {
		e.Message = e.Message[:maxMsg] + "…"
	}
	if len(e.ErrorCode) > maxMsg {
		e.ErrorCode = e.ErrorCode[:maxMsg]
	}
	return e
}

func (e apiError) Error() string {
	s := fmt.Sprintf("status %d", e.StatusCode)
	if e.Message != "" {
		s += ": " + e.Message
	}
	if e.ErrorCode != "" {
		s += " (" + e.ErrorCode + ")"
	}
	return s
}

func (e apiError) String() string { return e.Error() }
