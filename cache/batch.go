package cache

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// batcher sends the Redis commands of concurrent callers in shared
// pipelines. go-redis gives each call a pooled connection and a round trip
// of its own; under a burst of fresh tokens (a thousand at once, each
// needing a read, a lock and a write on every replica) the pool's twenty
// connections cannot keep up, calls wait out their 10 ms, and every
// replica ends up validating every token itself. Pipelined, a thousand
// reads take a few milliseconds.
//
// A caller alone sends its commands itself, on its own goroutine: batching
// costs nothing while Redis is quiet. Callers that come while another call
// is in flight queue their commands; up to batchWorkers goroutines, started
// when needed and gone when the queue has been empty for a second, send
// what is queued in pipelines of up to maxBatch calls.
type batcher struct {
	client redis.UniversalClient
	// timeout bounds a pipeline of queued calls; each caller still waits
	// no longer than its own context allows.
	timeout  time.Duration
	inflight atomic.Int32
	workers  atomic.Int32
	queue    chan *batchOp
	// answered, when set, is called after Redis answered a pipeline.
	answered func()
}

type batchOp struct {
	add func(ctx context.Context, p redis.Pipeliner)
	// done is closed once the commands are answered; then (for calls
	// nobody waits for) is called with them.
	done chan struct{}
	then func([]redis.Cmder)
	// first and n locate the op's commands in the pipeline.
	first, n int
}

const (
	batchWorkers = 4
	maxBatch     = 512
	batchQueue   = 8192
)

// errBatchFull: too many calls are queued already; the caller does without
// Redis, as after a timeout.
var errBatchFull = errors.New("redis: too many calls queued")

func newBatcher(client redis.UniversalClient, timeout time.Duration) *batcher {
	return &batcher{client: client, timeout: timeout, queue: make(chan *batchOp, batchQueue)}
}

// run sends the commands add queues on p and returns once they have been
// sent and answered, or failed: each command holds its result or error.
// It waits at most timeout (and no longer than ctx allows). An error from
// run itself (out of time, too many calls queued) means no answer came,
// and the commands may or may not run.
func (b *batcher) run(ctx context.Context, timeout time.Duration, add func(ctx context.Context, p redis.Pipeliner)) error {
	if b.inflight.Add(1) == 1 {
		defer b.inflight.Add(-1)
		ctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		pipe := b.client.Pipeline()
		add(ctx, pipe)
		_, _ = pipe.Exec(ctx)
		return nil
	}
	defer b.inflight.Add(-1)
	op := &batchOp{add: add, done: make(chan struct{})}
	if !b.enqueue(op) {
		return errBatchFull
	}
	// A queued call's commands run in a worker's context: the caller only
	// waits, with a pooled timer rather than a context of its own (a
	// timer, a cancel context and its registration with ctx, per call).
	t := getTimer(timeout)
	defer putTimer(t)
	select {
	case <-op.done:
		return nil // the caller reads each command's own error
	case <-t.C:
		return context.DeadlineExceeded
	case <-ctx.Done():
		return ctx.Err()
	}
}

// timers are the stopped timers of queued callers.
var timers sync.Pool

func getTimer(d time.Duration) *time.Timer {
	if t, ok := timers.Get().(*time.Timer); ok {
		t.Reset(d)
		return t
	}
	return time.NewTimer(d)
}

// putTimer stops t and pools it. Since Go 1.23 a stopped timer's channel
// holds no stale tick, so the next Reset starts clean; the tick of a timer
// that fired unread is drained all the same, for a process run with
// GODEBUG=asynctimerchan=1, where it would stay and end the next caller's
// wait at once (TestRedteamPooledTimerHasNoStaleTick).
func putTimer(t *time.Timer) {
	if !t.Stop() {
		select {
		case <-t.C:
		default:
		}
	}
	timers.Put(t)
}

// send queues commands that no caller waits for; then is called with
// them once they are answered (not at all if the queue is full).
func (b *batcher) send(add func(ctx context.Context, p redis.Pipeliner), then func([]redis.Cmder)) {
	b.enqueue(&batchOp{add: add, then: then})
}

func (b *batcher) enqueue(op *batchOp) bool {
	select {
	case b.queue <- op:
	default:
		return false
	}
	if b.workers.Load() < batchWorkers {
		if b.workers.Add(1) <= batchWorkers {
			go b.work()
		} else {
			b.workers.Add(-1)
		}
	}
	return true
}

// workerIdle is how long a worker waits for more calls before it ends: a
// worker kept busy by a steady trickle of calls (the verdicts written in
// the background) keeps its grown stack.
const workerIdle = time.Second

// work sends queued calls until the queue has been empty for workerIdle.
func (b *batcher) work() {
	batch := make([]*batchOp, 0, 64)
	idle := time.NewTimer(workerIdle)
	defer idle.Stop()
	for {
		batch = batch[:0]
		idle.Reset(workerIdle)
		select {
		case op := <-b.queue:
			batch = append(batch, op)
		case <-idle.C:
		}
	collect:
		for len(batch) > 0 && len(batch) < maxBatch {
			select {
			case op := <-b.queue:
				batch = append(batch, op)
			default:
				break collect
			}
		}
		if len(batch) == 0 {
			b.workers.Add(-1)
			if len(b.queue) == 0 {
				return
			}
			// A call was queued after the last look, while its caller saw
			// every worker busy: carry on, unless another worker started.
			if b.workers.Add(1) > batchWorkers {
				b.workers.Add(-1)
				return
			}
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), b.timeout)
		pipe := b.client.Pipeline()
		for _, op := range batch {
			op.first = pipe.Len()
			op.add(ctx, pipe)
			op.n = pipe.Len() - op.first
		}
		cmds, err := pipe.Exec(ctx)
		cancel()
		if b.answered != nil && (err == nil || errors.Is(err, redis.Nil)) {
			b.answered()
		}
		for _, op := range batch {
			if op.done != nil {
				close(op.done)
			}
			if op.then != nil && op.first+op.n <= len(cmds) {
				op.then(cmds[op.first : op.first+op.n])
			}
		}
	}
}
