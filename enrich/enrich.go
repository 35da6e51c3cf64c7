// Package enrich turns a verified caller into the metadata the upstream
// receives. It owns the Resolver the proxy calls, and the sources behind it
// (the local YAML source here, the Auth0 Management API in enrich/auth0).
// It knows nothing about HTTP routing: the proxy decides which headers the
// metadata becomes.
package enrich

import (
	"context"
	"errors"
	"fmt"
	"strings"
)

// Kind says whether a caller is a machine client or an end user; the two are
// looked up in different places (client_metadata vs app_metadata).
type Kind uint8

// Caller kinds.
const (
	KindClient Kind = iota + 1
	KindUser
)

// String returns the value forwarded in X-Client-Kind.
func (k Kind) String() string {
	switch k {
	case KindClient:
		return "client"
	case KindUser:
		return "user"
	default:
		return "unknown"
	}
}

// Caller identifies who is calling, as derived from a verified token. A
// caller is bound to the issuer of its token: the same id at two tenants
// is two callers. Build it with NewCaller to have its cache key computed
// once; a Caller literal computes it on every Key call.
type Caller struct {
	Issuer string
	Kind   Kind
	ID     string
	key    string
}

// NewCaller returns a caller with its cache key computed.
func NewCaller(issuer string, kind Kind, id string) Caller {
	c := Caller{Issuer: issuer, Kind: kind, ID: id}
	c.key = c.makeKey()
	return c
}

// Key is the cache key of the caller, "<kind> <issuer> <id>": stable,
// namespaced by kind and issuer so a client and a user with the same id,
// or two tenants' clients, never share an entry. Issuers are validated
// URLs, which hold no spaces, so ParseKey can split it again.
func (c Caller) Key() string {
	if c.key != "" {
		return c.key
	}
	return c.makeKey()
}

func (c Caller) makeKey() string { return c.Kind.String() + " " + c.Issuer + " " + c.ID }

// ParseKey is the inverse of Key.
func ParseKey(key string) (Caller, error) {
	kind, rest, ok1 := strings.Cut(key, " ")
	issuer, id, ok2 := strings.Cut(rest, " ")
	if !ok1 || !ok2 {
		return Caller{}, fmt.Errorf("caller key %q is not \"<kind> <issuer> <id>\"", key)
	}
	c := Caller{Issuer: issuer, ID: id, key: key}
	switch kind {
	case "client":
		c.Kind = KindClient
	case "user":
		c.Kind = KindUser
	default:
		return Caller{}, fmt.Errorf("caller key %q: unknown kind %q", key, kind)
	}
	return c, nil
}

// Record is what a source knows about a caller. Metadata is the trusted
// metadata: client_metadata for clients, app_metadata for users.
// UserMetadata is only filled when explicitly configured, because users can
// edit it themselves and it must never be mistaken for trusted data.
type Record struct {
	Name         string         `json:"name,omitempty"`
	Metadata     map[string]any `json:"metadata,omitempty"`
	UserMetadata map[string]any `json:"user_metadata,omitempty"`
}

// ErrUnknownCaller is returned by a Source when the caller definitely does
// not exist there (Auth0's 404 inexistent_client / inexistent_user). It is
// cached as a negative entry; any other error is not.
var ErrUnknownCaller = errors.New("unknown caller")

// ErrNoSource is returned by a Resolver, together with ErrUnknownCaller,
// for a caller whose issuer has no metadata source: the caller is
// verified, but nothing is known about it.
var ErrNoSource = errors.New("no metadata source for this issuer")

// Source looks a caller up at its origin. Implementations return
// ErrUnknownCaller (possibly wrapped) for a definite miss.
type Source interface {
	Lookup(ctx context.Context, c Caller) (Record, error)
}
