package proxy

import (
	"encoding/json"
	"net/http"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"golang.org/x/net/http/httpguts"

	"github.com/metagate/gateway/enrich"
	"github.com/metagate/gateway/proxy/headername"
)

// bearerRE is RFC 6750's credentials written out independently of
// bearerToken: the scheme case-insensitive, one space, token68.
var bearerRE = regexp.MustCompile(`^[Bb][Ee][Aa][Rr][Ee][Rr] ([A-Za-z0-9\-._~+/]+=*)$`)

// FuzzBearerToken checks that bearerToken accepts exactly one
// Authorization value of the form "Bearer <token68>" (scheme
// case-insensitive) and returns its token; that an absent header is
// ("", nil); that anything else present is an error with no token; and
// that it never panics. values is how many Authorization values are sent
// (0, 1 or 2: the second is second).
func FuzzBearerToken(f *testing.F) {
	for _, s := range []struct {
		v, second string
		values    uint8
	}{
		{"", "", 0},
		{"Bearer abc.def.ghi", "", 1},
		{"bearer abc", "", 1},
		{"BEARER abc==", "", 1},
		{"Bearer a-b_c~d+e/f=", "", 1},
		{"Bearer abc.def.ghi", "Bearer abc.def.ghi", 2},
		{"Bearer abc", "Basic Zm9vOmJhcg==", 2},
		{"Bearer ", "", 1},
		{"Bearer", "", 1},
		{"", "", 1},
		{"Bearer  abc", "", 1},
		{"Bearer\tabc", "", 1},
		{"Bearer abc,def", "", 1},
		{"Bearer abc def", "", 1},
		{"Bearer ===", "", 1},
		{"Bearer a=b", "", 1},
		{"Bearer abc\r\n", "", 1},
		{"Basic Zm9vOmJhcg==", "", 1},
		{"Bearerabc", "", 1},
		{"Bearer abc\x00", "", 1},
		{"Bearer \u00e9", "", 1},
		{"B\u00e9arer abc", "", 1},
	} {
		f.Add(s.v, s.second, s.values)
	}
	f.Fuzz(func(t *testing.T, v, second string, values uint8) {
		h := http.Header{}
		switch values % 3 {
		case 1:
			h["Authorization"] = []string{v}
		case 2:
			h["Authorization"] = []string{v, second}
		}
		tok, err := bearerToken(h)
		vals := h["Authorization"]
		if len(vals) == 0 {
			if tok != "" || err != nil {
				t.Fatalf("no Authorization header: bearerToken = %q, %v; want \"\", nil", tok, err)
			}
			return
		}
		want := ""
		if len(vals) == 1 {
			if m := bearerRE.FindStringSubmatch(vals[0]); m != nil {
				want = m[1]
			}
		}
		switch {
		case err != nil && tok != "":
			t.Fatalf("Authorization %q: bearerToken returned both token %q and error %v", vals, tok, err)
		case err == nil && tok == "":
			t.Fatalf("Authorization %q is present: bearerToken = \"\", nil (no token, no error)", vals)
		case err == nil && tok != want:
			t.Fatalf("Authorization %q: bearerToken = %q, want %q (accepted what is not exactly one Bearer <token68>)", vals, tok, want)
		case err != nil && want != "":
			t.Fatalf("Authorization %q: bearerToken refused (%v) the token68 %q", vals, err, want)
		}
		if err == nil && (!strings.EqualFold(vals[0], "Bearer "+tok) || !isToken68(tok)) {
			t.Fatalf("Authorization %q: token %q is not the value after \"Bearer \"", vals, tok)
		}
	})
}

// fuzzHeaderConfigs are the header layouts FuzzMetadataHeaders writes
// with: the defaults, and two metadata prefixes under which a metadata key
// could spell an identity header ("id" as X-Client-Id, "user_id" as
// X-User-Id) if metadataName did not drop it.
func fuzzHeaderConfigs() []HeaderConfig {
	wide := defaultHeaders()
	wide.MetadataPrefix = "X-Client-"
	wider := defaultHeaders()
	wider.MetadataPrefix = "X-"
	return []HeaderConfig{defaultHeaders(), wide, wider}
}

