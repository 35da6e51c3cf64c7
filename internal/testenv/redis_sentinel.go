package testenv

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// SentinelMaster is the master name StartSentinel's Sentinel monitors.
const SentinelMaster = "mymaster"

// sentinelTimeout bounds each wait of StartSentinel and Failover: a
// Sentinel notices replicas and promotions on a one-second INFO period, so a
// healthy machine needs a few seconds, a loaded CI machine more.
const sentinelTimeout = 30 * time.Second

// Sentinel is a Sentinel-managed Redis owned by one test: a master, one
// replica and one Sentinel (quorum 1), as three redis-server processes on
// free loopback ports, stopped when the test ends.
type Sentinel struct {
	// URL is the cache's form for it:
	// redis-sentinel://127.0.0.1:<sentinel port>?master_name=mymaster.
	URL string
	// Addr is the Sentinel's address.
	Addr string

	nodes []*redisNode // the master and the replica, in start order
}

// StartSentinel starts a master, a replica of it and a Sentinel that
// monitors them, and returns once the replica is in sync and the Sentinel
// knows it as a healthy replica (so that Failover can promote it at once).
// It fails the test (never skips) when redis-server is missing: Sentinel is
// redis-server's --sentinel mode, in Debian's redis-server package.
func StartSentinel(tb testing.TB) *Sentinel {
	tb.Helper()
	dir := tb.TempDir()
	master := startRedisNode(tb, "Sentinel's master", func(port int) ([]string, error) {
		return serverArgs(port, nodeDir(dir, port)), os.MkdirAll(nodeDir(dir, port), 0o755)
	})
	replica := startRedisNode(tb, "Sentinel's replica", func(port int) ([]string, error) {
		args := append(serverArgs(port, nodeDir(dir, port)), "--replicaof", "127.0.0.1", strconv.Itoa(master.Port))
		return args, os.MkdirAll(nodeDir(dir, port), 0o755)
	})
	waitUntil(tb, sentinelTimeout, "the replica to sync with the master", func(ctx context.Context) (bool, error) {
		info, err := infoFields(ctx, replica.Addr, "replication")
		return info["master_link_status"] == "up", err
	})

	sentinel := startRedisNode(tb, "Sentinel", func(port int) ([]string, error) {
		// Sentinel rewrites its configuration file as the topology changes,
		// so it needs one of its own, writable.
		conf := filepath.Join(dir, fmt.Sprintf("sentinel-%d.conf", port))
		body := strings.Join([]string{
			"port " + strconv.Itoa(port),
			"bind 127.0.0.1",
			"protected-mode no",
			"dir " + dir,
			fmt.Sprintf("sentinel monitor %s 127.0.0.1 %d 1", SentinelMaster, master.Port),
			"sentinel down-after-milliseconds " + SentinelMaster + " 2000",
			"sentinel failover-timeout " + SentinelMaster + " 10000",
			"sentinel parallel-syncs " + SentinelMaster + " 1",
			"",
		}, "\n")
		if err := os.WriteFile(conf, []byte(body), 0o644); err != nil {
			return nil, err
		}
		return []string{conf, "--sentinel"}, nil
	})
	s := &Sentinel{
		URL:   "redis-sentinel://" + sentinel.Addr + "?master_name=" + SentinelMaster,
		Addr:  sentinel.Addr,
		nodes: []*redisNode{master, replica},
	}
	s.waitForHealthyReplica(tb, replica.Addr)
	return s
}

func nodeDir(dir string, port int) string { return filepath.Join(dir, strconv.Itoa(port)) }

// MasterAddr is the master's address according to the Sentinel.
func (s *Sentinel) MasterAddr(tb testing.TB) string {
	tb.Helper()
	addr, err := s.masterAddr(context.Background())
	if err != nil {
		tb.Fatalf("testenv: %v", err)
	}
	return addr
}

