package e2e

import (
	"context"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/mcp-authz/mcp-authz/internal/redistest"
)

// TestFleetSharesRedis: two replicas sharing one Redis validate a token
// once between them; Redis holds no raw token; a replica with another
// policy does not reuse the verdict; a Redis crash costs no decision.
func TestFleetSharesRedis(t *testing.T) {
	rs := redistest.Start(t)
	proxy, calls := countingProxy(t)
	env := introspectionEnv(proxy)
	env["REDIS_URL"] = rs.URL()
	env["OAUTH_INTROSPECTION_CACHE_TTL"] = "5m"
	a := startAuthz(t, env, true)
	b := startAuthz(t, env, true)

	tok := token(t, "rs-client", "mcp:read", opaqueResource)
	if ok, www := allowed(t, a, tok); !ok {
		t.Fatalf("via A: %s", www)
	}
	if ok, www := allowed(t, b, tok); !ok {
		t.Fatalf("via B: %s", www)
	}
	if got := calls.Load(); got != 1 {
		t.Fatalf("a check via A then via B cost %d introspection calls, want 1", got)
	}

	client := redis.NewClient(&redis.Options{Addr: rs.Addr})
	defer client.Close()
	ctx := context.Background()
	keys, err := client.Keys(ctx, "*").Result()
	if err != nil || len(keys) == 0 {
		t.Fatalf("keys %v %v", keys, err)
	}
	for _, k := range keys {
		v, _ := client.Get(ctx, k).Result()
		if strings.Contains(k, tok) || strings.Contains(v, tok) || !strings.HasPrefix(k, "mcp-authz:v1:") {
			t.Fatalf("key %q holds the token or has the wrong shape", k)
		}
	}

	t.Run("200 concurrent checks of a fresh token over A and B: one call", func(t *testing.T) {
		fresh := token(t, "rs-client", "mcp:read", opaqueResource)
		before := calls.Load()
		var wg sync.WaitGroup
		var denied atomic.Int64
		for i := range 200 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if ok, _ := allowed(t, []*authzProc{a, b}[i%2], fresh); !ok {
					denied.Add(1)
				}
			}()
		}
		wg.Wait()
		if denied.Load() != 0 {
			t.Fatalf("%d denied", denied.Load())
		}
		if got := calls.Load() - before; got != 1 {
			t.Fatalf("200 concurrent checks over two replicas cost %d introspection calls, want 1", got)
		}
	})

	t.Run("another policy does not reuse the verdict", func(t *testing.T) {
		other := introspectionEnv(proxy)
		other["REDIS_URL"] = rs.URL()
		other["OAUTH_RESOURCE"] = "https://other.example.com/opaque"
		c := startAuthz(t, other, true)
		if ok, www := allowed(t, c, tok); ok || !strings.Contains(www, "Token audience invalid") {
			t.Fatalf("replica with another audience: %v %q", ok, www)
		}
	})

	t.Run("redis killed during load: no errors, no wrong decisions", func(t *testing.T) {
		var wg sync.WaitGroup
		var wrong, total atomic.Int64
		stop := time.Now().Add(1500 * time.Millisecond)
		for range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for time.Now().Before(stop) {
					for _, p := range []*authzProc{a, b} {
						ok, _ := allowed(t, p, tok)
						total.Add(1)
						if !ok {
							wrong.Add(1)
						}
					}
				}
			}()
		}
		time.Sleep(300 * time.Millisecond)
		rs.Kill()
		wg.Wait()
		if wrong.Load() != 0 {
			t.Fatalf("%d of %d checks wrong while Redis died", wrong.Load(), total.Load())
		}
		t.Logf("%d checks across the Redis crash, all allowed", total.Load())

		rs.Restart()
		fresh := token(t, "rs-client", "mcp:read", opaqueResource)
		deadline := time.Now().Add(10 * time.Second)
		for {
			// A's breaker re-admits Redis after its back-off; until then
			// the verdict stays in A's process.
			if ok, _ := allowed(t, a, fresh); !ok {
				t.Fatal("fresh token denied")
			}
			if n, _ := client.DBSize(ctx).Result(); n > 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("Redis never used again after its restart")
			}
			time.Sleep(100 * time.Millisecond)
			fresh = token(t, "rs-client", "mcp:read", opaqueResource)
		}
		before := calls.Load()
		if ok, _ := allowed(t, b, fresh); !ok {
			t.Fatal("fresh token denied via B")
		}
		if calls.Load() != before {
			t.Fatal("after the restart B introspected a token A had already cached in Redis")
		}
	})
}