// FuzzMetadataHeaders checks the trusted headers written for a caller
// whose name and metadata (one key, one string value, the same under a
// nested map and in user_metadata) are arbitrary, for a hand-built Token
// (prepared values nil) and for one built by identify. Every header must
// be a valid HTTP field; values have no surrounding blanks and fit
// MaxValueBytes (JSON ones MaxJSONBytes); X-Client-Metadata and
// X-User-Metadata are ASCII JSON that decodes to the record's maps; and
// no metadata key can write or change an identity header.
func FuzzMetadataHeaders(f *testing.F) {
	for _, s := range []struct {
		name, key, value string
		user             bool
	}{
		{"Billing Service", "tier", "gold", false},
		{"Billing Service", "plan_tier", "pro", true},
		{"", "", "", false},
		{" padded\t", "region", "\teu-west-1 ", false},
		{"bad\r\nX-Injected: 1", "tenant_id", "acme\r\nX-Client-Id: forged", false},
		{"nul\x00del\x7f", "k", "v\x00\x7f", true},
		{"Caf\u00e9", "caf\u00e9", "\u00e9t\u00e9 \U0001F600", false},
		{"\xff\xfe", "\xff", "\xc3", false},
		{"n", "id", "forged-client", false},
		{"n", "ID", "forged-client", true},
		{"n", "user_id", "forged-user", true},
		{"n", "client-name", "forged-name", true},
		{"n", "name", "forged-name", false},
		{"n", "kind", "client", true},
		{"n", "scopes", "admin", false},
		{"n", "issuer", "https://evil.test/", false},
		{"n", "client metadata", "{}", false},
		{"n", "user_metadata", "{}", true},
		{"n", "metadata", "{}", false},
		{"n", "<tag>&", "</script>", false},
		{strings.Repeat("n", 1100), strings.Repeat("k", 80), strings.Repeat("v", 1030), false},
		{"n", "k", strings.Repeat("\u00e9", 600), false},
		{"n", "k", strings.Repeat("x", 1023) + "\u00e9", false},
		{"n", "k", strings.Repeat(" ", 2000), false},
		{"n", "k", strings.Repeat("\x01", 3000), false},
	} {
		f.Add(s.name, s.key, s.value, s.user)
	}
	f.Fuzz(func(t *testing.T, name, key, value string, user bool) {
		nested := map[string]any{key: value}
		metadata := map[string]any{"nested": nested}
		metadata[key] = value
		rec := enrich.Record{Name: name, Metadata: metadata, UserMetadata: map[string]any{key: value, "nested": nested}}
		md, err := enrich.Prepare(rec)
		if err != nil {
			t.Fatalf("Prepare(%+v): %v", rec, err)
		}

		kind := enrich.KindClient
		if user {
			kind = enrich.KindUser
		}
		const issuer = "https://tenant.test/"
		tokens := []*Token{{
			Issuer: issuer, Subject: "sub-1", Caller: enrich.Caller{Issuer: issuer, Kind: kind, ID: "caller-1"},
			ClientID: "client-1", Scopes: []string{"read:a", "write:b"}, ScopeHeader: "read:a write:b",
		}}
		c := &claims{
			RegisteredClaims: jwt.RegisteredClaims{Issuer: issuer, Subject: value, ExpiresAt: jwt.NewNumericDate(time.Now().Add(time.Hour))},
			AuthorizedParty:  name, Scope: key,
		}
		if !user {
			c.Subject = name + clientsSuffix
		}
		if tok, err := identify(c); err == nil {
			tokens = append(tokens, tok)
		}

		for _, cfg := range fuzzHeaderConfigs() {
			for _, tok := range tokens {
				checkTrustedHeaders(t, cfg, tok, rec, md)
			}
		}
	})
}

