package cache

import (
	"context"
	"time"
)

// Tiered puts an in-process L1 in front of a shared L2 (Redis): a verdict
// found in L2 is copied into L1, and every verdict is written to both.
type Tiered struct {
	L1 *Memory
	L2 Store
	// L1TTL caps how long L1 keeps a verdict, so that a purge in L2 reaches
	// every replica within it. Zero means 30 s.
	L1TTL time.Duration
}

func (t *Tiered) l1TTL() time.Duration {
	if t.L1TTL <= 0 {
		return 30 * time.Second
	}
	return t.L1TTL
}

// Get implements Store.
func (t *Tiered) Get(ctx context.Context, k Key) (Entry, bool) {
	if e, ok := t.L1.Get(ctx, k); ok {
		return e, true
	}
	return t.Shared(ctx, k)
}

// Set implements Store.
func (t *Tiered) Set(ctx context.Context, k Key, e Entry, ttl time.Duration) {
	t.L1.Set(ctx, k, e, min(ttl, t.l1TTL()))
	t.L2.Set(ctx, k, e, ttl)
}

// bounded implements boundable: the same tiers, L2 read within b.
func (t *Tiered) bounded(b bounds) Store {
	l2, ok := t.L2.(boundable)
	if !ok {
		return t
	}
	return &Tiered{L1: t.L1, L2: l2.bounded(b), L1TTL: t.L1TTL}
}

// Local reads L1 alone.
func (t *Tiered) Local(ctx context.Context, k Key) (Entry, bool) { return t.L1.Get(ctx, k) }

// Acquire delegates a fresh token's turn to L2, when it can lock, copying
// a verdict it finds into L1.
func (t *Tiered) Acquire(ctx context.Context, k Key, owner string, ttl time.Duration, force bool) (LockState, Entry, bool, error) {
	l, ok := t.L2.(fleetLock)
	if !ok {
		return LockSkipped, Entry{}, false, errSkipped
	}
	state, e, found, err := l.fleetAcquire(ctx, k, owner, ttl, force)
	if found {
		t.keep(ctx, k, e)
	}
	return state, e, found, err
}

// Release keeps e in L1, and has L2 keep it and give the lock back.
func (t *Tiered) Release(ctx context.Context, k Key, owner string, e Entry, ttl time.Duration) {
	if ttl > 0 {
		t.L1.Set(ctx, k, e, min(ttl, t.l1TTL()))
	}
	if l, ok := t.L2.(fleetLock); ok {
		l.fleetRelease(ctx, k, owner, e, ttl)
	}
}

// fleetLock is an L2 that can lock (the Redis tier).
type fleetLock interface {
	fleetAcquire(ctx context.Context, k Key, owner string, ttl time.Duration, force bool) (LockState, Entry, bool, error)
	fleetRelease(ctx context.Context, k Key, owner string, e Entry, ttl time.Duration)
}

// Shared reads L2 alone, copying a hit into L1: where a waiting replica
// looks for the verdict another replica is producing.
func (t *Tiered) Shared(ctx context.Context, k Key) (Entry, bool) {
	e, ok := t.L2.Get(ctx, k)
	if ok {
		t.keep(ctx, k, e)
	}
	return e, ok
}

// keep copies a verdict read from L2 into L1.
func (t *Tiered) keep(ctx context.Context, k Key, e Entry) {
	if ttl := min(time.Until(e.until), t.l1TTL()); ttl > 0 {
		t.L1.Set(ctx, k, e, ttl)
	}
}
