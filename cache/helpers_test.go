package cache_test

import (
	"context"
	"encoding/json"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"
	"go.uber.org/zap/zaptest"

	"github.com/metagate/gateway/cache"
	"github.com/metagate/gateway/internal/testenv"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// meta stands in for the caller metadata the gateway caches.
type meta struct {
	Name string `json:"name"`
	Tier int    `json:"tier"`
}

// jsonCodec is the kind of Codec the gateway uses.
type jsonCodec struct{}

func (jsonCodec) Marshal(v meta) ([]byte, error) { return json.Marshal(v) }

func (jsonCodec) Unmarshal(b []byte) (meta, error) {
	var v meta
	err := json.Unmarshal(b, &v)
	return v, err
}

// fakeClock is an injectable Options.Now that moves only when told.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{now: time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// origin is a Loader whose answer the test sets and whose calls it counts.
type origin struct {
	calls atomic.Int64

	mu    sync.Mutex
	value meta
	err   error
	gate  chan struct{} // if non-nil, loads wait for it to be closed
	delay time.Duration
}

func newOrigin(name string) *origin { return &origin{value: meta{Name: name, Tier: 1}} }

func (o *origin) set(v meta, err error) {
	o.mu.Lock()
	o.value, o.err = v, err
	o.mu.Unlock()
}

// hold makes the next loads wait until the returned function is called.
func (o *origin) hold() (release func()) {
	gate := make(chan struct{})
	o.mu.Lock()
	o.gate = gate
	o.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			o.mu.Lock()
			o.gate = nil
			o.mu.Unlock()
			close(gate)
		})
	}
}

func (o *origin) load(ctx context.Context, key string) (meta, error) {
	o.calls.Add(1)
	o.mu.Lock()
	v, err, gate, delay := o.value, o.err, o.gate, o.delay
	o.mu.Unlock()
	if gate != nil {
		select {
		case <-gate:
		case <-ctx.Done():
			return meta{}, ctx.Err()
		}
		o.mu.Lock()
		v, err = o.value, o.err
		o.mu.Unlock()
	}
	if delay > 0 {
		time.Sleep(delay)
	}
	if err != nil {
		return meta{}, err
	}
	v.Name += ":" + key
	return v, nil
}

// want is what the origin returns for key given its current value.
func want(name, key string) meta { return meta{Name: name + ":" + key, Tier: 1} }

// testRedisTimeout is short so a dead Redis shows quickly; the bounds the
// tests assert are far above it.
const testRedisTimeout = 50 * time.Millisecond

// startRedis starts a redis-server for the test and returns it with a client
// built by NewRedisClient, closed at the end of the test.
func startRedis(t *testing.T) (*testenv.Redis, redis.UniversalClient) {
	t.Helper()
	r := testenv.StartRedis(t)
	return r, newClient(t, r.URL)
}

func newClient(t *testing.T, url string) redis.UniversalClient {
	t.Helper()
	rdb, err := cache.NewRedisClient(url, testRedisTimeout)
	if err != nil {
		t.Fatalf("NewRedisClient(%q): %v", url, err)
	}
	t.Cleanup(func() { _ = rdb.Close() })
	return rdb
}

// baseOptions are the options of most tests: an hour of TTL so only the
// fake clock ages entries.
func baseOptions(rdb redis.UniversalClient, clock *fakeClock) cache.Options {
	o := cache.Options{
		TTL:          time.Hour,
		NegativeTTL:  time.Minute,
		MaxEntries:   1000,
		Redis:        rdb,
		RedisTimeout: testRedisTimeout,
		Prefix:       "test",
	}
	if clock != nil {
		o.Now = clock.Now
	}
	return o
}

func newTiered(t *testing.T, opts cache.Options) *cache.Tiered[meta] {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = zaptest.NewLogger(t) // shown with -v or when the test fails
	}
	c, err := cache.New[meta](opts, jsonCodec{})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// get calls Get with a bounded context and fails the test on an unexpected
// error or Result.
func get(t *testing.T, c *cache.Tiered[meta], key string, load cache.Loader[meta], wantRes cache.Result) meta {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	v, res, err := c.Get(ctx, key, load)
	if err != nil {
		t.Fatalf("Get(%q): unexpected error %v (result %s)", key, err, res)
	}
	if res != wantRes {
		t.Fatalf("Get(%q): result %s, want %s", key, res, wantRes)
	}
	return v
}

// inRedis reports whether the cache's Redis key for key exists; an error
// (Redis just restarted) reports false, for eventually to retry.
func inRedis(t *testing.T, rdb redis.UniversalClient, key string) bool {
	t.Helper()
	n, err := rdb.Exists(context.Background(), "test:v1:{"+key+"}").Result()
	if err != nil {
		t.Logf("EXISTS %s: %v", key, err)
		return false
	}
	return n == 1
}
