package attack

import (
	"strings"
	"testing"
)

// spellings returns name as a client might send it: canonical, lower,
// upper, with underscores, and with mixed separators.
func spellings(name string) []string {
	under := strings.ReplaceAll(name, "-", "_")
	out := []string{name, strings.ToLower(name), strings.ToUpper(name), under, strings.ToLower(under)}
	if i := strings.LastIndexByte(name, '-'); i > 0 {
		out = append(out, name[:i]+"_"+name[i+1:])
	}
	return out
}

var rewriteHeaders = []string{"X-Original-URL", "X-Rewrite-URL", "X-Original-URI", "X-Override-URL"}

var methodOverrideHeaders = []string{"X-HTTP-Method-Override", "X-HTTP-Method", "X-Method-Override"}

var untrustedHeaders = []string{"Forwarded", "X-Real-IP", "True-Client-IP", "CF-Connecting-IP", "Fastly-Client-IP",
	"X-Cluster-Client-IP", "X-Forwarded-Server", "X-Forwarded-Port", "X-Forwarded-Prefix", "X-Forwarded-Scheme",
	"X-Forwarded-Ssl", "X-Url-Scheme", "Front-End-Https", "X-Host"}

// TestAttackRewriteURLHeadersNeverReachTheUpstream: X-Original-URL and
// friends make some frameworks route on the header instead of the path, so
// "GET /pub" with "X-Original-URL: /admin" would reach the admin handler
// behind a public route. They are removed in every spelling.
func TestAttackRewriteURLHeadersNeverReachTheUpstream(t *testing.T) {
	t.Parallel()
	w := newWorld(t, nil, nil)
	for _, name := range rewriteHeaders {
		for _, sp := range spellings(name) {
			t.Run(sp, func(t *testing.T) {
				w.reset()
				req := rq("GET", "/pub/x", sp+": /admin/users")
				r := send(t, w.gw.addr, req)
				expectStatus(t, req, r, 200)
				if h, ok := w.expectLanded(t, req, upPub); ok {
					if got := headersNamed(h.Header, name); len(got) > 0 {
						t.Errorf("request %q: upstream received %v", req, got)
					}
					if h.RequestURI != "/pub/x" {
						t.Errorf("request %q: upstream received target %q", req, h.RequestURI)
					}
				}
			})
		}
	}
}

// TestAttackRewriteMethodOverrideHeaders: X-HTTP-Method-Override and
// friends would let a GET that passed the read route's policy act as a
// DELETE in frameworks that honour them; they are removed in every spelling
// and the method the route was chosen by is the one forwarded.
func TestAttackRewriteMethodOverrideHeaders(t *testing.T) {
	t.Parallel()
	w := newWorld(t, nil, nil)
	read := token(t, w.iss, "svc-billing", "read:inv", nil)
	for _, name := range methodOverrideHeaders {
		for _, sp := range spellings(name) {
			t.Run(sp, func(t *testing.T) {
				w.reset()
				req := rq("GET", "/inv/42", bearer(read), sp+": DELETE")
				r := send(t, w.gw.addr, req)
				expectStatus(t, req, r, 200)
				if h, ok := w.expectLanded(t, req, upInvRead); ok {
					if got := headersNamed(h.Header, name); len(got) > 0 {
						t.Errorf("request %q: upstream received %v", req, got)
					}
					if h.Method != "GET" {
						t.Errorf("request %q: upstream saw %s", req, h.Method)
					}
				}
			})
		}
	}
}

