package proxy

import (
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/metagate/gateway/enrich"
	"github.com/metagate/gateway/proxy/canon"
	"github.com/metagate/gateway/proxy/expr"
)

// RouteConfig is one validated route: what it matches, where it forwards,
// and the policy a request must pass on the way.
type RouteConfig struct {
	Name string
	// Hosts are exact host names or "*.example.com" (one label, as in a
	// Kubernetes Ingress); empty matches any host.
	Hosts []string
	// PathPrefix matches whole segments of the canonical path; Path
	// matches it exactly, or, written as a template with {params}
	// ("/tenants/{tenant}/invoices/{id}", see canon.Template), segment by
	// segment. One of them is set, written decoded and canonical (config
	// validation checks it with CheckPattern or canon.ParseTemplate).
	// Both match case-insensitively.
	PathPrefix string
	Path       string
	// AllowEncodedSlash lets "%2F" through on this route (relax:
	// [encoded_slash]); it stays encoded and never separates segments.
	AllowEncodedSlash bool
	// Methods limits the route to these methods (compared upper-cased);
	// empty allows any.
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
	// MaxUpstreamConns caps connections to each of this route's targets;
	// 0 keeps the shared transport's cap.
	MaxUpstreamConns int
	// AssertionAudience is the aud of the gateway assertion on this route
	// (Options.Assertion).
	AssertionAudience string
	// RateLimit, when not nil, counts each caller's requests on this
	// route (Options.RateLimiter).
	RateLimit *RouteRateLimit
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
	// AllowIf, when not nil, must hold once the caller's metadata is
	// resolved (routes[].allow_if); its expressions read the token's
	// claims, so the Verifier must keep them (VerifierOptions.KeepClaims).
	AllowIf *expr.Program
}

type route struct {
	RouteConfig
	hosts   []string
	methods map[string]bool
	allow   map[string]bool
	// pattern is Path or PathPrefix; foldedPattern is it case-folded for
	// matching, foldedStrip likewise for StripPrefix. foldedAlt is the
	// pattern with its trailing slash toggled, for the exact matches
	// frameworks treat as the same path ("" for "/").
	pattern, foldedPattern, foldedAlt, foldedStrip string
	// tmpl is Path as a template when it has {params}; nil otherwise.
	// A template that does not parse (config validation refuses it)
	// matches nothing.
	tmpl     *canon.Template
	badTmpl  bool
	upstream *balancer
	proxy    http.Handler
}

func newRoute(rc RouteConfig) *route {
	rt := &route{RouteConfig: rc, pattern: rc.PathPrefix}
	if rc.Path != "" {
		rt.pattern = rc.Path
	}
	rt.foldedPattern = canon.Fold(rt.pattern)
	if alt, ok := strings.CutSuffix(rt.pattern, "/"); ok && alt != "" {
		rt.foldedAlt = canon.Fold(alt)
	} else if !ok {
		rt.foldedAlt = canon.Fold(rt.pattern + "/")
	}
	rt.foldedStrip = canon.Fold(rc.StripPrefix)
	if canon.IsTemplate(rc.Path) {
		t, err := canon.ParseTemplate(rc.Path)
		rt.tmpl, rt.badTmpl = t, err != nil
	}
	for _, h := range rc.Hosts {
		rt.hosts = append(rt.hosts, strings.ToLower(h))
	}
	if len(rc.Methods) > 0 {
		rt.methods = map[string]bool{}
		for _, m := range rc.Methods {
			rt.methods[canon.Method(m)] = true
		}
	}
	rt.allow = rc.Policy.allowSet()
	return rt
}

// allowSet is MetadataKeys as a set, nil when every key is forwarded.
func (p *Policy) allowSet() map[string]bool {
	if p.MetadataKeys == nil {
		return nil
	}
	allow := make(map[string]bool, len(p.MetadataKeys))
	for _, k := range p.MetadataKeys {
		allow[k] = true
	}
	return allow
}

// matches reports whether the route takes a request with the canonical
// method and path for host, and how many bytes of p the pattern covered.
// Paths match case-insensitively (see canon.Fold), so a framework that
// folds case cannot reach a handler under a looser route's policy.
func (rt *route) matches(method, host string, p string) (int, bool) {
	if rt.methods != nil && !rt.methods[method] || rt.methods == nil && !canon.Standard(method) {
		return 0, false
	}
	if len(rt.hosts) > 0 && !matchHost(rt.hosts, host) {
		return 0, false
	}
	if rt.tmpl != nil || rt.badTmpl {
		return len(p), !rt.badTmpl && rt.tmpl.Match(p)
	}
	// Spring (before 6) and Express (non-strict routing) read "/admin/"
	// and "/admin" as one path, so the route's pattern takes both
	// exactly: a prefix "/admin/" takes "/admin", a path "/admin" takes
	// "/admin/". Either way the upstream is sent the pattern's spelling.
	if rt.foldedAlt != "" && (rt.Path != "" || strings.HasSuffix(rt.pattern, "/")) {
		if n, ok := canon.FoldPrefix(p, rt.foldedAlt); ok && n == len(p) {
			return n, true
		}
	}
	n, ok := canon.FoldPrefix(p, rt.foldedPattern)
	if !ok {
		return 0, false
	}
	if rt.Path != "" {
		return n, n == len(p)
	}
	return n, segmentEnd(p, n, rt.pattern)
}

// segmentEnd reports whether a prefix match of n bytes ends on a segment
// boundary: "/api" matches "/api" and "/api/x" but not "/apix"; a prefix
// ending in "/" matches what starts with it.
func segmentEnd(p string, n int, prefix string) bool {
	return n == len(p) || strings.HasSuffix(prefix, "/") || p[n] == '/'
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

// forwardPath is the canonical escaped path the upstream receives: the
// part the route pattern matched is spelled as the pattern (so "/ADMIN/x"
// matched by "/admin" is sent as "/admin/x", and a case-sensitive upstream
// reads the path the policy was decided on), then StripPrefix and
// AddPrefix apply to whole segments of that canonical path. It never sees
// dot segments or encoded separators: canon.ParsePath refused them.
func (rt *route) forwardPath(p canon.Path, matched int) string {
	m := p.Match
	var respelled bool
	if rt.tmpl != nil {
		m = rt.tmpl.Respell(m)
		respelled = m != p.Match
	} else if respelled = m[:matched] != rt.pattern; respelled {
		m = rt.pattern + m[matched:]
	}
	if rt.StripPrefix == "" && rt.AddPrefix == "" {
		if !respelled {
			return p.Escaped
		}
		return canon.EscapeMatch(m)
	}
	if rt.StripPrefix != "" {
		if n, ok := canon.FoldPrefix(m, rt.foldedStrip); ok && segmentEnd(m, n, rt.StripPrefix) {
			m = m[n:]
		}
	}
	m = strings.TrimSuffix(rt.AddPrefix, "/") + "/" + strings.TrimPrefix(m, "/")
	return canon.EscapeMatch(m)
}
