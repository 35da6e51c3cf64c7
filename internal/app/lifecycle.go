package app

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"go.uber.org/zap"
)

// Run serves until ctx is cancelled or a server fails. On cancellation it
// drains: /readyz fails at once while the listeners keep serving for
// server.drain_delay, so load balancers move new traffic away first; then
// Shutdown waits for in-flight requests up to server.shutdown_timeout.
func (a *App) Run(ctx context.Context) error {
	for _, s := range a.servers {
		if s.name == "gateway" || s.name == "admin" {
			a.start(s)
		}
	}
	a.serving.Store(true)
	cfg := a.live.Load().cfg
	stopWatch := func() {}
	if every := cfg.Server.WatchConfig.D(); every > 0 {
		stopWatch = a.startWatch(ctx, cfg.File, every)
	}
	var err error
	select {
	case <-ctx.Done():
	case err = <-a.errs:
	}
	// Stop the watcher, and wait for a reload it started (ctx cancels it),
	// before anything drains or closes.
	stopWatch()
	if err == nil { // cancelled, not failed
		a.drain()
	}
	cfg = a.live.Load().cfg // a reload may have changed the timings
	shutdownCtx, cancel := context.WithTimeout(context.Background(), cfg.Server.ShutdownTimeout.D())
	defer cancel()
	return errors.Join(err, a.Shutdown(shutdownCtx))
}

// drain reports not ready and keeps serving for the drain delay, or until
// SkipDrain is called.
func (a *App) drain() {
	a.draining.Store(true)
	d := a.live.Load().cfg.Server.DrainDelay.D()
	if d <= 0 {
		return
	}
	a.log.Info("draining: /readyz now fails, still serving", zap.Duration("drain_delay", d))
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-a.skipDrain:
		a.log.Info("drain cut short")
	}
}

// SkipDrain ends the drain delay now (cmd/gateway calls it on a second
// SIGTERM or SIGINT); in-flight requests still get the shutdown timeout.
func (a *App) SkipDrain() {
	a.skipOnce.Do(func() { close(a.skipDrain) })
}

// Shutdown stops accepting connections and waits, until ctx ends, for
// in-flight requests: plain ones, streamed responses and WebSocket tunnels
// alike (http.Server.Shutdown does not see hijacked connections, so the
// gateway counts its own requests). At the deadline every request context
// is cancelled, which ends streams and tunnels, and the servers are closed.
//
// A config reload in progress is cancelled and waited for first, so the
// generation it would swap in is either closed here or by the reload.
func (a *App) Shutdown(ctx context.Context) error {
	a.draining.Store(true)
	if err := a.reloads.close(ctx); err != nil {
		a.log.Warn("shutting down under a config reload; it closes what it built when it ends", zap.Error(err))
	}
	var (
		mu   sync.Mutex
		errs []error
		wg   sync.WaitGroup
	)
	for _, s := range a.servers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := s.srv.Shutdown(ctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
				mu.Lock()
				errs = append(errs, fmt.Errorf("%s: %w", s.name, err))
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if n := a.waitInflight(ctx); n > 0 {
		a.log.Warn("shutdown deadline reached: closing open requests and connections", zap.Int64("in_flight", n))
		a.cancelHard()
		for _, s := range a.servers {
			_ = s.srv.Close()
		}
		// Cancelled handlers return quickly; give them a moment so the
		// caches they use are not closed under them.
		grace, cancel := context.WithTimeout(context.Background(), time.Second)
		a.waitInflight(grace)
		cancel()
		errs = append(errs, fmt.Errorf("shutdown deadline reached with %d requests in flight: %w", n, ctx.Err()))
	}
	a.cancelHard()
	a.wg.Wait()
	errs = append(errs, a.closeAll())
	return errors.Join(errs...)
}

// waitInflight waits until no gateway request is running or ctx ends, and
// returns how many were still running.
func (a *App) waitInflight(ctx context.Context) int64 {
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for {
		n := a.inflight.Load()
		if n == 0 {
			return 0
		}
		select {
		case <-ctx.Done():
			return n
		case <-t.C:
		}
	}
}

func (a *App) closeAll() error {
	a.retired.closeAll()
	var errs []error
	for i := len(a.closers) - 1; i >= 0; i-- {
		errs = append(errs, a.closers[i]())
	}
	a.closers = nil
	a.stopBG()
	for _, s := range a.servers {
		_ = s.ln.Close()
	}
	return errors.Join(errs...)
}
