// Package app turns a validated configuration into running servers: the
// public gateway listener, the admin listener, and in development the dev
// issuer and the demo upstream. cmd/gateway only parses flags and handles
// signals; everything a test wants to start lives here.
package app

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/metagate/gateway/cache"
	"github.com/metagate/gateway/enrich"
	"github.com/metagate/gateway/internal/config"
	"github.com/metagate/gateway/internal/demo"
	"github.com/metagate/gateway/internal/devissuer"
	"github.com/metagate/gateway/internal/metrics"
	"github.com/metagate/gateway/proxy"
)

// App is a built gateway: listeners are bound, the dev issuer (if any) is
// serving, and JWKS clients have started. Run serves the rest.
type App struct {
	// DevIssuer is the running dev issuer, nil unless enabled; tests mint
	// tokens with it.
	DevIssuer *devissuer.Issuer

	metrics  *metrics.Metrics
	cfg      *config.Config
	log      *zap.Logger
	verifier *proxy.Verifier
	cache    *cache.Tiered[*enrich.Metadata]
	closers  []func() error
	servers  []*server
	cancel   context.CancelFunc
	draining atomic.Bool
	serving  atomic.Bool
	wg       sync.WaitGroup
	errs     chan error
}

type server struct {
	name string
	ln   net.Listener
	srv  *http.Server
	tls  bool
}

// New builds the gateway described by cfg. Background work (JWKS refresh,
// cache refreshes) lives until Shutdown.
func New(ctx context.Context, cfg *config.Config, log *zap.Logger) (a *App, err error) {
	ctx, cancel := context.WithCancel(ctx)
	a = &App{cfg: cfg, log: log, cancel: cancel, errs: make(chan error, 4), metrics: metrics.New()}
	defer func() {
		if err != nil {
			a.closeAll()
		}
	}()

	issuers := make([]proxy.IssuerConfig, 0, len(cfg.Issuers)+1)
	for _, is := range cfg.Issuers {
		issuers = append(issuers, issuerConfig(is))
	}
	if cfg.DevIssuer.Enabled {
		dev, err := a.startDevIssuer()
		if err != nil {
			return nil, err
		}
		issuers = append(issuers, dev)
	}
	if cfg.DemoUpstream.Enabled {
		if err := a.listen("demo upstream", cfg.DemoUpstream.Listen, demo.Handler(), true); err != nil {
			return nil, err
		}
	}

	a.verifier, err = proxy.NewVerifier(ctx, proxy.VerifierOptions{
		Issuers:            issuers,
		MaxTokenBytes:      cfg.Server.MaxTokenBytes,
		Logger:             log.Named("jwks"),
		OnJWKSRefreshError: a.metrics.JWKSFailure,
	})
	if err != nil {
		return nil, err
	}
	resolver, err := a.buildResolver()
	if err != nil {
		return nil, err
	}
	gw, err := a.buildGateway(resolver)
	if err != nil {
		return nil, err
	}
	if err := a.listen("gateway", cfg.Server.Listen, gw, false); err != nil {
		return nil, err
	}
	if t := cfg.Server.TLS; t.CertFile != "" {
		cr, err := proxy.NewCertReloader(t.CertFile, t.KeyFile, time.Second, log.Named("tls"))
		if err != nil {
			return nil, fmt.Errorf("server.tls: %w", err)
		}
		s := a.servers[len(a.servers)-1]
		s.srv.TLSConfig = &tls.Config{GetCertificate: cr.GetCertificate, MinVersion: tls.VersionTLS12}
		s.tls = true
	}
	if cfg.Server.AdminListen != "" {
		if err := a.listen("admin", cfg.Server.AdminListen, a.adminHandler(), false); err != nil {
			return nil, err
		}
	}
	return a, nil
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

// startDevIssuer serves the dev issuer right away, because the verifier
// fetches its JWKS while being built.
func (a *App) startDevIssuer() (proxy.IssuerConfig, error) {
	d := a.cfg.DevIssuer
	key, err := devissuer.LoadOrCreateKey(d.KeyFile)
	if err != nil {
		return proxy.IssuerConfig{}, fmt.Errorf("dev_issuer.key_file: %w", err)
	}
	ln, err := net.Listen("tcp", d.Listen)
	if err != nil {
		return proxy.IssuerConfig{}, fmt.Errorf("dev_issuer.listen: %w", err)
	}
	addr := ln.Addr().String()
	iss := d.Issuer
	if strings.HasSuffix(d.Listen, ":0") && iss == "http://"+d.Listen+"/" {
		iss = "http://" + addr + "/" // a test asked for any free port
	}
	clients := make([]devissuer.Client, len(d.Clients))
	for i, c := range d.Clients {
		clients[i] = devissuer.Client{ID: c.ID, Secret: c.Secret, Scopes: c.Scopes}
	}
	di := devissuer.New(devissuer.Options{Issuer: iss, Audience: d.Audience, TTL: d.TokenTTL.D(), Key: key, Clients: clients})
	a.DevIssuer = di
	a.serveOn("dev issuer", ln, di.Handler())
	ic := config.Issuer{Issuer: iss, Audiences: []string{d.Audience}}
	ic.Algorithms = []string{"RS256"}
	ic.Leeway, ic.JWKSRefresh, ic.UnknownKIDRefresh = config.Duration(30*time.Second), config.Duration(time.Hour), config.Duration(time.Minute)
	ic.JWKSURL = "http://" + addr + "/.well-known/jwks.json"
	return issuerConfig(ic), nil
}

func (a *App) buildResolver() (proxy.MetadataResolver, error) {
	m := a.cfg.Metadata
	var src enrich.Source
	switch m.Source {
	case "none":
		return nil, nil
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
		s, err := newAuth0Source(m.Auth0, a.log.Named("auth0"), a.metrics.Auth0Call, a.metrics.RateBudgetWait)
		if err != nil {
			return nil, err
		}
		src = s
	default:
		return nil, fmt.Errorf("metadata.source: unknown source %q", m.Source)
	}
	c := a.cfg.Cache
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
	}
	if c.Redis.URL != "" {
		rc, err := cache.NewRedisClient(c.Redis.URL, c.Redis.Timeout.D())
		if err != nil {
			return nil, fmt.Errorf("cache.redis.url: %w", err)
		}
		a.closers = append(a.closers, rc.Close)
		opts.Redis = rc
	}
	tc, err := cache.New[*enrich.Metadata](opts, enrich.Codec{})
	if err != nil {
		return nil, fmt.Errorf("cache: %w", err)
	}
	a.cache = tc
	a.closers = append(a.closers, tc.Close)
	return enrich.NewResolver(src, tc), nil
}

