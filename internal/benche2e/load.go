package benche2e

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// Load is what the load generator sends: GET URL with a bearer token, the
// tokens taken in turn (one token: the same caller every time).
type Load struct {
	Client *http.Client
	URL    string
	Tokens []string

	next atomic.Uint64
}

// NewClient is a keep-alive client holding up to conns connections to one
// host: every worker keeps its connection between requests.
func NewClient(conns int) *http.Client {
	return &http.Client{
		Timeout: 10 * time.Second,
		Transport: &http.Transport{
			MaxIdleConns:        conns,
			MaxIdleConnsPerHost: conns,
			MaxConnsPerHost:     conns,
			IdleConnTimeout:     time.Minute,
			DisableCompression:  true,
		},
	}
}

// Run is the outcome of one load run.
type Run struct {
	Requests  int // answered 200
	Errors    int
	FirstErr  error
	Elapsed   time.Duration
	Latencies Latencies // sorted, one per 200
}

// RPS is answered requests per second.
func (r Run) RPS() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Requests) / r.Elapsed.Seconds()
}

func (l *Load) token() string {
	return l.Tokens[(l.next.Add(1)-1)%uint64(len(l.Tokens))]
}

// Do sends one request and reads the whole answer; anything but 200 is an
// error.
func (l *Load) Do(token string) error {
	req, err := http.NewRequest(http.MethodGet, l.URL, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := l.Client.Do(req)
	if err != nil {
		return err
	}
	_, err = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("status %d", resp.StatusCode)
	}
	return err
}

// worker collects one goroutine's results; merged at the end, so the hot
// loop shares nothing but the token counter.
type worker struct {
	lat      Latencies
	errs     int
	firstErr error
}

func (w *worker) record(err error, d time.Duration) {
	if err != nil {
		if w.errs == 0 {
			w.firstErr = err
		}
		w.errs++
		return
	}
	w.lat = append(w.lat, d)
}

func merge(ws []worker, elapsed time.Duration) Run {
	r := Run{Elapsed: elapsed}
	for _, w := range ws {
		r.Latencies = append(r.Latencies, w.lat...)
		r.Errors += w.errs
		if r.FirstErr == nil {
			r.FirstErr = w.firstErr
		}
	}
	r.Requests = len(r.Latencies)
	r.Latencies.Sorted()
	return r
}

// Closed is a closed loop: conc workers for d, each sending its next
// request as soon as the previous one was answered. Its throughput is what
// the target can serve at that concurrency.
func (l *Load) Closed(conc int, d time.Duration) Run {
	ws := make([]worker, conc)
	start := time.Now()
	deadline := start.Add(d)
	var wg sync.WaitGroup
	for i := range ws {
		w := &ws[i]
		wg.Go(func() {
			for t := time.Now(); t.Before(deadline); {
				err := l.Do(l.token())
				now := time.Now()
				w.record(err, now.Sub(t))
				t = now
			}
		})
	}
	wg.Wait()
	return merge(ws, time.Since(start))
}

// Open is an open loop: rate requests per second for d on a fixed
// schedule, whatever the answers' latency, from up to maxInflight
// connections. A request's latency counts from when it was released to
// the workers, not from when one was free to send it, so a stall shows up
// in the latency of every request it delayed (no coordinated omission).
// It is released when it is due, or when the scheduler wakes up after
// that: the generator's own timer lateness (up to a millisecond when the
// machine is idle) is not charged to the target.
func (l *Load) Open(rate float64, d time.Duration, maxInflight int) Run {
	n := int(rate * d.Seconds())
	due := make(chan time.Time, n)
	ws := make([]worker, maxInflight)
	var wg sync.WaitGroup
	for i := range ws {
		w := &ws[i]
		wg.Go(func() {
			for released := range due {
				err := l.Do(l.token())
				w.record(err, time.Since(released))
			}
		})
	}
	start := time.Now()
	interval := time.Duration(float64(time.Second) / rate)
	for i := range n {
		at := start.Add(time.Duration(i) * interval)
		if wait := time.Until(at); wait > 0 {
			time.Sleep(wait)
		}
		due <- time.Now()
	}
	close(due)
	wg.Wait()
	return merge(ws, time.Since(start))
}

// Each sends every token once, conc at a time: it warms the target's
// caches with every caller. It fails on the first request not answered 200.
func (l *Load) Each(conc int) error {
	var (
		wg   sync.WaitGroup
		next atomic.Int64
		mu   sync.Mutex
		errs []error
	)
	for range conc {
		wg.Go(func() {
			for i := next.Add(1) - 1; i < int64(len(l.Tokens)); i = next.Add(1) - 1 {
				if err := l.Do(l.Tokens[i]); err != nil {
					mu.Lock()
					errs = append(errs, fmt.Errorf("caller %d: %w", i, err))
					mu.Unlock()
					next.Store(int64(len(l.Tokens))) // stop every worker
					return
				}
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}
