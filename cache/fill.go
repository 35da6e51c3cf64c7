package cache

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"

	"go.uber.org/zap"
)

// call is one fill of a key: an L2 lookup (with the claim) and, if needed,
// one origin load. Callers wait on done and then read the published result.
// Its fields other than invalidated are written only by the fill goroutine
// before done is closed; invalidated is guarded by Tiered.mu.
type call[V any] struct {
	done      chan struct{}
	published bool
	value     V
	result    Result
	err       error

	invalidated bool // set by Invalidate: the fill must not store what it loaded
}

// publish hands the result to the waiters, once; later calls are ignored
// (a fill that served a value early carries on refreshing it).
func (c *call[V]) publish(v V, r Result, err error) {
	if c.published {
		return
	}
	c.value, c.result, c.err = v, r, err
	c.published = true
	close(c.done)
}

// flight returns the fill of key that a Get may join, starting one if there
// is none, or nil after Close. A fill started for a Get keeps the Get's
// deadline; a background refresh has none. Both end at Close. With
// background set, flight starts a fill only if there is no joinable one
// (one refresh per key at a time) and never returns one to wait for.
func (t *Tiered[V]) flight(ctx context.Context, key string, load Loader[V], background bool) *call[V] {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return nil
	}
	if c := t.joinable[key]; c != nil {
		if background {
			return nil
		}
		return c
	}
	c := &call[V]{done: make(chan struct{})}
	t.joinable[key] = c
	t.running[key] = append(t.running[key], c)

	fctx := context.WithoutCancel(ctx)
	var cancel context.CancelFunc
	if d, ok := ctx.Deadline(); ok && !background {
		fctx, cancel = context.WithDeadline(fctx, d)
	} else {
		fctx, cancel = context.WithCancel(fctx)
	}
	stop := context.AfterFunc(t.ctx, cancel)

	t.wg.Add(1)
	go func() {
		defer t.wg.Done()
		defer stop()
		defer cancel()
		defer t.ended(key, c)
		t.fill(fctx, key, load, c)
	}()
	return c
}

// settle makes c unjoinable: its answer is final, and a Get that comes
// later must read L1 or start a fill of its own, not take an answer that
// was computed before it asked.
func (t *Tiered[V]) settle(key string, c *call[V]) {
	t.mu.Lock()
	if t.joinable[key] == c {
		delete(t.joinable, key)
	}
	t.mu.Unlock()
}

// answer settles c and publishes its final answer.
func (t *Tiered[V]) answer(key string, c *call[V], v V, r Result, err error) {
	t.settle(key, c)
	c.publish(v, r, err)
}

// ended forgets c once its fill, L2 write included, is over.
func (t *Tiered[V]) ended(key string, c *call[V]) {
	var zero V
	t.answer(key, c, zero, ResultMiss, errors.New("cache: internal error: fill ended without a result"))
	t.mu.Lock()
	defer t.mu.Unlock()
	cs := t.running[key]
	for i, x := range cs {
		if x == c {
			cs = append(cs[:i], cs[i+1:]...)
			break
		}
	}
	if len(cs) == 0 {
		delete(t.running, key)
	} else {
		t.running[key] = cs
	}
}