func (a *App) buildGateway(resolver proxy.MetadataResolver) (*proxy.Gateway, error) {
	routes := make([]proxy.RouteConfig, 0, len(a.cfg.Routes))
	for i, r := range a.cfg.Routes {
		rc, err := routeConfig(i, r)
		if err != nil {
			return nil, err
		}
		routes = append(routes, rc)
	}
	var trusted []netip.Prefix
	for _, p := range a.cfg.Server.TrustedProxies {
		trusted = append(trusted, netip.MustParsePrefix(p)) // validated by config
	}
	h := a.cfg.Headers
	return proxy.New(proxy.Options{
		Routes:   routes,
		Verifier: a.verifier,
		Resolver: resolver,
		Headers: proxy.HeaderConfig{
			Namespace: append([]string(nil), h.Namespace...), ClientID: h.ClientID, ClientName: h.ClientName,
			Kind: h.Kind, Scopes: h.Scopes, UserID: h.UserID, MetadataPrefix: h.MetadataPrefix,
			MetadataJSON: h.MetadataJSON, UserMetadataJSON: h.UserMetadataJSON, MaxValueBytes: h.MaxValueBytes, MaxJSONBytes: h.MaxJSONBytes,
		},
		Realm:          a.cfg.Server.Realm,
		ForwardUnknown: a.cfg.Metadata.OnUnknown == "forward",
		TrustedProxies: trusted,
		Observer:       a.metrics,
		Logger:         a.log.Named("access"),
	}), nil
}

