package proxy

import (
	"net/http"
	"net/url"
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
	// route is named in the body of a policy (allow_if) refusal.
	route string
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
	writeErrorBody(w, rf.status, errorBody{Error: rf.code, Description: rf.desc, Route: rf.route})
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
	case http.MethodConnect, http.MethodTrace, "TRACK":
		// Nothing behind a gateway should be tunnelled to (CONNECT) or
		// echo the request with its credentials back (TRACE, and IIS's
		// TRACK).
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
	for _, ep := range g.endpoints {
		if n, ok := canon.FoldPrefix(p.Match, ep.folded); ok && n == len(p.Match) {
			st.endpoint = ep.h
			return nil
		}
	}
	st.route, st.matched = g.match(st.method, r.Host, p.Match)
	if rf := g.checkCompat(st, r.Host); rf != nil {
		return rf
	}
	if st.route == nil {
		if !canon.Standard(st.method) {
			return clientRefusal(http.StatusMethodNotAllowed, "method_not_allowed", "The "+st.method+" method is only allowed on routes that list it")
		}
		return &refusal{status: http.StatusNotFound, code: "not_found", desc: "No route matches this request"}
	}
	if p.EncodedSlash && !st.route.AllowEncodedSlash {
		return clientRefusal(http.StatusBadRequest, "invalid_path", string(canon.RefuseEncodedSlash))
	}
	if rf := checkUpgrade(st.method, r.Header); rf != nil {
		return rf
	}
	tok, err := bearerToken(r.Header)
	if err != nil || queryCredential(r.URL.RawQuery) {
		return g.authRefusal(ReasonBadRequest)
	}
	st.credential = tok
	return nil
}

// match picks the first route that takes the canonical method and path.
func (g *Gateway) match(method, host, path string) (*route, int) {
	for _, rt := range g.routes {
		if n, ok := rt.matches(method, host, path); ok {
			return rt, n
		}
	}
	return nil, 0
}

// checkCompat refuses a path whose Unicode compatibility form (NFKC) a
// normalising upstream would read as another route's path ("/ａdmin" on a
// public catch-all when "/admin" is protected), or as a path the rules
// refuse ("/pub／..／admin").
func (g *Gateway) checkCompat(st *state, host string) *refusal {
	nf, changed := canon.Compat(st.path.Match)
	if !changed {
		return nil
	}
	np, why := canon.ParsePath(nf)
	if why != "" {
		return clientRefusal(http.StatusBadRequest, "invalid_path", "Under Unicode compatibility (NFKC): "+string(why))
	}
	if rt, _ := g.match(st.method, host, np.Match); rt != st.route {
		return clientRefusal(http.StatusBadRequest, "invalid_path", "The request path is a Unicode look-alike (NFKC) of another route's path")
	}
	return nil
}

// queryCredential reports an access_token query parameter (RFC 6750
// §2.3). The gateway never reads it, so it must not reach an upstream that
// might.
func queryCredential(q string) bool {
	for q != "" {
		var kv string
		kv, q, _ = strings.Cut(q, "&")
		k, _, _ := strings.Cut(kv, "=")
		if strings.IndexByte(k, '%') >= 0 || strings.IndexByte(k, '+') >= 0 {
			if u, err := url.QueryUnescape(k); err == nil {
				k = u
			}
		}
		if strings.EqualFold(k, "access_token") {
			return true
		}
	}
	return false
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
