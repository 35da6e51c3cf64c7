package proxy

import (
	"context"
	"errors"
	"math"
	"net/http"
	"strconv"

	"go.uber.org/zap"

	"github.com/metagate/gateway/cache"
	"github.com/metagate/gateway/enrich"
)

// AssertionSigner signs the gateway's assertion for a forwarded request:
// a short-lived JWT the upstream can verify, carrying what the trusted
// headers say. Implementations cache what they sign (the hot path must
// not sign per request).
type AssertionSigner interface {
	Assertion(ctx context.Context, req AssertionRequest) (string, error)
}

// AssertionRequest is what one assertion is about.
type AssertionRequest struct {
	Token    *Token
	Metadata *enrich.Metadata // nil: the caller has none
	Route    string
	Audience string
	// MetadataKeys, when non-nil, is the route's allow-list: only these
	// keys were forwarded, so only these are asserted.
	MetadataKeys []string
}

// pipeline is the verify → identify → authorise → resolve sequence, one
// piece of code for every form the gateway takes: the reverse proxy, the
// Go middleware (Middleware) and the caller's own endpoint (SelfService).
type pipeline struct {
	verifier       TokenVerifier
	resolver       MetadataResolver // nil: no metadata source
	realm          string
	forwardUnknown bool
	log            *zap.Logger
	obs            Observer
}

// authenticate verifies the credential (the Verifier identifies the
// caller) and applies the policy. It returns a nil token and no refusal
// when an optional credential is absent.
func (p *pipeline) authenticate(ctx context.Context, credential string, auth AuthMode, pol *Policy) (*Token, *refusal) {
	if credential == "" {
		if auth == AuthRequired {
			return nil, p.authRefusal(ReasonMissing)
		}
		return nil, nil
	}
	t, err := p.verifier.Verify(ctx, credential)
	if err != nil {
		var ae *AuthError
		if !errors.As(err, &ae) {
			ae = authErr(ReasonBadClaims, err)
		}
		p.log.Debug("token refused", zap.String("reason", string(ae.Reason)), zap.Error(ae.Err))
		return nil, p.authRefusal(ae.Reason)
	}
	if pol != nil {
		if rf := p.authorize(pol, t); rf != nil {
			return t, rf
		}
	}
	return t, nil
}

// resolve finds the verified caller's metadata (nil token: none). A
// caller unknown to the source, or whose issuer has no source, is refused
// or has no metadata, as metadata.on_unknown says.
func (p *pipeline) resolve(ctx context.Context, t *Token) (*enrich.Metadata, *refusal) {
	if t == nil || p.resolver == nil {
		return nil, nil
	}
	md, err := p.resolver.Resolve(ctx, t.Caller)
	switch {
	case err == nil:
		return md, nil
	case errors.Is(err, enrich.ErrUnknownCaller):
		if !p.forwardUnknown {
			return nil, &refusal{status: http.StatusForbidden, code: "unknown_caller", desc: "The caller is not known to the gateway"}
		}
		return nil, nil
	default:
		retry := "5"
		if d, ok := cache.RetryAfter(err); ok {
			// A failure remembered by cache.error_ttl: answered without
			// calling the origin, and the client told when it ends.
			retry = strconv.Itoa(max(1, int(math.Ceil(d.Seconds()))))
		} else {
			p.log.Warn("metadata unavailable", zap.String("caller_id", t.Caller.Key()), zap.Error(err))
		}
		return nil, &refusal{status: http.StatusServiceUnavailable, code: "metadata_unavailable",
			desc: "Caller metadata is temporarily unavailable", retryAfter: retry}
	}
}
