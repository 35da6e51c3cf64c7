package testenv

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

func TestSentinelFailoverPromotesTheReplica(t *testing.T) {
	s := StartSentinel(t)
	opts, err := redis.ParseFailoverURL("redis" + s.URL[len("redis-sentinel"):])
	if err != nil {
		t.Fatalf("ParseFailoverURL(%q): %v", s.URL, err)
	}
	if opts.MasterName != SentinelMaster || len(opts.SentinelAddrs) != 1 || opts.SentinelAddrs[0] != s.Addr {
		t.Fatalf("URL %q parses to %+v", s.URL, opts)
	}
	client := redis.NewFailoverClient(opts)
	defer func() { _ = client.Close() }()
	ctx := context.Background()
	if err := client.Set(ctx, "k", "before", 0).Err(); err != nil {
		t.Fatalf("SET through the Sentinel: %v", err)
	}
	// Replication is asynchronous: a failover right after a write may
	// promote a replica that has not seen it.
	if n, err := client.Do(ctx, "WAIT", 1, 5000).Int(); err != nil || n != 1 {
		t.Fatalf("WAIT for the replica = %d, %v", n, err)
	}

	old := s.MasterAddr(t)
	start := time.Now()
	s.Failover(t)
	t.Logf("failover took %s", time.Since(start).Round(time.Millisecond))
	if now := s.MasterAddr(t); now == old {
		t.Fatalf("master still %s after Failover", now)
	}
	if info, err := infoFields(ctx, old, "replication"); err != nil || info["role"] != "slave" {
		t.Fatalf("the old master's role after Failover: %q, %v; want slave", info["role"], err)
	}
	// The failover client follows the new master; the data replicated.
	deadline := time.Now().Add(10 * time.Second)
	for {
		v, err := client.Get(ctx, "k").Result()
		if err == nil && v == "before" && client.Set(ctx, "k2", "after", 0).Err() == nil {
			break
		}
		if time.Now().After(deadline) {
			for _, n := range s.nodes {
				info, _ := infoFields(ctx, n.Addr, "replication")
				c := adminClient(n.Addr)
				got, gerr := c.Get(ctx, "k").Result()
				_ = c.Close()
				t.Logf("%s: GET k = %q, %v; replication %v", n.Addr, got, gerr, info)
			}
			t.Fatalf("the failover client does not work after the failover: GET = %q, %v", v, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestClusterServesEverySlotAndBroadcastsPublish(t *testing.T) {
	cl := StartCluster(t)
	opts, err := redis.ParseClusterURL("redis" + cl.URL[len("redis-cluster"):])
	if err != nil {
		t.Fatalf("ParseClusterURL(%q): %v", cl.URL, err)
	}
	if len(opts.Addrs) != 3 {
		t.Fatalf("URL %q names %d nodes, want 3", cl.URL, len(opts.Addrs))
	}
	client := redis.NewClusterClient(opts)
	defer func() { _ = client.Close() }()
	ctx := context.Background()
	for i := range 30 {
		if err := client.Set(ctx, fmt.Sprintf("key-%d", i), i, time.Minute).Err(); err != nil {
			t.Fatalf("SET key-%d: %v", i, err)
		}
	}
	// PUBLISH on one node reaches a subscriber on another.
	sub := redis.NewClient(&redis.Options{Addr: cl.Addrs[2]})
	defer func() { _ = sub.Close() }()
	ps := sub.Subscribe(ctx, "news")
	defer func() { _ = ps.Close() }()
	if _, err := ps.Receive(ctx); err != nil {
		t.Fatalf("SUBSCRIBE: %v", err)
	}
	pub := redis.NewClient(&redis.Options{Addr: cl.Addrs[0]})
	defer func() { _ = pub.Close() }()
	if err := pub.Publish(ctx, "news", "hello").Err(); err != nil {
		t.Fatalf("PUBLISH: %v", err)
	}
	msg, err := ps.ReceiveTimeout(ctx, 5*time.Second)
	if m, ok := msg.(*redis.Message); err != nil || !ok || m.Payload != "hello" {
		t.Fatalf("the subscriber on another node got %v, %v", msg, err)
	}
}
