package attack

import (
	"net/http"
	"testing"

	"github.com/golang-jwt/jwt/v5"

	"github.com/metagate/gateway/internal/testenv"
)

// wantHeaders: a value of "" means the header must be absent.
type wantHeaders map[string]string

func checkHeaders(t *testing.T, req string, h http.Header, want wantHeaders) {
	t.Helper()
	for name, v := range want {
		got := headersNamed(h, name)
		switch {
		case v == "" && len(got) > 0:
			t.Errorf("request %q: upstream got %v, want no %s", req, got, name)
		case v != "" && (len(got) != 1 || got[0] != http.CanonicalHeaderKey(name)+": "+v):
			t.Errorf("request %q: upstream got %v, want exactly %s: %s", req, got, name, v)
		}
	}
}

// TestAttackIdentityWhoIsAClient: a token is a client only when its sub is
// azp@clients or client_id@clients, or gty is client-credentials with an
// azp/client_id, or (RFC 9068) sub == client_id. Everything else is a user:
// a user whose sub merely ends in "@clients" must not borrow a client's
// identity, metadata or client-only routes.
func TestAttackIdentityWhoIsAClient(t *testing.T) {
	t.Parallel()
	w := newWorld(t, nil, nil,
		withMetadata("on_unknown: forward"),
		withUsers(
			`"auth0|eve@clients": {app_metadata: {plan: eve}}`,
			`"svc-billing@clients": {app_metadata: {plan: shadow}}`,
		))
	set := func(kv ...any) func(jwt.MapClaims) {
		return func(c jwt.MapClaims) {
			for i := 0; i < len(kv); i += 2 {
				c[kv[i].(string)] = kv[i+1]
			}
		}
	}
	iss := w.iss.URL
	client := func(id, tier string) wantHeaders {
		return wantHeaders{"X-Client-Kind": "client", "X-Client-Id": id, "X-User-Id": "", "X-Client-Metadata-Tier": tier,
			"X-Client-Metadata-Plan": "", "X-Client-Issuer": iss}
	}
	user := func(sub, clientID, plan string) wantHeaders {
		return wantHeaders{"X-Client-Kind": "user", "X-User-Id": sub, "X-Client-Id": clientID, "X-Client-Metadata-Plan": plan,
			"X-Client-Metadata-Tier": "", "X-Client-Name": "", "X-Client-Issuer": iss}
	}
	cases := []struct {
		name   string
		edit   func(jwt.MapClaims)
		want   wantHeaders
		client bool // passes callers: [client]
	}{
		{"Auth0 client-credentials token is a client", nil, client("svc-billing", "gold"), true},
		{"client_id@clients without azp is a client",
			set("azp", nil, "client_id", "svc-billing", "gty", nil), client("svc-billing", "gold"), true},
		{"RFC 9068 sub equal to client_id is a client",
			set("sub", "svc-billing", "azp", nil, "client_id", "svc-billing", "gty", nil), client("svc-billing", "gold"), true},
		{"gty client-credentials with azp is a client",
			set("sub", "some-subject"), client("svc-billing", "gold"), true},
		{"user whose sub ends in @clients stays a user",
			set("sub", "auth0|eve@clients", "azp", "spa-app", "gty", nil), user("auth0|eve@clients", "spa-app", "eve"), false},
		{"sub naming another client than azp is a user",
			set("sub", "svc-billing@clients", "azp", "spa-app", "gty", nil), user("svc-billing@clients", "spa-app", "shadow"), false},
		{"@clients sub without azp or client_id is a user",
			set("azp", nil, "gty", nil), user("svc-billing@clients", "", "shadow"), false},
		{"gty client-credentials without azp or client_id is a user",
			set("sub", "auth0|alice", "azp", nil), user("auth0|alice", "", "pro"), false},
		{"gty in another case is not client-credentials",
			set("sub", "auth0|alice", "azp", "spa-app", "gty", "Client-Credentials"), user("auth0|alice", "spa-app", "pro"), false},
		{"sub equal to azp without client_id is a user",
			set("sub", "svc-billing", "gty", nil), user("svc-billing", "svc-billing", ""), false},
		{"upper-case @CLIENTS is a user",
			set("sub", "svc-billing@CLIENTS", "gty", nil), user("svc-billing@CLIENTS", "svc-billing", ""), false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			tok := token(t, w.iss, "svc-billing", "read:things", c.edit)
			w.reset()
			req := rq("GET", "/opt/me", bearer(tok))
			r := send(t, w.gw.addr, req)
			expectStatus(t, req, r, 200)
			if h, ok := w.expectLanded(t, req, upOpt); ok {
				checkHeaders(t, req, h.Header, c.want)
			}
			w.reset()
			req = rq("GET", "/svc/x", bearer(tok))
			r = send(t, w.gw.addr, req)
			if c.client {
				expectStatus(t, req, r, 200)
				w.expectLanded(t, req, upSvc)
			} else {
				expectError(t, req, r, 403, "forbidden")
				w.expectNoUpstream(t, req)
			}
		})
	}
}

