package testenv

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// redisNode is one process of a multi-process topology (a Sentinel-managed
// master or replica, a Sentinel, a cluster node). It is the building block
// of StartSentinel and StartCluster; StartRedis keeps its own type, whose
// Kill and Restart other tests rely on.
type redisNode struct {
	Addr string // 127.0.0.1:N
	Port int

	mu   sync.Mutex
	proc *redisProc // nil once killed
}

// startRedisNode starts redis-server with the arguments args returns for a
// free port (and whatever else it picks, such as a cluster bus port), waits
// until it answers PING and kills it when the test ends. Like StartRedis it
// retries with new ports when the server exits during start-up, since a port
// that was free a moment ago may have been taken since.
func startRedisNode(tb testing.TB, what string, args func(port int) ([]string, error)) *redisNode {
	tb.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		tb.Fatalf("testenv: redis-server is not on PATH (%v): the tests need a real Redis; "+
			"install it with \"apt-get install redis-server\" or run \"make deps\"", err)
	}
	var lastErr error
	for range 5 {
		port, err := freeLoopbackPort()
		if err != nil {
			tb.Fatalf("testenv: pick a port for the %s: %v", what, err)
		}
		a, err := args(port)
		if err != nil {
			tb.Fatalf("testenv: prepare the %s: %v", what, err)
		}
		n := &redisNode{Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), Port: port}
		if n.proc, lastErr = startRedisProc(a, n.Addr); lastErr == nil {
			tb.Cleanup(n.Kill)
			return n
		}
	}
	tb.Fatalf("testenv: start the %s: %v", what, lastErr)
	return nil
}

// startRedisProc runs redis-server with args and waits until addr answers
// PING. On failure the process is stopped and the error carries its output.
func startRedisProc(args []string, addr string) (*redisProc, error) {
	cmd := exec.Command("redis-server", args...)
	out := &bytes.Buffer{}
	cmd.Stdout = out
	cmd.Stderr = out
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("exec redis-server: %w", err)
	}
	p := &redisProc{cmd: cmd, output: out, exited: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.exited)
	}()
	if err := waitForPing(addr, p.exited); err != nil {
		_ = cmd.Process.Kill()
		<-p.exited
		return nil, fmt.Errorf("%w (exit: %v); output:\n%s", err, p.err, out.String())
	}
	return p, nil
}

// Kill stops the process with SIGKILL and waits for it to exit; killing a
// stopped node does nothing.
func (n *redisNode) Kill() {
	n.mu.Lock()
	p := n.proc
	n.proc = nil
	n.mu.Unlock()
	if p == nil {
		return
	}
	_ = p.cmd.Process.Kill()
	<-p.exited
}

// serverArgs are the settings of every data node: loopback only, no
// persistence, files in dir, and a replica's full sync starts at once
// (Redis waits 5s by default for more replicas to share a diskless sync).
func serverArgs(port int, dir string) []string {
	return []string{
		"--port", strconv.Itoa(port),
		"--bind", "127.0.0.1",
		"--save", "",
		"--appendonly", "no",
		"--dir", dir,
		"--protected-mode", "no",
		"--repl-diskless-sync-delay", "0",
	}
}

// adminClient is a plain client to one node for setting a topology up and
// inspecting it, with generous timeouts and no retries.
func adminClient(addr string) *redis.Client {
	return redis.NewClient(&redis.Options{
		Addr:          addr,
		DialTimeout:   2 * time.Second,
		ReadTimeout:   5 * time.Second,
		WriteTimeout:  2 * time.Second,
		MaxRetries:    -1,
		DialerRetries: 1,
		PoolSize:      2,
	})
}

// infoFields returns the fields of one INFO section of the node at addr.
func infoFields(ctx context.Context, addr, section string) (map[string]string, error) {
	c := adminClient(addr)
	defer func() { _ = c.Close() }()
	info, err := c.Info(ctx, section).Result()
	if err != nil {
		return nil, fmt.Errorf("INFO %s on %s: %w", section, addr, err)
	}
	return parseInfo(info), nil
}

// parseInfo reads INFO's "field:value" lines.
func parseInfo(info string) map[string]string {
	m := make(map[string]string)
	for line := range strings.SplitSeq(info, "\n") {
		if k, v, ok := strings.Cut(strings.TrimSpace(line), ":"); ok {
			m[k] = v
		}
	}
	return m
}

// waitUntil polls cond every 50ms until it reports true, fails the test
// with its last error after within.
func waitUntil(tb testing.TB, within time.Duration, what string, cond func(ctx context.Context) (bool, error)) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	var lastErr error
	for {
		ok, err := cond(ctx)
		if ok {
			return
		}
		if err != nil {
			lastErr = err
		}
		select {
		case <-ctx.Done():
			tb.Fatalf("testenv: %s: not done after %s (last error: %v)", what, within, lastErr)
		case <-time.After(50 * time.Millisecond):
		}
	}
}
