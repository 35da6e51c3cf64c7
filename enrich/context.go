package enrich

import "context"

// Identity is what the gateway decided about a request's caller: who it
// is, for which application, with which scopes, and its metadata. The
// proxy's middleware form puts it in the request context for the handler
// it wraps; read it with FromContext.
type Identity struct {
	Caller Caller
	// ClientID is the application that obtained the token (the client
	// itself for client-credentials tokens, azp for user tokens).
	ClientID string
	Scopes   []string
	// Metadata is nil when the caller has none: no source, or unknown to
	// the source and metadata.on_unknown is forward. Shared: never modify.
	Metadata *Metadata
}

type identityKey struct{}

// NewContext returns ctx carrying id.
func NewContext(ctx context.Context, id *Identity) context.Context {
	return context.WithValue(ctx, identityKey{}, id)
}

// FromContext returns the identity the gateway's middleware resolved for
// this request, or nil, false when the request carried no valid token
// (a route with auth: optional) or did not pass through the middleware.
func FromContext(ctx context.Context) (*Identity, bool) {
	id, ok := ctx.Value(identityKey{}).(*Identity)
	return id, ok && id != nil
}

type refreshKey struct{}

// WithRefresh marks ctx as the refresh of a caller that is already
// cached (its stale value is being served meanwhile). Sources with a call
// budget give refreshes priority over misses for new callers.
func WithRefresh(ctx context.Context) context.Context {
	return context.WithValue(ctx, refreshKey{}, true)
}

// IsRefresh reports whether ctx is a refresh (WithRefresh).
func IsRefresh(ctx context.Context) bool {
	v, _ := ctx.Value(refreshKey{}).(bool)
	return v
}
