package app

import (
	"context"
	"fmt"
	"maps"
	"net/http"
	"reflect"
	"slices"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/metagate/gateway/cache"
	"github.com/metagate/gateway/enrich"
	"github.com/metagate/gateway/internal/config"
	"github.com/metagate/gateway/internal/invalidation"
	"github.com/metagate/gateway/proxy"
	"github.com/metagate/gateway/proxy/ratelimit"
)

// generation is everything a config reload may replace. A request loads
// the current generation once, so it finishes on the config it started
// with. Its parts are shared with the next generation when their config
// did not change: that is how a reload keeps warm JWKS and caches.
type generation struct {
	cfg      *config.Config
	verifier *verifierPart
	resolver *resolverPart
	gw       *proxy.Gateway
	// admin is the cache admin API (nil: invalidation.admin_token unset),
	// served on the admin listener by the generation that is live.
	admin http.Handler
}

// verifierPart is the JWKS-backed verifier with the context that keeps its
// refresh goroutines alive.
type verifierPart struct {
	v    *proxy.Verifier
	stop context.CancelFunc
}

func (p *verifierPart) close() error {
	p.v.Close()
	p.stop()
	return nil
}

// resolverPart is the metadata source behind its two-tier cache; nil
// resolver means metadata.source: none.
type resolverPart struct {
	resolver proxy.MetadataResolver
	// limiter counts rate limits in the cache's Redis (locally without
	// one); it lives as long as that Redis client.
	limiter *ratelimit.Limiter
	closers []func() error
}

func (p *resolverPart) close() error {
	var err error
	for i := len(p.closers) - 1; i >= 0; i-- {
		if e := p.closers[i](); e != nil && err == nil {
			err = e
		}
	}
	return err
}

// build makes a generation from cfg, reusing prev's verifier and resolver
// when the config they were built from is unchanged. prev may be nil.
func (a *App) build(ctx context.Context, cfg *config.Config, prev *generation) (g *generation, err error) {
	g = &generation{cfg: cfg}
	defer func() {
		if err != nil {
			a.retire(g, prev)
		}
	}()
	if prev != nil {
		// Replacing assertion.key_file and reloading rotates the key; the
		// old one stays published, so a failed build after it is harmless.
		if err := reloadAssertionKey(a.assertion); err != nil {
			return nil, err
		}
	}
	if prev != nil && sameVerifierConfig(prev.cfg, cfg) {
		g.verifier = prev.verifier
	} else if g.verifier, err = a.buildVerifier(ctx, cfg); err != nil {
		return nil, err
	}
	if prev != nil && sameResolverConfig(prev.cfg, cfg) {
		g.resolver = prev.resolver
	} else if g.resolver, err = a.buildResolver(cfg); err != nil {
		return nil, err
	}
	if g.gw, err = a.buildGateway(cfg, g); err != nil {
		return nil, err
	}
	g.admin = a.adminAPI(cfg, g)
	return g, nil
}

// retire closes the parts of old that next does not share. next may be nil
// (shutdown, or a failed build whose parts are the ones to drop).
func (a *App) retire(old, next *generation) {
	if old == nil {
		return
	}
	if old.verifier != nil && (next == nil || next.verifier != old.verifier) {
		_ = old.verifier.close()
	}
	if old.resolver != nil && (next == nil || next.resolver != old.resolver) {
		if err := old.resolver.close(); err != nil {
			a.log.Warn("closing the previous metadata cache", zap.Error(err))
		}
	}
}

func sameVerifierConfig(a, b *config.Config) bool {
	return reflect.DeepEqual(a.Issuers, b.Issuers) && a.Server.MaxTokenBytes == b.Server.MaxTokenBytes &&
		slices.Equal(claimNames(a), claimNames(b)) && a.KeepClaims() == b.KeepClaims()
}

// claimNames are the claims headers.claims forwards, sorted: the
// Verifier keeps them with each verified token.
func claimNames(cfg *config.Config) []string {
	names := make([]string, 0, len(cfg.Headers.Claims))
	for k := range cfg.Headers.Claims {
		names = append(names, k)
	}
	slices.Sort(names)
	return names
}

