package cache

import (
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

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
type breaker struct {
	openUntil atomic.Int64 // unix nanoseconds; 0 when closed
	failures  atomic.Int32
	threshold int32
	initial   time.Duration
	log       *slog.Logger

	mu      sync.Mutex
	backoff time.Duration
}

func (b *breaker) allow(now time.Time) bool {
	return now.UnixNano() >= b.openUntil.Load()
}

func (b *breaker) success() {
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
	if b.backoff == 0 {
		b.backoff = b.initial
	} else {
		b.backoff = min(2*b.backoff, maxBackoff)
	}
	b.openUntil.Store(now.Add(b.backoff).UnixNano())
	b.failures.Store(0)
	b.log.Warn("redis cache tier failing: skipping it", "for", b.backoff, "error", err)
}
