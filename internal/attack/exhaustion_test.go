package attack

import (
	"bufio"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/metagate/gateway/internal/testenv"
)

// TestAttackExhaustionStalledBodies: 200 clients start a body and stop
// sending. With read_timeout: 1s each is answered 408 request_timeout (or
// closed) within a few seconds, and the upstream is left with no
// connection from the gateway: a stalled client must not pin an upstream
// connection (and a slot of upstream_max_connections) forever.
func TestAttackExhaustionStalledBodies(t *testing.T) {
	w := newWorld(t, nil, nil, withServer("read_timeout: 1s"))
	const clients = 200
	start := time.Now()
	var wg sync.WaitGroup
	results := make([]*response, clients)
	reqText := rq("POST", "/pub/upload", "Content-Length: 100000", "Content-Type: application/octet-stream") + "0123456789"
	for i := 0; i < clients; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			c, err := net.Dial("tcp", w.gw.addr)
			if err != nil {
				results[i] = &response{Err: err}
				return
			}
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(15 * time.Second))
			if _, err := io.WriteString(c, reqText); err != nil {
				results[i] = &response{Err: err}
				return
			}
			results[i] = readResponse(bufio.NewReader(c)) // and send nothing more
		}(i)
	}
	wg.Wait()
	took := time.Since(start)
	var answered, closed, bad int
	for i, r := range results {
		switch {
		case r.Err != nil && errors.Is(r.Err, os.ErrDeadlineExceeded):
			bad++
			if bad <= 3 {
				t.Errorf("client %d: still waiting after 15s: the gateway never timed the stalled body out", i)
			}
		case r.Err != nil && r.Status == 0:
			closed++
		case r.Status == 408:
			answered++
			expectError(t, reqText, r, 408, "request_timeout")
		default:
			bad++
			if bad <= 3 {
				t.Errorf("client %d: got %s, want 408 request_timeout or a closed connection", i, r)
			}
		}
	}
	t.Logf("%d stalled clients: %d answered 408, %d closed, %d wrong, in %v", clients, answered, closed, bad, took)
	if took > 8*time.Second {
		t.Errorf("the stalled clients took %v to be answered, want a few seconds with read_timeout: 1s", took)
	}
	if w.up[upPub].arrived.Load() == 0 {
		t.Log("no stalled request reached the upstream (the gateway buffers bodies?)")
	}
	if !testenv.Poll(5*time.Second, func() bool { return w.up[upPub].openConns() == 0 }) {
		t.Errorf("after every stalled client was cut, the upstream still has %d open connection(s) from the gateway", w.up[upPub].openConns())
	}
}