func sameResolverConfig(a, b *config.Config) bool {
	return reflect.DeepEqual(a.Metadata, b.Metadata) && reflect.DeepEqual(a.Cache, b.Cache)
}

func (a *App) buildVerifier(ctx context.Context, cfg *config.Config) (*verifierPart, error) {
	issuers := make([]proxy.IssuerConfig, 0, len(cfg.Issuers)+1)
	for _, is := range cfg.Issuers {
		issuers = append(issuers, issuerConfig(is))
	}
	if a.devIssuer != nil {
		issuers = append(issuers, *a.devIssuer)
	}
	ctx, stop := context.WithCancel(ctx)
	v, err := proxy.NewVerifier(ctx, proxy.VerifierOptions{
		Issuers:            issuers,
		MaxTokenBytes:      cfg.Server.MaxTokenBytes,
		Logger:             a.log.Named("jwks"),
		OnJWKSRefreshError: a.metrics.JWKSFailure,
		OnJWKSFetch:        a.metrics.JWKSFetch,
		Claims:             claimNames(cfg),
		KeepClaims:         cfg.KeepClaims(),
	})
	if err != nil {
		stop()
		return nil, err
	}
	return &verifierPart{v: v, stop: stop}, nil
}

func issuerConfig(is config.Issuer) proxy.IssuerConfig {
	return proxy.IssuerConfig{
		Issuer:            is.Issuer,
		Audiences:         is.Audiences,
		JWKSURL:           is.JWKSURL,
		Algorithms:        is.Algorithms,
		Leeway:            is.Leeway.D(),
		JWKSRefresh:       is.JWKSRefresh.D(),
		UnknownKIDRefresh: is.UnknownKIDRefresh.D(),
	}
}

func (a *App) buildResolver(cfg *config.Config) (p *resolverPart, err error) {
	p = &resolverPart{}
	defer func() {
		if err != nil {
			_ = p.close()
		}
	}()
	m := cfg.Metadata
	c := cfg.Cache
	var rc redis.UniversalClient
	if c.Redis.URL != "" {
		if rc, err = cache.NewRedisClient(c.Redis.URL, c.Redis.Timeout.D()); err != nil {
			return nil, fmt.Errorf("cache.redis.url: %w", err)
		}
		p.closers = append(p.closers, rc.Close)
	}
	p.limiter = ratelimit.New(ratelimit.Options{
		Redis: rc, Prefix: c.Redis.Prefix,
		OnRedisError: func(error) { a.metrics.RedisError("rate_limit") },
	})
	var src enrich.Source
	switch m.Source {
	case "none":
		return p, nil
	case "local":
		clients := map[string]enrich.Record{}
		for id, c := range m.Local.Clients {
			clients[id] = enrich.Record{Name: c.Name, Metadata: c.Metadata}
		}
		users := map[string]enrich.Record{}
		for id, u := range m.Local.Users {
			users[id] = enrich.Record{Metadata: u.AppMetadata}
		}
		src = enrich.NewLocalSource(clients, users)
	case "auth0":
		s, err := newAuth0Source(m.Auth0, a.log.Named("auth0"), a.metrics.Auth0Call, a.metrics.RateBudgetWait, a.metrics.Circuit)
		if err != nil {
			return nil, err
		}
		p.closers = append(p.closers, func() error { s.CloseIdleConnections(); return nil })
		src = s
	default:
		return nil, fmt.Errorf("metadata.source: unknown source %q", m.Source)
	}
	opts := cache.Options{
		TTL:                  c.TTL.D(),
		NegativeTTL:          c.NegativeTTL.D(),
		StaleWhileRevalidate: c.StaleWhileRevalidate.D(),
		StaleIfError:         c.StaleIfError.D(),
		MaxEntries:           c.MaxEntries,
		Prefix:               c.Redis.Prefix,
		RedisTimeout:         c.Redis.Timeout.D(),
		Logger:               a.log.Named("cache"),
		Observe:              func(r cache.Result) { a.metrics.CacheLookup(r.String()) },
		OnRedisError:         a.metrics.RedisError,
		ErrorTTL:             c.ErrorTTL.D(),
		ClaimTTL:             c.Redis.ClaimTTL.D(),
		DisconnectedTTL:      c.Redis.DisconnectedTTL.D(),
		OnClaim:              a.metrics.Claim,
		OnInvalidation:       a.metrics.BusMessage,
	}
	opts.Redis = rc
	if m.Source == "auth0" {
		opts.MaxWait = m.Auth0.LookupDeadline.D()
	}
	tc, err := cache.New[*enrich.Metadata](opts, enrich.Codec{})
	if err != nil {
		return nil, fmt.Errorf("cache: %w", err)
	}
	p.closers = append(p.closers, tc.Close)
	p.resolver = enrich.NewResolver(src, tc, a.metadataIssuers(cfg))
	return p, nil
}

