// Package app turns a validated configuration into running servers: the
// public gateway listener, the admin listener, and in development the dev
// issuer and the demo upstream. It owns the lifecycle around them: drain
// and graceful shutdown, and config reloads that swap the request path
// atomically. cmd/gateway only parses flags and turns signals into calls.
package app

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
	"golang.org/x/net/netutil"

	"github.com/metagate/gateway/internal/assertion"
	"github.com/metagate/gateway/internal/config"
	"github.com/metagate/gateway/internal/demo"
	"github.com/metagate/gateway/internal/devissuer"
	"github.com/metagate/gateway/internal/gctune"
	"github.com/metagate/gateway/internal/invalidation"
	"github.com/metagate/gateway/internal/metrics"
	"github.com/metagate/gateway/internal/tracing"
	"github.com/metagate/gateway/proxy"
)

// Options are the parts of an App that do not come from the config file.
type Options struct {
	Logger *zap.Logger // nil: no logs
	// AccessLog receives one line per request, unless log.access is
	// false. Nil means Logger.Named("access"); cmd/gateway passes a
	// logger of its own that buffers its writes.
	AccessLog *zap.Logger
	// TuneGC applies server.gc_percent and server.memory_limit (see
	// gctune) in New and puts the previous values back in Shutdown. The
	// settings are process-wide, so only the process's one App sets it:
	// cmd/gateway serve does, tests leave it off unless they are about it.
	TuneGC bool
	// LookupEnv expands ${VAR} when the config file is read again for a
	// reload, so it must be the lookup the config was first loaded with.
	// Nil means os.LookupEnv.
	LookupEnv func(string) (string, bool)
	// Version is reported as service.version on trace spans.
	Version string
}

// App is a built gateway: listeners are bound, the dev issuer (if any) is
// serving, and JWKS clients have started. Run serves the rest.
type App struct {
	// DevIssuer is the running dev issuer, nil unless enabled; tests mint
	// tokens with it.
	DevIssuer *devissuer.Issuer

	log       *zap.Logger
	access    *zap.Logger // nil: log.access is false
	lookupEnv func(string) (string, bool)
	metrics   *metrics.Metrics
	transport *http.Transport
	tracing   *tracing.Provider   // fixed for the process: tracing is restart-only
	devIssuer *proxy.IssuerConfig // fixed for the process, like its listener
	// assertion signs the gateway assertion (nil unless assertion.enabled);
	// it lives for the process so retired keys stay published across
	// reloads.
	assertion *assertion.Signer

	// bg carries the background work of every generation (JWKS refresh,
	// cache refresh); it ends with Shutdown, not with the caller's ctx.
	bg            context.Context
	stopBG        context.CancelFunc
	live          atomic.Pointer[generation]
	reloadMu      sync.Mutex
	reloads       reloadGate // lets Shutdown cancel and wait for a reload
	retired       retirements
	newIssuerWait time.Duration

	servers []*server
	closers []func() error
	wg      sync.WaitGroup
	errs    chan error

	serving  atomic.Bool
	draining atomic.Bool
	inflight atomic.Int64 // gateway requests being served, WebSockets included
	// hardStop is every request's base context; cancelling it at the
	// shutdown deadline ends streams and WebSocket tunnels.
	hardStop   context.Context
	cancelHard context.CancelFunc
	skipDrain  chan struct{}
	skipOnce   sync.Once
}

type server struct {
	name string
	ln   net.Listener
	srv  *http.Server
	tls  bool
}

