package cache

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"google.golang.org/protobuf/proto"

	"github.com/mcp-authz/mcp-authz/internal/redistest"
	cachev1 "github.com/mcp-authz/mcp-authz/proto/mcpauthz/cache/v1"
	"github.com/mcp-authz/mcp-authz/validators"
)

// Red-team attacks on the Redis tier's verdicts without claims (f2daad1)
// and on its pooled timers (3cabc47). A test that passes documents a
// defence.

// jwtShaped returns a JWT-shaped token whose payload is {"sub":sub} and a
// principal laid out as the JWT validator lays it out.
func jwtShaped(sub string) (token, payload string, p *validators.Principal) {
	json := `{"sub":"` + sub + `"}`
	payload = base64.RawURLEncoding.EncodeToString([]byte(json))
	p = validators.NewPrincipal(validators.Identity{Subject: sub, Issuer: "https://as.example",
		ExpiresAt: time.Now().Add(time.Hour), ClaimsInToken: len(json), ClaimsDigest: validators.PayloadDigest(payload)})
	return "eyJhbGciOiJSUzI1NiJ9." + payload + ".c2ln", payload, p
}

// TestRedteamVerdictMovedToAnotherToken: someone who can write to Redis
// copies the verdict of one JWT (claims in the token, of a given length)
// under the key of another JWT whose payload has the same length, hoping
// that the second token's Checks use the first's identity with the
// second's claims. The MAC covers the key: a miss, and the second token
// is validated on its own.
func TestRedteamVerdictMovedToAnotherToken(t *testing.T) {
	srv := redistest.Start(t)
	r, client := newRedisStore(t, srv)
	ctx := context.Background()
	alice, _, pa := jwtShaped("alice")
	mallory, malloryPayload, _ := jwtShaped("malry") // the same length as alice
	if len(alice) != len(mallory) {
		t.Fatal("test tokens differ in length")
	}
	ka, km := NewKey("p", alice), NewKey("p", mallory)
	r.Set(ctx, ka, Entry{Principal: pa}, time.Minute)
	value, err := client.Get(ctx, r.redisKey(ka)).Bytes()
	if err != nil {
		t.Fatal(err)
	}
	client.Set(ctx, r.redisKey(km), value, 30*time.Second)
	if e, ok := r.Get(ctx, km); ok {
		t.Fatalf("a verdict moved to another token's key was used: subject %q, claims %q (mallory's payload %q)",
			e.Principal.Subject(), e.Principal.Claims(mallory), malloryPayload)
	}
	if r.Stats().IntegrityFailures == 0 {
		t.Fatal("the moved verdict was not counted as an integrity failure")
	}
}

// TestRedteamClaimsInTokenBounds: signed verdicts (a replica of another
// build, or a holder of the secret) that say the claims are in the token
// with a length no token can have, or with claims besides, are misses,
// never principals whose Claims would read past a token or forward stored
// claims in place of the token's.
func TestRedteamClaimsInTokenBounds(t *testing.T) {
	s, err := newSigner([][]byte{testSecret})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	base := func() *cachev1.Verdict {
		return &cachev1.Verdict{SchemaVersion: schemaVersion, Active: true, Subject: "s", ExpiresAt: now.Add(time.Hour).Unix(),
			CachedUntilMs: now.Add(30 * time.Second).UnixMilli(), ClaimsDigest: 42}
	}
	for _, tt := range []struct {
		name   string
		change func(*cachev1.Verdict)
		ok     bool
	}{
		{"in the token", func(v *cachev1.Verdict) { v.ClaimsInToken = 13 }, true},
		{"in the token, without its digest", func(v *cachev1.Verdict) { v.ClaimsInToken, v.ClaimsDigest = 13, 0 }, false},
		{"the longest", func(v *cachev1.Verdict) { v.ClaimsInToken = maxClaimsInToken }, true},
		{"one past the longest", func(v *cachev1.Verdict) { v.ClaimsInToken = maxClaimsInToken + 1 }, false},
		{"uint32 max", func(v *cachev1.Verdict) { v.ClaimsInToken = 1<<32 - 1 }, false},
		{"stored too", func(v *cachev1.Verdict) { v.ClaimsInToken, v.Claims = 13, "e30" }, false},
		{"stored, not base64url", func(v *cachev1.Verdict) { v.Claims = "e30=" }, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			v := base()
			tt.change(v)
			b, err := proto.Marshal(v)
			if err != nil {
				t.Fatal(err)
			}
			const key = "mcp-authz:v3:p:00"
			e, ok, reason := s.openVerdict(key, s.seal(key, b), 20*time.Second, now, defaultBounds)
			if ok != tt.ok {
				t.Fatalf("used: %v (%s), want %v", ok, reason, tt.ok)
			}
			if ok {
				// Any token, however odd, gives its own segment or nothing.
				for _, tok := range []string{"", "x", "a.b.c", strings.Repeat(".", 40)} {
					_ = e.Principal.Claims(tok)
				}
			}
		})
	}
}

