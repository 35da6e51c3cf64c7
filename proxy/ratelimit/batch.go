package ratelimit

import (
	"context"
	"sync"

	"github.com/redis/go-redis/v9"
)

// maxBatch bounds the EVALSHAs sent in one pipeline.
const maxBatch = 256

// batcher sends the EVALSHAs of requests that arrive while another batch
// is on the wire as one pipeline: one write and one read for all of them,
// where each would otherwise pay its own system calls and wake-ups. It
// starts no goroutine: the first caller of an idle batcher sends its
// batch itself and, when it has its answer, hands the next batch to the
// first caller that queued behind it. A lone request waits for nothing,
// and no request waits for more than the batch ahead of it and its own.
//
// redis_rate runs its script through it (it is the rediser redis_rate
// is given), so the algorithm stays redis_rate's.
type batcher struct {
	redis.UniversalClient

	mu    sync.Mutex
	queue []*call
	busy  bool // a caller is sending a batch
}

type call struct {
	sha  string
	keys []string
	args []any
	res  *redis.Cmd
	// done is signalled once: with res set, or with lead set when this
	// call is to send the next batch.
	done chan struct{}
	lead bool
}

// EvalSha queues the call and returns once its batch has been answered.
func (b *batcher) EvalSha(ctx context.Context, sha string, keys []string, args ...any) *redis.Cmd {
	c := &call{sha: sha, keys: keys, args: args, done: make(chan struct{}, 1)}
	b.mu.Lock()
	b.queue = append(b.queue, c)
	if b.busy {
		b.mu.Unlock()
		<-c.done
		if !c.lead {
			return c.res
		}
	} else {
		b.busy = true
		b.mu.Unlock()
	}
	// This caller sends the queue, which holds its own call.
	b.mu.Lock()
	n := min(len(b.queue), maxBatch)
	batch := b.queue[:n:n]
	b.queue = append([]*call(nil), b.queue[n:]...)
	b.mu.Unlock()
	// The batch answers other requests too: one caller's cancellation
	// must not fail theirs.
	b.send(context.WithoutCancel(ctx), batch)
	b.mu.Lock()
	if len(b.queue) > 0 {
		next := b.queue[0]
		next.lead = true
		next.done <- struct{}{}
	} else {
		b.busy = false
	}
	b.mu.Unlock()
	return c.res
}

// send runs the batch as one pipeline and hands each call its answer,
// waking every waiter but the sender.
func (b *batcher) send(ctx context.Context, batch []*call) {
	if len(batch) == 1 {
		c := batch[0]
		c.res = b.UniversalClient.EvalSha(ctx, c.sha, c.keys, c.args...)
		return
	}
	pipe := b.Pipeline()
	cmds := make([]*redis.Cmd, len(batch))
	for i, c := range batch {
		cmds[i] = pipe.EvalSha(ctx, c.sha, c.keys, c.args...)
	}
	_, _ = pipe.Exec(ctx) // each command carries its own error
	for i, c := range batch {
		c.res = cmds[i]
		if i > 0 {
			c.done <- struct{}{}
		}
	}
}
