package app

import (
	"context"
	"fmt"
	"net/http"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/metagate/gateway/internal/config"
	"github.com/metagate/gateway/internal/testenv"
)

// TestAccessLogSwitch: log.access true logs each request once on the
// access logger, named once; false logs none, while the gateway's own
// logger keeps working.
func TestAccessLogSwitch(t *testing.T) {
	is := testenv.NewIssuer(t)
	up := newRecorder(t)
	for _, on := range []bool{true, false} {
		t.Run(fmt.Sprintf("access %v", on), func(t *testing.T) {
			doc := fmt.Sprintf(`
server: {listen: "127.0.0.1:0", admin_listen: "", drain_delay: 0s}
log: {access: %v}
issuers:
  - issuer: %s
    audiences: [%s]
    jwks_url: %s
routes:
  - name: open
    match: {path_prefix: /}
    auth: public
    upstreams: [%s]
`, on, is.URL, is.Audience, is.JWKSURL, up.URL)
			noEnv := func(string) (string, bool) { return "", false }
			cfg, err := config.Parse("access.yaml", []byte(doc), noEnv)
			if err != nil {
				t.Fatal(err)
			}
			core, logs := observer.New(zap.InfoLevel)
			ctx, cancel := context.WithCancel(context.Background())
			a, err := New(ctx, cfg, Options{Logger: zap.New(core), LookupEnv: noEnv})
			if err != nil {
				cancel()
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() { done <- a.Run(ctx) }()
			for range 3 {
				resp, err := http.Get("http://" + a.Addr("gateway") + "/x")
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
			}
			cancel()
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			var access, listening int
			for _, e := range logs.All() {
				switch {
				case e.LoggerName == "access" && e.Message == "request":
					access++
				case e.Message == "listening":
					listening++
				}
			}
			want := 0
			if on {
				want = 3
			}
			if access != want || listening == 0 {
				t.Errorf("%d access lines (want %d), %d listening lines (want some)", access, want, listening)
			}
		})
	}
}
