package proxy

import (
	"maps"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/metagate/gateway/enrich"
)

// preparedCaller is a user token and its metadata as the gateway builds
// them: the token by identify, the metadata by enrich.Prepare.
func preparedCaller(t *testing.T) (*Token, *enrich.Metadata) {
	t.Helper()
	tok, err := identify(&claims{
		RegisteredClaims: jwt.RegisteredClaims{Subject: "auth0|alice", ExpiresAt: jwt.NewNumericDate(time.Now().Add(time.Hour))},
		AuthorizedParty:  "spa", Scope: "read:things write:things",
	})
	if err != nil {
		t.Fatal(err)
	}
	md, err := enrich.Prepare(enrich.Record{
		Metadata:     map[string]any{"plan": "pro", "beta": true, "roles": []any{"admin"}},
		UserMetadata: map[string]any{"theme": "dark"},
	})
	if err != nil {
		t.Fatal(err)
	}
	return tok, md
}

func TestTrustedHeadersAllocateNothingPerRequest(t *testing.T) {
	hw := newHeaderWriter(defaultHeaders())
	tok, md := preparedCaller(t)
	h := make(http.Header, 32)
	allocs := testing.AllocsPerRun(100, func() {
		clear(h)
		hw.set(h, tok, md, nil)
	})
	if allocs != 0 {
		t.Errorf("setting the trusted headers allocated %v times per request, want 0", allocs)
	}
	if len(h) != 8 {
		t.Errorf("set %d headers, want 8: %v", len(h), h)
	}
}

func TestTokenAndMetadataBuiltElsewhereGetTheSameHeaders(t *testing.T) {
	hw := newHeaderWriter(defaultHeaders())
	tok, md := preparedCaller(t)
	want := http.Header{}
	hw.set(want, tok, md, nil)

	// Without the values identify and Prepare prepare, as a custom
	// TokenVerifier or MetadataResolver might build them.
	bare := &Token{Caller: tok.Caller, ClientID: tok.ClientID, Scopes: tok.Scopes, ScopeHeader: tok.ScopeHeader}
	mdBare := &enrich.Metadata{Record: md.Record, JSON: md.JSON, UserJSON: md.UserJSON}
	for _, f := range md.Fields {
		mdBare.Fields = append(mdBare.Fields, enrich.Field{Key: f.Key, Name: f.Name, Value: f.Value})
	}
	got := http.Header{}
	hw.set(got, bare, mdBare, nil)
	if !maps.EqualFunc(got, want, slices.Equal) {
		t.Errorf("headers\n got %v\nwant %v", got, want)
	}
}