// TestRedteamPooledTimerHasNoStaleTick: a queued caller's timer that
// fired while the caller took its answer instead goes back to the pool;
// the next caller to get it must not see that old tick as its own
// deadline (it would give up on Redis at once and, after a few, open the
// breaker). Holds while timers are synchronous (Go 1.23 and go.mod >=
// 1.23, no asynctimerchan).
func TestRedteamPooledTimerHasNoStaleTick(t *testing.T) {
	for i := range 20 { // the race detector's sync.Pool drops some Puts
		old := getTimer(time.Millisecond)
		time.Sleep(3 * time.Millisecond) // fired, never read
		putTimer(old)
		t2 := getTimer(time.Hour)
		select {
		case <-t2.C:
			t.Fatalf("round %d: a pooled timer ticked at once (same timer: %v)", i, t2 == old)
		case <-time.After(5 * time.Millisecond):
		}
		putTimer(t2)
	}
}

// TestRedteamQueuedCallersAfterTimeouts: queued callers give up (their
// pooled timers fire) while a worker still holds their commands, and the
// worker then writes their results into variables nobody reads; callers
// after them, on reused timers, get their own answers, each its own key's
// value. Run with -race: a worker writing a command a caller reads
// without the done channel's ordering shows.
func TestRedteamQueuedCallersAfterTimeouts(t *testing.T) {
	srv := redistest.Start(t)
	client := redis.NewUniversalClient(&redis.UniversalOptions{Addrs: []string{srv.Addr}, MaxRetries: -1, ContextTimeoutEnabled: true})
	t.Cleanup(func() { client.Close() })
	ctx := context.Background()
	b := newBatcher(client, time.Second)
	for i := range 50 {
		if err := client.Set(ctx, fmt.Sprintf("rt:%d", i), fmt.Sprint(i), time.Minute).Err(); err != nil {
			t.Fatal(err)
		}
	}
	// Every call queues: one call is always "in flight".
	b.inflight.Add(1)
	defer b.inflight.Add(-1)
	get := func(i int, timeout time.Duration) (string, error) {
		var cmd *redis.StringCmd
		if err := b.run(ctx, timeout, func(ctx context.Context, p redis.Pipeliner) { cmd = p.Get(ctx, fmt.Sprintf("rt:%d", i)) }); err != nil {
			return "", err
		}
		return cmd.Result()
	}
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := range 100 {
				i := (g*13 + n) % 50
				if n%3 == 0 {
					_, _ = get(i, time.Microsecond) // gives up, most of the time
					continue
				}
				v, err := get(i, time.Second)
				if err != nil || v != fmt.Sprint(i) {
					if errors.Is(err, context.DeadlineExceeded) {
						err = fmt.Errorf("%w (a stale tick?)", err)
					}
					select {
					case errs <- fmt.Errorf("key %d: %q, %v", i, v, err):
					default:
					}
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}
