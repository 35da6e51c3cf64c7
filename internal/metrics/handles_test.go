package metrics

import (
	"net/http/httptest"
	"testing"
	"time"

	"github.com/metagate/gateway/internal/testenv"
)

// TestRequestCountsWithoutAllocating: once a route and status were seen,
// recording a request allocates nothing, and the series still count
// every request under the right labels.
func TestRequestCountsWithoutAllocating(t *testing.T) {
	m := New()
	m.Request("api", "GET", 200, time.Millisecond, 500*time.Microsecond)
	if a := testing.AllocsPerRun(1000, func() {
		m.Request("api", "GET", 200, time.Millisecond, 500*time.Microsecond)
	}); a != 0 {
		t.Errorf("Request allocated %v times per call, want 0", a)
	}
	m.Request("api", "PROPFIND", 405, time.Millisecond, 0)
	m.Request("", "GET", 404, time.Millisecond, 0)

	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	got := testenv.ParseMetrics(t, rec.Body)
	for key, want := range map[string]float64{
		`gateway_requests_total{code="200",method="GET",route="api"}`:   1002,
		`gateway_requests_total{code="405",method="OTHER",route="api"}`: 1,
		`gateway_requests_total{code="404",method="GET",route="none"}`:  1,
	} {
		if got[key] != want {
			t.Errorf("%s = %v, want %v", key, got[key], want)
		}
	}
}
