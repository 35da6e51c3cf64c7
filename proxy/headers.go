package proxy

import (
	"net/http"
	"sync"
	"unicode/utf8"

	"github.com/metagate/gateway/enrich"
)

// HeaderConfig names the trusted headers. An empty name turns that header
// off. Every name lies inside Namespace (config validation guarantees it),
// so anything a client sends under those names is removed first.
type HeaderConfig struct {
	Namespace      []string
	ClientID       string
	ClientName     string
	Kind           string
	Scopes         string
	UserID         string
	MetadataPrefix string
	MetadataJSON   string
	// UserMetadataJSON carries user_metadata (user-editable, so never
	// trusted as authorization data) when the source provides it.
	UserMetadataJSON string
	MaxValueBytes    int
	MaxJSONBytes     int
}

// headerWriter is the one place trusted headers are removed and set.
type headerWriter struct {
	cfg   HeaderConfig
	names sync.Map // metadata Field.Name → full header name
}

func newHeaderWriter(cfg HeaderConfig) *headerWriter {
	for i, ns := range cfg.Namespace {
		cfg.Namespace[i] = http.CanonicalHeaderKey(ns)
	}
	return &headerWriter{cfg: cfg}
}

// strip deletes every header in the trusted namespace, whatever its case or
// spelling with underscores. It runs on the outgoing request inside
// ReverseProxy.Rewrite, after hop-by-hop headers (and anything listed in
// Connection) are gone, so nothing the client sends can remove or forge
// what the gateway sets next.
func (hw *headerWriter) strip(h http.Header) {
	for k := range h {
		for _, ns := range hw.cfg.Namespace {
			if hasPrefixFold(k, ns) {
				delete(h, k)
				break
			}
		}
	}
}

// hasPrefixFold compares ASCII case-insensitively, reading '_' as '-'.
func hasPrefixFold(s, prefix string) bool {
	if len(s) < len(prefix) {
		return false
	}
	for i := 0; i < len(prefix); i++ {
		a, b := fold(s[i]), fold(prefix[i])
		if a != b {
			return false
		}
	}
	return true
}

func fold(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	if c == '_' {
		return '-'
	}
	return c
}

// set writes the trusted headers for a verified token and its metadata
// (md may be nil: caller unknown but forwarded, or no metadata source).
// allow, when non-nil, limits which metadata keys become headers.
func (hw *headerWriter) set(h http.Header, t *Token, md *enrich.Metadata, allow map[string]bool) {
	c := &hw.cfg
	hw.put(h, c.Kind, t.Caller.Kind.String(), t.kindValue)
	hw.put(h, c.ClientID, t.ClientID, t.clientIDValue)
	if t.Caller.Kind == enrich.KindUser {
		hw.put(h, c.UserID, t.Caller.ID, t.callerIDValue)
	}
	hw.put(h, c.Scopes, t.ScopeHeader, t.scopeValue)
	if md == nil {
		return
	}
	if t.Caller.Kind == enrich.KindClient {
		hw.put(h, c.ClientName, md.Record.Name, md.NameValue)
	}
	if c.MetadataPrefix != "" {
		for _, f := range md.Fields {
			if allow != nil && !allow[f.Key] {
				continue
			}
			hw.put(h, hw.metadataName(f.Name), f.Value, f.Values)
		}
	}
	if allow == nil {
		hw.putJSON(h, c.MetadataJSON, md.JSON, md.JSONValue)
		hw.putJSON(h, c.UserMetadataJSON, md.UserJSON, md.UserJSONValue)
	}
}

func (hw *headerWriter) metadataName(name string) string {
	if v, ok := hw.names.Load(name); ok {
		return v.(string)
	}
	full := hw.cfg.MetadataPrefix + name
	hw.names.Store(name, full)
	return full
}

// put sets one header after sanitising its value; empty values and names
// are skipped. prepared, when not nil, is []string{value} built once per
// token or caller: a value that needs no sanitising (the usual case) is set
// as that slice, so the hot path allocates nothing. Outgoing requests share
// it, which is safe because the transport only reads request headers (an
// http.RoundTripper must not modify the request) and an append to a slice
// of capacity 1 copies.
func (hw *headerWriter) put(h http.Header, name, value string, prepared []string) {
	if name == "" || value == "" {
		return
	}
	if prepared != nil && isClean(value, hw.cfg.MaxValueBytes) {
		h[name] = prepared
		return
	}
	value = sanitize(value, hw.cfg.MaxValueBytes)
	if value == "" {
		return
	}
	h[name] = []string{value}
}

// putJSON sets a JSON header only when it fits: cutting JSON short would
// hand the upstream something it cannot parse. prepared, when not nil, is
// []string{string(js)}, shared as in put.
func (hw *headerWriter) putJSON(h http.Header, name string, js []byte, prepared []string) {
	if name == "" || len(js) == 0 || len(js) > hw.cfg.MaxJSONBytes {
		return
	}
	if prepared == nil {
		prepared = []string{string(js)}
	}
	// encoding/json escapes control characters, so JSON is header-safe.
	h[name] = prepared
}

// isClean reports whether v fits in max bytes and has no control characters
// (CR, LF, NUL and friends, which would split or corrupt the header): the
// values sanitize returns unchanged.
func isClean(v string, max int) bool {
	if len(v) > max {
		return false
	}
	for i := 0; i < len(v); i++ {
		if isControl(v[i]) {
			return false
		}
	}
	return true
}

// isControl reports whether c is an ASCII control character other than tab.
func isControl(c byte) bool { return c < 0x20 && c != '\t' || c == 0x7f }

// sanitize drops control characters and caps the length at max bytes
// without splitting a UTF-8 sequence (see isClean). Clean values are
// returned without copying.
func sanitize(v string, max int) string {
	if isClean(v, max) {
		return v
	}
	b := make([]byte, 0, min(len(v), max))
	for i := 0; i < len(v); i++ {
		if c := v[i]; !isControl(c) {
			b = append(b, c)
		}
	}
	if len(b) > max {
		b = b[:max]
		for len(b) > 0 { // drop a rune cut in half
			if r, size := utf8.DecodeLastRune(b); r != utf8.RuneError || size > 1 {
				break
			}
			b = b[:len(b)-1]
		}
	}
	return string(b)
}
