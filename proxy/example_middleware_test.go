package proxy_test

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"time"

	"github.com/metagate/gateway/cache"
	"github.com/metagate/gateway/enrich"
	"github.com/metagate/gateway/internal/devissuer"
	"github.com/metagate/gateway/proxy"
)

// The gateway inside a Go API: the same verify → identify → authorise →
// resolve pipeline as the proxy, with no hop in between. The handler reads
// the caller with enrich.FromContext.
func ExampleMiddleware() {
	// The issuer to trust. Here the dev issuer on a test server; in
	// production, your Auth0 tenant (https://TENANT.auth0.com/).
	key, _ := rsa.GenerateKey(rand.Reader, 2048)
	var dev *devissuer.Issuer
	idp := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { dev.Handler().ServeHTTP(w, r) }))
	defer idp.Close()
	issuer := idp.URL + "/"
	dev = devissuer.New(devissuer.Options{Issuer: issuer, Audience: "https://api.example/", TTL: time.Hour, Key: key})

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	verifier, err := proxy.NewVerifier(ctx, proxy.VerifierOptions{
		Issuers: []proxy.IssuerConfig{{
			Issuer: issuer, Audiences: []string{"https://api.example/"}, JWKSURL: issuer + ".well-known/jwks.json",
			Algorithms: []string{"RS256"}, Leeway: 30 * time.Second, JWKSRefresh: time.Hour, UnknownKIDRefresh: time.Minute,
		}},
		MaxTokenBytes: 16 << 10,
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer verifier.Close()

	// Metadata: here a local source; enrich/auth0 reads the Management API.
	metadata, _ := cache.New[*enrich.Metadata](cache.Options{TTL: 5 * time.Minute, MaxEntries: 10_000}, enrich.Codec{})
	defer metadata.Close()
	src := enrich.NewLocalSource(map[string]enrich.Record{
		"svc-billing": {Name: "Billing", Metadata: map[string]any{"tier": "gold"}},
	}, nil)
	resolver := enrich.NewResolver(src, metadata, []string{issuer})

	api := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, _ := enrich.FromContext(r.Context())
		tier, _ := id.Metadata.Get("tier")
		fmt.Fprintf(w, "%s %s tier=%s", id.Caller.Kind, id.Caller.ID, tier)
	})
	secured := proxy.Middleware(proxy.MiddlewareOptions{
		Verifier: verifier, Resolver: resolver,
		Policy: proxy.Policy{AllOf: []string{"read:invoices"}},
	})(api)
	srv := httptest.NewServer(secured)
	defer srv.Close()

	tok, _ := dev.Mint(devissuer.TokenRequest{ClientID: "svc-billing", Scopes: []string{"read:invoices"}})
	for _, auth := range []string{"Bearer " + tok, ""} {
		req, _ := http.NewRequest("GET", srv.URL+"/invoices", nil)
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			fmt.Println(err)
			return
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			body = nil
		}
		fmt.Println(resp.StatusCode, string(body))
	}
	// Output:
	// 200 client svc-billing tier=gold
	// 401
}