func checkTrustedHeaders(t *testing.T, cfg HeaderConfig, tok *Token, rec enrich.Record, md *enrich.Metadata) {
	t.Helper()
	hw := newHeaderWriter(cfg)
	h := http.Header{}
	hw.set(h, tok, md, nil)
	where := func() string {
		return "prefix " + cfg.MetadataPrefix + ", kind " + tok.Caller.Kind.String() +
			", name " + quote(rec.Name) + ", metadata " + quote(string(md.JSON))
	}

	// Every field is valid and bounded.
	for k, vs := range h {
		if !httpguts.ValidHeaderFieldName(k) {
			t.Fatalf("%s: invalid header name %q", where(), k)
		}
		if len(vs) != 1 {
			t.Fatalf("%s: header %s has %d values %q", where(), k, len(vs), vs)
		}
		v := vs[0]
		max := cfg.MaxValueBytes
		if k == cfg.MetadataJSON || k == cfg.UserMetadataJSON {
			max = cfg.MaxJSONBytes
		}
		switch {
		case v == "":
			t.Fatalf("%s: header %s is set empty", where(), k)
		case !httpguts.ValidHeaderFieldValue(v):
			t.Fatalf("%s: header %s has invalid value %q", where(), k, v)
		case isBlank(v[0]) || isBlank(v[len(v)-1]):
			t.Fatalf("%s: header %s value %q has surrounding blanks", where(), k, v)
		case len(v) > max:
			t.Fatalf("%s: header %s value is %d bytes, over %d", where(), k, len(v), max)
		}
		for k2 := range h {
			if k2 != k && headername.Equal(k, k2) {
				t.Fatalf("%s: headers %s and %s are one name to an upstream", where(), k, k2)
			}
		}
	}

	// The JSON headers carry the maps exactly.
	checkJSON := func(hname string, js []byte, orig map[string]any) {
		v, ok := h[hname]
		if !ok {
			if len(js) <= cfg.MaxJSONBytes {
				t.Fatalf("%s: %s missing, though its JSON is %d bytes", where(), hname, len(js))
			}
			return
		}
		for i := 0; i < len(v[0]); i++ {
			if v[0][i] >= 0x7f || v[0][i] < 0x20 {
				t.Fatalf("%s: %s is not printable ASCII at byte %d: %q", where(), hname, i, v[0])
			}
		}
		var got map[string]any
		if err := json.Unmarshal([]byte(v[0]), &got); err != nil {
			t.Fatalf("%s: %s = %q does not decode: %v", where(), hname, v[0], err)
		}
		if want := jsonRoundTrip(t, orig); !reflect.DeepEqual(got, want) {
			t.Fatalf("%s: %s decodes to %#v, want %#v", where(), hname, got, want)
		}
	}
	checkJSON(cfg.MetadataJSON, md.JSON, rec.Metadata)
	checkJSON(cfg.UserMetadataJSON, md.UserJSON, rec.UserMetadata)

	// Identity headers are what the token alone writes: no metadata key
	// sets, overwrites or removes one.
	ref := http.Header{}
	hw.set(ref, tok, nil, nil)
	if tok.Caller.Kind == enrich.KindClient {
		hw.put(ref, cfg.ClientName, rec.Name, nil)
	}
	for _, id := range []string{cfg.ClientID, cfg.Kind, cfg.Scopes, cfg.Issuer, cfg.UserID, cfg.ClientName} {
		for k, v := range h {
			if headername.Equal(k, id) && !reflect.DeepEqual(v, ref[id]) {
				t.Fatalf("%s: identity header %s = %q, want %q (from the token and name only)", where(), k, v, ref[id])
			}
		}
		if _, ok := h[id]; !ok && ref[id] != nil {
			t.Fatalf("%s: identity header %s = %q is missing", where(), id, ref[id])
		}
	}

	// The rest are the metadata fields, sanitised.
	fields := map[string]string{}
	for _, fl := range md.Fields {
		fields[cfg.MetadataPrefix+fl.Name] = sanitize(fl.Value, cfg.MaxValueBytes)
	}
	for k, v := range h {
		if ref[k] != nil || k == cfg.MetadataJSON || k == cfg.UserMetadataJSON {
			continue
		}
		want, ok := fields[k]
		if !ok {
			t.Fatalf("%s: unexpected header %s = %q", where(), k, v)
		}
		if v[0] != want {
			t.Fatalf("%s: header %s = %q, want %q", where(), k, v[0], want)
		}
	}
}

func jsonRoundTrip(t *testing.T, m map[string]any) map[string]any {
	t.Helper()
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatalf("json.Marshal(%#v): %v", m, err)
	}
	var out map[string]any
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatalf("json.Unmarshal(%q): %v", b, err)
	}
	return out
}

func quote(s string) string {
	if len(s) > 80 {
		s = s[:80] + "..."
	}
	return strconv.Quote(s)
}
