package app

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/metagate/gateway/internal/config"
	"github.com/metagate/gateway/internal/tokenendpoint"
	"github.com/metagate/gateway/proxy"
)

// tokenEndpointHandler builds the token endpoint (token_endpoint, seed
// 001) of one generation, or returns nil, nil when it is off. It takes
// the generation's verifier and resolver, so a reload that changes the
// issuers or the metadata source changes what the endpoint accepts and
// answers with the rest of the gateway.
//
// Without a metadata source the endpoint could only ever pass answers
// through: that is a configuration mistake, refused here rather than
// counted as metadata_failed on every token.
func (a *App) tokenEndpointHandler(cfg *config.Config, checker tokenendpoint.TokenChecker, resolver proxy.MetadataResolver) (http.Handler, error) {
	t := cfg.TokenEndpoint
	if !t.Enabled {
		return nil, nil
	}
	if checker == nil {
		return nil, errors.New("token_endpoint: no verifier to check the issued tokens with")
	}
	if resolver == nil {
		return nil, fmt.Errorf("token_endpoint: needs a metadata source (metadata.source is %q)", cfg.Metadata.Source)
	}
	u := t.TargetURL
	if u == nil {
		// The config defaults the target to the first issuer's; with no
		// issuer but the dev issuer, only the running dev issuer knows
		// its address (it may listen on a free port).
		if a.devIssuer == nil {
			return nil, errors.New("token_endpoint.target: is required when there is no issuer to default to")
		}
		var err error
		if u, err = url.Parse(strings.TrimSuffix(a.devIssuer.Issuer, "/") + "/oauth/token"); err != nil {
			return nil, fmt.Errorf("token_endpoint.target: the dev issuer's: %w", err)
		}
	}
	a.metrics.TokenEndpointResults(tokenendpoint.Results()...)
	return tokenendpoint.New(tokenendpoint.Options{
		Target:       u,
		MetadataKeys: t.MetadataKeys,
		Field:        t.Field,
		MaxBodyBytes: t.MaxBodyBytes,
		Timeout:      t.Timeout.D(),
		Checker:      checker,
		Resolver:     resolver,
		// The shared transport: the issuer is one more host in its pool,
		// and a reload keeps the connections.
		Transport: a.transport,
		Logger:    a.log.Named("token_endpoint"),
		OnResult:  a.metrics.TokenEndpoint,
	}), nil
}
