package app

import (
	"maps"
	"slices"

	"github.com/metagate/gateway/internal/config"
	"github.com/metagate/gateway/internal/devissuer"
)

// devIssuerUsers maps dev_issuer.clients and dev_issuer.users to the dev
// issuer's options (seed 003: test users that log in as with Auth0's
// password grants). Scopes, grants and the top level of the claims are
// copied, so the issuer shares no slice or map with the config it was
// built from.
func devIssuerUsers(d config.DevIssuer) ([]devissuer.Client, []devissuer.User) {
	clients := make([]devissuer.Client, len(d.Clients))
	for i, c := range d.Clients {
		clients[i] = devissuer.Client{ID: c.ID, Secret: c.Secret, Scopes: slices.Clone(c.Scopes), Grants: slices.Clone(c.Grants)}
	}
	users := make([]devissuer.User, len(d.Users))
	for i, u := range d.Users {
		users[i] = devissuer.User{ID: u.ID, Username: u.Username, Password: u.Password, Scopes: slices.Clone(u.Scopes), Claims: maps.Clone(u.Claims)}
	}
	return clients, users
}
