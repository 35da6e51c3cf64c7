package app

import (
	"fmt"

	"go.uber.org/zap"

	"github.com/metagate/gateway/internal/assertion"
	"github.com/metagate/gateway/internal/config"
	"github.com/metagate/gateway/proxy"
)

// newAssertionSigner builds the signer of the gateway assertion, loading
// or creating assertion.key_file; nil, nil when assertion is off. The
// signer lives as long as the App: its retired keys must stay published
// across config reloads, so a reload rotates its key (reloadAssertionKey)
// instead of building another.
func newAssertionSigner(cfg config.Assertion, log *zap.Logger) (*assertion.Signer, error) {
	if !cfg.Enabled {
		return nil, nil
	}
	s, err := assertion.New(assertion.Options{
		KeyFile:   cfg.KeyFile,
		Algorithm: cfg.Algorithm,
		Issuer:    cfg.Issuer,
		TTL:       cfg.TTL.D(),
		Logger:    log,
	})
	if err != nil {
		// ttl and algorithm are validated with the config: what fails
		// here is the key file.
		return nil, fmt.Errorf("assertion.key_file: %w", err)
	}
	return s, nil
}

// reloadAssertionKey re-reads assertion.key_file on a config reload, so
// replacing the file and reloading rotates the key. A nil signer
// (assertion off) has nothing to reload.
func reloadAssertionKey(s *assertion.Signer) error {
	if s == nil {
		return nil
	}
	if err := s.Reload(); err != nil {
		return fmt.Errorf("assertion.key_file: %w", err)
	}
	return nil
}

// assertionSigner is s as proxy.Options.Assertion: a nil *Signer must
// become a nil interface, or the gateway would call it and panic.
func assertionSigner(s *assertion.Signer) proxy.AssertionSigner {
	if s == nil {
		return nil
	}
	return s
}

// assertionAudience is the aud of the assertions sent on route r:
// assertion.audience, or by default the route's first upstream, which
// names the service that must accept them.
func assertionAudience(cfg config.Assertion, r config.Route) string {
	if cfg.Audience != "" {
		return cfg.Audience
	}
	if len(r.Upstreams) > 0 {
		return r.Upstreams[0]
	}
	return ""
}
