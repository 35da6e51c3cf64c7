package benche2e

import (
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"sync/atomic"
	"testing"
	"time"
)

func TestParseStat(t *testing.T) {
	// A real line (proc(5)); utime 1234 and stime 567 are fields 14 and 15.
	const line = "4242 (gateway) S 1 4242 4242 0 -1 4194560 3001 0 0 0 1234 567 0 0 20 0 9 0 123456 1234567890 4321 18446744073709551615 1 1 0 0 0 0 0 0 2143420159 0 0 0 17 1 0 0 0 0 0\n"
	u, s, err := ParseStat(line)
	if err != nil || u != 1234 || s != 567 {
		t.Fatalf("ParseStat = %d, %d, %v; want 1234, 567, nil", u, s, err)
	}
	// The command name may hold spaces and parentheses: fields count from
	// the last ')'.
	const odd = "7 (a) b (c d)) R 1 7 7 0 -1 0 0 0 0 0 11 22 0 0 20 0 1 0 1 1 1\n"
	u, s, err = ParseStat(odd)
	if err != nil || u != 11 || s != 22 {
		t.Fatalf("ParseStat(odd name) = %d, %d, %v; want 11, 22, nil", u, s, err)
	}
	for _, bad := range []string{"", "12 (x S 1 2 3", "12 (x) S 1 2 3", "1 (x) S 1 1 1 0 -1 0 0 0 0 0 x 2 0"} {
		if _, _, err := ParseStat(bad); err == nil {
			t.Errorf("ParseStat(%q): no error", bad)
		}
	}
}

func TestCPUTicksOfSelf(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("/proc/<pid>/stat is Linux's")
	}
	before, err := CPUTicks(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	// Burn at least two clock ticks of CPU.
	for end := time.Now().Add(50 * time.Millisecond); time.Now().Before(end); {
	}
	after, err := CPUTicks(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if after < before+2 {
		t.Fatalf("CPU ticks went from %d to %d after 50ms of spinning", before, after)
	}
}

func TestCPUMicrosPerRequest(t *testing.T) {
	// 300 ticks = 3 s of CPU over 60000 requests = 50 µs each.
	if got := CPUMicrosPerRequest(300, 60000); got != 50 {
		t.Fatalf("got %v µs, want 50", got)
	}
	if got := CPUMicrosPerRequest(300, 0); got != 0 {
		t.Fatalf("no requests: got %v, want 0", got)
	}
}

func TestPercentile(t *testing.T) {
	var l Latencies
	for i := 1000; i >= 1; i-- { // 1..1000 µs, unsorted
		l = append(l, time.Duration(i)*time.Microsecond)
	}
	l.Sorted()
	for _, c := range []struct {
		q    float64
		want time.Duration
	}{
		{0.5, 500 * time.Microsecond},
		{0.99, 990 * time.Microsecond},
		{0.999, 999 * time.Microsecond},
		{1, 1000 * time.Microsecond},
		{0.0001, 1 * time.Microsecond},
	} {
		if got := l.Percentile(c.q); got != c.want {
			t.Errorf("p%v = %v, want %v", c.q*100, got, c.want)
		}
	}
	// Nearest rank: with 10 samples p99 and p99.9 are the largest.
	small := Latencies{9, 1, 8, 2, 7, 3, 6, 4, 5, 10}.Sorted()
	if small.Percentile(0.99) != 10 || small.Percentile(0.999) != 10 || small.Percentile(0.5) != 5 {
		t.Errorf("10 samples: p50 %v p99 %v p99.9 %v; want 5 10 10", small.Percentile(0.5), small.Percentile(0.99), small.Percentile(0.999))
	}
	if (Latencies{}).Percentile(0.99) != 0 {
		t.Error("no samples: want 0")
	}
}

func TestMedian(t *testing.T) {
	xs := []float64{5, 1, 3}
	if Median(xs) != 3 || Median([]float64{4, 1, 3, 2}) != 2.5 || Median(nil) != 0 {
		t.Fatal("wrong median")
	}
	if xs[0] != 5 {
		t.Fatal("Median reordered its argument")
	}
}

func TestLoad(t *testing.T) {
	var seen atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") == "Bearer bad" {
			http.Error(w, "no", http.StatusForbidden)
			return
		}
		seen.Add(1)
		_, _ = w.Write([]byte("ok"))
	}))
	defer srv.Close()
	l := &Load{Client: NewClient(4), URL: srv.URL, Tokens: []string{"a", "b", "c"}}

	if err := l.Each(2); err != nil || seen.Load() != 3 {
		t.Fatalf("Each: %v, %d requests; want nil, 3", err, seen.Load())
	}
	r := l.Closed(4, 100*time.Millisecond)
	if r.Requests == 0 || r.Errors != 0 || len(r.Latencies) != r.Requests || r.RPS() <= 0 {
		t.Fatalf("Closed: %+v", r)
	}
	r = l.Open(200, 250*time.Millisecond, 4)
	if r.Requests != 50 || r.Errors != 0 || r.Elapsed < 240*time.Millisecond {
		t.Fatalf("Open: %d requests, %d errors in %s; want 50, 0 in about 250ms", r.Requests, r.Errors, r.Elapsed)
	}
	bad := &Load{Client: l.Client, URL: srv.URL, Tokens: []string{"a", "bad"}}
	if err := bad.Each(1); err == nil {
		t.Fatal("Each: no error for a 403")
	}
	if r := bad.Closed(2, 50*time.Millisecond); r.Errors == 0 || r.FirstErr == nil {
		t.Fatalf("Closed: errors not counted: %+v", r.Errors)
	}
}
