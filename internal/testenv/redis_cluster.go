package testenv

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// clusterSlots is the number of hash slots of a Redis Cluster.
const clusterSlots = 16384

// clusterTimeout bounds how long StartCluster waits for the nodes to agree
// on the slot map.
const clusterTimeout = 30 * time.Second

// Cluster is a Redis Cluster owned by one test: three masters, no replicas,
// each a redis-server with cluster-enabled on free loopback ports (client
// and cluster bus), stopped when the test ends.
type Cluster struct {
	// URL is the cache's form for it:
	// redis-cluster://127.0.0.1:p1?addr=127.0.0.1:p2&addr=127.0.0.1:p3.
	URL string
	// Addrs are the masters' client addresses.
	Addrs []string
}

// StartCluster starts three cluster nodes, splits the slots between them,
// joins them (CLUSTER ADDSLOTSRANGE, SET-CONFIG-EPOCH and MEET through
// go-redis, so redis-cli is not needed) and returns once every node reports
// cluster_state:ok with all slots served.
func StartCluster(tb testing.TB) *Cluster {
	tb.Helper()
	dir := tb.TempDir()
	const masters = 3
	nodes := make([]*redisNode, masters)
	busPorts := make([]int, masters)
	for i := range nodes {
		nodes[i] = startRedisNode(tb, "cluster node", func(port int) ([]string, error) {
			// The bus port defaults to port+10000, which may be taken or
			// above 65535 for an ephemeral port: pick one.
			bus, err := freeLoopbackPort()
			if err != nil {
				return nil, err
			}
			busPorts[i] = bus
			d := nodeDir(dir, port)
			args := append(serverArgs(port, d),
				"--cluster-enabled", "yes",
				"--cluster-config-file", filepath.Join(d, "nodes.conf"),
				"--cluster-port", strconv.Itoa(bus),
				"--cluster-node-timeout", "5000",
			)
			return args, os.MkdirAll(d, 0o755)
		})
	}

	ctx, cancel := context.WithTimeout(context.Background(), clusterTimeout)
	defer cancel()
	for i, n := range nodes {
		c := adminClient(n.Addr)
		first, last := i*clusterSlots/masters, (i+1)*clusterSlots/masters-1
		err := c.Do(ctx, "CLUSTER", "ADDSLOTSRANGE", first, last).Err()
		if err == nil {
			// Distinct epochs, as redis-cli --cluster create sets them,
			// so the nodes need no epoch collision round to agree.
			err = c.Do(ctx, "CLUSTER", "SET-CONFIG-EPOCH", i+1).Err()
		}
		_ = c.Close()
		if err != nil {
			tb.Fatalf("testenv: set up cluster node %s: %v", n.Addr, err)
		}
	}
	// The first node meets the others; gossip does the rest.
	c0 := adminClient(nodes[0].Addr)
	for i, n := range nodes[1:] {
		if err := c0.Do(ctx, "CLUSTER", "MEET", "127.0.0.1", n.Port, busPorts[i+1]).Err(); err != nil {
			_ = c0.Close()
			tb.Fatalf("testenv: CLUSTER MEET %s: %v", n.Addr, err)
		}
	}
	_ = c0.Close()

	cl := &Cluster{}
	for _, n := range nodes {
		cl.Addrs = append(cl.Addrs, n.Addr)
	}
	for _, n := range nodes {
		waitUntil(tb, clusterTimeout, "cluster node "+n.Addr+" to serve every slot", func(ctx context.Context) (bool, error) {
			c := adminClient(n.Addr)
			defer func() { _ = c.Close() }()
			s, err := c.ClusterInfo(ctx).Result()
			if err != nil {
				return false, err
			}
			info := parseInfo(s)
			ok := info["cluster_state"] == "ok" && info["cluster_slots_ok"] == strconv.Itoa(clusterSlots) &&
				info["cluster_known_nodes"] == strconv.Itoa(masters)
			return ok, fmt.Errorf("CLUSTER INFO: %s", strings.Join(strings.Fields(s), " "))
		})
	}
	cl.URL = "redis-cluster://" + cl.Addrs[0] + "?addr=" + cl.Addrs[1] + "&addr=" + cl.Addrs[2]
	return cl
}
