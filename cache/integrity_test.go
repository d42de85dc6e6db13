package cache

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mcp-authz/mcp-authz/internal/syncbuf"

	"github.com/redis/go-redis/v9"
	"google.golang.org/protobuf/proto"

	"github.com/mcp-authz/mcp-authz/internal/redistest"
	cachev1 "github.com/mcp-authz/mcp-authz/proto/mcpauthz/cache/v1"
	"github.com/mcp-authz/mcp-authz/validators"
)

// otherSecret is a well-formed secret this fleet does not hold.
var otherSecret = []byte("attacker-secret-attacker-secret-")

// goodToken is the one token the test validator accepts, as "real-user".
const goodToken = "good-token"

// realOrInvalid accepts goodToken alone.
func realOrInvalid(token string) (*validators.Principal, error) {
	if token == goodToken {
		return validators.NewPrincipal(validators.Identity{Subject: "real-user", ExpiresAt: time.Now().Add(time.Hour)}), nil
	}
	return nil, &validators.Error{Kind: validators.ErrInvalidToken, Description: validators.DescSignature}
}

type syncBuffer = syncbuf.Buffer

// attack is what a test case can do with write access to Redis.
type attack struct {
	t      *testing.T
	ctx    context.Context
	client redis.UniversalClient
	r      *Redis
}

func (a *attack) key(token string) string { return a.r.redisKey(NewKey("p", token)) }

// genuine is the value the fleet stores for goodToken, after a validation
// by a replica of it.
func (a *attack) genuine() []byte {
	a.t.Helper()
	w, _ := New(&countingValidator{answer: realOrInvalid}, a.r, Options{Policy: "p", TTL: time.Minute})
	if _, err := w.Validate(a.ctx, goodToken); err != nil {
		a.t.Fatal(err)
	}
	b, err := a.client.Get(a.ctx, a.key(goodToken)).Bytes()
	if err != nil {
		a.t.Fatal(err)
	}
	return b
}

// put stores value under key as a replica would: with a TTL under the
// validator's.
func (a *attack) put(key string, value []byte) {
	a.t.Helper()
	if err := a.client.Set(a.ctx, key, value, 30*time.Second).Err(); err != nil {
		a.t.Fatal(err)
	}
}