func (s *Sentinel) masterAddr(ctx context.Context) (string, error) {
	c := adminClient(s.Addr)
	defer func() { _ = c.Close() }()
	hp, err := c.Do(ctx, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", SentinelMaster).StringSlice()
	if err != nil {
		return "", fmt.Errorf("SENTINEL GET-MASTER-ADDR-BY-NAME: %w", err)
	}
	if len(hp) != 2 {
		return "", fmt.Errorf("SENTINEL GET-MASTER-ADDR-BY-NAME returned %q", hp)
	}
	return net.JoinHostPort(hp[0], hp[1]), nil
}

// Failover makes the Sentinel promote the replica (SENTINEL FAILOVER),
// waits until the Sentinel names the new master and the new master says it
// is one, then settles the topology the way the Sentinel itself would only
// 10 to 20 seconds later: the old master is made a replica of the new one
// and its clients' connections (commands and subscriptions) are killed, so
// that every client reconnects through the Sentinel to the new master. It
// returns once the old master is in sync. Until the Sentinel would have
// done this, the old master goes on as a writable master that clients with
// a connection to it keep using: a split brain of the Sentinel's making,
// which Failover spares the tests so their assertions after it hold.
func (s *Sentinel) Failover(tb testing.TB) {
	tb.Helper()
	old := s.MasterAddr(tb)
	var promoted string
	for _, n := range s.nodes {
		if n.Addr != old {
			promoted = n.Addr
		}
	}
	c := adminClient(s.Addr)
	defer func() { _ = c.Close() }()
	// The Sentinel refuses while it has no replica it considers good
	// (NOGOODSLAVE) or a failover is still in progress (INPROG): retry.
	waitUntil(tb, sentinelTimeout, "SENTINEL FAILOVER to be accepted", func(ctx context.Context) (bool, error) {
		err := c.Do(ctx, "SENTINEL", "FAILOVER", SentinelMaster).Err()
		return err == nil, err
	})
	waitUntil(tb, sentinelTimeout, "the Sentinel to name the new master "+promoted, func(ctx context.Context) (bool, error) {
		addr, err := s.masterAddr(ctx)
		return addr == promoted, err
	})
	waitUntil(tb, sentinelTimeout, promoted+" to be a master", func(ctx context.Context) (bool, error) {
		info, err := infoFields(ctx, promoted, "replication")
		return info["role"] == "master", err
	})

	ctx, cancel := context.WithTimeout(context.Background(), sentinelTimeout)
	defer cancel()
	oc := adminClient(old)
	defer func() { _ = oc.Close() }()
	host, port, _ := net.SplitHostPort(promoted)
	if err := oc.Do(ctx, "REPLICAOF", host, port).Err(); err != nil {
		tb.Fatalf("testenv: REPLICAOF %s on the old master %s: %v", promoted, old, err)
	}
	for _, typ := range []string{"normal", "pubsub"} {
		// The admin connection is killed too (it is "normal"): the next
		// command redials.
		_ = oc.Do(ctx, "CLIENT", "KILL", "TYPE", typ).Err()
	}
	waitUntil(tb, sentinelTimeout, "the old master "+old+" to replicate "+promoted, func(ctx context.Context) (bool, error) {
		info, err := infoFields(ctx, old, "replication")
		return info["role"] == "slave" && info["master_port"] == port && info["master_link_status"] == "up", err
	})
}

// waitForHealthyReplica waits until the Sentinel lists addr as a replica
// with no failure flags and a working link to its master.
func (s *Sentinel) waitForHealthyReplica(tb testing.TB, addr string) {
	tb.Helper()
	c := adminClient(s.Addr)
	defer func() { _ = c.Close() }()
	waitUntil(tb, sentinelTimeout, "the Sentinel to see "+addr+" as a healthy replica", func(ctx context.Context) (bool, error) {
		replicas, err := c.Do(ctx, "SENTINEL", "REPLICAS", SentinelMaster).Slice()
		if err != nil {
			return false, err
		}
		for _, r := range replicas {
			f := fieldMap(r)
			if net.JoinHostPort(f["ip"], f["port"]) == addr && f["flags"] == "slave" && f["master-link-status"] == "ok" {
				return true, nil
			}
		}
		return false, fmt.Errorf("replicas: %v", replicas)
	})
}

// fieldMap reads one entry of SENTINEL REPLICAS: a flat list of names and
// values (RESP2) or a map (RESP3).
func fieldMap(v any) map[string]string {
	m := make(map[string]string)
	switch r := v.(type) {
	case []any:
		for i := 0; i+1 < len(r); i += 2 {
			m[fmt.Sprint(r[i])] = fmt.Sprint(r[i+1])
		}
	case map[any]any:
		for k, v := range r {
			m[fmt.Sprint(k)] = fmt.Sprint(v)
		}
	}
	return m
}