// TestAttackUntrustedHeadersAreStripped: client-IP, scheme and host hints
// from an untrusted client are removed in every spelling, and X-Forwarded-*
// are the gateway's own.
func TestAttackUntrustedHeadersAreStripped(t *testing.T) {
	t.Parallel()
	w := newWorld(t, nil, nil)
	for _, name := range untrustedHeaders {
		for _, sp := range spellings(name) {
			t.Run(sp, func(t *testing.T) {
				w.reset()
				v := "10.0.0.1"
				if name == "Forwarded" {
					v = "for=10.0.0.1;proto=https;host=admin.internal"
				}
				req := rq("GET", "/pub/x", sp+": "+v)
				r := send(t, w.gw.addr, req)
				expectStatus(t, req, r, 200)
				if h, ok := w.expectLanded(t, req, upPub); ok {
					if got := headersNamed(h.Header, name); len(got) > 0 {
						t.Errorf("request %q: upstream received %v", req, got)
					}
				}
			})
		}
	}
	t.Run("X-Forwarded-For/-Host/-Proto are replaced", func(t *testing.T) {
		w.reset()
		req := rq("GET", "/pub/x", "X-Forwarded-For: 10.0.0.1", "X-Forwarded-Host: admin.internal", "X-Forwarded-Proto: https")
		r := send(t, w.gw.addr, req)
		expectStatus(t, req, r, 200)
		if h, ok := w.expectLanded(t, req, upPub); ok {
			checkHeaders(t, req, h.Header, wantHeaders{"X-Forwarded-For": "127.0.0.1", "X-Forwarded-Host": "gw.test", "X-Forwarded-Proto": "http"})
		}
	})
	// Beyond the spec's list: the underscore twins of the three headers the
	// gateway replaces. Servers that fold '_' to '-' (CGI/WSGI environ,
	// some nginx setups) would read them as the real thing.
	for _, sp := range []string{"X_Forwarded_For", "x_forwarded_for", "X_Forwarded_Host", "X_Forwarded_Proto", "X-Forwarded_For"} {
		t.Run("underscore twin "+sp, func(t *testing.T) {
			w.reset()
			req := rq("GET", "/pub/x", sp+": 10.0.0.1")
			r := send(t, w.gw.addr, req)
			expectStatus(t, req, r, 200)
			if h, ok := w.expectLanded(t, req, upPub); ok {
				for k, vs := range h.Header {
					if foldName(k) == foldName(sp) && strings.Contains(strings.Join(vs, ","), "10.0.0.1") {
						t.Errorf("request %q: upstream received %s: %v", req, k, vs)
					}
				}
			}
		})
	}
}

// TestAttackUntrustedHeadersConfigReplacesTheList: headers.strip_untrusted
// replaces the built-in list.
func TestAttackUntrustedHeadersConfigReplacesTheList(t *testing.T) {
	t.Parallel()
	w := newWorld(t, nil, nil, withHeaders("strip_untrusted: [X-Evil, X-Original-URL]"))
	cases := []struct {
		header   string
		stripped bool
	}{
		{"X-Evil: 1", true}, {"x_evil: 1", true}, {"X-EVIL: 1", true},
		{"X-Original-URL: /admin", true}, {"x_original_url: /admin", true},
		{"X-Real-IP: 10.0.0.1", false},
	}
	for _, c := range cases {
		t.Run(c.header, func(t *testing.T) {
			w.reset()
			req := rq("GET", "/pub/x", c.header)
			r := send(t, w.gw.addr, req)
			expectStatus(t, req, r, 200)
			name, _, _ := strings.Cut(c.header, ":")
			if h, ok := w.expectLanded(t, req, upPub); ok {
				got := headersNamed(h.Header, name)
				if c.stripped && len(got) > 0 {
					t.Errorf("request %q: upstream received %v, want it stripped", req, got)
				}
				if !c.stripped && len(got) != 1 {
					t.Errorf("request %q: upstream received %v, want it kept (strip_untrusted replaces the list)", req, got)
				}
			}
		})
	}
}

// TestAttackUntrustedHeadersTrustedNamespace: nothing a client sends in
// X-Client-* / X-User-* arrives, in any spelling, and naming the gateway's
// own headers in Connection does not remove them.
func TestAttackUntrustedHeadersTrustedNamespace(t *testing.T) {
	t.Parallel()
	w := newWorld(t, nil, nil)
	tok := token(t, w.iss, "svc-billing", "admin", nil)
	forged := []string{"X-Client-Id: forged", "x-client-id: forged", "X_Client_Id: forged", "x_client_id: forged",
		"X-CLIENT-KIND: user", "X-Client-Metadata-Tier: platinum", "X_Client_Metadata_Tier: platinum",
		"X-Client-Metadata: {\"tier\":\"platinum\"}", "X-User-Id: auth0|root", "x_user_id: auth0|root",
		"X-Client-Issuer: https://evil/", "X-Client-Scopes: admin", "X-Client-Name: Root"}
	for _, f := range forged {
		t.Run("public route drops "+f, func(t *testing.T) {
			w.reset()
			req := rq("GET", "/pub/x", f)
			r := send(t, w.gw.addr, req)
			expectStatus(t, req, r, 200)
			if h, ok := w.expectLanded(t, req, upPub); ok {
				for k, vs := range h.Header {
					fk := foldName(k)
					if strings.HasPrefix(fk, "x-client-") || strings.HasPrefix(fk, "x-user-") {
						t.Errorf("request %q: upstream received %s: %v", req, k, vs)
					}
				}
			}
		})
		t.Run("admin route replaces "+f, func(t *testing.T) {
			w.reset()
			req := rq("GET", "/admin", bearer(tok), f)
			r := send(t, w.gw.addr, req)
			expectStatus(t, req, r, 200)
			if h, ok := w.expectLanded(t, req, upAdmin); ok {
				checkHeaders(t, req, h.Header, wantHeaders{"X-Client-Id": "svc-billing", "X-Client-Kind": "client",
					"X-Client-Metadata-Tier": "gold", "X-User-Id": "", "X-Client-Scopes": "admin",
					"X-Client-Issuer": w.iss.URL, "X-Client-Name": "Billing Service"})
			}
		})
	}
	for _, conn := range []string{"Connection: X-Client-Id", "Connection: X-Client-Id, X-Client-Kind, X-Client-Issuer",
		"Connection: close, X-Client-Metadata-Tier", "Connection: x-client-scopes", "Connection: X-Client-Metadata"} {
		t.Run(conn, func(t *testing.T) {
			w.reset()
			req := rq("GET", "/admin", bearer(tok), conn)
			r := send(t, w.gw.addr, req)
			expectStatus(t, req, r, 200)
			if h, ok := w.expectLanded(t, req, upAdmin); ok {
				checkHeaders(t, req, h.Header, wantHeaders{"X-Client-Id": "svc-billing", "X-Client-Kind": "client",
					"X-Client-Metadata-Tier": "gold", "X-Client-Scopes": "admin", "X-Client-Issuer": w.iss.URL})
				if !strings.Contains(h.Header.Get("X-Client-Metadata"), "gold") {
					t.Errorf("request %q: X-Client-Metadata %q", req, h.Header.Get("X-Client-Metadata"))
				}
			}
		})
	}
}

