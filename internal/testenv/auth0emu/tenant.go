// Package auth0emu is an Auth0 tenant emulator for tests: the one stand-in
// the project accepts, because a real tenant cannot be reached from CI.
//
// It serves, over real HTTP (httptest), the parts of a tenant the gateway
// talks to, with Auth0's documented shapes: the JWKS, the client-credentials
// token endpoint, and the Management API reads of clients and users
// (fields/include_fields, Auth0's error bodies, x-ratelimit-* headers and a
// per-tenant token bucket). Faults (429, 500, hang, dropped connection) and
// token revocation can be switched on per endpoint, and every request is
// counted, so tests can assert how many origin calls a behaviour costs.
//
// Tokens are real RS256 JWTs signed with a fresh RSA-2048 key, so the
// gateway's verifier runs exactly as against Auth0.
package auth0emu

import (
	"crypto/rsa"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"
)

// Fault makes an endpoint misbehave the way a real tenant, or the network
// in front of it, can.
type Fault int

// Faults, set with SetFault or SetFaultN.
const (
	FaultNone Fault = iota
	// Fault429 answers 429 with Auth0's body and x-ratelimit-* headers
	// (remaining 0, reset one second ahead).
	Fault429
	// Fault500 answers 500 with Auth0's "Internal error" body.
	Fault500
	// FaultHang never answers: the handler blocks until the client gives
	// up (request context done) or the tenant is closed.
	FaultHang
	// FaultDrop hijacks the connection and closes it without a response.
	FaultDrop
)

// Endpoint names used by Calls, LastRequestURI, SetFault and SetFaultN.
// "mgmt" is accepted by SetFault/SetFaultN only and covers both Management
// API endpoints; a fault set on "clients" or "users" takes precedence.
const (
	EndpointToken   = "token"
	EndpointClients = "clients"
	EndpointUsers   = "users"
	EndpointJWKS    = "jwks"
	EndpointMgmt    = "mgmt"
)

// Default lifetimes, as on a real tenant.
const (
	DefaultMgmtTokenTTL = 86400 * time.Second
	DefaultAPITokenTTL  = 86400 * time.Second
)

// Client is a machine-to-machine application of the tenant.
type Client struct {
	ID     string
	Secret string
	Name   string
	// Metadata is the client_metadata (Auth0: at most 10 keys, string
	// values of at most 255 characters; the emulator does not enforce it).
	Metadata map[string]string
	// Grants are the client grants: audience (API identifier) → scopes.
	// A client needs a grant on MgmtAudience() with read:clients and/or
	// read:users to read the Management API.
	Grants map[string][]string
}

// User is a user of the tenant.
type User struct {
	ID           string // e.g. "auth0|63d1..."
	AppMetadata  map[string]any
	UserMetadata map[string]any
}

// Tenant is a running emulated tenant. All methods are safe for concurrent
// use. Methods that take a value to copy (AddClient, AddUser, ...) fail the
// test if the value cannot be copied, so call them from the test goroutine.
type Tenant struct {
	tb      testing.TB
	srv     *httptest.Server
	key     *rsa.PrivateKey
	kid     string
	certDER []byte
	closing chan struct{}

	mu      sync.Mutex
	latency time.Duration // added to every Management API answer
	apis    map[string]api
	clients map[string]Client
	users   map[string]User
	faults  map[string]faultState
	mgmtTTL time.Duration
	revoked map[string]bool // mgmt access token → revoked
	bucket  bucket
	calls   map[string]int
	lastURI map[string]string
}

type api struct {
	scopes []string
	ttl    time.Duration
}

type faultState struct {
	fault Fault
	left  int // requests the fault still applies to; <0: until cleared
}

