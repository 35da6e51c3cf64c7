package app

import (
	"fmt"
	"time"

	"go.uber.org/zap"

	"github.com/metagate/gateway/enrich/auth0"
	"github.com/metagate/gateway/internal/config"
)

func newAuth0Source(c config.Auth0Source, log *zap.Logger, observe func(string, int, time.Duration), onBudgetWait func(), onCircuit func(string)) (*auth0.Source, error) {
	s, err := auth0.New(auth0.Options{
		ManagementURL:       c.ManagementURL,
		TokenURL:            c.TokenURL,
		Audience:            c.Audience,
		ClientID:            c.ClientID,
		ClientSecret:        c.ClientSecret,
		IncludeUserMetadata: c.IncludeUserMetadata,
		RatePerSecond:       c.RatePerSecond,
		Burst:               c.Burst,
		Timeout:             c.Timeout.D(),
		MaxRetries:          c.MaxRetries,
		Logger:              log,
		Observe:             observe,
		OnBudgetWait:        onBudgetWait,
		CircuitThreshold:    c.Circuit.Threshold,
		CircuitOpenFor:      c.Circuit.OpenFor.D(),
		OnCircuit:           onCircuit,
	})
	if err != nil {
		return nil, fmt.Errorf("metadata.auth0: %w", err)
	}
	return s, nil
}
