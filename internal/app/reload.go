package app

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"reflect"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/metagate/gateway/internal/config"
)

// retireAfter is how long parts of a replaced generation stay open. A
// request uses the verifier and resolver only before it is proxied, so a
// few seconds is plenty; a WebSocket that lives for hours does not need
// them.
const retireAfter = 10 * time.Second

// newIssuerWait bounds the wait for a new issuer's first JWKS fetch
// during a reload (App.newIssuerWait, which tests shorten).
const newIssuerWait = 10 * time.Second

// errShuttingDown is why a reload is refused or abandoned once Shutdown
// has begun.
var errShuttingDown = errors.New("the gateway is shutting down")

// Reload reads the config file again and, if it is valid, swaps it in
// atomically: requests already running finish on the old config, new ones
// get the new one, none is refused. The JWKS clients and the metadata cache
// are kept when their sections did not change. If the file is invalid, or
// changes a key that only a restart can apply, the running config stays,
// the reason is logged and gateway_config_reloads_total{result="failure"}
// counts it. Shutdown cancels a reload in progress.
func (a *App) Reload(ctx context.Context) error {
	a.reloadMu.Lock()
	defer a.reloadMu.Unlock()
	file := a.live.Load().cfg.File
	if a.draining.Load() {
		// Parts built now would outlive the shutdown that is closing them.
		return fmt.Errorf("%s: not reloaded: %w", file, errShuttingDown)
	}
	ctx, leave, err := a.reloads.enter(ctx)
	if err != nil {
		return fmt.Errorf("%s: not reloaded: %w", file, err)
	}
	defer leave()
	err = a.reload(ctx, file)
	a.metrics.Reload(err == nil)
	if err != nil {
		a.log.Error("config reload failed; still running the previous config", zap.String("config", file), zap.Error(err))
		return err
	}
	a.log.Info("config reloaded", zap.String("config", file))
	return nil
}

// reload builds the generation file describes and swaps it in. ctx ends
// when the caller gives up or Shutdown begins; until the swap, that aborts
// the new parts too, so a JWKS that hangs holds up neither.
func (a *App) reload(ctx context.Context, file string) error {
	cur := a.live.Load()
	cfg, err := config.Load(file, a.lookupEnv)
	if err != nil {
		return err
	}
	if err := needsRestart(cur.cfg, cfg); err != nil {
		return err
	}
	// The new parts live on a.bg like every generation's, but under a
	// context of this reload's that ctx cancels until the swap: the first
	// JWKS fetch runs inside build, for up to the JWKS client's timeout.
	partsCtx, abort := context.WithCancel(a.bg)
	keepParts := context.AfterFunc(ctx, abort)
	next, err := a.build(partsCtx, cfg, cur)
	if err != nil {
		abort()
		return fmt.Errorf("%s: %w", file, err)
	}
	newVerifier := next.verifier != cur.verifier
	if newVerifier {
		// partsCtx is released with the verifier built on it, by
		// whichever generation retires it last.
		stop := next.verifier.stop
		next.verifier.stop = func() { stop(); abort() }
	}
	if err := a.swapIn(ctx, cur, next, keepParts); err != nil {
		abort()
		a.retire(next, cur)
		return fmt.Errorf("%s: %w", file, err)
	}
	if !newVerifier {
		abort() // build runs only the verifier on its context: nothing uses partsCtx
	}
	return nil
}

// swapIn makes next live once its new issuers' keys are fetched, unless
// ctx ends first; keepParts detaches the new parts from ctx, and fails if
// ctx has already cancelled them.
func (a *App) swapIn(ctx context.Context, cur, next *generation, keepParts func() bool) error {
	if next.verifier != cur.verifier {
		wctx, cancel := context.WithTimeout(ctx, a.newIssuerWait)
		err := waitReady(wctx, next.verifier.v)
		cancel()
		if err != nil {
			if errors.Is(context.Cause(ctx), errShuttingDown) {
				return fmt.Errorf("not reloaded: %w", errShuttingDown)
			}
			return fmt.Errorf("issuers: %w", err)
		}
	}
	if !keepParts() {
		return fmt.Errorf("not reloaded: %w", context.Cause(ctx))
	}
	return a.reloads.commit(func() {
		a.live.Store(next)
		a.retired.add(retireAfter, func() { a.retire(cur, next) })
	})
}

// restartOnly lists the keys bound to listeners and process-wide state.
var restartOnly = []struct {
	key string
	get func(*config.Config) any
}{
	{"server.listen", func(c *config.Config) any { return c.Server.Listen }},
	{"server.admin_listen", func(c *config.Config) any { return c.Server.AdminListen }},
	{"server.tls", func(c *config.Config) any { return c.Server.TLS }},
	{"server.max_header_bytes", func(c *config.Config) any { return c.Server.MaxHeaderBytes }},
	{"server.read_header_timeout", func(c *config.Config) any { return c.Server.ReadHeaderTimeout }},
	{"server.idle_timeout", func(c *config.Config) any { return c.Server.IdleTimeout }},
	{"server.watch_config", func(c *config.Config) any { return c.Server.WatchConfig }},
	{"server.pprof", func(c *config.Config) any { return c.Server.Pprof }},
	// The signer is built once (its retired keys must outlive reloads);
	// header and audience are read per generation and may change.
	{"assertion", func(c *config.Config) any { x := c.Assertion; x.Header, x.Audience = "", ""; return x }},
	{"server.gc_percent", func(c *config.Config) any { return c.Server.GCPercent }},
	{"server.memory_limit", func(c *config.Config) any { return c.Server.MemoryLimit }},
	{"log", func(c *config.Config) any { return c.Log }},
	{"dev_issuer", func(c *config.Config) any { return c.DevIssuer }},
	{"demo_upstream", func(c *config.Config) any { return c.DemoUpstream }},
	{"tracing", func(c *config.Config) any { return c.Tracing }},
}

