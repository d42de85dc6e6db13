package cache

import (
	"context"
	"encoding/base64"
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"google.golang.org/protobuf/proto"

	"github.com/mcp-authz/mcp-authz/internal/redistest"
	cachev1 "github.com/mcp-authz/mcp-authz/proto/mcpauthz/cache/v1"
	"github.com/mcp-authz/mcp-authz/validators"
)

// realisticClaims is the payload of a typical JWT access token: 270 bytes
// of JSON, 360 of base64url.
const realisticClaims = `{"iss":"https://tenant.us.auth0.com/","sub":"auth0|5f7c8ec7c33c6c004bbafe82",` +
	`"aud":"https://mcp.example.com/mcp","iat":1764600000,"exp":1764603600,"scope":"mcp:read mcp:write",` +
	`"client_id":"my-client-id-0123456789","jti":"0f4e7a9c2b1d8e6f3a5c7b9d1e2f4a6c8b0d2e4f6a8c0b2"}`

// realisticPrincipal is a principal from a typical JWT, laid out as the
// JWT validator lays it out: its claims are the token's payload segment,
// and it keeps its identity values alone.
func realisticPrincipal() *validators.Principal {
	return validators.NewPrincipal(validators.Identity{
		Subject: "auth0|5f7c8ec7c33c6c004bbafe82", ClientID: "my-client-id-0123456789", Issuer: "https://tenant.us.auth0.com/",
		Scopes: []string{"mcp:read", "mcp:write"}, ExpiresAt: time.Now().Add(time.Hour), ClaimsInToken: len(realisticClaims),
		ClaimsDigest: validators.PayloadDigest(base64.RawURLEncoding.EncodeToString([]byte(realisticClaims))),
	})
}

// introspectedPrincipal is a principal from an introspection reply of
// typical size, whose claims it keeps.
func introspectedPrincipal() *validators.Principal {
	return validators.NewPrincipal(validators.Identity{
		Subject: "auth0|5f7c8ec7c33c6c004bbafe82", ClientID: "my-client-id-0123456789", Issuer: "https://tenant.us.auth0.com/",
		Scopes: []string{"mcp:read", "mcp:write"}, ExpiresAt: time.Now().Add(time.Hour), ClaimsJSON: strings.Clone(realisticClaims),
	})
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
// principal of typical size, and for a million entries the process's
// resident memory (VmRSS, after returning freed memory to the OS).
func BenchmarkMemoryPerEntry(b *testing.B) {
	for _, tt := range []struct {
		kind string
		n    int
		p    func() *validators.Principal
	}{{"jwt", 100_000, realisticPrincipal}, {"jwt", 1_000_000, realisticPrincipal}, {"introspection", 100_000, introspectedPrincipal}} {
		n := tt.n
		b.Run(fmt.Sprintf("%s/entries=%d", tt.kind, n), func(b *testing.B) {
			for b.Loop() {
				var before, after runtime.MemStats
				runtime.GC()
				runtime.ReadMemStats(&before)
				m, _ := NewMemory(MemoryOptions{MaxBytes: 1 << 40})
				for i := range n {
					m.Set(context.Background(), NewKey("0123456789abcdef0123456789abcdef", strconv.Itoa(i)),
						Entry{Principal: tt.p()}, time.Hour)
				}
				m.c.CleanUp()
				runtime.GC()
				runtime.ReadMemStats(&after)
				debug.FreeOSMemory()
				b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/float64(n), "bytes/entry")
				b.ReportMetric(float64(m.c.WeightedSize())/float64(n), "weighed-bytes/entry")
				if n >= 1_000_000 {
					b.ReportMetric(float64(rss())/(1<<20), "rss-MiB")
				}
				runtime.KeepAlive(m)
			}
		})
	}
}

// rss is the process's resident set size.
func rss() int64 {
	b, _ := os.ReadFile("/proc/self/status")
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb << 10
		}
	}
	return 0
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
	key := "mcp-authz:v3:0123456789abcdef0123456789abcdef:" + strings.Repeat("ab", 32)
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