func routeConfig(i int, r config.Route) (proxy.RouteConfig, error) {
	rc := proxy.RouteConfig{
		Name: r.Name, Hosts: r.Match.Hosts, PathPrefix: r.Match.PathPrefix, Path: r.Match.Path, Methods: r.Match.Methods,
		StripPrefix: r.StripPrefix, AddPrefix: r.AddPrefix, MaxBodyBytes: r.MaxBodyBytes,
		DialTimeout: r.Timeouts.Dial.D(), ResponseHeaderTimeout: r.Timeouts.ResponseHeader.D(), H2C: r.H2C,
		UnhealthyFor: r.UnhealthyFor.D(),
		Policy:       proxy.Policy{AllOf: r.Scopes.AllOf, AnyOf: r.Scopes.AnyOf, Audiences: r.Audiences},
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
	for _, u := range r.Upstreams {
		pu, err := url.Parse(u)
		if err != nil {
			return rc, fmt.Errorf("routes[%d].upstreams: %w", i, err)
		}
		rc.Upstreams = append(rc.Upstreams, pu)
	}
	return rc, nil
}

func (a *App) adminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", a.metrics.Handler())
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		if reason := a.notReady(r.Context()); reason != "" {
			http.Error(w, "not ready: "+reason, http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ready\n"))
	})
	return mux
}

func (a *App) notReady(ctx context.Context) string {
	switch {
	case a.draining.Load():
		return "draining"
	case !a.serving.Load():
		return "starting"
	case !a.verifier.Ready(ctx):
		return "JWKS not fetched yet"
	}
	return ""
}

// listen binds addr now, so a taken port fails before anything serves;
// serveNow starts helper servers at once, the rest wait for Run.
func (a *App) listen(name, addr string, h http.Handler, serveNow bool) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("%s: listen on %s: %w", name, addr, err)
	}
	if serveNow {
		a.serveOn(name, ln, h)
		return nil
	}
	a.servers = append(a.servers, &server{name: name, ln: ln, srv: a.httpServer(h)})
	return nil
}

func (a *App) httpServer(h http.Handler) *http.Server {
	s := a.cfg.Server
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: s.ReadHeaderTimeout.D(),
		IdleTimeout:       s.IdleTimeout.D(),
		MaxHeaderBytes:    s.MaxHeaderBytes,
		ErrorLog:          zap.NewStdLog(a.log.Named("http")),
	}
}

// serveOn starts serving a helper listener (dev issuer, demo upstream)
// immediately; it is shut down with the rest.
func (a *App) serveOn(name string, ln net.Listener, h http.Handler) {
	s := &server{name: name, ln: ln, srv: a.httpServer(h)}
	a.servers = append(a.servers, s)
	a.start(s)
}

func (a *App) start(s *server) {
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		a.log.Info("listening", zap.String("server", s.name), zap.String("addr", s.ln.Addr().String()))
		serve := s.srv.Serve
		if s.tls {
			serve = func(ln net.Listener) error { return s.srv.ServeTLS(ln, "", "") }
		}
		if err := serve(s.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			a.errs <- fmt.Errorf("%s: %w", s.name, err)
		}
	}()
}

// Addr returns the bound address of a named server ("gateway", "admin",
// "dev issuer", "demo upstream"), or "".
func (a *App) Addr(name string) string {
	for _, s := range a.servers {
		if s.name == name {
			return s.ln.Addr().String()
		}
	}
	return ""
}

// Run serves until ctx is cancelled or a server fails, then shuts down
// gracefully.
func (a *App) Run(ctx context.Context) error {
	for _, s := range a.servers {
		if s.name == "gateway" || s.name == "admin" {
			a.start(s)
		}
	}
	a.serving.Store(true)
	var err error
	select {
	case <-ctx.Done():
	case err = <-a.errs:
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), a.cfg.Server.ShutdownTimeout.D())
	defer cancel()
	return errors.Join(err, a.Shutdown(shutdownCtx))
}

// Shutdown stops accepting requests, waits for in-flight ones until ctx
// ends, and stops background work.
func (a *App) Shutdown(ctx context.Context) error {
	a.draining.Store(true)
	var errs []error
	for _, s := range a.servers {
		if err := s.srv.Shutdown(ctx); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", s.name, err))
		}
	}
	a.wg.Wait()
	errs = append(errs, a.closeAll())
	return errors.Join(errs...)
}

func (a *App) closeAll() error {
	a.cancel()
	var errs []error
	for i := len(a.closers) - 1; i >= 0; i-- {
		errs = append(errs, a.closers[i]())
	}
	a.closers = nil
	for _, s := range a.servers {
		_ = s.ln.Close()
	}
	return errors.Join(errs...)
}
