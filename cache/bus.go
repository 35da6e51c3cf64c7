package cache

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
)

// The invalidation bus: one Redis subscription per Tiered, owned by a
// goroutine that Close stops and waits for. It carries
//
//   - invalidations, on P:v1:invalidate (P is Options.Prefix). Payloads (v1):
//
//     <sender>|key|<key>   drop key
//     <sender>|all         drop everything
//
//     <sender> is the publishing Tiered's random id (16 hex digits): a
//     Tiered does not apply its own messages (it already has, and applying
//     them again would throw away a fill started after the invalidation).
//     An unknown payload is applied as "all", so that a message of a newer
//     replica errs on the side of freshness. Applying a message does what
//     Invalidate does in L1 (running fills of the key store nothing), but
//     touches neither Redis nor the bus.
//
//   - filled notices, on P:v1:filled: the key whose value just landed in L2
//     or whose claim was given back, for the fills waiting on another
//     replica's claim (claim.go).
//
//   - heartbeats, on P:v1:bus:<id>: the Tiered publishes a sequence number
//     through its ordinary client every busPingInterval and expects it back
//     through the subscription within busReplyTimeout. A subscription that
//     is connected but deaf (a Sentinel failover leaves it on the demoted
//     master for a while; a cluster node cut off from the bus) fails this
//     check as surely as a closed connection; the subscriber then
//     resubscribes from scratch, with backoff.
//
// go-redis's PubSub would reconnect by itself after a broken connection,
// but not after a deaf one, so the subscriber owns the whole cycle instead:
// subscribe, wait for the three confirmations and a first heartbeat (only
// then is the bus up), serve, and on any failure close and start again.
const (
	busPingInterval = time.Second
	busReplyTimeout = 2 * time.Second
	busRetryMin     = 50 * time.Millisecond
	busRetryMax     = 2 * time.Second
)

// busConfig is what the bus needs of its Tiered.
type busConfig struct {
	rdb             redis.UniversalClient
	prefix          string
	now             func() time.Time // Options.Now: the freshness clock
	disconnectedTTL time.Duration
	log             *zap.Logger
	onRedisError    func(op string)
	onInvalidation  func(event string)
	onKey           func(key string) // apply another replica's invalidation of key
	onAll           func()           // ... of everything
	onFilled        func(key string)
}

// bus is the subscriber and what it knows of the subscription.
type bus struct {
	busConfig
	id                          string
	invalidate, filled, channel string // channel: this Tiered's heartbeats

	// connected is BusConnected.
	connected atomic.Bool
	// state decides which L1 entries are doubted; see doubts.
	state atomic.Pointer[busState]

	mu     sync.Mutex
	ps     *redis.PubSub // the current subscription, for close
	closed bool
	done   chan struct{} // closed when run returns
}

// busState: since the bus came up (entries checked before then may have
// missed a message), or since it went down.
type busState struct {
	up    bool
	since time.Time
}

func newBus(cfg busConfig) *bus {
	var b [8]byte
	_, _ = rand.Read(b[:])
	id := hex.EncodeToString(b[:])
	base := cfg.prefix + ":" + keyVersion + ":"
	bu := &bus{
		busConfig:  cfg,
		id:         id,
		invalidate: base + "invalidate",
		filled:     base + "filled",
		channel:    base + "bus:" + id,
		done:       make(chan struct{}),
	}
	// Until the first subscription is confirmed (or fails), trust what
	// is filled: L1 starts empty, so nothing of any weight can have been
	// missed in the milliseconds this takes.
	bu.state.Store(&busState{up: true, since: cfg.now()})
	return bu
}

// doubts reports whether an L1 entry last checked at checkedAt may have
// missed an invalidation: while the bus is up, if it was checked before
// the bus came up; while it is down, if it was checked more than
// DisconnectedTTL ago.
func (b *bus) doubts(checkedAt, now time.Time) bool {
	s := b.state.Load()
	if s.up {
		return checkedAt.Before(s.since)
	}
	return now.Sub(checkedAt) > b.disconnectedTTL
}

func (b *bus) keyMessage(key string) string { return b.id + "|key|" + key }
func (b *bus) allMessage() string           { return b.id + "|all" }

// run subscribes, serves and resubscribes until ctx ends.
func (b *bus) run(ctx context.Context) {
	defer close(b.done)
	backoff := busRetryMin
	for {
		if b.session(ctx) {
			backoff = busRetryMin
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, busRetryMax)
	}
}

// close stops run and waits for it; the caller has cancelled run's ctx.
func (b *bus) close() {
	b.mu.Lock()
	b.closed = true
	ps := b.ps
	b.mu.Unlock()
	if ps != nil {
		_ = ps.Close() // unblocks a ReceiveTimeout in progress
	}
	<-b.done
}

