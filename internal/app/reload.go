package app

import (
	"bytes"
	"context"
	"crypto/sha256"
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

// Reload reads the config file again and, if it is valid, swaps it in
// atomically: requests already running finish on the old config, new ones
// get the new one, none is refused. The JWKS clients and the metadata cache
// are kept when their sections did not change. If the file is invalid, or
// changes a key that only a restart can apply, the running config stays,
// the reason is logged and gateway_config_reloads_total{result="failure"}
// counts it.
func (a *App) Reload(ctx context.Context) error {
	a.reloadMu.Lock()
	defer a.reloadMu.Unlock()
	file := a.live.Load().cfg.File
	if a.draining.Load() {
		// Parts built now would outlive the shutdown that is closing them.
		return fmt.Errorf("%s: not reloaded: the gateway is shutting down", file)
	}
	err := a.reload(ctx, file)
	a.metrics.Reload(err == nil)
	if err != nil {
		a.log.Error("config reload failed; still running the previous config", zap.String("config", file), zap.Error(err))
		return err
	}
	a.log.Info("config reloaded", zap.String("config", file))
	return nil
}

func (a *App) reload(ctx context.Context, file string) error {
	cur := a.live.Load()
	cfg, err := config.Load(file, a.lookupEnv)
	if err != nil {
		return err
	}
	if err := needsRestart(cur.cfg, cfg); err != nil {
		return err
	}
	next, err := a.build(a.bg, cfg, cur)
	if err != nil {
		return fmt.Errorf("%s: %w", file, err)
	}
	if next.verifier != cur.verifier {
		wctx, cancel := context.WithTimeout(ctx, a.newIssuerWait)
		err := waitReady(wctx, next.verifier.v)
		cancel()
		if err != nil {
			a.retire(next, cur)
			return fmt.Errorf("%s: issuers: %w", file, err)
		}
	}
	a.live.Store(next)
	a.retired.add(retireAfter, func() { a.retire(cur, next) })
	return nil
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

// retirements are the closers of replaced generations, run after a grace
// period or at shutdown, whichever comes first.
type retirements struct {
	mu      sync.Mutex
	pending map[*time.Timer]func()
}

func (r *retirements) add(after time.Duration, f func()) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.pending == nil {
		r.pending = map[*time.Timer]func(){}
	}
	var t *time.Timer
	t = time.AfterFunc(after, func() {
		r.mu.Lock()
		_, ok := r.pending[t]
		delete(r.pending, t)
		r.mu.Unlock()
		if ok {
			f()
		}
	})
	r.pending[t] = f
}

func (r *retirements) closeAll() {
	r.mu.Lock()
	fs := make([]func(), 0, len(r.pending))
	for t, f := range r.pending {
		if t.Stop() {
			fs = append(fs, f)
		}
		delete(r.pending, t)
	}
	r.mu.Unlock()
	for _, f := range fs {
		f()
	}
}
