// Package auth0 is the enrich.Source backed by the Auth0 Management API: it
// reads a machine client's client_metadata (GET /api/v2/clients/{id}) or a
// user's app_metadata (GET /api/v2/users/{id}).
//
// A Source does one origin lookup per call; coalescing, caching and serving
// stale entries are the cache's job above it. What the Source owns is being
// correct and polite towards a tenant whose Management API budget is small
// and shared (Free plan: burst 2, 2/s for the whole tenant):
//
//   - a client-side token bucket bounds every Management API attempt,
//     retries included;
//   - after a 429 every lookup fails fast with ErrRateLimited, without a
//     network call, until the time Auth0 said (Retry-After or
//     x-ratelimit-reset, capped at a minute);
//   - 5xx and network errors are retried a few times with fully jittered
//     exponential backoff (50 ms doubling, capped at 250 ms), then
//     reported as ErrUnavailable;
//   - the Management API access token is fetched once and reused until
//     shortly before it expires; a 401 drops it and fetches a new one once;
//   - each HTTP attempt is cut at Options.Timeout.
//
// Errors other than a definite miss (enrich.ErrUnknownCaller) must not be
// cached as negative entries.
package auth0

import (
	"errors"
	"fmt"
	"math"
	"net"
	"net/http"
	"net/url"
	"time"

	"go.uber.org/zap"
	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"
	"golang.org/x/time/rate"
)

// Sentinel errors, wrapped with the caller and the cause. A lookup that
// fails with any of them says nothing about whether the caller exists.
var (
	// ErrRateLimited: Auth0 answered 429 (and the block it asked for is
	// still running), or the client-side budget could not grant a request
	// before the context's deadline.
	ErrRateLimited = errors.New("auth0: management API rate limited")
	// ErrUnauthorized: the tenant refused the gateway's credentials (bad
	// client secret, missing client grant, token rejected twice, missing
	// read:clients / read:users scope). A configuration problem, logged at
	// Error level.
	ErrUnauthorized = errors.New("auth0: management API refused the gateway's credentials")
	// ErrUnavailable: 5xx, network errors or timeouts that outlasted the
	// retries, or an answer the Source cannot use.
	ErrUnavailable = errors.New("auth0: management API unavailable")
)

// Defaults applied by New to zero Options fields.
const (
	DefaultRatePerSecond = 1
	DefaultBurst         = 2
	DefaultTimeout       = 5 * time.Second
	DefaultMaxRetries    = 2
)

const (
	maxBody = 1 << 20 // cap on a Management API response body
	// A 5xx that came back at once is retried after tens of
	// milliseconds, not seconds: the caller is waiting (within
	// metadata.auth0.lookup_deadline), and full jitter spreads replicas
	// that failed together.
	backoffBase = 50 * time.Millisecond
	backoffMax  = 250 * time.Millisecond
	// Bounds on a 429 block: at least minBlock when Auth0's reset is in
	// the past (clock skew), at most maxBlock whatever the headers say, so a
	// bad clock or header cannot keep the gateway from its origin for long.
	minBlock = time.Second
	maxBlock = time.Minute
)