// metadataIssuers are the issuers whose callers the metadata source
// serves: metadata.issuers, or by default the first configured issuer
// (the dev issuer, as it runs, when there is no other).
func (a *App) metadataIssuers(cfg *config.Config) []string {
	if len(cfg.Metadata.Issuers) > 0 {
		out := append([]string(nil), cfg.Metadata.Issuers...)
		for i, is := range out {
			if a.devIssuer != nil && is == cfg.DevIssuer.Issuer {
				out[i] = a.devIssuer.Issuer // the address it really listens on
			}
		}
		return out
	}
	if len(cfg.Issuers) > 0 {
		return []string{cfg.Issuers[0].Issuer}
	}
	if a.devIssuer != nil {
		return []string{a.devIssuer.Issuer}
	}
	return nil
}

func (a *App) buildGateway(cfg *config.Config, g *generation) (*proxy.Gateway, error) {
	routes := make([]proxy.RouteConfig, 0, len(cfg.Routes))
	policies := ratePolicies(cfg)
	for i, r := range cfg.Routes {
		rc, err := routeConfig(i, r)
		if err != nil {
			return nil, err
		}
		rc.AssertionAudience = assertionAudience(cfg.Assertion, r)
		rc.RateLimit = routeRateLimit(r, policies)
		routes = append(routes, rc)
	}
	h := cfg.Headers
	var resolver proxy.MetadataResolver
	if g.resolver.resolver != nil {
		resolver = g.resolver.resolver
	}
	eps, err := a.endpoints(cfg, g, resolver)
	if err != nil {
		return nil, err
	}
	return proxy.New(proxy.Options{
		Routes:   routes,
		Verifier: g.verifier.v,
		Resolver: resolver,
		Headers: proxy.HeaderConfig{
			Namespace: append([]string(nil), h.Namespace...), StripUntrusted: append([]string(nil), h.StripUntrusted...),
			ClientID: h.ClientID, Issuer: h.Issuer, ClientName: h.ClientName,
			Kind: h.Kind, Scopes: h.Scopes, UserID: h.UserID, MetadataPrefix: h.MetadataPrefix,
			MetadataJSON: h.MetadataJSON, UserMetadataJSON: h.UserMetadataJSON, MaxValueBytes: h.MaxValueBytes, MaxJSONBytes: h.MaxJSONBytes,
			Claims: maps.Clone(h.Claims), Assertion: cfg.Assertion.Header,
		},
		Assertion:      assertionSigner(a.assertion),
		Endpoints:      eps,
		Realm:          cfg.Server.Realm,
		ReadTimeout:    cfg.Server.ReadTimeout.D(),
		ForwardUnknown: cfg.Metadata.OnUnknown == "forward",
		TrustedProxies: cfg.Server.TrustedPrefixes,
		// One transport for every generation: a reload keeps the pooled
		// upstream connections.
		Transport:      a.transport,
		Observer:       a.metrics,
		Logger:         a.log.Named("gateway"),
		RateLimiter:    g.resolver.limiter,
		AccessLog:      a.access,
		TracerProvider: a.tracing.TracerProvider(),
	}), nil
}

