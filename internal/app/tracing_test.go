package app

import (
	"encoding/hex"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/metagate/gateway/internal/testenv"
)

// TestTracingFromConfig: with tracing.otlp_endpoint set, a request's spans
// reach the collector by the time Run returns, in the caller's trace; with
// it unset, the upstream sees the caller's traceparent and tracestate
// untouched.
func TestTracingFromConfig(t *testing.T) {
	const (
		traceID     = "4bf92f3577b34da6a3ce929d0e0e4736"
		traceparent = "00-" + traceID + "-00f067aa0ba902b7-01"
		tracestate  = "congo=t61rcWkgMzE"
	)
	emu := tenant(t)
	for _, on := range []bool{false, true} {
		rc := testenv.NewOTLPReceiver(t)
		up := newRecorder(t)
		cfg, lookup := loadExample(t, exampleEnv(emu, "", up.URL))
		if on {
			cfg.Tracing.OTLPEndpoint = rc.URL
		}
		a, stop := runApp(t, cfg, lookup)
		req, _ := http.NewRequest("GET", "http://"+a.Addr("gateway")+"/orders", nil)
		req.Header.Set("Authorization", "Bearer "+emu.ClientToken("svc-billing", apiAudience, time.Hour))
		req.Header.Set("Traceparent", traceparent)
		req.Header.Set("Tracestate", tracestate)
		resp, err := http.DefaultClient.Do(req)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("tracing=%v: %v %v", on, resp, err)
		}
		resp.Body.Close()
		if err := stop(); err != nil {
			t.Fatal(err)
		}
		up.mu.Lock()
		gotParent, gotState := up.hdr.Get("Traceparent"), up.hdr.Get("Tracestate")
		up.mu.Unlock()
		if gotState != tracestate {
			t.Errorf("tracing=%v: upstream tracestate %q, want %q", on, gotState, tracestate)
		}
		spans := rc.Spans()
		if !on {
			if gotParent != traceparent || len(spans) != 0 {
				t.Errorf("tracing off: upstream traceparent %q (want it untouched), %d spans exported", gotParent, len(spans))
			}
			continue
		}
		names := map[string]bool{}
		for _, s := range spans {
			names[s.GetName()] = true
			if hex.EncodeToString(s.GetTraceId()) != traceID {
				t.Errorf("span %q in trace %x, want the caller's", s.GetName(), s.GetTraceId())
			}
		}
		for _, want := range []string{"gateway api", "verify", "resolve", "upstream"} {
			if !names[want] {
				t.Errorf("tracing on: no %q span among %v", want, names)
			}
		}
		if !strings.HasPrefix(gotParent, "00-"+traceID+"-") || gotParent == traceparent {
			t.Errorf("tracing on: upstream traceparent %q, want the caller's trace with the gateway's span as parent", gotParent)
		}
	}
}
