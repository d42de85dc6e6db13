package cache

import (
	"context"
	"crypto/sha256"
	"testing"
	"time"

	"github.com/mcp-authz/mcp-authz/internal/redistest"
)

// TestRedteamSessionInUseAcrossReplicas: a red-team attack on renewals
// spaced by min(RenewEvery, ttl/60) (222d2c4). Alice uses her session
// through replica A only, more often than the TTL but less often than
// RenewEvery; mallory asks replica B (whose own copy lapses) and a fresh
// replica again and again: neither ever takes the session while alice
// uses it, whatever RenewEvery says; once alice has stopped for more
// than a TTL, it is free.
func TestRedteamSessionInUseAcrossReplicas(t *testing.T) {
	const ttl = 1200 * time.Millisecond
	srv := redistest.Start(t)
	for _, renewEvery := range []time.Duration{0, time.Hour} {
		t.Run(renewEvery.String(), func(t *testing.T) {
			ra, _ := newRedisStore(t, srv)
			rb, _ := newRedisStore(t, srv)
			a, _ := NewSessions(SessionOptions{Shared: ra, RenewEvery: renewEvery})
			b, _ := NewSessions(SessionOptions{Shared: rb, RenewEvery: renewEvery})
			ctx := context.Background()
			key := sha256.Sum256([]byte("https://m.example/mcp\x00sess-" + renewEvery.String()))
			const alice, mallory = "iss\x00alice", "iss\x00mallory"
			start := time.Now()
			var last time.Time
			for time.Since(start) < 3*ttl {
				if got := a.Bind(ctx, key, alice, ttl); got != alice {
					t.Fatalf("at %v alice lost her own session to %q", time.Since(start), got)
				}
				last = time.Now()
				time.Sleep(ttl / 8)
				if got := b.Bind(ctx, key, mallory, ttl); got != alice {
					t.Fatalf("at %v mallory took a session in use through B", time.Since(start))
				}
				fresh, _ := NewSessions(SessionOptions{Shared: rb, RenewEvery: renewEvery})
				if got := fresh.Bind(ctx, key, mallory, ttl); got != alice {
					t.Fatalf("at %v mallory took a session in use through a fresh replica", time.Since(start))
				}
				time.Sleep(ttl / 8)
			}
			// Unused for more than a TTL (plus the renewal spacing), the
			// binding is gone from Redis: a fresh replica gives it away.
			time.Sleep(time.Until(last.Add(ttl + ttl/60 + 100*time.Millisecond)))
			fresh, _ := NewSessions(SessionOptions{Shared: rb})
			if got := fresh.Bind(ctx, key, mallory, ttl); got != mallory {
				t.Fatalf("a binding outlived its TTL in Redis: %q", got)
			}
		})
	}
}