// TestAttackUntrustedHeadersInTrailers: a chunked body may end with
// trailer fields (announced in "Trailer:"); some servers merge them into
// the headers. Nothing in the trusted namespace, nor a rewrite header,
// reaches the upstream as a trailer with a value.
func TestAttackUntrustedHeadersInTrailers(t *testing.T) {
	t.Parallel()
	w := newWorld(t, nil, nil)
	tok := token(t, w.iss, "svc-billing", "admin", nil)
	for _, target := range []string{"/pub/upload", "/admin/upload"} {
		t.Run(target, func(t *testing.T) {
			w.reset()
			req := "POST " + target + " HTTP/1.1\r\nHost: gw.test\r\n" + bearer(tok) + "\r\nTransfer-Encoding: chunked\r\n" +
				"Trailer: X-Client-Id, X-Client-Kind, X-Original-URL\r\n\r\n3\r\nabc\r\n0\r\n" +
				"X-Client-Id: forged\r\nX-Client-Kind: user\r\nX-Original-URL: /admin\r\n\r\n"
			r := send(t, w.gw.addr, req)
			expectStatus(t, req, r, 200)
			for _, h := range w.landed() {
				for k, vs := range h.Trailer {
					for _, v := range vs {
						if v != "" {
							t.Errorf("request %q: upstream %s received trailer %s: %s", req, h.Upstream, k, v)
						}
					}
				}
				if got := h.Header.Values("X-Client-Id"); target == "/admin/upload" && (len(got) != 1 || got[0] != "svc-billing") {
					t.Errorf("request %q: X-Client-Id %q", req, got)
				}
			}
		})
	}
}

// TestAttackForgedAssertionNeverReachesTheUpstream: an upstream that
// verifies X-Gateway-Assertion must never get one a client brought (a
// replayed one would verify). It is outside the trusted namespace, so it
// is removed by name, in every spelling, even while assertion.enabled is
// false, and on public and authenticated routes alike.
func TestAttackForgedAssertionNeverReachesTheUpstream(t *testing.T) {
	t.Parallel()
	w := newWorld(t, nil, nil)
	tok := w.iss.Token(t, "svc-billing")
	for _, tc := range []struct{ path, up, auth string }{{"/pub/x", upPub, ""}, {"/svc/1", upSvc, bearer(tok)}} {
		for _, sp := range spellings("X-Gateway-Assertion") {
			t.Run(tc.up+"/"+sp, func(t *testing.T) {
				w.reset()
				headers := []string{sp + ": eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJhZG1pbiJ9.c2ln"}
				if tc.auth != "" {
					headers = append(headers, tc.auth)
				}
				req := rq("GET", tc.path, headers...)
				r := send(t, w.gw.addr, req)
				expectStatus(t, req, r, 200)
				if h, ok := w.expectLanded(t, req, tc.up); ok {
					if got := headersNamed(h.Header, "X-Gateway-Assertion"); len(got) > 0 {
						t.Errorf("request %q: upstream received %v", req, got)
					}
				}
			})
		}
	}
}
