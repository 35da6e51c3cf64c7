package proxy

import (
	"bytes"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"unicode/utf8"

	"github.com/metagate/gateway/enrich"
	"github.com/metagate/gateway/proxy/headername"
)

// HeaderConfig names the trusted headers. An empty name turns that header
// off. Every name lies inside Namespace (config validation guarantees it),
// so anything a client sends under those names is removed first.
type HeaderConfig struct {
	Namespace []string
	// StripUntrusted are removed from requests of clients that are not
	// trusted proxies: URL and method overrides (X-Original-URL,
	// X-HTTP-Method-Override...) and client-address headers (Forwarded,
	// X-Real-IP...) that upstream frameworks believe. Compared like the
	// namespace: case-insensitively, '_' read as '-'.
	StripUntrusted []string
	ClientID       string
	Issuer         string
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
	// Claims maps a token claim to the header that carries it (the
	// Verifier extracts the claims: VerifierOptions.Claims).
	Claims map[string]string
	// Assertion is the header of the signed gateway assertion. It is
	// removed from every request, whatever the namespace and whether the
	// assertion is on, so a client can never hand the upstream an
	// assertion of its own (a replayed one included).
	Assertion string
}

// headerWriter is the one place trusted headers are removed and set.
type headerWriter struct {
	cfg HeaderConfig
	// names memoises metadata Field.Name → full header name, for at most
	// maxNames names: metadata keys come from the IdP, and a memo that
	// grew with every distinct key would be a memory leak.
	names   sync.Map
	nameCnt atomic.Int64
}

const maxNames = 4096

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
//
// From a client that is not a trusted proxy, the StripUntrusted headers
// go as well.
//
// A header that only an underscore separates from one the gateway sets
// (X_Forwarded_For) goes from everyone: CGI-style servers would read it as
// the real one.
func (hw *headerWriter) strip(h http.Header, trustedPeer bool) {
	for k := range h {
		if hw.namespaced(k) || !trustedPeer && hw.untrusted(k) || aliasOfForwarded(k) ||
			hw.cfg.Assertion != "" && headername.Equal(k, hw.cfg.Assertion) {
			delete(h, k)
		}
	}
}

// aliasOfForwarded reports another spelling of an X-Forwarded-* header
// the gateway sets (net/http canonicalises only names without '_').
func aliasOfForwarded(name string) bool {
	if strings.IndexByte(name, '_') < 0 {
		return false
	}
	for _, f := range [...]string{"X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto"} {
		if headername.Equal(name, f) {
			return true
		}
	}
	return false
}

func (hw *headerWriter) namespaced(name string) bool {
	for _, ns := range hw.cfg.Namespace {
		if headername.HasPrefix(name, ns) {
			return true
		}
	}
	return false
}

func (hw *headerWriter) untrusted(name string) bool {
	for _, u := range hw.cfg.StripUntrusted {
		if headername.Equal(name, u) {
			return true
		}
	}
	return false
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
	hw.put(h, c.Issuer, t.Issuer, t.issuerValue)
	for i := range t.Claims {
		cl := &t.Claims[i]
		hw.put(h, c.Claims[cl.Name], cl.Value, cl.values)
	}
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

// metadataName is the header for a metadata field name. A name that
// would land on an identity header is dropped ("" turns put off): config
// validation refuses a prefix that allows it, and this keeps the proxy
// safe when used with a HeaderConfig built elsewhere.
func (hw *headerWriter) metadataName(name string) string {
	if v, ok := hw.names.Load(name); ok {
		return v.(string)
	}
	full := hw.cfg.MetadataPrefix + name
	c := &hw.cfg
	for _, id := range []string{c.ClientID, c.Issuer, c.ClientName, c.Kind, c.Scopes, c.UserID, c.MetadataJSON, c.UserMetadataJSON} {
		if id != "" && headername.Equal(full, id) {
			full = ""
		}
	}
	if hw.nameCnt.Load() < maxNames {
		if _, loaded := hw.names.LoadOrStore(name, full); !loaded {
			hw.nameCnt.Add(1)
		}
	}
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

// isClean reports whether v fits in max bytes, has no control characters
// (CR, LF, NUL, DEL and friends, which would split or corrupt the header,
// or make the transport refuse the request) and no surrounding whitespace
// (which the upstream would trim): the values sanitize returns unchanged.
func isClean(v string, max int) bool {
	if len(v) > max || v != "" && (isBlank(v[0]) || isBlank(v[len(v)-1])) {
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

func isBlank(c byte) bool { return c == ' ' || c == '\t' }

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
	b = bytes.TrimFunc(b, func(r rune) bool { return r == ' ' || r == '\t' })
	if len(b) > max {
		b = b[:max]
		for len(b) > 0 { // drop a rune cut in half
			if r, size := utf8.DecodeLastRune(b); r != utf8.RuneError || size > 1 {
				break
			}
			b = b[:len(b)-1]
		}
	}
	return string(bytes.TrimRight(b, " \t"))
}
