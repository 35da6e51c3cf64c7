package config

import (
	"fmt"
	"strings"
)

// DevUser is a test user of the dev issuer: it logs in with Auth0's
// password grants and gets a user access token (seed 003).
type DevUser struct {
	// ID is the user's sub, e.g. auth0|alice.
	ID           string         `yaml:"id"`
	Username     string         `yaml:"username"`
	Password     string         `yaml:"password"`
	PasswordFile string         `yaml:"password_file"`
	Scopes       []string       `yaml:"scopes"`
	Claims       map[string]any `yaml:"claims"`
}

// devGrants are the grant types a dev client may be limited to, in
// Auth0's spelling (a client's grant_types).
var devGrants = []string{"client_credentials", "password", "http://auth0.com/oauth/grant-type/password-realm"}

// reservedDevClaims are the claims the dev issuer sets itself: a user's
// claims may not replace them, since a token whose iss, sub or aud came
// from the config file would say something other than who logged in.
var reservedDevClaims = map[string]bool{
	"iss": true, "sub": true, "aud": true, "exp": true, "iat": true,
	"azp": true, "scope": true, "gty": true,
}

// checkDevUsers validates dev_issuer.users and the clients' grants.
// Usernames are unique without regard to case, because the dev issuer
// matches them that way (Auth0's usernames and emails are
// case-insensitive too).
func (cfg *Config) checkDevUsers(c *checker) {
	d := &cfg.DevIssuer
	for i, cl := range d.Clients {
		for j, g := range cl.Grants {
			c.oneOf(fmt.Sprintf("dev_issuer.clients[%d].grants[%d]", i, j), g, devGrants...)
		}
	}
	ids, names := map[string]bool{}, map[string]bool{}
	for i, u := range d.Users {
		p := fmt.Sprintf("dev_issuer.users[%d]", i)
		switch {
		case u.ID == "":
			c.add(p+".id", "is required (the sub of the user's tokens, e.g. auth0|alice)")
		case ids[u.ID]:
			c.add(p+".id", "%q is declared twice", u.ID)
		}
		ids[u.ID] = true
		name := strings.ToLower(u.Username)
		switch {
		case u.Username == "":
			c.add(p+".username", "is required")
		case names[name]:
			c.add(p+".username", "%q is declared twice (usernames are compared without regard to case)", u.Username)
		}
		names[name] = true
		if (u.Password == "") == (u.PasswordFile == "") {
			c.add(p, "set exactly one of password (may come from ${ENV}) or password_file")
		}
		for _, k := range sortedKeys(u.Claims) {
			if reservedDevClaims[k] {
				c.add(p+".claims."+k, "is set by the dev issuer itself (iss, sub, aud, exp, iat, azp, scope and gty cannot be overridden)")
			}
		}
	}
}

// devUserSecrets reads dev_issuer.users[].password_file like the other
// secrets (read reports its own errors on c), so a password need not sit
// in the config file.
func (cfg *Config) devUserSecrets(c *checker, read func(path, file string, dst *string)) {
	for i := range cfg.DevIssuer.Users {
		u := &cfg.DevIssuer.Users[i]
		read(fmt.Sprintf("dev_issuer.users[%d].password_file", i), u.PasswordFile, &u.Password)
	}
}