// TestAttackExhaustionSteadySlowUploadIsNotCut: read_timeout bounds the
// idle time between two reads, not the whole body: an upload that sends a
// byte every 250ms for 3s (three times read_timeout) completes.
func TestAttackExhaustionSteadySlowUploadIsNotCut(t *testing.T) {
	w := newWorld(t, nil, nil, withServer("read_timeout: 1s"))
	const n = 12
	c, err := net.Dial("tcp", w.gw.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	req := rq("POST", "/pub/upload", "Content-Length: 12")
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for i := 0; i < n; i++ {
		<-tick.C
		if _, err := c.Write([]byte{'a' + byte(i)}); err != nil {
			t.Fatalf("write byte %d: %v (the gateway cut a steady upload)", i, err)
		}
	}
	r := readResponse(bufio.NewReader(c))
	expectStatus(t, req+"<12 bytes, one every 250ms>", r, 200)
	if h, ok := w.expectLanded(t, req, upPub); ok && (h.BodyLen != n || h.BodyErr != nil) {
		t.Errorf("upstream got %d body bytes (%v), want %d", h.BodyLen, h.BodyErr, n)
	}
}

// TestAttackExhaustionStalledHeaders: a slowloris client that never ends
// its header block is closed after read_header_timeout.
func TestAttackExhaustionStalledHeaders(t *testing.T) {
	w := newWorld(t, nil, nil, withServer("read_header_timeout: 1s"))
	start := time.Now()
	r := sendRaw(w.gw.addr, "GET /pub/x HTTP/1.1\r\nHost: gw.test\r\nX-Slow: 1\r\n", 10*time.Second)
	if errors.Is(r.Err, os.ErrDeadlineExceeded) {
		t.Fatalf("a client that never finished its headers was still connected after 10s")
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("slowloris client closed after %v, want about read_header_timeout (1s)", took)
	}
	w.expectNoUpstream(t, "GET /pub/x (headers never finished)")
}

// TestAttackExhaustionMaxConnections: server.max_connections caps the
// public listener's concurrent connections; one beyond the cap waits (in
// the accept queue) and is served as soon as a slot frees.
func TestAttackExhaustionMaxConnections(t *testing.T) {
	w := newWorld(t, nil, nil, withServer("max_connections: 4"))
	type kept struct {
		c  net.Conn
		br *bufio.Reader
	}
	var held []kept
	for i := 0; i < 4; i++ {
		c, err := net.Dial("tcp", w.gw.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		br := bufio.NewReader(c)
		req := rq("GET", "/pub/keepalive")
		_, _ = io.WriteString(c, req)
		if r := readResponse(br); r.Status != 200 {
			t.Fatalf("connection %d within the cap: %s", i, r)
		}
		held = append(held, kept{c, br})
	}
	extra, err := net.Dial("tcp", w.gw.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer extra.Close()
	req := rq("GET", "/pub/fifth")
	_, _ = io.WriteString(extra, req)
	br := bufio.NewReader(extra)
	_ = extra.SetReadDeadline(time.Now().Add(700 * time.Millisecond))
	if _, err := br.Peek(1); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("a fifth connection with max_connections: 4 was served at once (%v), want it to wait", err)
	}
	held[0].c.Close()
	_ = extra.SetReadDeadline(time.Now().Add(10 * time.Second))
	if r := readResponse(br); r.Status != 200 {
		t.Errorf("the waiting connection after a slot freed: %s, want 200", r)
	}
}

// TestAttackExhaustionUpstreamConnections: server.upstream_max_connections
// caps the gateway's connections to one upstream host, and a route's
// max_upstream_connections overrides it, so a flood of slow requests cannot
// open unbounded connections to a backend.
func TestAttackExhaustionUpstreamConnections(t *testing.T) {
	gateSlow, gateOne := make(chan struct{}), make(chan struct{})
	w := newWorld(t, nil, []string{"slow", "slow1"},
		withServer("upstream_max_connections: 3"),
		withGate("slow", gateSlow), withGate("slow1", gateOne),
		withRoutes(
			"- name: slow\n  match: {path_prefix: /slow}\n  auth: public\n  upstreams: [\"{{up:slow}}\"]",
			"- name: slow1\n  match: {path_prefix: /one}\n  auth: public\n  max_upstream_connections: 1\n  upstreams: [\"{{up:slow1}}\"]",
		))
	for _, c := range []struct {
		name, target, up string
		gate             chan struct{}
		limit            int64
	}{
		{"server-wide cap of 3", "/slow/x", "slow", gateSlow, 3},
		{"route override of 1", "/one/x", "slow1", gateOne, 1},
	} {
		t.Run(c.name, func(t *testing.T) {
			const flood = 8
			u := w.up[c.up]
			var wg sync.WaitGroup
			results := make([]*response, flood)
			for i := 0; i < flood; i++ {
				wg.Add(1)
				go func(i int) {
					defer wg.Done()
					results[i] = sendRaw(w.gw.addr, rq("GET", c.target), 20*time.Second)
				}(i)
			}
			if !testenv.Poll(5*time.Second, func() bool { return u.active.Load() >= c.limit }) {
				t.Errorf("only %d request(s) reached the upstream, want %d in flight", u.active.Load(), c.limit)
			}
			// Give a breach the chance to show before releasing.
			time.Sleep(300 * time.Millisecond)
			if m := u.maxActive.Load(); m > c.limit {
				t.Errorf("the upstream saw %d concurrent requests (%d connections), want at most %d", m, u.openConns(), c.limit)
			}
			close(c.gate)
			wg.Wait()
			for i, r := range results {
				if r.Status != 200 {
					t.Errorf("request %d after release: %s", i, r)
				}
			}
			if m := u.maxActive.Load(); m > c.limit {
				t.Errorf("the upstream saw %d concurrent requests, want at most %d", m, c.limit)
			}
		})
	}
}