// TestAttackIssuerMetadataBelongsToOneTenant: with two issuers, metadata is
// served only to the issuer(s) in metadata.issuers (default: the first).
// A second tenant's "svc-billing@clients" is someone else's svc-billing:
// it never gets the first tenant's metadata, whichever of the two asks
// first. With metadata.on_unknown: forward it is forwarded with identity
// headers and X-Client-Issuer but no metadata headers; with the default
// (reject) the spec says the same, and a 403 unknown_caller is accepted
// too (fail-closed), but never metadata.
func TestAttackIssuerMetadataBelongsToOneTenant(t *testing.T) {
	t.Parallel()
	a, b := testenv.NewIssuer(t), testenv.NewIssuer(t)
	withMD := wantHeaders{"X-Client-Id": "svc-billing", "X-Client-Kind": "client", "X-Client-Metadata-Tier": "gold",
		"X-Client-Name": "Billing Service"}
	noMD := wantHeaders{"X-Client-Id": "svc-billing", "X-Client-Kind": "client", "X-Client-Metadata-Tier": "",
		"X-Client-Metadata": "", "X-Client-Metadata-Region": "", "X-Client-Name": ""}
	with := func(m wantHeaders, iss string) wantHeaders {
		out := wantHeaders{"X-Client-Issuer": iss}
		for k, v := range m {
			out[k] = v
		}
		return out
	}
	type step struct {
		who *testenv.Issuer
		md  bool // this issuer's callers get metadata
	}
	// check sends one request and asserts what the spec says for it.
	check := func(t *testing.T, w *world, forward bool, who *testenv.Issuer, md bool, req string, route string, want wantHeaders) {
		t.Helper()
		w.reset()
		r := send(t, w.gw.addr, req)
		if !md && !forward && r.Status == 403 {
			expectError(t, req, r, 403, "unknown_caller")
			w.expectNoUpstream(t, req)
			return
		}
		expectStatus(t, req, r, 200)
		if h, ok := w.expectLanded(t, req, route); ok {
			checkHeaders(t, req, h.Header, want)
		}
	}
	run := func(t *testing.T, w *world, forward bool, steps []step) {
		for i, s := range steps {
			want := with(noMD, s.who.URL)
			if s.md {
				want = with(withMD, s.who.URL)
			}
			req := rq("GET", "/svc/step-"+itoa(i), bearer(s.who.Token(t, "svc-billing")))
			check(t, w, forward, s.who, s.md, req, upSvc, want)
		}
	}
	for _, mode := range []struct {
		name    string
		forward bool
		opts    []option
	}{
		{"on_unknown forward", true, []option{withIssuers(a, b), withMetadata("on_unknown: forward")}},
		{"on_unknown reject", false, []option{withIssuers(a, b)}},
	} {
		t.Run(mode.name+": first tenant warms the cache, second tenant gets none of it", func(t *testing.T) {
			w := newWorld(t, a, nil, mode.opts...)
			run(t, w, mode.forward, []step{{a, true}, {b, false}, {a, true}, {b, false}})
		})
		t.Run(mode.name+": second tenant asks first and does not poison the first tenant", func(t *testing.T) {
			w := newWorld(t, a, nil, mode.opts...)
			run(t, w, mode.forward, []step{{b, false}, {a, true}, {b, false}})
		})
		t.Run(mode.name+": metadata.issuers names the second tenant", func(t *testing.T) {
			w := newWorld(t, a, nil, append(mode.opts, withMetadata("issuers: [\""+b.URL+"\"]"))...)
			run(t, w, mode.forward, []step{{b, true}, {a, false}, {b, true}})
		})
		t.Run(mode.name+": second tenant's user gets no app_metadata", func(t *testing.T) {
			w := newWorld(t, a, nil, mode.opts...)
			for _, is := range []*testenv.Issuer{a, b, a} {
				want := wantHeaders{"X-Client-Kind": "user", "X-User-Id": "auth0|alice", "X-Client-Metadata-Plan": "", "X-Client-Issuer": is.URL}
				if is == a {
					want["X-Client-Metadata-Plan"] = "pro"
				}
				req := rq("GET", "/opt/u", bearer(userToken(t, is, "auth0|alice", "read:things")))
				check(t, w, mode.forward, is, is == a, req, upOpt, want)
			}
		})
		t.Run(mode.name+": a forged X-Client-Issuer is replaced", func(t *testing.T) {
			w := newWorld(t, a, nil, mode.opts...)
			for _, forged := range []string{"X-Client-Issuer: " + a.URL, "x-client-issuer: " + a.URL, "X_Client_Issuer: " + a.URL} {
				req := rq("GET", "/svc/forged", bearer(b.Token(t, "svc-billing")), forged)
				check(t, w, mode.forward, b, false, req, upSvc, with(noMD, b.URL))
			}
		})
	}
}