// endpoints are the gateway's own handlers on the public listener, for
// the features that are on.
func (a *App) endpoints(cfg *config.Config, g *generation, resolver proxy.MetadataResolver) (map[string]http.Handler, error) {
	eps := map[string]http.Handler{}
	if a.assertion != nil {
		eps[config.AssertionJWKSPath] = a.assertion.JWKSHandler()
	}
	h, err := a.tokenEndpointHandler(cfg, g.verifier.v, resolver)
	if err != nil {
		return nil, err
	}
	if h != nil {
		eps[cfg.TokenEndpoint.Path] = h
	}
	inv, _ := resolver.(invalidation.Invalidator)
	if ls := cfg.Invalidation.Auth0LogStream; ls.Authorization != "" && inv != nil {
		eps[ls.Path] = invalidation.NewLogStream(invalidation.LogStreamOptions{
			Authorization: ls.Authorization, Issuers: a.metadataIssuers(cfg), MaxBodyBytes: ls.MaxBodyBytes,
			Invalidator: inv, Logger: a.log.Named("log_stream"),
			OnLine: a.metrics.LogStreamEntry, OnInvalidate: a.metrics.Invalidation,
		})
	}
	if s := cfg.SelfService; s.Enabled {
		eps[s.Path] = proxy.NewSelfService(proxy.SelfServiceOptions{
			Verifier: g.verifier.v, Resolver: resolver, Realm: cfg.Server.Realm,
			ForwardUnknown: cfg.Metadata.OnUnknown == "forward",
			MetadataKeys:   s.MetadataKeys, CORSOrigins: s.CORSOrigins, Logger: a.log.Named("self_service"),
		})
	}
	return eps, nil
}

// adminAPI is the generation's cache admin API, nil when it is off.
func (a *App) adminAPI(cfg *config.Config, g *generation) http.Handler {
	inv, _ := g.resolver.resolver.(invalidation.Invalidator)
	if cfg.Invalidation.AdminToken == "" || inv == nil {
		return nil
	}
	return invalidation.NewAdmin(invalidation.AdminOptions{
		Token: cfg.Invalidation.AdminToken, Issuers: a.metadataIssuers(cfg), Invalidator: inv,
		Logger: a.log.Named("admin"), OnInvalidate: a.metrics.Invalidation,
	})
}

func routeConfig(i int, r config.Route) (proxy.RouteConfig, error) {
	rc := proxy.RouteConfig{
		Name: r.Name, Hosts: r.Match.Hosts, PathPrefix: r.Match.PathPrefix, Path: r.Match.Path, Methods: r.Match.Methods,
		StripPrefix: r.StripPrefix, AddPrefix: r.AddPrefix, MaxBodyBytes: r.MaxBodyBytes,
		DialTimeout: r.Timeouts.Dial.D(), ResponseHeaderTimeout: r.Timeouts.ResponseHeader.D(), H2C: r.H2C,
		UnhealthyFor: r.UnhealthyFor.D(), MaxUpstreamConns: r.MaxUpstreamConnections,
		AllowEncodedSlash: slices.Contains(r.Relax, "encoded_slash"),
		Policy:            proxy.Policy{AllOf: r.Scopes.AllOf, AnyOf: r.Scopes.AnyOf, Audiences: r.Audiences, AllowIf: r.AllowProgram},
	}
	if rc.Name == "" {
		rc.Name = fmt.Sprintf("route-%d", i)
	}
	if r.MetadataHeaders != nil {
		rc.Policy.MetadataKeys = append([]string{}, (*r.MetadataHeaders)...)
	}
	for _, k := range r.Callers {
		if k == "client" {
			rc.Policy.Kinds = append(rc.Policy.Kinds, enrich.KindClient)
		} else {
			rc.Policy.Kinds = append(rc.Policy.Kinds, enrich.KindUser)
		}
	}
	switch r.Auth {
	case "optional":
		rc.Auth = proxy.AuthOptional
	case "public":
		rc.Auth = proxy.AuthPublic
	default:
		rc.Auth = proxy.AuthRequired
	}
	rc.Upstreams = r.UpstreamURLs
	return rc, nil
}

// waitReady polls until every issuer's JWKS has been fetched, so a reload
// that adds an issuer never swaps in a verifier that refuses its tokens.
func waitReady(ctx context.Context, v *proxy.Verifier) error {
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for !v.Ready(ctx) {
		select {
		case <-ctx.Done():
			return fmt.Errorf("JWKS not fetched: %w", ctx.Err())
		case <-t.C:
		}
	}
	return nil
}