// New starts a tenant on 127.0.0.1 with a fresh RSA-2048 signing key. The
// Management API (MgmtAudience) exists with the scopes read:clients and
// read:users. The tenant is closed by t.Cleanup; requests hanging on
// FaultHang are released first.
func New(tb testing.TB) *Tenant {
	tb.Helper()
	t := &Tenant{
		tb:      tb,
		closing: make(chan struct{}),
		apis:    map[string]api{},
		clients: map[string]Client{},
		users:   map[string]User{},
		faults:  map[string]faultState{},
		mgmtTTL: DefaultMgmtTokenTTL,
		revoked: map[string]bool{},
		calls:   map[string]int{},
		lastURI: map[string]string{},
	}
	t.newKey(tb)
	t.bucket.reset(defaultRateLimit, defaultRatePerSecond, time.Now())
	t.srv = httptest.NewServer(t.routes())
	tb.Cleanup(func() {
		close(t.closing)
		t.srv.Close()
	})
	t.apis[t.MgmtAudience()] = api{scopes: []string{"read:clients", "read:users"}, ttl: DefaultMgmtTokenTTL}
	return t
}

// URL is the tenant's base URL, "http://127.0.0.1:PORT", without a
// trailing slash. It plays the part of https://TENANT.auth0.com.
func (t *Tenant) URL() string { return t.srv.URL }

// Issuer is the "iss" of the tenant's tokens: URL() with Auth0's trailing
// slash.
func (t *Tenant) Issuer() string { return t.srv.URL + "/" }

// JWKSURL is where the tenant publishes its signing keys.
func (t *Tenant) JWKSURL() string { return t.srv.URL + "/.well-known/jwks.json" }

// TokenURL is the tenant's token endpoint.
func (t *Tenant) TokenURL() string { return t.srv.URL + "/oauth/token" }

// MgmtAudience is the Management API identifier, URL()+"/api/v2/".
func (t *Tenant) MgmtAudience() string { return t.srv.URL + "/api/v2/" }

// Kid is the key id of the signing key.
func (t *Tenant) Kid() string { return t.kid }

// AddAPI registers a resource server (an audience) with its scopes.
// Tokens for it last DefaultAPITokenTTL.
func (t *Tenant) AddAPI(identifier string, scopes ...string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.apis[identifier] = api{scopes: append([]string(nil), scopes...), ttl: DefaultAPITokenTTL}
}

// AddClient adds or replaces a client.
func (t *Tenant) AddClient(c Client) {
	c.Metadata = cloneStrings(c.Metadata)
	grants := make(map[string][]string, len(c.Grants))
	for aud, scopes := range c.Grants {
		grants[aud] = append([]string(nil), scopes...)
	}
	c.Grants = grants
	t.mu.Lock()
	defer t.mu.Unlock()
	t.clients[c.ID] = c
}

// AddUser adds or replaces a user.
func (t *Tenant) AddUser(u User) {
	u.AppMetadata = t.cloneJSON(u.AppMetadata)
	u.UserMetadata = t.cloneJSON(u.UserMetadata)
	t.mu.Lock()
	defer t.mu.Unlock()
	t.users[u.ID] = u
}

// DeleteClient removes a client: reads answer 404 inexistent_client.
func (t *Tenant) DeleteClient(id string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.clients, id)
}

// DeleteUser removes a user: reads answer 404 inexistent_user.
func (t *Tenant) DeleteUser(id string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.users, id)
}

// SetClientMetadata replaces a client's client_metadata, as a PATCH
// /api/v2/clients/{id} would. It fails the test if the client is unknown.
func (t *Tenant) SetClientMetadata(id string, md map[string]string) {
	md = cloneStrings(md)
	t.mu.Lock()
	defer t.mu.Unlock()
	c, ok := t.clients[id]
	if !ok {
		t.tb.Fatalf("auth0emu: SetClientMetadata: no client %q", id)
	}
	c.Metadata = md
	t.clients[id] = c
}

// SetUserAppMetadata replaces a user's app_metadata. It fails the test if
// the user is unknown.
func (t *Tenant) SetUserAppMetadata(id string, md map[string]any) {
	t.updateUser("SetUserAppMetadata", id, func(u *User) { u.AppMetadata = t.cloneJSON(md) })
}

// SetUserMetadata replaces a user's user_metadata. It fails the test if
// the user is unknown.
func (t *Tenant) SetUserMetadata(id string, md map[string]any) {
	t.updateUser("SetUserMetadata", id, func(u *User) { u.UserMetadata = t.cloneJSON(md) })
}