// Options configure a Source. Zero values take the documented defaults.
type Options struct {
	// ManagementURL is the tenant's canonical base URL, scheme and host
	// only: https://TENANT.auth0.com (not a custom domain). Required.
	ManagementURL string
	// TokenURL defaults to ManagementURL + "/oauth/token".
	TokenURL string
	// Audience defaults to ManagementURL + "/api/v2/".
	Audience string
	// ClientID and ClientSecret are the credentials of an M2M application
	// with a client grant on the Management API (read:clients,
	// read:users). Required.
	ClientID     string
	ClientSecret string
	// IncludeUserMetadata also reads user_metadata and fills
	// Record.UserMetadata. Users can edit it themselves: never trust it.
	IncludeUserMetadata bool
	// RatePerSecond and Burst size the client-side token bucket every
	// Management API attempt takes from (default 1/s, burst 2: safe on
	// the Free plan's 2/s burst 2 for the whole tenant, with room for
	// other Management API clients). The token endpoint is not budgeted.
	RatePerSecond float64
	Burst         int
	// Timeout cuts each HTTP attempt (token or Management API); default 5s.
	Timeout time.Duration
	// MaxRetries is how many times a 5xx or network error is retried
	// (0: none, as metadata.auth0.max_retries says; the config's default
	// is DefaultMaxRetries).
	MaxRetries int
	// HTTPClient defaults to a client with its own pooled transport.
	HTTPClient *http.Client
	// Logger defaults to a no-op logger. It is used as given: the caller
	// names it (the gateway passes its "auth0" logger), so the name is
	// not doubled.
	Logger *zap.Logger
	// Now is the clock for 429 blocks; defaults to time.Now.
	Now func() time.Time
	// Observe, when set, is called after each HTTP attempt with the
	// endpoint ("clients", "users" or "token"), the status (0 for a
	// network error or timeout) and the duration.
	Observe func(endpoint string, status int, d time.Duration)
	// CircuitThreshold consecutive failed calls (5xx, timeouts,
	// connection failures) open the circuit for CircuitOpenFor (default
	// 10s): no call goes out meanwhile but one probe per period, and
	// lookups fail at once with ErrUnavailable. 0: no circuit.
	CircuitThreshold int
	CircuitOpenFor   time.Duration
	// OnCircuit, when set, is told each state change: CircuitOpen,
	// CircuitHalfOpen, CircuitClosed.
	OnCircuit func(state string)
	// OnBudgetWait, when set, is called each time a Management API call
	// finds the client-side token bucket empty and has to wait for it (or
	// is refused because its context ends first).
	OnBudgetWait func()
}

// Source reads callers from the Management API. It is safe for concurrent
// use.
type Source struct {
	base         string // ManagementURL without trailing slash
	clientFields string
	userFields   string
	includeUM    bool
	timeout      time.Duration
	maxRetries   int
	backoffBase  time.Duration
	limiter      *rate.Limiter
	http         *http.Client
	log          *zap.Logger
	now          func() time.Time
	observe      func(string, int, time.Duration)
	onBudgetWait func()

	tokens  *tokenCache
	block   blocker
	circuit *circuit
}