func marshal(t *testing.T, v *cachev1.Verdict) []byte {
	t.Helper()
	b, err := proto.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// attackerAllow is a well-formed verdict allowing "attacker".
func attackerAllow() *cachev1.Verdict {
	return &cachev1.Verdict{SchemaVersion: schemaVersion, Active: true, Subject: "attacker", Scopes: []string{"admin"},
		ExpiresAt: time.Now().Add(time.Hour).Unix(), CachedUntilMs: time.Now().Add(30 * time.Second).UnixMilli()}
}

// denial is a well-formed negative verdict.
func denial() *cachev1.Verdict {
	return &cachev1.Verdict{SchemaVersion: schemaVersion, ErrorDescription: validators.DescExpired,
		CachedUntilMs: time.Now().Add(3 * time.Second).UnixMilli()}
}

// sealWith signs payload under key as a holder of secret would.
func sealWith(t *testing.T, secret []byte, key string, payload []byte) []byte {
	t.Helper()
	s, err := newSigner([][]byte{secret})
	if err != nil {
		t.Fatal(err)
	}
	return s.seal(key, payload)
}

// reopen decodes the verdict of a stored value, changes it, and returns the
// changed message, for tampering.
func reopen(t *testing.T, value []byte, change func(*cachev1.Verdict)) []byte {
	t.Helper()
	var v cachev1.Verdict
	if err := proto.Unmarshal(value[32:], &v); err != nil {
		t.Fatal(err)
	}
	change(&v)
	return marshal(t, &v)
}

// TestForgedVerdicts: whatever someone with write access to Redis puts
// under a token's key is a miss, counted and logged, followed by a proper
// validation; never an allow or a denial from the forged value.
func TestForgedVerdicts(t *testing.T) {
	srv := redistest.Start(t)
	var mine = func(a *attack, key string, payload []byte) []byte { return a.r.signer.seal(key, payload) }
	cases := []struct {
		name  string
		token string
		plant func(a *attack)
	}{
		{"allow for an arbitrary token without a MAC", "arbitrary", func(a *attack) {
			a.put(a.key("arbitrary"), marshal(a.t, attackerAllow()))
		}},
		{"allow for an arbitrary token with a wrong MAC", "arbitrary", func(a *attack) {
			mac := make([]byte, 32)
			_, _ = rand.Read(mac)
			a.put(a.key("arbitrary"), append(mac, marshal(a.t, attackerAllow())...))
		}},
		{"allow for an arbitrary token signed with another secret", "arbitrary", func(a *attack) {
			k := a.key("arbitrary")
			a.put(k, sealWith(a.t, otherSecret, k, marshal(a.t, attackerAllow())))
		}},
		{"valid verdict copied under another token's key", "arbitrary", func(a *attack) {
			a.put(a.key("arbitrary"), a.genuine())
		}},
		{"garbage", "arbitrary", func(a *attack) {
			a.put(a.key("arbitrary"), []byte("garbage"))
		}},
		{"not a string", "arbitrary", func(a *attack) {
			a.client.RPush(a.ctx, a.key("arbitrary"), "x")
			a.client.Expire(a.ctx, a.key("arbitrary"), 30*time.Second)
		}},
		{"expires_at 0, MAC kept", goodToken, func(a *attack) {
			v := a.genuine()
			a.put(a.key(goodToken), append(v[:32:32], reopen(a.t, v, func(v *cachev1.Verdict) { v.ExpiresAt = 0; v.Subject = "attacker" })...))
		}},
		{"expires_at 0, signed", goodToken, func(a *attack) {
			k := a.key(goodToken)
			a.put(k, mine(a, k, reopen(a.t, a.genuine(), func(v *cachev1.Verdict) { v.ExpiresAt = 0; v.Subject = "attacker" })))
		}},
		{"cached_until a year ahead, MAC kept", goodToken, func(a *attack) {
			v := a.genuine()
			a.put(a.key(goodToken), append(v[:32:32], reopen(a.t, v, func(v *cachev1.Verdict) {
				v.CachedUntilMs = time.Now().AddDate(1, 0, 0).UnixMilli()
			})...))
		}},
		{"cached_until beyond the TTL, signed", goodToken, func(a *attack) {
			k := a.key(goodToken)
			a.put(k, mine(a, k, reopen(a.t, a.genuine(), func(v *cachev1.Verdict) {
				v.CachedUntilMs = time.Now().Add(time.Minute + 5*time.Second).UnixMilli()
				v.Subject = "attacker"
			})))
		}},
		{"overwritten with active=false, MAC kept", goodToken, func(a *attack) {
			v := a.genuine()
			a.put(a.key(goodToken), append(v[:32:32], marshal(a.t, denial())...))
		}},
		{"overwritten with active=false, no MAC", goodToken, func(a *attack) {
			a.genuine()
			a.put(a.key(goodToken), marshal(a.t, denial()))
		}},
		{"denial beyond the negative TTL, signed", goodToken, func(a *attack) {
			k := a.key(goodToken)
			d := denial()
			d.CachedUntilMs = time.Now().Add(time.Minute).UnixMilli()
			a.put(k, mine(a, k, marshal(a.t, d)))
		}},
		{"key without TTL (PERSIST)", goodToken, func(a *attack) {
			a.genuine()
			if !a.client.Persist(a.ctx, a.key(goodToken)).Val() {
				a.t.Fatal("PERSIST did nothing")
			}
		}},
		{"key TTL beyond the TTL (PEXPIRE)", goodToken, func(a *attack) {
			a.genuine()
			a.client.Expire(a.ctx, a.key(goodToken), time.Hour)
		}},
		{"schema version 1, signed", goodToken, func(a *attack) {
			k := a.key(goodToken)
			a.put(k, mine(a, k, reopen(a.t, a.genuine(), func(v *cachev1.Verdict) { v.SchemaVersion = 1; v.Subject = "attacker" })))
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var logs syncBuffer
			r, client := newRedisStoreWith(t, srv, RedisOptions{Timeout: time.Second, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
			ctx := context.Background()
			client.FlushDB(ctx)
			tc.plant(&attack{t: t, ctx: ctx, client: client, r: r})
			inner := &countingValidator{answer: realOrInvalid}
			v, _ := New(inner, r, Options{Policy: "p", TTL: time.Minute, NegativeTTL: 5 * time.Second}) // L2 alone: every check reads Redis

			for i := range 2 {
				p, err := v.Validate(ctx, tc.token)
				switch tc.token {
				case goodToken:
					if err != nil || p.Subject() != "real-user" {
						t.Fatalf("check %d of the good token: %v %v", i, p, err)
					}
				default:
					var verr *validators.Error
					if !errors.As(err, &verr) || verr.Description != validators.DescSignature {
						t.Fatalf("check %d of an arbitrary token: %v %v", i, p, err)
					}
				}
			}
			// The first check validated, and stored a proper verdict that
			// answered the second.
			if n := inner.calls.Load(); n != 1 {
				t.Fatalf("%d validations, want 1", n)
			}
			if st := r.Stats(); st.IntegrityFailures != 1 || st.Hits != 1 {
				t.Fatalf("stats %+v, want 1 integrity failure, then 1 hit", st)
			}
			log := logs.String()
			if !strings.Contains(log, "integrity") || strings.Contains(log, tc.token) || strings.Contains(log, "attacker") {
				t.Fatalf("log %q", log)
			}
		})
	}
}

// TestVerdictSecretRotation: replica A signs with secret 1 and replica B,
// configured [secret 2, secret 1], reads its verdicts; then B signs with
// secret 2 and A, now configured [secret 2, secret 1], reads B's.
func TestVerdictSecretRotation(t *testing.T) {
	srv := redistest.Start(t)
	secret1, secret2 := testSecret, []byte("rotated-secret-rotated-secret-02")
	ctx := context.Background()
	inner := &countingValidator{answer: validFor(time.Hour)}
	replica := func(secrets ...[]byte) (*Validator, *Redis) {
		r, _ := newRedisStoreWith(t, srv, RedisOptions{Timeout: time.Second, Secrets: secrets})
		v, err := New(inner, r, Options{Policy: "p"})
		if err != nil {
			t.Fatal(err)
		}
		return v, r
	}
	a, _ := replica(secret1)
	b, rb := replica(secret2, secret1)
	for _, v := range []*Validator{a, b} {
		if _, err := v.Validate(ctx, "before"); err != nil {
			t.Fatal(err)
		}
	}
	if n := inner.calls.Load(); n != 1 || rb.Stats().Hits != 1 {
		t.Fatalf("B did not read A's verdict signed with the old secret: %d validations, %+v", n, rb.Stats())
	}

	// B signs with secret 2; A, restarted with [secret 2, secret 1], reads it.
	a2, ra2 := replica(secret2, secret1)
	for _, v := range []*Validator{b, a2} {
		if _, err := v.Validate(ctx, "after"); err != nil {
			t.Fatal(err)
		}
	}
	if n := inner.calls.Load(); n != 2 || ra2.Stats().Hits != 1 {
		t.Fatalf("A did not read B's verdict signed with the new secret: %d validations, %+v", n, ra2.Stats())
	}
	// A replica still on [secret 1] alone cannot: that is why the new
	// secret is deployed second in the list first.
	old, rold := replica(secret1)
	if _, err := old.Validate(ctx, "after"); err != nil {
		t.Fatal(err)
	}
	if st := rold.Stats(); st.Hits != 0 || st.IntegrityFailures != 1 {
		t.Fatalf("a replica without the signing secret: %+v", st)
	}
}

func TestNewRedisRequiresSecrets(t *testing.T) {
	client := redis.NewUniversalClient(&redis.UniversalOptions{Addrs: []string{"127.0.0.1:1"}})
	defer client.Close()
	for name, secrets := range map[string][][]byte{
		"none":         nil,
		"empty":        {},
		"31 bytes":     {testSecret[:31]},
		"second short": {testSecret, []byte("short")},
	} {
		if _, err := NewRedis(RedisOptions{Client: client, Secrets: secrets}); err == nil {
			t.Errorf("%s: NewRedis accepted it", name)
		}
	}
	if _, err := NewRedis(RedisOptions{Client: client, Secrets: [][]byte{testSecret, otherSecret}}); err != nil {
		t.Fatal(err)
	}
}

// TestVerdictWithoutExp: a principal without exp (an API key) is stored
// with the end of its cache entry as its exp bound, and read back without
// an expiry of its own.
func TestVerdictWithoutExp(t *testing.T) {
	srv := redistest.Start(t)
	r, client := newRedisStore(t, srv)
	ctx := context.Background()
	k := NewKey("p", "api-key")
	r.Set(ctx, k, Entry{Principal: validators.NewPrincipal(validators.Identity{Subject: "key-name"})}, time.Minute)
	b, _ := client.Get(ctx, r.redisKey(k)).Bytes()
	var v cachev1.Verdict
	if err := proto.Unmarshal(b[32:], &v); err != nil {
		t.Fatal(err)
	}
	if !v.ExpIsCacheBound || v.ExpiresAt < v.CachedUntilMs/1000 || v.ExpiresAt > v.CachedUntilMs/1000+1 {
		t.Fatalf("stored exp %d, cached until %d ms, flag %v", v.ExpiresAt, v.CachedUntilMs, v.ExpIsCacheBound)
	}
	e, ok := r.Get(ctx, k)
	if !ok || !e.Principal.ExpiresAt().IsZero() || e.until.UnixMilli() != v.CachedUntilMs {
		t.Fatalf("read back %+v %v", e, ok)
	}
}

// TestVerdictBoundsFollowTheValidator: a verdict is read against the TTLs
// of the Validator reading it, not defaults.
func TestVerdictBoundsFollowTheValidator(t *testing.T) {
	srv := redistest.Start(t)
	r, _ := newRedisStore(t, srv)
	ctx := context.Background()
	inner := &countingValidator{answer: validFor(24 * time.Hour)}
	long, _ := New(inner, &Tiered{L1: newMemory(t), L2: r}, Options{Policy: "p", TTL: time.Hour})
	if _, err := long.Validate(ctx, "tok"); err != nil {
		t.Fatal(err)
	}
	// Another replica with the same TTL shares it, although it is beyond
	// the 5 min default.
	same, _ := New(inner, &Tiered{L1: newMemory(t), L2: r}, Options{Policy: "p", TTL: time.Hour})
	if _, err := same.Validate(ctx, "tok"); err != nil || inner.calls.Load() != 1 {
		t.Fatalf("%d validations (%v), want 1", inner.calls.Load(), err)
	}
	// One configured for a minute refuses it.
	short, _ := New(inner, &Tiered{L1: newMemory(t), L2: r}, Options{Policy: "p", TTL: time.Minute})
	if _, err := short.Validate(ctx, "tok"); err != nil || inner.calls.Load() != 2 {
		t.Fatalf("%d validations (%v), want 2", inner.calls.Load(), err)
	}
	if n := r.Stats().IntegrityFailures; n != 1 {
		t.Fatalf("%d integrity failures, want 1", n)
	}
}

// TestIntegrityLogIsRateLimited: a Redis full of forged values costs one
// log line per interval, with the count of those suppressed, not one per
// value read.
func TestIntegrityLogIsRateLimited(t *testing.T) {
	srv := redistest.Start(t)
	var logs syncBuffer
	r, client := newRedisStoreWith(t, srv, RedisOptions{Timeout: time.Second, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	ctx := context.Background()
	for i := range 6 {
		k := NewKey("p", fmt.Sprintf("forged-%d", i))
		client.Set(ctx, r.redisKey(k), "garbage", time.Minute)
		if _, ok := r.Get(ctx, k); ok {
			t.Fatal("a forged value was a hit")
		}
	}
	if n := r.Stats().IntegrityFailures; n != 6 {
		t.Fatalf("%d integrity failures, want 6", n)
	}
	if n := strings.Count(logs.String(), "integrity check"); n != 1 {
		t.Fatalf("%d log lines for 6 forged values, want 1:\n%s", n, logs.String())
	}
}

// TestMalformedInvalidationsAreIgnoredQuietly: anyone who can publish on
// the invalidation channel can send garbage; it drops nothing and logs a
// line per interval, not per message.
func TestMalformedInvalidationsAreIgnoredQuietly(t *testing.T) {
	srv := redistest.Start(t)
	var logs syncBuffer
	r, client := newRedisStoreWith(t, srv, RedisOptions{Timeout: time.Second, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var dropped atomic.Int64
	r.Subscribe(ctx, func([32]byte) { dropped.Add(1) })
	for range 50 {
		client.Publish(ctx, r.invalidationChannel(), "not hex")
	}
	sum := HashToken("tok")
	client.Publish(ctx, r.invalidationChannel(), hex.EncodeToString(sum[:]))
	for deadline := time.Now().Add(5 * time.Second); dropped.Load() == 0; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the well-formed invalidation never arrived")
		}
	}
	if n := dropped.Load(); n != 1 {
		t.Fatalf("%d invalidations acted on, want 1", n)
	}
	if n := strings.Count(logs.String(), "malformed cache invalidation"); n != 1 {
		t.Fatalf("%d log lines for 50 malformed invalidations, want 1", n)
	}
}
