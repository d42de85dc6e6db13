package cache

import (
	"context"
	"crypto/sha256"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fakeShared is a SharedSessions that can be told to fail.
type fakeShared struct {
	mu      sync.Mutex
	m       map[[sha256.Size]byte]string
	down    bool
	renewed atomic.Int64
}

func (f *fakeShared) BindShared(_ context.Context, k [sha256.Size]byte, p string, _ time.Duration) (string, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.down {
		return "", false
	}
	if b, ok := f.m[k]; ok {
		return b, true
	}
	f.m[k] = p
	return p, true
}

func (f *fakeShared) RenewShared(context.Context, [sha256.Size]byte, string, time.Duration) { f.renewed.Add(1) }

func TestSessionsBindOnceAndAgreeThroughTheSharedStore(t *testing.T) {
	shared := &fakeShared{m: map[[sha256.Size]byte]string{}}
	now := time.Unix(1000, 0)
	clock := func() time.Time { return now }
	a, _ := NewSessions(SessionOptions{Shared: shared, Now: clock})
	b, _ := NewSessions(SessionOptions{Shared: shared, Now: clock})
	key := sha256.Sum256([]byte("resource\x00s-1"))
	ctx := context.Background()
	if got := a.Bind(ctx, key, "alice", time.Hour); got != "alice" {
		t.Fatalf("first bind on A: %q", got)
	}
	if got := b.Bind(ctx, key, "bob", time.Hour); got != "alice" {
		t.Fatalf("B did not see A's binding: %q", got)
	}
	if got := a.Bind(ctx, key, "bob", time.Hour); got != "alice" {
		t.Fatalf("A rebound the session: %q", got)
	}
	// Renewal reaches the shared store at most once per RenewEvery.
	for range 10 {
		a.Bind(ctx, key, "alice", time.Hour)
	}
	if n := shared.renewed.Load(); n != 0 {
		t.Fatalf("renewed %d times within a minute", n)
	}
	now = now.Add(2 * time.Minute)
	a.Bind(ctx, key, "alice", time.Hour)
	if n := shared.renewed.Load(); n != 1 {
		t.Fatalf("renewed %d times after a minute", n)
	}
}

func TestSessionsWithoutTheSharedStoreDecideLocally(t *testing.T) {
	shared := &fakeShared{m: map[[sha256.Size]byte]string{}, down: true}
	s, _ := NewSessions(SessionOptions{Shared: shared})
	key := sha256.Sum256([]byte("r\x00s"))
	if got := s.Bind(context.Background(), key, "alice", time.Hour); got != "alice" {
		t.Fatal(got)
	}
	if got := s.Bind(context.Background(), key, "mallory", time.Hour); got != "alice" {
		t.Fatalf("a Redis outage let another principal take the session: %q", got)
	}
}