// needsRestart refuses a reload that changes restart-only keys: applying
// the rest silently would leave the file saying one thing and the process
// doing another.
func needsRestart(old, next *config.Config) error {
	var changed []string
	for _, k := range restartOnly {
		if !reflect.DeepEqual(k.get(old), k.get(next)) {
			changed = append(changed, k.key)
		}
	}
	if len(changed) > 0 {
		return fmt.Errorf("%s: %s changed: only a restart applies it; nothing was reloaded", next.File, strings.Join(changed, ", "))
	}
	return nil
}

// startWatch runs watch until stop is called. stop waits for it, and so
// for a reload it started: Run calls it before anything is closed.
func (a *App) startWatch(ctx context.Context, file string, every time.Duration) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		a.watch(ctx, file, every)
	}()
	return func() {
		cancel()
		<-done
	}
}

// watch reloads when the config file's content changes. It compares
// content, not modification times, because Kubernetes updates a mounted
// ConfigMap by swapping a symlink to a new directory.
func (a *App) watch(ctx context.Context, file string, every time.Duration) {
	last, _ := digest(file)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		d, err := digest(file)
		if err != nil || bytes.Equal(d, last) {
			continue // mid-swap or unchanged; look again next tick
		}
		last = d
		a.log.Info("config file changed", zap.String("config", file))
		_ = a.Reload(ctx)
	}
}

func digest(file string) ([]byte, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", file, err)
	}
	sum := sha256.Sum256(b)
	return sum[:], nil
}

// reloadGate lets Shutdown stop config reloads. It cancels the reload in
// progress, which may otherwise wait up to newIssuerWait for a new
// issuer's JWKS, and waits for it; and it keeps any reload from swapping in
// a generation after Shutdown has begun, when nothing would close it.
// App.reloadMu serializes reloads, so there is at most one in progress.
type reloadGate struct {
	mu     sync.Mutex
	closed bool
	cancel context.CancelCauseFunc // of the reload in progress; nil if none
	done   chan struct{}           // closed when that reload has ended
}

// enter starts a reload. The context it returns ends with ctx or when
// close is called; leave must be called once the reload is over.
func (g *reloadGate) enter(ctx context.Context) (_ context.Context, leave func(), _ error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return nil, nil, errShuttingDown
	}
	ctx, cancel := context.WithCancelCause(ctx)
	done := make(chan struct{})
	g.cancel, g.done = cancel, done
	return ctx, func() {
		g.mu.Lock()
		g.cancel, g.done = nil, nil
		g.mu.Unlock()
		cancel(nil)
		close(done)
	}, nil
}

// commit runs swap unless close has been called. The two exclude each
// other, so a generation swapped in is one that Shutdown sees and closes.
func (g *reloadGate) commit(swap func()) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return fmt.Errorf("not reloaded: %w", errShuttingDown)
	}
	swap()
	return nil
}

// close refuses later reloads, cancels the one in progress and waits for
// it until ctx ends. One still running then cannot commit: it closes what
// it built when it ends.
func (g *reloadGate) close(ctx context.Context) error {
	g.mu.Lock()
	g.closed = true
	cancel, done := g.cancel, g.done
	g.mu.Unlock()
	if cancel == nil {
		return nil
	}
	cancel(errShuttingDown)
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("config reload still running: %w", ctx.Err())
	}
}

// retirements are the closers of replaced generations, run after a grace
// period or at shutdown, whichever comes first. Whichever side takes a
// closer out of pending runs it, so each runs exactly once.
type retirements struct {
	mu      sync.Mutex
	closed  bool
	pending map[*retiree]struct{}
	running sync.WaitGroup // closers that timers took out of pending
}

type retiree struct {
	timer *time.Timer
	close func()
}

// add runs f after the grace period, or at closeAll; after closeAll, at
// once, since nothing would run it later.
func (r *retirements) add(after time.Duration, f func()) {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		f()
		return
	}
	defer r.mu.Unlock()
	if r.pending == nil {
		r.pending = map[*retiree]struct{}{}
	}
	e := &retiree{close: f}
	e.timer = time.AfterFunc(after, func() { r.fire(e) })
	r.pending[e] = struct{}{}
}

// fire runs e's closer unless closeAll has taken it already.
func (r *retirements) fire(e *retiree) {
	r.mu.Lock()
	_, ok := r.pending[e]
	if ok {
		delete(r.pending, e)
		r.running.Add(1)
	}
	r.mu.Unlock()
	if ok {
		defer r.running.Done()
		e.close()
	}
}

// closeAll runs every closer still pending, including those whose timer
// has fired but whose callback has not taken them yet, and returns once
// the closers that timers did take have finished too.
func (r *retirements) closeAll() {
	r.mu.Lock()
	r.closed = true
	es := make([]*retiree, 0, len(r.pending))
	for e := range r.pending {
		e.timer.Stop() // if it has fired, fire finds e gone
		es = append(es, e)
	}
	clear(r.pending)
	r.mu.Unlock()
	for _, e := range es {
		e.close()
	}
	r.running.Wait()
}