// New validates opts, applies defaults and returns a Source. It makes no
// network call: bad credentials surface on the first Lookup as
// ErrUnauthorized.
func New(opts Options) (*Source, error) {
	base, err := baseURL(opts.ManagementURL)
	if err != nil {
		return nil, err
	}
	if opts.TokenURL == "" {
		opts.TokenURL = base + "/oauth/token"
	} else if err := checkHTTPURL("TokenURL", opts.TokenURL); err != nil {
		return nil, err
	}
	if opts.Audience == "" {
		opts.Audience = base + "/api/v2/"
	}
	switch {
	case opts.ClientID == "":
		return nil, errors.New("auth0: ClientID is required")
	case opts.ClientSecret == "":
		return nil, errors.New("auth0: ClientSecret is required")
	case opts.RatePerSecond < 0 || math.IsNaN(opts.RatePerSecond) || math.IsInf(opts.RatePerSecond, 0):
		return nil, fmt.Errorf("auth0: RatePerSecond must be a positive number, got %g", opts.RatePerSecond)
	case opts.Burst < 0:
		return nil, fmt.Errorf("auth0: Burst must not be negative, got %d", opts.Burst)
	case opts.Timeout < 0:
		return nil, fmt.Errorf("auth0: Timeout must not be negative, got %s", opts.Timeout)
	case opts.MaxRetries < 0:
		return nil, fmt.Errorf("auth0: MaxRetries must not be negative, got %d", opts.MaxRetries)
	case opts.CircuitThreshold < 0 || opts.CircuitOpenFor < 0:
		return nil, fmt.Errorf("auth0: CircuitThreshold and CircuitOpenFor must not be negative")
	}
	if opts.CircuitOpenFor == 0 {
		opts.CircuitOpenFor = 10 * time.Second
	}
	if opts.RatePerSecond == 0 {
		opts.RatePerSecond = DefaultRatePerSecond
	}
	if opts.Burst == 0 {
		opts.Burst = DefaultBurst
	}
	if opts.Timeout == 0 {
		opts.Timeout = DefaultTimeout
	}
	if opts.HTTPClient == nil {
		opts.HTTPClient = defaultHTTPClient()
	}
	if opts.Logger == nil {
		opts.Logger = zap.NewNop()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}

	s := &Source{
		base:         base,
		clientFields: "client_id,name,client_metadata",
		userFields:   "user_id,app_metadata",
		includeUM:    opts.IncludeUserMetadata,
		timeout:      opts.Timeout,
		maxRetries:   opts.MaxRetries,
		backoffBase:  backoffBase,
		limiter:      rate.NewLimiter(rate.Limit(opts.RatePerSecond), opts.Burst),
		http:         opts.HTTPClient,
		log:          opts.Logger,
		now:          opts.Now,
		observe:      opts.Observe,
		onBudgetWait: opts.OnBudgetWait,
		circuit:      &circuit{threshold: opts.CircuitThreshold, openFor: opts.CircuitOpenFor, onState: opts.OnCircuit},
	}
	if s.onBudgetWait == nil {
		s.onBudgetWait = func() {}
	}
	if s.includeUM {
		s.userFields += ",user_metadata"
	}
	tokenHTTP := opts.HTTPClient
	if opts.Observe != nil {
		c := *opts.HTTPClient
		c.Transport = observedTransport{base: transportOf(opts.HTTPClient), observe: opts.Observe}
		tokenHTTP = &c
	}
	s.tokens = &tokenCache{
		cfg: &clientcredentials.Config{
			ClientID:       opts.ClientID,
			ClientSecret:   opts.ClientSecret,
			TokenURL:       opts.TokenURL,
			EndpointParams: url.Values{"audience": {opts.Audience}},
			AuthStyle:      oauth2.AuthStyleInParams,
		},
		http:    tokenHTTP,
		timeout: opts.Timeout,
		sem:     make(chan struct{}, 1),
	}
	return s, nil
}

// CloseIdleConnections closes the idle connections of the Source's HTTP
// client, for shutdown and tests.
func (s *Source) CloseIdleConnections() { s.http.CloseIdleConnections() }

func baseURL(raw string) (string, error) {
	if raw == "" {
		return "", errors.New("auth0: ManagementURL is required (https://TENANT.auth0.com)")
	}
	if err := checkHTTPURL("ManagementURL", raw); err != nil {
		return "", err
	}
	u, _ := url.Parse(raw)
	if (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" {
		return "", fmt.Errorf("auth0: ManagementURL %q must be a scheme and host only (the /api/v2/ path is added)", raw)
	}
	return u.Scheme + "://" + u.Host, nil
}

func checkHTTPURL(field, raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("auth0: %s: %w", field, err)
	}
	if (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.User != nil {
		return fmt.Errorf("auth0: %s %q must be an http(s) URL with a host and no user info", field, raw)
	}
	return nil
}

func defaultHTTPClient() *http.Client {
	return &http.Client{Transport: &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          8,
		MaxIdleConnsPerHost:   4,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   5 * time.Second,
		ExpectContinueTimeout: time.Second,
	}}
}

func transportOf(c *http.Client) http.RoundTripper {
	if c.Transport != nil {
		return c.Transport
	}
	return http.DefaultTransport
}

// observedTransport reports token endpoint calls to Options.Observe; the
// oauth2 package makes those requests, so a transport is the only place to
// see them.
type observedTransport struct {
	base    http.RoundTripper
	observe func(string, int, time.Duration)
}

func (o observedTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	start := time.Now()
	resp, err := o.base.RoundTrip(req)
	status := 0
	if err == nil {
		status = resp.StatusCode
	}
	o.observe("token", status, time.Since(start))
	return resp, err
}

// CloseIdleConnections lets http.Client.CloseIdleConnections reach the
// wrapped transport.
func (o observedTransport) CloseIdleConnections() {
	if c, ok := o.base.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}
