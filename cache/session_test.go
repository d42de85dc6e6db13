package cache

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mcp-authz/mcp-authz/internal/redistest"
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

func (f *fakeShared) RenewShared(context.Context, [sha256.Size]byte, string, time.Duration) {
	f.renewed.Add(1)
}

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

// TestSessionsAcrossReplicasWithRedis: two replicas sharing a real Redis
// agree on who owns a session, and a binding forged in Redis is ignored.
func TestSessionsAcrossReplicasWithRedis(t *testing.T) {
	srv := redistest.Start(t)
	ra, client := newRedisStore(t, srv)
	rb, _ := newRedisStore(t, srv)
	a, _ := NewSessions(SessionOptions{Shared: ra})
	b, _ := NewSessions(SessionOptions{Shared: rb})
	ctx := context.Background()
	key := sha256.Sum256([]byte("https://m.example/mcp\x00sess-1"))
	if got := a.Bind(ctx, key, "iss\x00alice", time.Hour); got != "iss\x00alice" {
		t.Fatalf("A: %q", got)
	}
	if got := b.Bind(ctx, key, "iss\x00mallory", time.Hour); got != "iss\x00alice" {
		t.Fatalf("B let another principal take A's session: %q", got)
	}
	// An attacker with Redis access binds a fresh session to themselves,
	// in the format, without the fleet's secret.
	forgedKey := sha256.Sum256([]byte("https://m.example/mcp\x00sess-2"))
	rk := ra.sessionKey(forgedKey)
	forged := append(make([]byte, 32), binary.BigEndian.AppendUint64(nil, uint64(time.Now().Add(time.Hour).UnixMilli()))...)
	forged = append(forged, "iss\x00mallory"...)
	if err := client.Set(ctx, rk, forged, time.Hour).Err(); err != nil {
		t.Fatal(err)
	}
	before := rb.Stats().IntegrityFailures
	if got := b.Bind(ctx, forgedKey, "iss\x00alice", time.Hour); got != "iss\x00alice" {
		t.Fatalf("a forged binding decided: %q", got)
	}
	if rb.Stats().IntegrityFailures != before+1 {
		t.Fatal("forged binding not counted")
	}
	// The binding now in Redis is alice's, signed: another replica agrees.
	c, _ := NewSessions(SessionOptions{Shared: ra})
	if got := c.Bind(ctx, forgedKey, "iss\x00mallory", time.Hour); got != "iss\x00alice" {
		t.Fatalf("after replacement: %q", got)
	}
	// Bindings expire with their TTL in Redis too.
	if ttl := client.PTTL(ctx, rk).Val(); ttl <= 0 || ttl > time.Hour {
		t.Fatalf("binding TTL %v", ttl)
	}
}

// TestSessionsRenewedByEachRequest: DESIGN §6, "bindings expire after
// session_ttl, renewed by each authorized request of their principal". A
// binding used within its TTL holds for a TTL after that use (less the
// renewal spacing, ttl/60 here), even when the use comes sooner than
// RenewEvery after the last write; and one left unused for a TTL expires.
func TestSessionsRenewedByEachRequest(t *testing.T) {
	const ttl = time.Second
	tests := []struct {
		name   string
		shared bool
	}{
		{"in process", false},
		{"with a shared store", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts := SessionOptions{}
			if tt.shared {
				opts.Shared = &fakeShared{m: map[[sha256.Size]byte]string{}, down: true} // decides nothing: the local binding is what holds
			}
			s, _ := NewSessions(opts)
			key := sha256.Sum256([]byte("r\x00s-renew"))
			ctx := context.Background()
			start := time.Now()
			at := func(d time.Duration) { time.Sleep(time.Until(start.Add(d))) }
			if got := s.Bind(ctx, key, "alice", ttl); got != "alice" {
				t.Fatal(got)
			}
			at(500 * time.Millisecond)
			if got := s.Bind(ctx, key, "alice", ttl); got != "alice" {
				t.Fatal(got)
			}
			// 1.2 s: a TTL after the bind, but within a TTL of alice's last use.
			at(1200 * time.Millisecond)
			if got := s.Bind(ctx, key, "mallory", ttl); got != "alice" {
				t.Fatalf("the binding ended a TTL after it was made, not after its last use: %q", got)
			}
			// 2.2 s: more than a TTL after alice's last use.
			at(2200 * time.Millisecond)
			if got := s.Bind(ctx, key, "bob", ttl); got != "bob" {
				t.Fatalf("an unused binding outlived its TTL: %q", got)
			}
		})
	}
}
