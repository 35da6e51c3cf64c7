package enrich

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/metagate/gateway/cache"
)

// Resolver finds a caller's metadata: from the cache when it can, from the
// source when it must. Concurrent misses for one caller make one source call.
// A source belongs to the issuers it serves (an Auth0 Management API knows
// its own tenant's clients and users only); callers of other issuers get
// ErrNoSource (which is also ErrUnknownCaller, so metadata.on_unknown
// decides what happens to them), never another tenant's metadata.
type Resolver struct {
	src     Source
	cache   *cache.Tiered[*Metadata]
	issuers map[string]bool
	load    cache.Loader[*Metadata] // bound once: a Resolve allocates nothing
}

// NewResolver wires a source serving issuers behind a cache built with
// Codec.
func NewResolver(src Source, c *cache.Tiered[*Metadata], issuers []string) *Resolver {
	r := &Resolver{src: src, cache: c, issuers: make(map[string]bool, len(issuers))}
	for _, is := range issuers {
		r.issuers[is] = true
	}
	r.load = r.lookup
	return r
}

// lookup is the cache's loader: it asks the source about the caller that
// key names.
func (r *Resolver) lookup(ctx context.Context, key string) (*Metadata, error) {
	c, err := ParseKey(key)
	if err != nil {
		return nil, err
	}
	if e, ok := r.cache.Peek(key); (ok && !e.Negative) || cache.Invalidated(ctx) {
		// The cache still serves a value for this caller, or served one
		// until a change signal dropped it: this load is its refresh,
		// which a budgeted source serves first.
		ctx = WithRefresh(ctx)
	}
	rec, err := r.src.Lookup(ctx, c)
	if errors.Is(err, ErrUnknownCaller) {
		return nil, fmt.Errorf("%w: %w", cache.ErrNotFound, err)
	}
	if err != nil {
		return nil, err
	}
	return Prepare(rec)
}

// Resolve returns the caller's prepared metadata. It returns an error
// wrapping ErrUnknownCaller when the source says the caller does not exist
// (possibly remembered from an earlier answer), and any other error when the
// source could not answer and nothing usable was cached.
func (r *Resolver) Resolve(ctx context.Context, c Caller) (*Metadata, error) {
	if !r.issuers[c.Issuer] {
		return nil, fmt.Errorf("%s %q of %s: %w: %w", c.Kind, c.ID, c.Issuer, ErrNoSource, ErrUnknownCaller)
	}
	md, _, err := r.cache.Get(ctx, c.Key(), r.load)
	if errors.Is(err, cache.ErrNotFound) {
		return nil, fmt.Errorf("%s %q: %w", c.Kind, c.ID, ErrUnknownCaller)
	}
	if err != nil {
		return nil, fmt.Errorf("resolve %s %q: %w", c.Kind, c.ID, err)
	}
	return md, nil
}

// FreshFor is how much longer the caller's cached metadata stays fresh
// (0 when nothing fresh is cached); see cache.Tiered.FreshFor.
func (r *Resolver) FreshFor(c Caller) time.Duration {
	return r.cache.FreshFor(c.Key())
}

// InvalidateAll forgets every cached caller, in every tier.
func (r *Resolver) InvalidateAll(ctx context.Context) error {
	return r.cache.InvalidateAll(ctx)
}

// Entry is what the in-process tier holds about a caller, for operators.
func (r *Resolver) Entry(c Caller) (cache.Entry[*Metadata], bool) {
	return r.cache.Peek(c.Key())
}

// Invalidate forgets what is cached about a caller, in every tier, so the
// next request asks the source again.
func (r *Resolver) Invalidate(ctx context.Context, c Caller) error {
	return r.cache.Invalidate(ctx, c.Key())
}

// Codec stores Metadata in the shared cache tier as its Record, and prepares
// it again when read, so every tier serves the same prepared form.
type Codec struct{}

// Marshal implements cache.Codec.
// The record is rebuilt from the prepared JSON, which decodes to the same
// maps (Prepare drops them).
func (Codec) Marshal(m *Metadata) ([]byte, error) {
	rec := struct {
		Name         string          `json:"name,omitempty"`
		Metadata     json.RawMessage `json:"metadata,omitempty"`
		UserMetadata json.RawMessage `json:"user_metadata,omitempty"`
	}{Name: m.Record.Name, Metadata: m.JSON, UserMetadata: m.UserJSON}
	return json.Marshal(rec)
}

// Unmarshal implements cache.Codec.
func (Codec) Unmarshal(b []byte) (*Metadata, error) {
	var r Record
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("decode cached record: %w", err)
	}
	return Prepare(r)
}