// updateUser applies change to a known user, as a PATCH /api/v2/users/{id}
// would; op names the caller in the failure.
func (t *Tenant) updateUser(op, id string, change func(*User)) {
	t.mu.Lock()
	defer t.mu.Unlock()
	u, ok := t.users[id]
	if !ok {
		t.tb.Fatalf("auth0emu: %s: no user %q", op, id)
	}
	change(&u)
	t.users[id] = u
}

// Calls is the number of requests an endpoint ("token", "clients",
// "users", "jwks") received since the start or the last ResetCalls,
// faulted and rejected ones included.
func (t *Tenant) Calls(endpoint string) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.calls[endpoint]
}

// ResetCalls zeroes every counter.
func (t *Tenant) ResetCalls() {
	t.mu.Lock()
	defer t.mu.Unlock()
	clear(t.calls)
}

// LastRequestURI is the raw request URI (path and query, as sent) of the
// last request to an endpoint, or "" if there was none.
func (t *Tenant) LastRequestURI(endpoint string) string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.lastURI[endpoint]
}

// SetFault makes every following request to endpoint ("token", "mgmt",
// "clients", "users", "jwks") fail with f, until FaultNone is set.
func (t *Tenant) SetFault(endpoint string, f Fault) { t.SetFaultN(endpoint, f, -1) }

// SetFaultN makes the next n requests to endpoint fail with f; after that
// the endpoint behaves again. n < 0 means until cleared.
func (t *Tenant) SetFaultN(endpoint string, f Fault, n int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if f == FaultNone || n == 0 {
		delete(t.faults, endpoint)
		return
	}
	t.faults[endpoint] = faultState{fault: f, left: n}
}

// SetMgmtLatency makes every Management API answer take d longer, as a
// real tenant across the internet does (a request that gives up earlier
// still counts as a call).
func (t *Tenant) SetMgmtLatency(d time.Duration) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.latency = d
}

// SetMgmtTokenTTL sets expires_in (and exp) of Management API tokens
// issued from now on. The default is DefaultMgmtTokenTTL (86400 s).
func (t *Tenant) SetMgmtTokenTTL(d time.Duration) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.mgmtTTL = d
}

// RevokeMgmtTokens makes every Management API token issued so far answer
// 401 "Invalid token", as after a revocation or a signing key change. Tokens
// issued afterwards work.
func (t *Tenant) RevokeMgmtTokens() {
	t.mu.Lock()
	defer t.mu.Unlock()
	for tok := range t.revoked {
		t.revoked[tok] = true
	}
}

// SetRateLimit replaces the Management API token bucket (shared by every
// client, as Auth0's per-tenant limit is): limit requests of burst,
// refilled at perSecond. Over budget the API answers 429 too_many_requests.
// The bucket starts full. The default is generous (1000, 1000/s) so tests
// that do not care never see a 429; the Free plan is SetRateLimit(2, 2).
func (t *Tenant) SetRateLimit(limit int, perSecond float64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.bucket.reset(limit, perSecond, time.Now())
}

func (t *Tenant) cloneJSON(m map[string]any) map[string]any {
	if m == nil {
		return nil
	}
	b, err := json.Marshal(m)
	if err != nil {
		t.tb.Fatalf("auth0emu: metadata is not JSON: %v", err)
	}
	var out map[string]any
	if err := json.Unmarshal(b, &out); err != nil {
		t.tb.Fatalf("auth0emu: metadata is not JSON: %v", err)
	}
	return out
}

func cloneStrings(m map[string]string) map[string]string {
	if m == nil {
		return nil
	}
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// count records a request to endpoint and returns the fault to apply, if
// any, consuming one use of it. A fault on the endpoint itself wins over
// one on "mgmt".
func (t *Tenant) count(endpoint string, r *http.Request) Fault {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.calls[endpoint]++
	t.lastURI[endpoint] = r.RequestURI
	keys := []string{endpoint}
	if endpoint == EndpointClients || endpoint == EndpointUsers {
		keys = append(keys, EndpointMgmt)
	}
	for _, k := range keys {
		fs, ok := t.faults[k]
		if !ok {
			continue
		}
		if fs.left > 0 {
			fs.left--
			if fs.left == 0 {
				delete(t.faults, k)
			} else {
				t.faults[k] = fs
			}
		}
		return fs.fault
	}
	return FaultNone
}
