package enrich

import (
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"unicode/utf16"
	"unicode/utf8"
)

// Metadata is a Record prepared for forwarding. It is computed once, when
// the cache is filled, and shared read-only by every request after that: the
// hot path never encodes JSON or formats values.
type Metadata struct {
	// Record keeps only the caller's Name once prepared: the metadata
	// maps are dropped, because their prepared forms below say the same
	// in a fraction of the memory a cached caller costs.
	Record Record
	// Fields holds the top-level scalar metadata values (strings, numbers,
	// booleans), sorted by key. Nested objects and arrays are left out here
	// and only appear in JSON.
	Fields []Field
	// JSON is Record.Metadata as compact JSON ("{}" when empty), in pure
	// ASCII: DEL and every non-ASCII character are \u-escaped, so it is a
	// valid header value whatever the metadata holds, and reads the same
	// in frameworks that decode headers as Latin-1.
	JSON []byte
	// UserJSON is Record.UserMetadata as compact JSON (ASCII, like JSON),
	// nil unless present.
	UserJSON []byte

	// NameValue, JSONValue and UserJSONValue hold Record.Name, JSON and
	// UserJSON as one-element slices (nil when empty): the shape of an
	// http.Header value, built here so that a consumer setting headers on
	// every request does not allocate them each time. Like the rest of
	// Metadata they are shared: never modify them.
	NameValue, JSONValue, UserJSONValue []string

	// decoded is JSON decoded again, made on the first Map call: only
	// callers of routes with a policy over metadata pay for it.
	decoded atomic.Pointer[map[string]any]
}

// Map is the whole metadata object, nested values included, as JSON
// decodes it (numbers are float64), for policies that read it. It is
// decoded once per cached caller, on first use, and shared: never modify
// it. A nil Metadata has an empty map.
func (m *Metadata) Map() map[string]any {
	if m == nil {
		return map[string]any{}
	}
	if p := m.decoded.Load(); p != nil {
		return *p
	}
	out := map[string]any{}
	if err := json.Unmarshal(m.JSON, &out); err != nil {
		// m.JSON was encoded by Prepare from a map: it always decodes.
		out = map[string]any{}
	}
	m.decoded.CompareAndSwap(nil, &out)
	return *m.decoded.Load()
}

// Field is one scalar metadata value. Name is the key in HTTP header form
// (letters, digits and hyphens, each word capitalised: "plan_tier" becomes
// "Plan-Tier"); it is empty when the key has no usable characters.
type Field struct {
	Key   string
	Name  string
	Value string
	// Values is Value as a one-element slice, shared like
	// Metadata.NameValue.
	Values []string
}

// Prepare computes the forwarding form of a record.
func Prepare(r Record) (*Metadata, error) {
	m := &Metadata{Record: Record{Name: r.Name}}
	var err error
	if r.Metadata == nil {
		m.JSON = []byte("{}")
	} else if m.JSON, err = asciiJSON(r.Metadata); err != nil {
		return nil, fmt.Errorf("encode metadata: %w", err)
	}
	if r.UserMetadata != nil {
		if m.UserJSON, err = asciiJSON(r.UserMetadata); err != nil {
			return nil, fmt.Errorf("encode user metadata: %w", err)
		}
	}
	keys := make([]string, 0, len(r.Metadata))
	for k := range r.Metadata {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	used := map[string]bool{}
	// Sized once: append's doubling would leave up to half the array
	// unused for as long as the caller stays cached.
	m.Fields = make([]Field, 0, len(keys))
	for _, k := range keys {
		v, ok := Scalar(r.Metadata[k])
		if !ok {
			continue
		}
		name := HeaderName(k)
		if name == "" || used[name] {
			continue // two keys that fold to one name: the first (sorted) wins
		}
		used[name] = true
		m.Fields = append(m.Fields, Field{Key: k, Name: name, Value: v})
	}
	// One backing array for every field's Values, each a slice of
	// capacity 1 (an append copies): one allocation per caller, not one
	// per field.
	vals := make([]string, len(m.Fields))
	for i := range m.Fields {
		vals[i] = m.Fields[i].Value
		m.Fields[i].Values = vals[i : i+1 : i+1]
	}
	m.NameValue = oneValue(r.Name)
	m.JSONValue = oneValue(string(m.JSON))
	m.UserJSONValue = oneValue(string(m.UserJSON))
	return m, nil
}

// asciiJSON encodes v as compact JSON with DEL and every non-ASCII
// character escaped. encoding/json already escapes the other control
// characters (and replaces invalid UTF-8), and those bytes can only occur
// inside strings, so escaping them byte by byte keeps the JSON valid.
func asciiJSON(v any) ([]byte, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	clean := true
	for _, c := range b {
		if c >= 0x7f {
			clean = false
			break
		}
	}
	if clean {
		return b, nil
	}
	out := make([]byte, 0, len(b)+16)
	for i := 0; i < len(b); {
		c := b[i]
		if c < 0x7f {
			out = append(out, c)
			i++
			continue
		}
		r, size := utf8.DecodeRune(b[i:])
		i += size
		if r >= 0x10000 {
			r1, r2 := utf16.EncodeRune(r)
			out = appendUnicodeEscape(appendUnicodeEscape(out, r1), r2)
			continue
		}
		out = appendUnicodeEscape(out, r)
	}
	return out, nil
}

func appendUnicodeEscape(b []byte, r rune) []byte {
	const hex = "0123456789abcdef"
	return append(b, '\\', 'u', hex[r>>12&15], hex[r>>8&15], hex[r>>4&15], hex[r&15])
}

// oneValue returns []string{v}, or nil for an empty v. Its capacity is 1,
// so appending to it copies rather than writing into shared memory.
func oneValue(v string) []string {
	if v == "" {
		return nil
	}
	return []string{v}
}

// Scalar is a metadata or claim value as text: strings as they are,
// numbers as JSON writes them, booleans as "true"/"false". Objects,
// arrays and null are not scalars. Headers, rate-limit keys and tiers
// all read values through it, so they agree on what a value says.
func Scalar(v any) (string, bool) {
	switch x := v.(type) {
	case string:
		return x, true
	case bool:
		return strconv.FormatBool(x), true
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64), true
	case int:
		return strconv.Itoa(x), true
	case int64:
		return strconv.FormatInt(x, 10), true
	case json.Number:
		return x.String(), true
	default:
		return "", false
	}
}

