package auth0

import (
	"context"
	"net/http"
	"sync"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"
)

// tokenCache holds the Management API access token.
//
// It reuses oauth2's machinery, clientcredentials.Config.TokenSource
// wrapped in oauth2.ReuseTokenSource, so "still valid" means what oauth2
// says (refreshed when within ~10 s of expiry), but builds that source per
// fetch, seeded with the cached token, instead of keeping one for the
// Source's lifetime. That is what lets the fetch honour the lookup's
// context (a long-lived TokenSource is bound to the context it was created
// with) and lets a 401 drop the token (ReuseTokenSource has no way to
// forget one).
//
// One fetch runs at a time: lookups that find no valid token queue on sem
// (giving up with their context) and reuse what the first one fetched.
type tokenCache struct {
	cfg     *clientcredentials.Config
	http    *http.Client
	timeout time.Duration
	sem     chan struct{}

	mu  sync.Mutex
	tok *oauth2.Token
}

func (c *tokenCache) cached() *oauth2.Token {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.tok
}

// get returns a valid token, fetching one if needed. The fetch is cut at
// the per-attempt timeout.
func (c *tokenCache) get(ctx context.Context) (*oauth2.Token, error) {
	if t := c.cached(); t.Valid() {
		return t, nil
	}
	select {
	case c.sem <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	defer func() { <-c.sem }()

	fetchCtx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	fetchCtx = context.WithValue(fetchCtx, oauth2.HTTPClient, c.http)
	t, err := oauth2.ReuseTokenSource(c.cached(), c.cfg.TokenSource(fetchCtx)).Token()
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	c.tok = t
	c.mu.Unlock()
	return t, nil
}

// drop forgets rejected if it is still the cached token, so that many
// lookups rejected with the same token cause one refetch, not one each.
func (c *tokenCache) drop(rejected *oauth2.Token) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.tok == rejected {
		c.tok = nil
	}
}