// New builds the gateway described by cfg. ctx only carries values:
// background work lives until Shutdown.
func New(ctx context.Context, cfg *config.Config, o Options) (a *App, err error) {
	if o.Logger == nil {
		o.Logger = zap.NewNop()
	}
	if o.LookupEnv == nil {
		o.LookupEnv = os.LookupEnv
	}
	bg, stopBG := context.WithCancel(context.WithoutCancel(ctx))
	hard, cancelHard := context.WithCancel(context.WithoutCancel(ctx))
	a = &App{
		log: o.Logger, lookupEnv: o.LookupEnv, metrics: metrics.New(), transport: proxy.NewTransport(cfg.Server.UpstreamMaxConnections),
		bg: bg, stopBG: stopBG, hardStop: hard, cancelHard: cancelHard,
		errs: make(chan error, 4), skipDrain: make(chan struct{}), newIssuerWait: newIssuerWait,
	}
	defer func() {
		if err != nil {
			a.cancelHard()
			a.closeAll()
		}
	}()
	if cfg.Log.Access {
		a.access = o.AccessLog
		if a.access == nil {
			a.access = o.Logger.Named("access")
		}
	}
	if o.TuneGC {
		if err := a.tuneGC(cfg.Server, o.LookupEnv); err != nil {
			return nil, err
		}
	}

	if a.tracing, err = tracing.New(ctx, cfg.Tracing, o.Version); err != nil {
		return nil, err
	}
	a.closers = append(a.closers, func() error {
		// Last out: flush the spans of the requests that just finished.
		ctx, cancel := context.WithTimeout(context.Background(), cfg.Tracing.Timeout.D())
		defer cancel()
		return a.tracing.Shutdown(ctx)
	})
	if cfg.DevIssuer.Enabled {
		if err := a.startDevIssuer(cfg.DevIssuer); err != nil {
			return nil, err
		}
	}
	if cfg.DemoUpstream.Enabled {
		if err := a.listen(cfg, "demo upstream", cfg.DemoUpstream.Listen, demo.Handler(), true); err != nil {
			return nil, err
		}
	}
	if a.assertion, err = newAssertionSigner(cfg.Assertion, o.Logger.Named("assertion")); err != nil {
		return nil, err
	}
	if a.assertion != nil {
		a.closers = append(a.closers, func() error { a.assertion.Close(); return nil })
	}
	g, err := a.build(a.bg, cfg, nil)
	if err != nil {
		return nil, err
	}
	a.live.Store(g)
	a.closers = append(a.closers, func() error { a.retire(a.live.Load(), nil); return nil })

	if err := a.listen(cfg, "gateway", cfg.Server.Listen, http.HandlerFunc(a.serveGateway), false); err != nil {
		return nil, err
	}
	gwServer := a.servers[len(a.servers)-1]
	// Past max_connections new connections wait in the accept queue, so
	// a flood of idle or trickling sockets cannot exhaust file
	// descriptors or the upstreams.
	gwServer.ln = netutil.LimitListener(gwServer.ln, cfg.Server.MaxConnections)
	if t := cfg.Server.TLS; t.CertFile != "" {
		cr, err := proxy.NewCertReloader(t.CertFile, t.KeyFile, time.Second, a.log.Named("tls"))
		if err != nil {
			return nil, fmt.Errorf("server.tls: %w", err)
		}
		s := gwServer
		s.srv.TLSConfig = &tls.Config{GetCertificate: cr.GetCertificate, MinVersion: tls.VersionTLS12}
		s.tls = true
	}
	if cfg.Server.AdminListen != "" {
		if err := a.listen(cfg, "admin", cfg.Server.AdminListen, a.adminHandler(cfg.Server.Pprof), false); err != nil {
			return nil, err
		}
	}
	return a, nil
}

// tuneGC decides and applies the process's GC settings, logs them once
// with where each came from, and restores the previous ones last thing in
// Shutdown.
func (a *App) tuneGC(s config.Server, lookupEnv func(string) (string, bool)) error {
	gc, err := gctune.Decide(gctune.Want{GCPercent: s.GCPercent, MemoryLimit: s.MemoryLimit}, gctune.Env{LookupEnv: lookupEnv})
	if err != nil {
		return fmt.Errorf("tune the garbage collector: %w", err)
	}
	restore := gc.Apply()
	a.closers = append(a.closers, func() error { restore(); return nil })
	a.log.Info("gc tuned",
		zap.Int("gc_percent", gc.GCPercent), zap.String("gc_percent_from", gc.GCPercentFrom),
		zap.Int64("memory_limit_bytes", gc.MemoryLimit), zap.String("memory_limit_from", gc.MemoryLimitFrom),
		zap.Int64("cgroup_limit_bytes", gc.CgroupLimit), zap.String("cgroup_file", gc.CgroupFile))
	return nil
}

