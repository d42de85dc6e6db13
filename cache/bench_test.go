package cache

import (
	"context"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"google.golang.org/protobuf/proto"

	"github.com/mcp-authz/mcp-authz/internal/redistest"
	cachev1 "github.com/mcp-authz/mcp-authz/proto/mcpauthz/cache/v1"
	"github.com/mcp-authz/mcp-authz/validators"
)

// realisticPrincipal is the size of a principal from a typical JWT.
func realisticPrincipal() *validators.Principal {
	return &validators.Principal{
		Subject: "auth0|5f7c8ec7c33c6c004bbafe82", ClientID: "my-client-id-0123456789", Issuer: "https://tenant.us.auth0.com/",
		Audience: []string{"https://mcp.example.com/mcp"}, Scopes: []string{"mcp:read", "mcp:write"},
		ExpiresAt: time.Now().Add(time.Hour), Claims: strings.Repeat("eyJpc3MiOiJodHRwczovL3RlbmFudC", 12),
	}
}

// BenchmarkValidateFromRedis: a verdict served by the Redis tier alone (no
// L1) over loopback; reports p50 and p99 besides the mean.
func BenchmarkValidateFromRedis(b *testing.B) {
	srv := redistest.Start(b)
	client := redis.NewUniversalClient(&redis.UniversalOptions{Addrs: []string{srv.Addr}, ContextTimeoutEnabled: true, MaxRetries: -1})
	b.Cleanup(func() { client.Close() })
	r, _ := NewRedis(RedisOptions{Client: client, Timeout: time.Second, Secrets: [][]byte{testSecret}})
	inner := &countingValidator{answer: func(string) (*validators.Principal, error) { return realisticPrincipal(), nil }}
	v, _ := New(inner, r, Options{Policy: "p"})
	ctx := context.Background()
	token := strings.Repeat("x", 900)
	if _, err := v.Validate(ctx, token); err != nil {
		b.Fatal(err)
	}
	lat := make([]time.Duration, 0, 1<<16)
	b.ReportAllocs()
	for b.Loop() {
		t0 := time.Now()
		if _, err := v.Validate(ctx, token); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(t0))
	}
	if inner.calls.Load() != 1 || r.Stats().Hits == 0 {
		b.Fatalf("not served from Redis: %+v", r.Stats())
	}
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
}

// BenchmarkMemoryPerEntry reports the heap an L1 entry costs, with a
// principal of typical size.
func BenchmarkMemoryPerEntry(b *testing.B) {
	const n = 100_000
	for b.Loop() {
		m, _ := NewMemory(MemoryOptions{MaxBytes: 1 << 30})
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		for i := range n {
			m.Set(context.Background(), NewKey("0123456789abcdef0123456789abcdef", strings.Repeat("t", 10)+string(rune(i))+time.Now().String()),
				Entry{Principal: realisticPrincipal()}, time.Hour)
		}
		m.c.CleanUp()
		runtime.GC()
		runtime.ReadMemStats(&after)
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/n, "bytes/entry")
		runtime.KeepAlive(m)
	}
}

// BenchmarkVerdictOpen is the in-process part of a Redis hit for a verdict
// of typical size: the MAC alone, decoding alone (all a hit cost before
// verdicts were signed), both with every check, and both when the verdict
// was signed with the second secret of the list (during a rotation).
func BenchmarkVerdictOpen(b *testing.B) {
	s, err := newSigner([][]byte{testSecret, otherSecret})
	if err != nil {
		b.Fatal(err)
	}
	key := "mcp-authz:v2:0123456789abcdef0123456789abcdef:" + strings.Repeat("ab", 32)
	payload, err := encodeVerdict(Entry{Principal: realisticPrincipal(), until: time.Now().Add(time.Minute)})
	if err != nil {
		b.Fatal(err)
	}
	value := s.seal(key, payload)
	rotated, _ := newSigner([][]byte{otherSecret, testSecret})
	now, bnd := time.Now(), bounds{ttl: 5 * time.Minute, negativeTTL: 5 * time.Second}
	b.Logf("value %d bytes", len(value))
	b.Run("verify", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, ok := s.open(key, value); !ok {
				b.Fatal("MAC")
			}
		}
	})
	b.Run("decode", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var v cachev1.Verdict
			if err := proto.Unmarshal(payload, &v); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("verify+decode", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, ok, _ := s.openVerdict(key, value, time.Minute, now, bnd); !ok {
				b.Fatal("miss")
			}
		}
	})
	b.Run("verify+decode,second-secret", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, ok, _ := rotated.openVerdict(key, value, time.Minute, now, bnd); !ok {
				b.Fatal("miss")
			}
		}
	})
}
