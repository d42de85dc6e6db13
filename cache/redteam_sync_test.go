package cache

import (
	"context"
	"crypto/sha256"
	"strconv"
	"sync"
	"testing"
	"time"
)

// Red-team attacks on otter's maintenance running on the caller's
// goroutine (runHere, 12ed041). A test that passes documents a defence.

// TestRedteamSyncMaintenanceEveryCaller: every way mcp-authz calls its two
// otter stores at once, over stores far too small for the load, so that
// each call may run an eviction pass itself: verdict reads (and a first
// hit's ComputeIfPresent), writes and purges (Keys walked while
// Invalidate runs maintenance), and session binds (GetIfPresent, Set,
// SetIfAbsent) with entries expiring under them. None may deadlock, and
// neither store may stay above its bound.
func TestRedteamSyncMaintenanceEveryCaller(t *testing.T) {
	const bound = 64 << 10
	m, err := NewMemory(MemoryOptions{MaxBytes: bound})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	var clockMu sync.Mutex
	clock := func() time.Time {
		clockMu.Lock()
		defer clockMu.Unlock()
		now = now.Add(time.Millisecond) // renewals due at once
		return now
	}
	s, err := NewSessions(SessionOptions{MaxBytes: bound, RenewEvery: time.Millisecond, Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	p := realisticPrincipal()
	runCallers(t, func(wg *sync.WaitGroup) {
		ctx := context.Background()
		for w := range 4 {
			wg.Go(func() {
				for i := range 20000 {
					k := NewKey("p", strconv.Itoa(i%3000))
					if _, ok := m.Get(ctx, k); !ok {
						// Short lives, so that expiry runs in the passes too.
						m.Set(ctx, k, Entry{Principal: p}, time.Duration(1+(w*i)%5)*time.Millisecond)
					}
				}
			})
			wg.Go(func() {
				for i := range 20000 {
					key := sha256.Sum256([]byte(strconv.Itoa(i % 3000)))
					s.Bind(ctx, key, "iss\x00"+strconv.Itoa(w), time.Duration(1+i%3)*time.Millisecond)
				}
			})
		}
		wg.Go(func() {
			for i := range 200 {
				m.InvalidateToken(sha256.Sum256([]byte(strconv.Itoa(i % 3000))))
			}
		})
	})
	m.Set(context.Background(), NewKey("p", "last"), Entry{Principal: p}, time.Hour)
	if w := m.c.WeightedSize(); w > bound {
		t.Fatalf("verdicts weigh %d bytes in a store bounded at %d", w, bound)
	}
	s.Bind(context.Background(), sha256.Sum256([]byte("last")), "iss\x00last", time.Hour)
	if w := s.local.WeightedSize(); w > bound {
		t.Fatalf("bindings weigh %d bytes in a store bounded at %d", w, bound)
	}
}
