// Package loglimit keeps a repeated event from becoming a flood of log
// lines: a bad token replayed, a dependency down, a hostile Redis.
package loglimit

import (
	"sync/atomic"
	"time"
)

// Limiter passes one event per Every and counts the rest. Its zero value
// with Every set is ready; it must not be copied once used.
type Limiter struct {
	Every time.Duration

	next       atomic.Int64 // unix nanoseconds before which events are suppressed
	suppressed atomic.Int64
}

// Allow reports whether to log the event at now, and how many events were
// suppressed since the last one logged.
func (l *Limiter) Allow(now time.Time) (bool, int64) {
	next := l.next.Load()
	if now.UnixNano() < next || !l.next.CompareAndSwap(next, now.Add(l.Every).UnixNano()) {
		l.suppressed.Add(1)
		return false, 0
	}
	return true, l.suppressed.Swap(0)
}
