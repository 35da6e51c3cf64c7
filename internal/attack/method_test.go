package attack

import (
	"testing"
)

// TestAttackMethodCaseReachesTheRightRoute: methods are matched
// case-insensitively and forwarded upper-cased, so a lower-case DELETE is
// held to the write route's policy instead of slipping past it to the read
// route (which takes any method).
func TestAttackMethodCaseReachesTheRightRoute(t *testing.T) {
	t.Parallel()
	w := newWorld(t, nil, nil)
	read := token(t, w.iss, "svc-billing", "read:inv", nil)
	write := token(t, w.iss, "svc-billing", "read:inv write:inv", nil)
	cases := []struct {
		name, method, tok string
		status            int
		route, upMethod   string
	}{
		{"lower-case delete reaches the write route", "delete", write, 200, upInvWrite, "DELETE"},
		{"title-case Delete reaches the write route", "Delete", write, 200, upInvWrite, "DELETE"},
		{"mixed-case dElEtE reaches the write route", "dElEtE", write, 200, upInvWrite, "DELETE"},
		{"lower-case post reaches the write route", "post", write, 200, upInvWrite, "POST"},
		{"lower-case put reaches the write route", "put", write, 200, upInvWrite, "PUT"},
		{"lower-case patch reaches the write route", "patch", write, 200, upInvWrite, "PATCH"},
		{"lower-case delete with a read token is refused by the write route", "delete", read, 403, "", ""},
		{"title-case Delete with a read token is refused", "Delete", read, 403, "", ""},
		{"lower-case post with a read token is refused", "post", read, 403, "", ""},
		{"mixed-case pAtCh with a read token is refused", "pAtCh", read, 403, "", ""},
		{"lower-case put with a read token is refused", "put", read, 403, "", ""},
		{"upper-case DELETE with a read token is refused", "DELETE", read, 403, "", ""},
		{"lower-case get reaches the read route upper-cased", "get", read, 200, upInvRead, "GET"},
		{"upper-case GET reaches the read route", "GET", read, 200, upInvRead, "GET"},
		{"lower-case options reaches the read route upper-cased", "options", read, 200, upInvRead, "OPTIONS"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			w.reset()
			req := rq(c.method, "/inv/42", bearer(c.tok), "Content-Length: 0")
			r := send(t, w.gw.addr, req)
			if c.status == 403 {
				expectError(t, req, r, 403, "insufficient_scope")
			} else {
				expectStatus(t, req, r, c.status)
			}
			if c.route == "" {
				w.expectNoUpstream(t, req)
				return
			}
			if h, ok := w.expectLanded(t, req, c.route); ok && h.Method != c.upMethod {
				t.Errorf("request %q: upstream %s saw method %q, want %q", req, c.route, h.Method, c.upMethod)
			}
		})
	}
}

// TestAttackMethodTraceAndConnectAreRefused: TRACE (reflects headers,
// Authorization included) and CONNECT (tunnels) get 405 in any case, on
// every route, and reach no upstream.
func TestAttackMethodTraceAndConnectAreRefused(t *testing.T) {
	t.Parallel()
	w := newWorld(t, nil, nil)
	admin := token(t, w.iss, "svc-billing", "admin read:inv write:inv", nil)
	for _, method := range []string{"TRACE", "trace", "Trace", "tRaCe", "CONNECT", "connect", "Connect"} {
		for _, target := range []string{"/pub", "/admin", "/inv/42", "/opt"} {
			t.Run(method+" "+target, func(t *testing.T) {
				w.reset()
				req := rq(method, target, bearer(admin))
				r := send(t, w.gw.addr, req)
				expectError(t, req, r, 405, "method_not_allowed")
				w.expectNoUpstream(t, req)
			})
		}
	}
	t.Run("CONNECT in authority form", func(t *testing.T) {
		w.reset()
		req := rq("CONNECT", "upstream.internal:443")
		r := send(t, w.gw.addr, req)
		if r.Status != 405 && r.Status != 400 {
			t.Errorf("request %q: got %s, want 405 (or 400)", req, r)
		}
		w.expectNoUpstream(t, req)
	})
}

// TestAttackMethodBeyondSpecTrack goes past the spec: TRACK is IIS's
// TRACE (it reflects the request, Authorization and X-Client-* included),
// so it is refused like TRACE.
func TestAttackMethodBeyondSpecTrack(t *testing.T) {
	t.Parallel()
	w := newWorld(t, nil, nil)
	for _, method := range []string{"TRACK", "track"} {
		t.Run(method, func(t *testing.T) {
			w.reset()
			req := rq(method, "/pub")
			r := send(t, w.gw.addr, req)
			expectError(t, req, r, 405, "method_not_allowed")
			w.expectNoUpstream(t, req)
		})
	}
}

// TestAttackMethodExtensionsNeedAnExplicitRoute: WebDAV and other
// extension methods (some servers treat them as writes) never fall
// through to a route that lists no methods, such as the read route,
// which a read-only token passes.
func TestAttackMethodExtensionsNeedAnExplicitRoute(t *testing.T) {
	t.Parallel()
	w := newWorld(t, nil, nil)
	reader := token(t, w.iss, "svc-billing", "read:inv", nil)
	for _, method := range []string{"PROPFIND", "propfind", "MOVE", "COPY", "MKCOL", "LOCK", "PROPPATCH", "DEBUG", "PURGE"} {
		for _, target := range []string{"/inv/42", "/pub/x"} {
			t.Run(method+" "+target, func(t *testing.T) {
				w.reset()
				req := rq(method, target, bearer(reader))
				r := send(t, w.gw.addr, req)
				expectError(t, req, r, 405, "method_not_allowed")
				w.expectNoUpstream(t, req)
			})
		}
	}
}
