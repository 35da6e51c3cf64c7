package enrich

import (
	"context"
	"fmt"
)

// LocalSource answers from metadata declared in gateway.yaml: for local
// development, and for callers that do not live in Auth0.
type LocalSource struct {
	clients map[string]Record
	users   map[string]Record
}

// NewLocalSource copies the declared clients and users.
func NewLocalSource(clients, users map[string]Record) *LocalSource {
	s := &LocalSource{clients: map[string]Record{}, users: map[string]Record{}}
	for k, v := range clients {
		s.clients[k] = v
	}
	for k, v := range users {
		s.users[k] = v
	}
	return s
}

// Lookup implements Source.
func (s *LocalSource) Lookup(_ context.Context, c Caller) (Record, error) {
	m := s.clients
	if c.Kind == KindUser {
		m = s.users
	}
	r, ok := m[c.ID]
	if !ok {
		return Record{}, fmt.Errorf("local source: %s %q: %w", c.Kind, c.ID, ErrUnknownCaller)
	}
	return r, nil
}
