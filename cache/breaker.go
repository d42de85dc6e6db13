package cache

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// probeInterval is how often an open breaker pings Redis.
const probeInterval = 250 * time.Millisecond

// maxBackoff caps the doubling back-off.
const maxBackoff = 30 * time.Second

// breaker skips Redis after repeated errors. The fast path is one atomic
// load; state changes take the mutex.
//
// Closed (openUntil 0): requests use Redis. FailureThreshold consecutive
// errors open it: requests skip Redis for the back-off period, which doubles
// while Redis stays down, up to 30 s. Once the period ends it is half-open:
// requests use Redis again, one success closes it and one error reopens it
// at once.
//
// A timeout does not count while Redis answered something within quiet
// (five timeouts, at least a second): under a burst of fresh tokens some
// calls run out of time in the queue while others are answered, and
// skipping Redis then would make every replica validate every token of the
// burst itself. go-redis reports a refused dial as the caller's timeout
// too, so a Redis that has died is skipped a second after its last
// answer, each call that goes to it meanwhile costing at most Timeout.
//
// While it is open, one goroutine pings Redis every probeInterval, so no
// request pays for finding out: when a ping succeeds after one has failed
// (Redis came back from an outage), the breaker closes at once instead of
// waiting out the back-off. A ping that succeeds without one having failed
// ends nothing early: Redis answers pings but failed requests (out of
// memory, say), which is what the back-off is for.
type breaker struct {
	openUntil atomic.Int64 // unix nanoseconds; 0 when closed
	failures  atomic.Int32
	// lastSuccess is when Redis last answered (unix nanoseconds).
	lastSuccess atomic.Int64
	// quiet is how long Redis must have answered nothing for a timeout to
	// count as a failure.
	quiet     time.Duration
	threshold int32
	initial   time.Duration
	// max caps the doubling back-off; zero means maxBackoff.
	max time.Duration
	log *slog.Logger
	// ping asks Redis whether it answers; nil disables probing.
	ping     func() error
	interval time.Duration

	mu      sync.Mutex
	backoff time.Duration
	probing bool
}

func (b *breaker) allow(now time.Time) bool {
	return now.UnixNano() >= b.openUntil.Load()
}

// state reports whether the breaker is closed, and the current back-off
// (zero when closed).
func (b *breaker) state() (up bool, backoff time.Duration) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.openUntil.Load() == 0, b.backoff
}

func (b *breaker) success() {
	if now := time.Now().UnixNano(); now-b.lastSuccess.Load() > int64(time.Millisecond) {
		b.lastSuccess.Store(now)
	}
	if b.failures.Load() == 0 && b.openUntil.Load() == 0 {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.closeLocked()
}

func (b *breaker) closeLocked() {
	if b.openUntil.Load() != 0 {
		b.log.Info("redis cache tier recovered")
	}
	b.failures.Store(0)
	b.openUntil.Store(0)
	b.backoff = 0
}

func (b *breaker) failure(now time.Time, err error) {
	if isTimeout(err) && now.UnixNano()-b.lastSuccess.Load() < int64(b.quiet) {
		return // Redis was answering just now: busy, not down
	}
	// After a back-off period one failed call reopens the breaker at once.
	halfOpen := b.openUntil.Load() != 0
	if b.failures.Add(1) < b.threshold && !halfOpen {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if now.UnixNano() < b.openUntil.Load() {
		return // another caller opened it
	}
	limit := b.max
	if limit <= 0 {
		limit = maxBackoff
	}
	if b.backoff == 0 {
		b.backoff = min(b.initial, limit)
	} else {
		b.backoff = min(2*b.backoff, limit)
	}
	b.openUntil.Store(now.Add(b.backoff).UnixNano())
	b.failures.Store(0)
	b.log.Warn("redis cache tier failing: skipping it", "for", b.backoff, "error", err)
	if b.ping != nil && !b.probing {
		b.probing = true
		go b.probe()
	}
}

// probe pings Redis until the breaker closes, closing it when Redis answers
// again after a failed ping. It stops when the client is closed.
func (b *breaker) probe() {
	sawDown := false
	for {
		err := b.ping()
		b.mu.Lock()
		if b.openUntil.Load() == 0 || errors.Is(err, redis.ErrClosed) {
			b.probing = false
			b.mu.Unlock()
			return
		}
		if err != nil {
			sawDown = true
		} else if sawDown {
			b.closeLocked()
			b.probing = false
			b.mu.Unlock()
			return
		}
		b.mu.Unlock()
		time.Sleep(b.interval)
	}
}

// isTimeout reports whether err is a call that ran out of time: in the
// connection pool, on the network, or waiting for Redis's answer.
func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, redis.ErrPoolTimeout) ||
		(errors.As(err, &ne) && ne.Timeout())
}