// fill finds the value for key in L1 (another fill may have just stored
// it), then L2, then the origin, and answers c's waiters. Before the origin
// it claims key fleet-wide (lookup); when another replica holds the claim,
// it waits for that replica's value instead (await). It may publish a
// servable value early (stale, or fresh but doubted) and carry on
// refreshing it; it writes what it loaded to L2 after answering.
func (t *Tiered[V]) fill(ctx context.Context, key string, load Loader[V], c *call[V]) {
	now := t.now()
	cur, have := t.l1.GetIfPresent(key)
	if have {
		switch t.freshness(cur, now) {
		case fresh:
			if !t.doubted(cur, now) {
				t.answerFresh(key, c, cur, ResultL1Hit)
				return
			}
			t.publishFresh(c, cur, ResultL1Hit) // serve it; re-check it below
		case revalidate:
			// Serve stale now: whoever waits gets an answer without the
			// origin's latency, and this fill goes on to refresh. It stays
			// joinable meanwhile, so Gets that come during the refresh
			// get the stale value too instead of loading again.
			c.publish(cur.value, ResultStale, nil)
		case expired:
			have = false
		}
	}

	// Watch for the notice that another replica filled key before asking
	// Redis, so that a value landing right after the lookup wakes us.
	w := t.notices.watch(key, t.bus != nil)
	defer w.stop()
	r := t.lookup(ctx, key, true)
	if t.useL2(key, c, r, &cur, &have) {
		return
	}
	token := r.token
	switch {
	case r.claimed:
		t.onClaim("acquired")
	case r.held > 0:
		// Another replica is asking the origin right now: take its value
		// when it lands.
		background := c.published
		wr, outcome := t.await(ctx, key, w, r.held, !background)
		if outcome != "" {
			t.onClaim(outcome)
		}
		switch outcome {
		case "waited":
			t.useL2(key, c, wr, &cur, &have)
			return
		case "takeover":
			token = wr.token
		case "timeout":
			if background {
				return // the next stale (or doubted) hit tries again
			}
			if err := ctx.Err(); err != nil {
				t.answerFailure(key, c, cur, have, fmt.Errorf("cache: waiting for another replica's fill of %q: %w", key, context.Cause(ctx)))
				return
			}
		}
		// "timeout" with time left, or Redis failed while waiting: fail
		// open, ask the origin without a claim.
	}
	t.load(ctx, key, load, c, cur, have, token)
}

// useL2 uses what the lookup r found in L2: a fresh entry answers c
// (reported true: the fill is done); a servable one newer than cur
// becomes cur, in L1 too, and is served at once if stale-while-revalidate
// allows it.
func (t *Tiered[V]) useL2(key string, c *call[V], r lookupResult[V], cur *entry[V], have *bool) bool {
	if !r.found {
		return false
	}
	e := r.entry
	if *have && e.fetchedAt.Before(cur.fetchedAt) {
		if !r.fresh {
			return false
		}
		// An older fresh value in L2 (this replica's own write of cur
		// failed): nobody invalidated the key since it was written, so
		// cur stands.
		e = *cur
	}
	e.checkedAt = r.at
	if r.fresh {
		t.storeL1(key, e, c)
		t.answerFresh(key, c, e, ResultL2Hit)
		return true
	}
	switch t.freshness(e, r.at) {
	case revalidate:
		*cur, *have = e, true
		t.storeL1(key, e, c)
		c.publish(e.value, ResultStale, nil)
	case ifError:
		*cur, *have = e, true
		t.storeL1(key, e, c)
	}
	return false
}

// load asks the origin, stores and answers what it says, and hands the
// claim (token, if any) back with the value written to L2.
func (t *Tiered[V]) load(ctx context.Context, key string, load Loader[V], c *call[V], cur entry[V], have bool, token string) {
	var zero V
	if t.takeDropped(key) {
		ctx = context.WithValue(ctx, invalidatedKey{}, true)
	}
	fetchedAt := t.now()
	v, err := t.callLoader(ctx, key, load)
	switch {
	case err == nil:
		e := entry[V]{value: v, fetchedAt: fetchedAt, checkedAt: fetchedAt}
		t.storeL1(key, e, c)
		t.answer(key, c, v, ResultMiss, nil)
		t.storeL2(key, e, c, token)
	case errors.Is(err, ErrNotFound):
		if t.opts.NegativeTTL == 0 {
			t.answer(key, c, zero, ResultNegative, ErrNotFound)
			t.release(key, token)
			return
		}
		e := entry[V]{fetchedAt: fetchedAt, checkedAt: fetchedAt, negative: true}
		t.storeL1(key, e, c)
		t.answer(key, c, zero, ResultNegative, ErrNotFound)
		t.storeL2(key, e, c, token)
	default:
		// Hand the key over at once: a replica waiting for it takes over.
		t.release(key, token)
		if ctx.Err() == nil {
			// Not remembered when the fill's own deadline (the first
			// Get's) or Close cut the load: that says nothing of the
			// origin, and one impatient caller must not fail the others.
			t.recordFailure(key, err, fetchedAt)
		}
		if c.published {
			// A value was served already (stale-while-revalidate, or a
			// doubted fresh one): keep it; the next hit tries again.
			t.log.Debug("background refresh failed; keeping the entry", zap.String("key", key), zap.Error(err))
			return
		}
		t.answerFailure(key, c, cur, have, fmt.Errorf("cache: load %q: %w", key, err))
	}
}