// BenchmarkColdRedis: a never-seen token on every Validate, from 50
// concurrent callers each with Envoy's 200 ms deadline, through L1 alone
// (memory) and through L1 in front of a loopback redis-server (redis): the
// fleet's turn (Locker.Acquire) and the verdict written in the background
// with the unlock (Locker.Release). The inner validator is a stub, so the
// difference between the two is what the Redis tier costs a fresh token.
// Reports this process's CPU time per Validate (user and system, the
// background writes included), which the wall-clock ns/op of a parallel
// benchmark is not, and redis-server's.
func BenchmarkColdRedis(b *testing.B) {
	inner := &countingValidator{answer: func(string) (*validators.Principal, error) { return realisticPrincipal(), nil }}
	run := func(b *testing.B, store Store, client redis.UniversalClient) {
		v, err := New(inner, store, Options{Policy: "0123456789abcdef0123456789abcdef"})
		if err != nil {
			b.Fatal(err)
		}
		var next atomic.Int64
		b.SetParallelism(25)
		b.ReportAllocs()
		cpu0, server0 := cpuTime(), redisCPU(client)
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			token := make([]byte, 0, 64)
			for pb.Next() {
				token = strconv.AppendInt(append(token[:0], "fresh-token-"...), next.Add(1), 10)
				ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
				if _, err := v.Validate(ctx, string(token)); err != nil {
					b.Error(err)
				}
				cancel()
			}
		})
		b.StopTimer()
		// The background writes of the last Validates.
		time.Sleep(20 * time.Millisecond)
		b.ReportMetric(float64(cpuTime()-cpu0)/float64(b.N)/1e3, "cpu-µs/op")
		if client != nil {
			b.ReportMetric(float64(redisCPU(client)-server0)/float64(b.N)/1e3, "redis-server-cpu-µs/op")
		}
	}
	b.Run("memory", func(b *testing.B) {
		m, _ := NewMemory(MemoryOptions{})
		run(b, m, nil)
	})
	b.Run("redis", func(b *testing.B) {
		srv := redistest.Start(b)
		client := redis.NewUniversalClient(&redis.UniversalOptions{Addrs: []string{srv.Addr}, ContextTimeoutEnabled: true, MaxRetries: -1})
		b.Cleanup(func() { client.Close() })
		r, err := NewRedis(RedisOptions{Client: client, Secrets: [][]byte{testSecret}})
		if err != nil {
			b.Fatal(err)
		}
		m, _ := NewMemory(MemoryOptions{})
		run(b, &Tiered{L1: m, L2: r}, client)
		if s := r.Stats(); s.Errors > 0 || s.Skipped > 0 {
			b.Logf("redis tier: %+v", s)
		}
	})
}

// redisCPU is the CPU time redis-server has used so far (user and
// system, as INFO reports it), in nanoseconds; 0 without a client.
func redisCPU(client redis.UniversalClient) int64 {
	if client == nil {
		return 0
	}
	info, _ := client.Info(context.Background(), "cpu").Result()
	var total float64
	for _, l := range strings.Split(info, "\r\n") {
		for _, field := range []string{"used_cpu_sys:", "used_cpu_user:"} {
			if v, ok := strings.CutPrefix(l, field); ok {
				f, _ := strconv.ParseFloat(v, 64)
				total += f
			}
		}
	}
	return int64(total * 1e9)
}

// cpuTime is the process's CPU time so far (user and system), in
// nanoseconds.
func cpuTime() int64 {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return ru.Utime.Nano() + ru.Stime.Nano()
}

// BenchmarkMemoryGetScale is an L1 hit alone, from 1,000 to 1,000,000
// cached verdicts, with 1,000 of them in use or all of them, against a
// plain Go map holding the same entries: what a hash table cannot avoid
// (the memory latency of a table and entries too large for the CPU's
// caches and TLB) apart from what the cache's bookkeeping adds on every
// hit (otter records each read for its eviction policy and timer wheel).
func BenchmarkMemoryGetScale(b *testing.B) {
	ctx := context.Background()
	for _, n := range []int{1_000, 100_000, 1_000_000} {
		m, _ := NewMemory(MemoryOptions{MaxBytes: 1 << 40})
		plain := make(map[Key]*Entry, n)
		keys := make([]Key, n)
		for i := range n {
			keys[i] = NewKey("0123456789abcdef0123456789abcdef", "token-"+strconv.Itoa(i))
			e := Entry{Principal: realisticPrincipal()}
			m.Set(ctx, keys[i], e, time.Hour)
			plain[keys[i]] = &e
		}
		m.c.CleanUp()
		runtime.GC()
		inUses := []int{1_000}
		if n > 1_000 {
			inUses = append(inUses, n)
		}
		for _, inUse := range inUses {
			name := fmt.Sprint(inUse)
			if inUse == n && n > 1_000 {
				name = "all"
			}
			// pick is a uniformly spread index among the tokens in use.
			pick := func(x *uint64) int {
				*x = *x*6364136223846793005 + 1442695040888963407
				return int(*x>>33) % inUse * (n / inUse)
			}
			b.Run(fmt.Sprintf("otter/l1=%d/in-use=%s", n, name), func(b *testing.B) {
				x := uint64(1)
				for b.Loop() {
					if e, ok := m.Get(ctx, keys[pick(&x)]); !ok || e.Principal == nil {
						b.Fatal("a cached verdict missed")
					}
				}
			})
			b.Run(fmt.Sprintf("map/l1=%d/in-use=%s", n, name), func(b *testing.B) {
				x := uint64(1)
				for b.Loop() {
					if e := plain[keys[pick(&x)]]; e == nil || e.Principal == nil {
						b.Fatal("a cached verdict missed")
					}
				}
			})
		}
		runtime.KeepAlive(m)
	}
}