// serveGateway hands each request to the generation that is live when it
// arrives; a reload never changes the config under a running request.
func (a *App) serveGateway(w http.ResponseWriter, r *http.Request) {
	a.inflight.Add(1)
	defer a.inflight.Add(-1)
	a.live.Load().gw.ServeHTTP(w, r)
}

// startDevIssuer serves the dev issuer right away, because the verifier
// fetches its JWKS while being built.
func (a *App) startDevIssuer(d config.DevIssuer) error {
	key, err := devissuer.LoadOrCreateKey(d.KeyFile)
	if err != nil {
		return fmt.Errorf("dev_issuer.key_file: %w", err)
	}
	ln, err := net.Listen("tcp", d.Listen)
	if err != nil {
		return fmt.Errorf("dev_issuer.listen: %w", err)
	}
	addr := ln.Addr().String()
	iss := d.Issuer
	if strings.HasSuffix(d.Listen, ":0") && iss == "http://"+d.Listen+"/" {
		iss = "http://" + addr + "/" // a test asked for any free port
	}
	clients, users := devIssuerUsers(d)
	di := devissuer.New(devissuer.Options{Issuer: iss, Audience: d.Audience, TTL: d.TokenTTL.D(), Key: key, Clients: clients, Users: users,
		CORSOrigins: d.CORSOrigins})
	a.DevIssuer = di
	a.addServer(nil, "dev issuer", ln, di.Handler(), true)
	ic := config.DevIssuerEntry(d, iss, "http://"+addr+"/.well-known/jwks.json")
	dev := issuerConfig(ic)
	a.devIssuer = &dev
	return nil
}

func (a *App) adminHandler(withPprof bool) http.Handler {
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
	// The cache admin API of the live generation (404 while it is off).
	serveAdmin := func(w http.ResponseWriter, r *http.Request) {
		if h := a.live.Load().admin; h != nil {
			h.ServeHTTP(w, r)
			return
		}
		http.NotFound(w, r)
	}
	if a.assertion != nil {
		mux.Handle("GET "+config.AssertionJWKSPath, a.assertion.JWKSHandler())
	}
	mux.HandleFunc(invalidation.PathCache, serveAdmin)
	mux.HandleFunc(invalidation.PathCache+"/", serveAdmin)
	if withPprof {
		// Registered by hand: the gateway never serves http.DefaultServeMux.
		mux.HandleFunc("GET /debug/pprof/", pprof.Index)
		mux.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("POST /debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	}
	return mux
}

func (a *App) notReady(ctx context.Context) string {
	switch {
	case a.draining.Load():
		return "draining"
	case !a.serving.Load():
		return "starting"
	case !a.live.Load().verifier.v.Ready(ctx):
		return "JWKS not fetched yet"
	}
	return ""
}

// listen binds addr now, so a taken port fails before anything serves;
// serveNow starts helper servers at once, the rest wait for Run.
func (a *App) listen(cfg *config.Config, name, addr string, h http.Handler, serveNow bool) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("%s: listen on %s: %w", name, addr, err)
	}
	a.addServer(cfg, name, ln, h, serveNow)
	return nil
}

// addServer registers a server on a bound listener; cfg is nil for the dev
// issuer (see httpServer).
func (a *App) addServer(cfg *config.Config, name string, ln net.Listener, h http.Handler, serveNow bool) {
	s := &server{name: name, ln: ln, srv: a.httpServer(cfg, h)}
	a.servers = append(a.servers, s)
	if serveNow {
		a.start(s)
	}
}

// httpServer applies the server limits; cfg is nil for the dev issuer,
// which keeps net/http's defaults.
func (a *App) httpServer(cfg *config.Config, h http.Handler) *http.Server {
	srv := &http.Server{
		Handler:     h,
		ErrorLog:    zap.NewStdLog(a.log.Named("http")),
		BaseContext: func(net.Listener) context.Context { return a.hardStop },
	}
	if cfg != nil {
		s := cfg.Server
		srv.ReadHeaderTimeout = s.ReadHeaderTimeout.D()
		srv.IdleTimeout = s.IdleTimeout.D()
		srv.MaxHeaderBytes = s.MaxHeaderBytes
	} else {
		srv.ReadHeaderTimeout = 10 * time.Second
	}
	return srv
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
