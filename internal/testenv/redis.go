package testenv

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os/exec"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// redisStartTimeout bounds how long StartRedis and Restart wait for the
// server to answer PING. A loaded CI machine can take a while to fork and
// exec; a healthy one answers in a few milliseconds.
const redisStartTimeout = 15 * time.Second

// Redis is a redis-server process owned by one test. It listens on a
// loopback port chosen when it was started and keeps that port across
// Kill and Restart, so clients configured with Addr or URL reconnect to
// the restarted server by themselves.
type Redis struct {
	Addr string // 127.0.0.1:N
	URL  string // redis://127.0.0.1:N/0

	tb   testing.TB
	port int
	dir  string

	mu   sync.Mutex
	proc *redisProc // nil while killed
}

// redisProc is one run of redis-server.
type redisProc struct {
	cmd    *exec.Cmd
	output *bytes.Buffer // stdout+stderr, read only after exited is closed
	exited chan struct{} // closed when cmd.Wait has returned
	err    error         // cmd.Wait's result, valid after exited is closed
}

// StartRedis starts a real redis-server on a free loopback port with
// persistence off and its working directory in a temporary directory, waits
// until it answers PING, and stops it when the test ends. A test that needs
// Redis fails (never skips) when redis-server is not installed: install it
// with "apt-get install redis-server" or "make deps".
func StartRedis(tb testing.TB) *Redis {
	tb.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		tb.Fatalf("testenv: redis-server is not on PATH (%v): the tests need a real Redis; "+
			"install it with \"apt-get install redis-server\" or run \"make deps\"", err)
	}
	r := &Redis{tb: tb, dir: tb.TempDir()}
	// The port is picked by binding :0 and releasing it, so another process
	// may take it before redis-server binds it: retry with a new port when
	// the server exits during start-up.
	var lastErr error
	for range 5 {
		port, err := freeLoopbackPort()
		if err != nil {
			tb.Fatalf("testenv: pick a port for redis-server: %v", err)
		}
		r.port = port
		r.Addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		r.URL = "redis://" + r.Addr + "/0"
		if lastErr = r.start(); lastErr == nil {
			tb.Cleanup(r.Kill)
			return r
		}
	}
	tb.Fatalf("testenv: start redis-server: %v", lastErr)
	return nil
}

// Kill stops the server with SIGKILL, as a crash or an OOM kill would, and
// waits for the process to exit. Killing a stopped server does nothing.
func (r *Redis) Kill() {
	r.mu.Lock()
	p := r.proc
	r.proc = nil
	r.mu.Unlock()
	if p == nil {
		return
	}
	_ = p.cmd.Process.Kill() // fails only if the process has already exited
	<-p.exited
}

// Restart starts the server again on the same port, after a Kill (a running
// server is killed first), and waits until it answers PING. Its data is gone:
// persistence is off.
func (r *Redis) Restart() {
	r.tb.Helper()
	r.Kill()
	// The killed server's listening socket is gone once the process has
	// exited, and redis-server binds with SO_REUSEADDR, so the port is free
	// again unless another process took it in between: retry briefly.
	deadline := time.Now().Add(redisStartTimeout)
	for {
		err := r.start()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			r.tb.Fatalf("testenv: restart redis-server on %s: %v", r.Addr, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// start runs redis-server on r.port and waits for PING. On failure the
// process is stopped and the error carries its output.
func (r *Redis) start() error {
	cmd := exec.Command("redis-server",
		"--port", strconv.Itoa(r.port),
		"--bind", "127.0.0.1",
		"--save", "",
		"--appendonly", "no",
		"--dir", r.dir,
		"--protected-mode", "no",
	)
	out := &bytes.Buffer{}
	cmd.Stdout = out
	cmd.Stderr = out
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("exec redis-server: %w", err)
	}
	p := &redisProc{cmd: cmd, output: out, exited: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.exited)
	}()

	if err := waitForPing(r.Addr, p.exited); err != nil {
		_ = cmd.Process.Kill()
		<-p.exited
		return fmt.Errorf("%w (exit: %v); output:\n%s", err, p.err, out.String())
	}
	r.mu.Lock()
	r.proc = p
	r.mu.Unlock()
	return nil
}

// waitForPing waits until addr accepts TCP connections and answers PING,
// the process exits, or redisStartTimeout passes. It polls with plain
// dials first: a go-redis pool that failed to dial backs off for a second
// before dialling again.
func waitForPing(addr string, exited <-chan struct{}) error {
	ctx, cancel := context.WithTimeout(context.Background(), redisStartTimeout)
	defer cancel()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	wait := func(lastErr error) error {
		select {
		case <-exited:
			return errors.New("redis-server exited during start-up")
		case <-ctx.Done():
			return fmt.Errorf("redis-server on %s did not answer PING within %s: %w", addr, redisStartTimeout, lastErr)
		case <-tick.C:
			return nil
		}
	}

	var d net.Dialer
	for {
		conn, err := d.DialContext(ctx, "tcp", addr)
		if err == nil {
			_ = conn.Close()
			break
		}
		if err := wait(err); err != nil {
			return err
		}
	}

	client := redis.NewClient(&redis.Options{
		Addr:          addr,
		DialTimeout:   time.Second,
		ReadTimeout:   time.Second,
		WriteTimeout:  time.Second,
		MaxRetries:    -1,
		DialerRetries: 1,
		PoolSize:      1,
	})
	defer func() { _ = client.Close() }()
	for {
		err := client.Ping(ctx).Err()
		if err == nil {
			return nil
		}
		// LOADING while the server starts, or a dial that raced with
		// its listener: try again.
		if err := wait(err); err != nil {
			return err
		}
	}
}

// freeLoopbackPort returns a TCP port that was free on 127.0.0.1 a moment ago.
func freeLoopbackPort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	port := l.Addr().(*net.TCPAddr).Port
	if err := l.Close(); err != nil {
		return 0, err
	}
	return port, nil
}
