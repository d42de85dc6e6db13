package cache

import (
	"context"
	"testing"
	"time"

	"github.com/mcp-authz/mcp-authz/internal/redistest"
	"github.com/mcp-authz/mcp-authz/validators"
)

// openBreaker makes requests until r's breaker opens.
func openBreaker(t *testing.T, r *Redis, k Key) {
	t.Helper()
	for i := 0; r.Stats().Up; i++ {
		if i == 100 {
			t.Fatalf("breaker still closed after 100 failing calls: %+v", r.Stats())
		}
		r.Set(context.Background(), k, Entry{Principal: validators.NewPrincipal(validators.Identity{Subject: "s"})}, time.Minute)
	}
}

// TestRedisBackFromOutage: while the breaker is open no request goes to
// Redis, and the tier is used again soon after Redis accepts connections,
// long before the back-off (10 s here) would have ended.
func TestRedisBackFromOutage(t *testing.T) {
	const backoff = 10 * time.Second
	srv := redistest.Start(t)
	r, _ := newRedisStoreWith(t, srv, RedisOptions{Timeout: 100 * time.Millisecond, Backoff: backoff})
	ctx := context.Background()
	k := NewKey("p", "tok")
	e := Entry{Principal: validators.NewPrincipal(validators.Identity{Subject: "s"})}
	r.Set(ctx, k, e, time.Minute)
	if _, ok := r.Get(ctx, k); !ok {
		t.Fatal("no round trip before the outage")
	}

	srv.Kill()
	openBreaker(t, r, k)
	st := r.Stats()
	if st.Up || st.Backoff != backoff {
		t.Fatalf("open breaker: %+v", st)
	}
	for range 100 {
		if _, ok := r.Get(ctx, k); ok {
			t.Fatal("a hit with Redis down")
		}
	}
	if after := r.Stats(); after.Errors != st.Errors || after.Skipped < st.Skipped+100 {
		t.Fatalf("requests went to Redis while the breaker was open: before %+v, after %+v", st, after)
	}
	time.Sleep(2 * probeInterval) // an outage long enough to be seen

	srv.Restart() // returns once the server accepts connections
	back := time.Now()
	for {
		r.Set(ctx, k, e, time.Minute)
		if _, ok := r.Get(ctx, k); ok {
			break
		}
		if time.Since(back) > 5*time.Second {
			t.Fatalf("tier not used 5 s after Redis came back (back-off %v): %+v", backoff, r.Stats())
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Logf("verdicts shared again %v after Redis accepted connections (back-off %v)", time.Since(back).Round(time.Millisecond), backoff)
	if st := r.Stats(); !st.Up || st.Backoff != 0 {
		t.Fatalf("after recovery: %+v", st)
	}
}

// TestBreakerKeepsBackoffWhileRedisAnswersPings: a Redis that answers
// pings but fails requests (out of memory here) does not end the back-off
// early; only coming back from an outage does.
func TestBreakerKeepsBackoffWhileRedisAnswersPings(t *testing.T) {
	srv := redistest.Start(t)
	r, client := newRedisStoreWith(t, srv, RedisOptions{Timeout: time.Second, Backoff: 10 * time.Second})
	ctx := context.Background()
	if err := client.ConfigSet(ctx, "maxmemory-policy", "noeviction").Err(); err != nil {
		t.Fatal(err)
	}
	if err := client.ConfigSet(ctx, "maxmemory", "1").Err(); err != nil {
		t.Fatal(err)
	}
	openBreaker(t, r, NewKey("p", "tok"))
	time.Sleep(4 * probeInterval)
	if st := r.Stats(); st.Up {
		t.Fatalf("a ping closed the breaker while requests fail: %+v", st)
	}
}
