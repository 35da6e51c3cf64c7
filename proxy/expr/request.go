package expr

import (
	"net/http"
	"net/url"
	"strings"
)

// allowedHeaders is the request headers an expression may read, in
// canonical form. Trusted headers are not here (the gateway sets them);
// neither is Authorization (claims say what it holds).
var allowedHeaders = [...]string{"Accept", "Accept-Language", "Content-Type", "Origin", "Referer", "User-Agent", "X-Request-Id"}

// AllowedHeaders lists the headers request.headers may hold.
func AllowedHeaders() []string { return append([]string(nil), allowedHeaders[:]...) }

// NewRequest is the request view of a canonical method and decoded path
// (canon.Path.Match), the route's path params, the raw query and the
// headers.
func NewRequest(method, path string, params map[string]string, rawQuery string, h http.Header) *Request {
	r := &Request{Method: method, Path: path, PathParams: params, Query: Query(rawQuery), Headers: Headers(h)}
	if r.PathParams == nil {
		r.PathParams = map[string]string{}
	}
	r.Segments = strings.Split(strings.Trim(path, "/"), "/")
	if len(r.Segments) == 1 && r.Segments[0] == "" {
		r.Segments = []string{}
	}
	return r
}

// Query reads a raw query into request.query: names lower-cased, values
// decoded. A name that appears twice under any spelling a framework
// reads as one (case, as ASP.NET folds it; "." and " " as PHP turns them
// into "_"; "a[]" and "a[k]", which PHP and Rails read as a) is left out: frameworks disagree on which of two values wins
// (Spring and Express the first or both, PHP the last), and a policy
// must not decide on one while the upstream reads the other.
func Query(raw string) map[string]string {
	out := map[string]string{}
	if raw == "" {
		return out
	}
	type param struct{ norm, name, value string }
	var params []param
	seen := map[string]int{}
	fold := strings.NewReplacer(".", "_", " ", "_")
	for raw != "" {
		var kv string
		kv, raw, _ = strings.Cut(raw, "&")
		if kv == "" {
			continue
		}
		k, v, _ := strings.Cut(kv, "=")
		dk, err1 := url.QueryUnescape(k)
		dv, err2 := url.QueryUnescape(v)
		name := strings.ToLower(dk)
		base, _, _ := strings.Cut(name, "[") // PHP and Rails read a[]= and a[x]= as a
		norm := fold.Replace(base)
		seen[norm]++
		if err1 != nil || err2 != nil {
			seen[norm]++ // unreadable: as ambiguous as a repeat
			continue
		}
		params = append(params, param{norm, name, dv})
	}
	for _, p := range params {
		if seen[p.norm] == 1 {
			out[p.name] = p.value
		}
	}
	return out
}

// Headers reads the allow-listed headers into request.headers, by
// lower-case name. A header sent more than once is left out, for the
// reason Query gives, and so is one also sent with '_' for '-'
// ("User_Agent"), which CGI-style servers read as the same header.
func Headers(h http.Header) map[string]string {
	out := make(map[string]string, len(allowedHeaders))
	for _, name := range allowedHeaders {
		v := h[name]
		if len(v) != 1 || hasUnderscoreTwin(h, name) {
			continue
		}
		out[strings.ToLower(name)] = v[0]
	}
	return out
}

func hasUnderscoreTwin(h http.Header, name string) bool {
	if !strings.Contains(name, "-") {
		return false
	}
	for k := range h {
		if strings.IndexByte(k, '_') >= 0 && strings.EqualFold(strings.ReplaceAll(k, "_", "-"), name) {
			return true
		}
	}
	return false
}
