package cache

import (
	"context"
	"slices"
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
// long before the back-off would have ended: after a short outage (a 10 s
// back-off), and after a long one whose back-off has reached the 30 s cap
// (the breaker opens straight at the cap here, rather than doubling its
// way there for a minute). The long outage lasts 6 s: more than the 20
// failed dials (one per probe) after which go-redis's pool stops dialing
// and retries once a second by itself, which then adds up to a second to
// the recovery (docs/benchmarks.md has the figures).
func TestRedisBackFromOutage(t *testing.T) {
	for _, tc := range []struct {
		name    string
		backoff time.Duration
		outage  time.Duration
	}{
		{"short outage", 10 * time.Second, 2 * probeInterval},
		{"long outage, 30 s back-off", maxBackoff, 6 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := redistest.Start(t)
			r, _ := newRedisStoreWith(t, srv, RedisOptions{Timeout: 100 * time.Millisecond, Backoff: tc.backoff})
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
			if st.Up || st.Backoff != tc.backoff {
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
			time.Sleep(tc.outage)

			srv.Restart() // returns once the server accepts connections
			back := time.Now()
			for {
				r.Set(ctx, k, e, time.Minute)
				if _, ok := r.Get(ctx, k); ok {
					break
				}
				if time.Since(back) > 5*time.Second {
					t.Fatalf("tier not used 5 s after Redis came back (back-off %v): %+v", tc.backoff, r.Stats())
				}
				time.Sleep(5 * time.Millisecond)
			}
			// Not a speed assertion: the figure is reported, and the bound
			// above only catches a breaker that waits its back-off out.
			t.Logf("verdicts shared again %v after Redis accepted connections (outage %v, back-off %v)",
				time.Since(back).Round(time.Millisecond), tc.outage, tc.backoff)
			if st := r.Stats(); !st.Up || st.Backoff != 0 {
				t.Fatalf("after recovery: %+v", st)
			}
		})
	}
}

// TestBackoffDoublesToItsCap: while Redis stays down the back-off doubles
// up to MaxBackoff (shortened here), then stays there.
func TestBackoffDoublesToItsCap(t *testing.T) {
	srv := redistest.Start(t)
	r, _ := newRedisStoreWith(t, srv, RedisOptions{Timeout: 100 * time.Millisecond, Backoff: 20 * time.Millisecond,
		MaxBackoff: 80 * time.Millisecond, ProbeInterval: time.Hour})
	k := NewKey("p", "tok")
	srv.Kill()
	var seen []time.Duration
	for deadline := time.Now().Add(3 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		r.Set(context.Background(), k, Entry{Principal: validators.NewPrincipal(validators.Identity{Subject: "s"})}, time.Minute)
		if b := r.Stats().Backoff; b != 0 && (len(seen) == 0 || seen[len(seen)-1] != b) {
			seen = append(seen, b)
		}
		if len(seen) > 0 && seen[len(seen)-1] == 80*time.Millisecond {
			break
		}
	}
	want := []time.Duration{20 * time.Millisecond, 40 * time.Millisecond, 80 * time.Millisecond}
	if !slices.Equal(seen, want) {
		t.Fatalf("back-offs %v, want %v", seen, want)
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
