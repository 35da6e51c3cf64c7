package proxy

import (
	"net/http"
	"strings"

	"github.com/metagate/gateway/proxy/canon"
)

// The request model: what the gateway decided about one request, shared
// by every stage. A request is read once, here, into a canonical method,
// path and credential; routing, the policy check, the header mutation and
// the forwarded request all use that one reading (see canon.go).

// refusal is a request the gateway answers itself. It is the one shape of
// every stage's "no", so error bodies, challenges and counters never
// drift apart.
type refusal struct {
	status int
	code   string // the "error" field of the JSON body
	desc   string
	// reason labels auth failures (gateway_auth_failures_total) and the
	// access log; clientError labels gateway_client_errors_total. A
	// refusal has at most one of them.
	reason      Reason
	clientError string
	// challenge is the WWW-Authenticate value, "" for none.
	challenge  string
	retryAfter string
	closeConn  bool
}

func (rf *refusal) write(w http.ResponseWriter) {
	h := w.Header()
	if rf.challenge != "" {
		h.Set("WWW-Authenticate", rf.challenge)
	}
	if rf.retryAfter != "" {
		h.Set("Retry-After", rf.retryAfter)
	}
	if rf.closeConn {
		h.Set("Connection", "close")
	}
	writeError(w, rf.status, rf.code, rf.desc)
}

// clientRefusal is a 4xx for a request the gateway cannot read one way
// only; it is counted apart from upstream errors.
func clientRefusal(status int, code, desc string) *refusal {
	return &refusal{status: status, code: code, desc: desc, clientError: code}
}

// interpret reads the request into st: canonical method and path, the
// route, and the credential. It returns the refusal for a request that
// cannot be read one way only.
func (g *Gateway) interpret(r *http.Request, st *state) *refusal {
	st.method = canon.Method(r.Method)
	switch st.method {
	case http.MethodConnect, http.MethodTrace:
		// Nothing behind a gateway should be tunnelled to (CONNECT) or
		// echo the request with its credentials back (TRACE).
		return clientRefusal(http.StatusMethodNotAllowed, "method_not_allowed", "The "+st.method+" method is not allowed")
	}
	p, why := canon.ParsePath(r.URL.EscapedPath())
	if why != "" {
		return clientRefusal(http.StatusBadRequest, "invalid_path", string(why))
	}
	st.path = p
	if why := canon.CheckQuery(r.URL.RawQuery); why != "" {
		return clientRefusal(http.StatusBadRequest, "invalid_query", string(why))
	}
	for _, rt := range g.routes {
		if n, ok := rt.matches(st.method, r.Host, p.Match); ok {
			st.route, st.matched = rt, n
			break
		}
	}
	if st.route == nil {
		return &refusal{status: http.StatusNotFound, code: "not_found", desc: "No route matches this request"}
	}
	if p.EncodedSlash && !st.route.AllowEncodedSlash {
		return clientRefusal(http.StatusBadRequest, "invalid_path", string(canon.RefuseEncodedSlash))
	}
	if rf := checkUpgrade(st.method, r.Header); rf != nil {
		return rf
	}
	tok, err := bearerToken(r.Header)
	if err != nil {
		return g.authRefusal(ReasonBadRequest)
	}
	st.credential = tok
	return nil
}

// checkUpgrade lets only a WebSocket handshake through. Any other Upgrade
// (h2c, made-up protocols) would be tunnelled as raw bytes after a 101,
// past every check the gateway makes on HTTP requests.
func checkUpgrade(method string, h http.Header) *refusal {
	vals := h["Upgrade"]
	if len(vals) == 0 {
		return nil
	}
	if len(vals) == 1 && strings.EqualFold(vals[0], "websocket") && method == http.MethodGet {
		return nil
	}
	return clientRefusal(http.StatusBadRequest, "upgrade_not_allowed", "Only a WebSocket upgrade (GET, Upgrade: websocket) is allowed")
}
