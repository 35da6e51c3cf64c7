package proxy

import (
	"net"
	"net/http"
	"net/url"
	"path"
	"strings"
	"time"

	"github.com/metagate/gateway/enrich"
)

// RouteConfig is one validated route: what it matches, where it forwards,
// and the policy a request must pass on the way.
type RouteConfig struct {
	Name string
	// Hosts are exact host names or "*.example.com" (one label, as in a
	// Kubernetes Ingress); empty matches any host.
	Hosts []string
	// PathPrefix matches whole segments of the cleaned path; Path matches
	// it exactly. One of them is set.
	PathPrefix string
	Path       string
	// Methods limits the route to these methods; empty allows any.
	Methods   []string
	Upstreams []*url.URL
	// StripPrefix is removed from the forwarded path and AddPrefix put in
	// its place ("/orders/x" → "/v1/x").
	StripPrefix string
	AddPrefix   string
	Auth        AuthMode
	Policy      Policy
	// MaxBodyBytes limits the request body (413 beyond it); 0: no limit.
	MaxBodyBytes          int64
	DialTimeout           time.Duration
	ResponseHeaderTimeout time.Duration
	// H2C talks HTTP/2 without TLS to the upstreams (gRPC-style backends).
	H2C bool
	// Retry backs off a target that refused a connection for this long.
	UnhealthyFor time.Duration
}

// Policy is what a caller must bring to pass a route.
type Policy struct {
	// AllOf scopes must all be present; AnyOf needs at least one.
	AllOf []string
	AnyOf []string
	// Kinds limits callers to clients or users; empty allows both.
	Kinds []enrich.Kind
	// Audiences, when set, narrows the issuer's audiences for this route:
	// the token's aud must contain one of them.
	Audiences []string
	// MetadataKeys, when non-nil, is the allow-list of metadata keys that
	// become headers on this route (and turns the whole-object JSON header
	// off), so one upstream never sees another's data.
	MetadataKeys []string
}

type route struct {
	RouteConfig
	hosts    []string
	methods  map[string]bool
	allow    map[string]bool
	upstream *balancer
	proxy    http.Handler
}

func newRoute(rc RouteConfig) *route {
	rt := &route{RouteConfig: rc}
	for _, h := range rc.Hosts {
		rt.hosts = append(rt.hosts, strings.ToLower(h))
	}
	if len(rc.Methods) > 0 {
		rt.methods = map[string]bool{}
		for _, m := range rc.Methods {
			rt.methods[strings.ToUpper(m)] = true
		}
	}
	if rc.Policy.MetadataKeys != nil {
		rt.allow = map[string]bool{}
		for _, k := range rc.Policy.MetadataKeys {
			rt.allow[k] = true
		}
	}
	return rt
}

// matches reports whether the route takes a request for host and the
// cleaned path p.
func (rt *route) matches(method, host, p string) bool {
	if rt.methods != nil && !rt.methods[method] {
		return false
	}
	if len(rt.hosts) > 0 && !matchHost(rt.hosts, host) {
		return false
	}
	if rt.Path != "" {
		return p == rt.Path
	}
	return prefixMatch(p, rt.PathPrefix)
}

func matchHost(patterns []string, host string) bool {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.ToLower(host), ".")
	for _, p := range patterns {
		if suffix, ok := strings.CutPrefix(p, "*"); ok {
			label, rest, found := strings.Cut(host, ".")
			if found && label != "" && "."+rest == suffix {
				return true
			}
			continue
		}
		if p == host {
			return true
		}
	}
	return false
}

// cleanPath is the path used for matching and policy: decoded (so %2F
// and %2e%2e count as what they are), dot segments resolved and duplicate
// slashes folded, so "//admin", "/a/../admin" and "/a/%2e%2e/admin" are all
// "/admin". A trailing slash is kept: "/api/" is not "/api".
func cleanPath(p string) string {
	if p == "" || p[0] != '/' {
		p = "/" + p
	}
	cp := path.Clean(p)
	if cp != "/" && strings.HasSuffix(p, "/") {
		cp += "/"
	}
	return cp
}

// prefixMatch matches whole path segments: "/api" matches "/api" and
// "/api/x" but not "/apix"; a prefix ending in "/" matches what starts
// with it.
func prefixMatch(p, prefix string) bool {
	if !strings.HasPrefix(p, prefix) {
		return false
	}
	return len(p) == len(prefix) || strings.HasSuffix(prefix, "/") || p[len(prefix)] == '/'
}

// authorize applies the route policy to a verified token. It returns the
// scope to name in an insufficient_scope challenge, or ok.
func (rt *route) authorize(t *Token) (missingScope string, kindOK, audOK bool) {
	p := &rt.Policy
	kindOK = len(p.Kinds) == 0
	for _, k := range p.Kinds {
		kindOK = kindOK || k == t.Caller.Kind
	}
	audOK = len(p.Audiences) == 0
	for _, a := range p.Audiences {
		audOK = audOK || t.HasAudience(a)
	}
	for _, s := range p.AllOf {
		if !t.HasScope(s) {
			return strings.Join(p.AllOf, " "), kindOK, audOK
		}
	}
	if len(p.AnyOf) > 0 {
		for _, s := range p.AnyOf {
			if t.HasScope(s) {
				return "", kindOK, audOK
			}
		}
		return strings.Join(p.AnyOf, " "), kindOK, audOK
	}
	return "", kindOK, audOK
}

// forwardPath applies StripPrefix/AddPrefix to the path the client sent.
func (rt *route) forwardPath(u *url.URL) {
	if rt.StripPrefix == "" && rt.AddPrefix == "" {
		return
	}
	p := u.Path
	if rt.StripPrefix != "" {
		rest, ok := strings.CutPrefix(p, rt.StripPrefix)
		if !ok {
			rest, ok = strings.CutPrefix(cleanPath(p), rt.StripPrefix)
		}
		if ok {
			p = rest
		}
	}
	p = strings.TrimSuffix(rt.AddPrefix, "/") + "/" + strings.TrimPrefix(p, "/")
	u.Path, u.RawPath = p, ""
}