// answerFailure answers c after the origin could not be asked or failed:
// with cur if StaleIfError still allows serving it, else with err.
func (t *Tiered[V]) answerFailure(key string, c *call[V], cur entry[V], have bool, err error) {
	if have && !cur.negative && t.now().Sub(cur.fetchedAt) < t.opts.TTL+t.opts.StaleIfError {
		t.log.Debug("origin failed; serving a stale entry", zap.String("key", key), zap.Error(err))
		t.answer(key, c, cur.value, ResultStale, nil)
		return
	}
	var zero V
	t.answer(key, c, zero, ResultMiss, err)
}

// answerFresh answers with a fresh entry: its value with hit, or a
// remembered not-found.
func (t *Tiered[V]) answerFresh(key string, c *call[V], e entry[V], hit Result) {
	t.settle(key, c)
	t.publishFresh(c, e, hit)
}

// publishFresh publishes a fresh entry without settling c.
func (t *Tiered[V]) publishFresh(c *call[V], e entry[V], hit Result) {
	if e.negative {
		var zero V
		c.publish(zero, ResultNegative, ErrNotFound)
		return
	}
	c.publish(e.value, hit, nil)
}

// callLoader runs load, turning a panic into an error: the loader runs on a
// goroutine of the cache, where a panic would kill the process instead of
// failing one request.
func (t *Tiered[V]) callLoader(ctx context.Context, key string, load Loader[V]) (v V, err error) {
	defer func() {
		if p := recover(); p != nil {
			t.log.Error("loader panicked", zap.String("key", key), zap.Any("panic", p), zap.ByteString("stack", debug.Stack()))
			err = fmt.Errorf("cache: loader panicked: %v", p)
		}
	}()
	return load(ctx, key)
}

// storeL1 puts e in L1 unless Invalidate dropped the key while c was
// filling it, and reports whether it did.
func (t *Tiered[V]) storeL1(key string, e entry[V], c *call[V]) bool {
	if t.remaining(e, t.now()) <= 0 {
		return false
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if c.invalidated {
		return false
	}
	t.l1.Set(key, e)
	return true
}

func (t *Tiered[V]) isInvalidated(c *call[V]) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return c.invalidated
}

func (t *Tiered[V]) onClaim(outcome string) {
	if t.opts.OnClaim != nil {
		t.opts.OnClaim(outcome)
	}
}

// invalidatedKey marks the context of a load that re-reads a key an
// invalidation dropped (Invalidated).
type invalidatedKey struct{}

// Invalidated reports whether a Loader runs for a key this replica held,
// with a value, until an invalidation (here or on another replica, through
// the bus) dropped it: a known key re-read because it changed, not a new
// one. A budgeted origin can serve such a load like a refresh.
func Invalidated(ctx context.Context) bool {
	v, _ := ctx.Value(invalidatedKey{}).(bool)
	return v
}

// takeDropped reports whether key was dropped by an invalidation since its
// last load, and forgets it.
func (t *Tiered[V]) takeDropped(key string) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	_, ok := t.dropped[key]
	delete(t.dropped, key)
	return ok
}