// session subscribes once and serves messages until the subscription is
// lost or ctx ends. It reports whether the bus was up meanwhile.
func (b *bus) session(ctx context.Context) (wasUp bool) {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return false
	}
	ps := b.rdb.Subscribe(ctx) // no channels: connects on Subscribe below
	b.ps = ps
	b.mu.Unlock()
	defer func() {
		b.mu.Lock()
		b.ps = nil
		b.mu.Unlock()
		_ = ps.Close()
	}()

	if err := ps.Subscribe(ctx, b.invalidate, b.filled, b.channel); err != nil {
		b.lost(ctx, fmt.Errorf("subscribe: %w", err))
		return false
	}
	var (
		subscribedAt time.Time // Options.Now when the last confirmation came
		seq          uint64    // of the heartbeat in flight, if pending
		pending      = true    // waiting for confirmations or a heartbeat
		due          = time.Now().Add(busReplyTimeout)
	)
	beat := func() error {
		seq++
		pending, due = true, time.Now().Add(busReplyTimeout)
		hctx, cancel := context.WithTimeout(ctx, busReplyTimeout)
		defer cancel()
		if err := b.rdb.Publish(hctx, b.channel, strconv.FormatUint(seq, 10)).Err(); err != nil {
			return fmt.Errorf("publish a heartbeat: %w", err)
		}
		return nil
	}
	for {
		// Checked before every receive, not only on a receive timeout:
		// a steady stream of other messages must not starve heartbeats.
		if !time.Now().Before(due) {
			if pending {
				b.lost(ctx, fmt.Errorf("no answer through the subscription within %s", busReplyTimeout))
				return wasUp
			}
			if err := beat(); err != nil {
				b.lost(ctx, err)
				return wasUp
			}
		}
		msg, err := ps.ReceiveTimeout(ctx, max(time.Until(due), time.Millisecond))
		if ctx.Err() != nil {
			return wasUp
		}
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue // due has passed: see above
			}
			b.lost(ctx, err)
			return wasUp
		}
		switch m := msg.(type) {
		case *redis.Subscription:
			if m.Kind == "subscribe" && m.Count == 3 && subscribedAt.IsZero() {
				subscribedAt = b.now()
				if err := beat(); err != nil {
					b.lost(ctx, err)
					return wasUp
				}
			}
		case *redis.Message:
			switch m.Channel {
			case b.channel:
				if pending && !subscribedAt.IsZero() && m.Payload == strconv.FormatUint(seq, 10) {
					pending, due = false, time.Now().Add(busPingInterval)
					if !wasUp {
						wasUp = true
						b.up(subscribedAt)
					}
				}
			case b.invalidate:
				b.apply(m.Payload)
			case b.filled:
				b.onFilled(m.Payload)
			}
		}
	}
}

// up records that the bus works again since subscribedAt.
func (b *bus) up(subscribedAt time.Time) {
	if s := b.state.Load(); !s.up {
		b.state.Store(&busState{up: true, since: subscribedAt})
		b.log.Info("invalidation bus connected again; L1 entries checked before are re-checked once")
	}
	b.connected.Store(true)
}

// lost records that the subscription failed, once per outage.
func (b *bus) lost(ctx context.Context, err error) {
	if ctx.Err() != nil {
		return // Close, not Redis
	}
	if s := b.state.Load(); s.up {
		b.state.Store(&busState{up: false, since: b.now()})
		b.log.Warn("invalidation bus down; L1 entries are re-checked after DisconnectedTTL until it is back",
			zap.Error(err), zap.Duration("disconnected_ttl", b.disconnectedTTL))
		if b.onRedisError != nil {
			b.onRedisError("subscribe")
		}
	}
	b.connected.Store(false)
}

// apply applies another replica's invalidation message.
func (b *bus) apply(payload string) {
	sender, rest, _ := strings.Cut(payload, "|")
	if sender == b.id {
		return
	}
	switch {
	case strings.HasPrefix(rest, "key|"):
		b.onKey(rest[len("key|"):])
	case rest == "all":
		b.onAll()
	default:
		b.log.Warn("unknown invalidation message; dropping everything", zap.String("payload", payload[:min(len(payload), 64)]))
		b.onAll()
	}
	if b.onInvalidation != nil {
		b.onInvalidation("applied")
	}
}

// notices wake the fills waiting for a key (await): fire closes the
// channel every current watch of the key holds.
type notices struct {
	mu sync.Mutex
	m  map[string]*notice
}

type notice struct {
	ch   chan struct{}
	refs int
}

// watch is one fill's registration for a key's notices. A nil watch (no
// bus) never fires.
type watch struct {
	n   *notices
	key string
	cur *notice
}

// watch registers for key's next notice, if enabled.
func (n *notices) watch(key string, enabled bool) *watch {
	if !enabled {
		return nil
	}
	return &watch{n: n, key: key, cur: n.acquire(key)}
}

func (n *notices) acquire(key string) *notice {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.m == nil {
		n.m = make(map[string]*notice)
	}
	nt := n.m[key]
	if nt == nil {
		nt = &notice{ch: make(chan struct{})}
		n.m[key] = nt
	}
	nt.refs++
	return nt
}

func (n *notices) release(key string, nt *notice) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if nt.refs--; nt.refs == 0 && n.m[key] == nt {
		delete(n.m, key)
	}
}

// fire wakes every watch of key.
func (n *notices) fire(key string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if nt := n.m[key]; nt != nil {
		close(nt.ch)
		delete(n.m, key)
	}
}

// fireAll wakes every watch.
func (n *notices) fireAll() {
	n.mu.Lock()
	defer n.mu.Unlock()
	for key, nt := range n.m {
		close(nt.ch)
		delete(n.m, key)
	}
}

// C fires at the key's next notice.
func (w *watch) C() <-chan struct{} {
	if w == nil {
		return nil
	}
	return w.cur.ch
}

// rearm registers for the notice after the one that fired.
func (w *watch) rearm() {
	if w == nil {
		return
	}
	w.n.release(w.key, w.cur)
	w.cur = w.n.acquire(w.key)
}

func (w *watch) stop() {
	if w != nil {
		w.n.release(w.key, w.cur)
	}
}