// maxNameLen bounds a metadata header name suffix.
const maxNameLen = 64

// HeaderName turns a metadata key into the canonical header-name form:
// runs of anything but ASCII letters and digits become one hyphen, and each
// word starts with a capital ("tier" → "Tier", "plan_tier" → "Plan-Tier").
func HeaderName(key string) string {
	var b strings.Builder
	upper := true
	for i := 0; i < len(key) && b.Len() < maxNameLen; i++ {
		c := key[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
			if upper && 'a' <= c && c <= 'z' {
				c -= 'a' - 'A'
			} else if !upper && 'A' <= c && c <= 'Z' {
				c += 'a' - 'A'
			}
			b.WriteByte(c)
			upper = false
		default:
			if b.Len() > 0 && !upper {
				b.WriteByte('-')
			}
			upper = true
		}
	}
	return strings.TrimSuffix(b.String(), "-")
}

// HeaderValue is the one rule for turning a JSON value (a metadata value
// or a token claim) into a header value: strings, numbers and booleans as
// they are, objects and arrays as compact JSON in pure ASCII (see
// asciiJSON). Null and absent values give "", false.
func HeaderValue(v any) (string, bool) {
	if v == nil {
		return "", false
	}
	if s, ok := Scalar(v); ok {
		return s, true
	}
	b, err := asciiJSON(v)
	if err != nil {
		return "", false
	}
	return string(b), true
}

// Select returns the allow-listed top-level keys of the metadata as a
// compact JSON object, in the allow-list's order; keys the caller does
// not have are left out ("{}" when none is present). It decodes JSON, so
// it is for answers off the hot path (the token endpoint, /me), never
// for every proxied request.
func (m *Metadata) Select(keys []string) ([]byte, error) {
	var all map[string]json.RawMessage
	if len(m.JSON) > 0 {
		if err := json.Unmarshal(m.JSON, &all); err != nil {
			return nil, fmt.Errorf("decode prepared metadata: %w", err)
		}
	}
	b := []byte{'{'}
	for _, k := range keys {
		v, ok := all[k]
		if !ok {
			continue
		}
		if len(b) > 1 {
			b = append(b, ',')
		}
		name, err := asciiJSON(k)
		if err != nil {
			return nil, err
		}
		b = append(append(append(b, name...), ':'), v...)
	}
	return append(b, '}'), nil
}

// Get returns the scalar metadata value for key (as forwarded in its
// header), for code that reads one value: enrich.FromContext users.
// Nested objects and arrays are only in JSON.
func (m *Metadata) Get(key string) (string, bool) {
	i := sort.Search(len(m.Fields), func(i int) bool { return m.Fields[i].Key >= key })
	if i < len(m.Fields) && m.Fields[i].Key == key {
		return m.Fields[i].Value, true
	}
	return "", false
}
