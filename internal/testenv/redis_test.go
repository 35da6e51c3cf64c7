package testenv

import (
	"context"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

func TestRedisKillAndRestartKeepThePort(t *testing.T) {
	r := StartRedis(t)
	opts, err := redis.ParseURL(r.URL)
	if err != nil {
		t.Fatalf("ParseURL(%q): %v", r.URL, err)
	}
	if opts.Addr != r.Addr {
		t.Fatalf("URL %q is not for Addr %q", r.URL, r.Addr)
	}
	opts.MaxRetries = -1
	opts.DialerRetries = 1
	opts.DialTimeout = time.Second
	client := redis.NewClient(opts)
	defer func() { _ = client.Close() }()
	ctx := context.Background()

	if err := client.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatalf("SET: %v", err)
	}
	r.Kill()
	if err := client.Ping(ctx).Err(); err == nil {
		t.Fatal("PING succeeded after Kill")
	}
	r.Restart()
	// The pool may hold the dead connection or be backing off a failed
	// dial: a fresh client sees the restarted server at once.
	fresh := redis.NewClient(&redis.Options{Addr: r.Addr, MaxRetries: -1})
	defer func() { _ = fresh.Close() }()
	if err := fresh.Ping(ctx).Err(); err != nil {
		t.Fatalf("PING after Restart: %v", err)
	}
	if n, err := fresh.Exists(ctx, "k").Result(); err != nil || n != 0 {
		t.Fatalf("EXISTS k after Restart = %d, %v; want 0 (no persistence)", n, err)
	}
	r.Kill()
	r.Kill() // idempotent
}
