package cache

import (
	"bytes"
	"context"
	"encoding/hex"
	"fmt"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"google.golang.org/protobuf/proto"

	"github.com/mcp-authz/mcp-authz/internal/redistest"
	cachev1 "github.com/mcp-authz/mcp-authz/proto/mcpauthz/cache/v1"
	"github.com/mcp-authz/mcp-authz/validators"
)

// testSecret is a verdict secret of the minimum length.
var testSecret = []byte("0123456789abcdef0123456789abcdef")

func newRedisStore(t *testing.T, srv *redistest.Server) (*Redis, redis.UniversalClient) {
	t.Helper()
	return newRedisStoreWith(t, srv, RedisOptions{Timeout: 50 * time.Millisecond, Backoff: 200 * time.Millisecond})
}

// newRedisStoreWith fills in a client of srv, and the test secret unless
// opts has secrets.
func newRedisStoreWith(t *testing.T, srv *redistest.Server, opts RedisOptions) (*Redis, redis.UniversalClient) {
	t.Helper()
	client := redis.NewUniversalClient(&redis.UniversalOptions{Addrs: []string{srv.Addr}, MaxRetries: -1, ContextTimeoutEnabled: true})
	t.Cleanup(func() { client.Close() })
	opts.Client = client
	if opts.Secrets == nil {
		opts.Secrets = [][]byte{testSecret}
	}
	r, err := NewRedis(opts)
	if err != nil {
		t.Fatal(err)
	}
	return r, client
}

func TestRedisRoundTrip(t *testing.T) {
	srv := redistest.Start(t)
	r, client := newRedisStore(t, srv)
	ctx := context.Background()
	exp := time.Now().Add(time.Hour).Truncate(time.Second)
	p := validators.NewPrincipal(validators.Identity{Subject: "s", ClientID: "c", Issuer: "i", Scopes: []string{"a", "b"}, ExpiresAt: exp, ClaimsJSON: "{}"})
	token := "eyJhbGciOiJSUzI1NiJ9.secret-token-body.sig"
	k := NewKey("policy1", token)
	r.Set(ctx, k, Entry{Principal: p}, time.Minute)
	got, ok := r.Get(ctx, k)
	if !ok || got.Principal.Subject() != "s" || got.Principal.ClientID() != "c" || strings.Join(got.Principal.Scopes(), " ") != "a b" ||
		!got.Principal.ExpiresAt().Equal(exp) || got.Principal.Claims("") != "e30" || got.Principal.ClaimsJSON() != "{}" {
		t.Fatalf("got %+v %v", got.Principal, ok)
	}
	neg := NewKey("policy1", "bad-token")
	r.Set(ctx, neg, Entry{Err: &validators.Error{Kind: validators.ErrInvalidToken, Description: validators.DescExpired}}, 5*time.Second)
	if e, ok := r.Get(ctx, neg); !ok || e.Err == nil || e.Err.Description != validators.DescExpired {
		t.Fatalf("negative entry %+v %v", e, ok)
	}

	// Every key and value: the key shape, the TTL, and no raw token anywhere.
	keyShape := regexp.MustCompile(`^mcp-authz:v3:policy1:[0-9a-f]{64}$`)
	var n int
	iter := client.Scan(ctx, 0, "*", 100).Iterator()
	for iter.Next(ctx) {
		n++
		key := iter.Val()
		if !keyShape.MatchString(key) {
			t.Errorf("key %q", key)
		}
		val, _ := client.Get(ctx, key).Bytes()
		for _, secret := range []string{token, "secret-token-body", "bad-token"} {
			if strings.Contains(key, secret) || strings.Contains(string(val), secret) {
				t.Errorf("raw token in Redis: %q", key)
			}
		}
		if ttl := client.PTTL(ctx, key).Val(); ttl <= 0 || ttl > time.Minute {
			t.Errorf("TTL %v on %s", ttl, key)
		}
	}
	if n != 2 {
		t.Fatalf("%d keys, want 2", n)
	}
}

// TestRedisClaimsInToken: a JWT's verdict stores no claims; a replica
// reads them from the token it holds, and a verdict that claims both is a
// miss.
func TestRedisClaimsInToken(t *testing.T) {
	srv := redistest.Start(t)
	r, client := newRedisStore(t, srv)
	ctx := context.Background()
	payload := "eyJzdWIiOiJ1c2VyLTEiLCJzZWNyZXQtY2xhaW0iOiJ2YWx1ZSJ9" // {"sub":"user-1","secret-claim":"value"}
	token := "eyJhbGciOiJSUzI1NiJ9." + payload + ".c2ln"
	p := validators.NewPrincipal(validators.Identity{Subject: "user-1", Issuer: "https://as.example", ExpiresAt: time.Now().Add(time.Hour),
		ClaimsInToken: 39, ClaimsDigest: validators.PayloadDigest(payload)})
	k := NewKey("p", token)
	r.Set(ctx, k, Entry{Principal: p}, time.Minute)
	val, err := client.Get(ctx, r.redisKey(k)).Bytes()
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(val, []byte(payload)) || bytes.Contains(val, []byte("secret-claim")) {
		t.Fatal("the token's claims were stored")
	}
	got, ok := r.Get(ctx, k)
	if !ok || got.Principal.Claims(token) != payload || got.Principal.Subject() != "user-1" {
		t.Fatalf("got %+v %v", got.Principal, ok)
	}
	// Another token's payload of the same length is not taken for the claims.
	forged := strings.Replace(token, payload, strings.Repeat("A", len(payload)), 1)
	if c := got.Principal.Claims(forged); c != "" {
		t.Fatalf("claims of another token: %q", c)
	}

	// Signed, but both in the token and stored: which would be forwarded?
	b, _ := proto.Marshal(&cachev1.Verdict{SchemaVersion: schemaVersion, Active: true, Subject: "s", ExpiresAt: time.Now().Add(time.Hour).Unix(),
		CachedUntilMs: time.Now().Add(time.Minute).UnixMilli(), Claims: "e30", ClaimsInToken: 39})
	key := r.redisKey(k)
	client.Set(ctx, key, r.signer.seal(key, b), time.Minute)
	if _, ok := r.Get(ctx, k); ok {
		t.Fatal("a verdict with claims both stored and in the token was used")
	}
	if n := r.Stats().IntegrityFailures; n != 1 {
		t.Fatalf("%d integrity failures, want 1", n)
	}
}

func TestRedisForeignSchemaIsAMiss(t *testing.T) {
	srv := redistest.Start(t)
	r, client := newRedisStore(t, srv)
	k := NewKey("p", "tok")
	key := r.redisKey(k)
	// Signed, so that only the version is wrong.
	b, _ := proto.Marshal(&cachev1.Verdict{SchemaVersion: schemaVersion + 1, Active: true, Subject: "s", ExpiresAt: time.Now().Add(time.Hour).Unix(),
		CachedUntilMs: time.Now().Add(time.Minute).UnixMilli()})
	client.Set(context.Background(), key, r.signer.seal(key, b), time.Minute)
	if _, ok := r.Get(context.Background(), k); ok {
		t.Fatal("a verdict of another schema version was used")
	}
	client.Set(context.Background(), key, []byte("garbage"), time.Minute)
	if _, ok := r.Get(context.Background(), k); ok {
		t.Fatal("garbage was used")
	}
	if n := r.Stats().IntegrityFailures; n != 2 {
		t.Fatalf("%d integrity failures, want 2", n)
	}
}

// TestTwoReplicasShareVerdicts: two caching validators with their own L1
// and one Redis validate a token once between them.
func TestTwoReplicasShareVerdicts(t *testing.T) {
	srv := redistest.Start(t)
	inner := &countingValidator{answer: validFor(time.Hour)}
	replica := func() *Validator {
		r, _ := newRedisStore(t, srv)
		v, err := New(inner, &Tiered{L1: newMemory(t), L2: r}, Options{Policy: "p"})
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	a, b := replica(), replica()
	if _, err := a.Validate(context.Background(), "tok"); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Validate(context.Background(), "tok"); err != nil {
		t.Fatal(err)
	}
	if inner.calls.Load() != 1 {
		t.Fatalf("a check via A then via B cost %d validations, want 1", inner.calls.Load())
	}
	// And B now answers from its own L1.
	if _, err := b.Validate(context.Background(), "tok"); err != nil || b.Stats().Hits != 2 {
		t.Fatalf("stats %+v %v", b.Stats(), err)
	}
}

// TestRedisOutage: errors are misses, the breaker skips the tier while
// Redis is down, and the tier is used again after a restart.
func TestRedisOutage(t *testing.T) {
	srv := redistest.Start(t)
	r, _ := newRedisStore(t, srv)
	inner := &countingValidator{answer: validFor(time.Hour)}
	v, _ := New(inner, r, Options{Policy: "p"}) // L2 only, to see every call
	ctx := context.Background()
	if _, err := v.Validate(ctx, "tok"); err != nil {
		t.Fatal(err)
	}
	srv.Kill()
	for i := range 50 {
		if _, err := v.Validate(ctx, "tok"); err != nil {
			t.Fatalf("check %d failed while Redis is down: %v", i, err)
		}
	}
	// go-redis reports the refused dials as timeouts, which open the
	// breaker a second after Redis last answered (a busy Redis is not a
	// dead one): calls until then each cost up to Timeout (50 ms here).
	st := r.Stats()
	if st.Errors == 0 || st.Skipped == 0 || st.Errors > 40 {
		t.Fatalf("breaker did not engage: %+v", st)
	}
	srv.Restart()
	deadline := time.Now().Add(5 * time.Second)
	for r.Stats().Sets < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("tier never used again: %+v", r.Stats())
		}
		_, _ = v.Validate(ctx, "tok")
		time.Sleep(20 * time.Millisecond)
	}
}

// TestRedisPaused: a server that stops answering makes cache calls give up
// after the timeout, not hang.
func TestRedisPaused(t *testing.T) {
	srv := redistest.Start(t)
	r, _ := newRedisStore(t, srv)
	k := NewKey("p", "tok")
	r.Set(context.Background(), k, Entry{Principal: validators.NewPrincipal(validators.Identity{Subject: "s"})}, time.Minute)
	srv.Pause()
	defer srv.Resume()
	done := make(chan bool)
	go func() {
		_, ok := r.Get(context.Background(), k)
		done <- ok
	}()
	select {
	case ok := <-done:
		if ok {
			t.Fatal("a paused Redis answered")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Get hung on a paused Redis")
	}
}

// TestFleetStampede: a burst of checks of one fresh token across replicas
// makes one validation in total; the other replica waits for the verdict.
func TestFleetStampede(t *testing.T) {
	srv := redistest.Start(t)
	inner := &countingValidator{delay: 50 * time.Millisecond, answer: validFor(time.Hour)}
	var replicas []*Validator
	for range 3 {
		r, _ := newRedisStore(t, srv)
		r.opts.Timeout = time.Second // the race detector slows first connections
		v, err := New(inner, &Tiered{L1: newMemory(t), L2: r}, Options{Policy: "p", LockWait: time.Second})
		if err != nil {
			t.Fatal(err)
		}
		replicas = append(replicas, v)
	}
	var wg sync.WaitGroup
	for i := range 300 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := replicas[i%3].Validate(context.Background(), "fresh"); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if n := inner.calls.Load(); n != 1 {
		t.Fatalf("300 concurrent checks on 3 replicas cost %d validations, want 1", n)
	}
	fromFleet := int64(0)
	for _, r := range replicas {
		fromFleet += r.Stats().FromFleet
	}
	if fromFleet != 2 {
		t.Errorf("%d replicas waited for the fleet's verdict, want 2", fromFleet)
	}
}

// TestRelease: the end of a validation stores its verdict (with the TTL
// asked for) and gives the lock back, in one script; without a verdict to
// keep it only unlocks; a replica that no longer holds the lock leaves it
// alone, verdict written or not.
func TestRelease(t *testing.T) {
	srv := redistest.Start(t)
	r, client := newRedisStore(t, srv)
	r.opts.Timeout = time.Second // the race detector slows first connections
	ctx := context.Background()
	entry := Entry{Principal: validators.NewPrincipal(validators.Identity{Subject: "s", ExpiresAt: time.Now().Add(time.Hour)})}
	// eventually waits for the background write.
	eventually := func(what string, done func() bool) {
		t.Helper()
		for deadline := time.Now().Add(5 * time.Second); !done(); time.Sleep(5 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatal(what)
			}
		}
	}
	locked := func(k Key) string {
		_, lockKey := r.keys(k)
		v, _ := client.Get(ctx, lockKey).Result()
		return v
	}
	for _, c := range []struct {
		name      string
		owner     string // the lock's holder
		ttl       time.Duration
		verdict   bool
		unlocking bool
	}{
		{name: "verdict", owner: "me", ttl: time.Minute, verdict: true, unlocking: true},
		{name: "no verdict", owner: "me", ttl: 0, unlocking: true},
		{name: "lock lost, verdict", owner: "other", ttl: time.Minute, verdict: true},
		{name: "lock lost, no verdict", owner: "other", ttl: 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			k := NewKey("p", "release "+c.name)
			if state, _, _, err := r.fleetAcquire(ctx, k, c.owner, time.Minute, false); state != LockHeld || err != nil {
				t.Fatalf("acquire: %v %v", state, err)
			}
			sets := r.Stats().Sets
			r.fleetRelease(ctx, k, "me", entry, c.ttl)
			if c.verdict {
				eventually("verdict not written", func() bool { return r.Stats().Sets > sets })
				pttl := client.PTTL(ctx, r.redisKey(k)).Val()
				if pttl <= 0 || pttl > c.ttl {
					t.Errorf("verdict PTTL %v, want in (0, %v]", pttl, c.ttl)
				}
				if e, ok := r.Get(ctx, k); !ok || e.Principal.Subject() != "s" {
					t.Errorf("verdict not readable: %+v %v", e, ok)
				}
			}
			if c.unlocking {
				eventually("lock not given back", func() bool { return locked(k) == "" })
			} else {
				time.Sleep(50 * time.Millisecond) // the background write's time
				if got := locked(k); got != c.owner {
					t.Errorf("lock held by %q, want %q", got, c.owner)
				}
			}
			if !c.verdict && client.Exists(ctx, r.redisKey(k)).Val() != 0 {
				t.Error("a verdict was written without one to keep")
			}
			if s := r.Stats(); s.Errors != 0 {
				t.Errorf("errors: %+v", s)
			}
		})
	}
}

// TestLockFailsOpen: with Redis down, every replica validates itself.
func TestLockFailsOpen(t *testing.T) {
	srv := redistest.Start(t)
	r, _ := newRedisStore(t, srv)
	srv.Kill()
	inner := &countingValidator{answer: validFor(time.Hour)}
	v, _ := New(inner, &Tiered{L1: newMemory(t), L2: r}, Options{Policy: "p"})
	if _, err := v.Validate(context.Background(), "tok"); err != nil {
		t.Fatal(err)
	}
	if inner.calls.Load() != 1 {
		t.Fatal("no validation with Redis down")
	}
}

// TestPurgeReachesEveryReplica: a purge deletes the token's verdicts under
// every policy and every replica drops its in-process copy.
func TestPurgeReachesEveryReplica(t *testing.T) {
	srv := redistest.Start(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	type replica struct {
		l1 *Memory
		l2 *Redis
		v  *Validator
	}
	inner := &countingValidator{answer: validFor(time.Hour)}
	var replicas []replica
	for range 2 {
		l2, _ := newRedisStore(t, srv)
		l1 := newMemory(t)
		l2.Subscribe(ctx, func(sum [32]byte) { l1.InvalidateToken(sum) })
		v, _ := New(inner, &Tiered{L1: l1, L2: l2}, Options{Policy: "p"})
		replicas = append(replicas, replica{l1, l2, v})
	}
	other, _ := New(inner, &Tiered{L1: newMemory(t), L2: replicas[0].l2}, Options{Policy: "other-policy"})
	for _, r := range replicas {
		if _, err := r.v.Validate(ctx, "tok"); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := other.Validate(ctx, "tok"); err != nil {
		t.Fatal(err)
	}
	_, _ = replicas[0].v.Validate(ctx, "keep") // another token stays

	// An unsigned verdict of a replica not yet upgraded goes too.
	sum := HashToken("tok")
	client := replicas[0].l2.opts.Client
	// A fresh verdict reaches Redis after Validate returns (the holder
	// stores it and unlocks in the background): wait for both policies'
	// verdicts, or a busy machine makes the purge count them too early.
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		keys, _ := client.Keys(ctx, replicas[0].l2.opts.Prefix+":v[0-9]*:"+hex.EncodeToString(sum[:])).Result() // as Purge matches, locks aside
		if len(keys) >= 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the two verdicts did not reach Redis within 5 s: %v", keys)
		}
	}
	client.Set(ctx, "mcp-authz:v1:p:"+hex.EncodeToString(sum[:]), "old", time.Minute)
	n, err := replicas[0].l2.Purge(ctx, sum)
	if err != nil || n != 3 {
		t.Fatalf("purge deleted %d keys (%v), want 3 (two policies, one old version)", n, err)
	}
	deadline := time.Now().Add(time.Second)
	for _, r := range replicas {
		for {
			if _, ok := r.l1.Get(ctx, NewKey("p", "tok")); !ok {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("a replica kept its L1 copy for more than 1 s after the purge")
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	if _, ok := replicas[0].l1.Get(ctx, NewKey("p", "keep")); !ok {
		t.Fatal("the purge dropped another token")
	}
}

// TestRedisCluster runs the tier against a real three-master cluster:
// verdicts spread over slots, the stampede lock, and a purge that scans
// every master.
func TestRedisCluster(t *testing.T) {
	cl := redistest.StartCluster(t)
	client := redis.NewUniversalClient(&redis.UniversalOptions{Addrs: cl.Addrs, ContextTimeoutEnabled: true, MaxRetries: -1})
	defer client.Close()
	if _, ok := client.(*redis.ClusterClient); !ok {
		t.Fatalf("several addresses gave %T", client)
	}
	r, err := NewRedis(RedisOptions{Client: client, Timeout: time.Second, Secrets: [][]byte{testSecret}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	l1 := newMemory(t)
	r.Subscribe(ctx, func(sum [32]byte) { l1.InvalidateToken(sum) })
	inner := &countingValidator{answer: validFor(time.Hour)}
	v, _ := New(inner, &Tiered{L1: l1, L2: r}, Options{Policy: "p"})
	for i := range 50 {
		if _, err := v.Validate(ctx, fmt.Sprintf("token-%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	// The verdicts are written in the background.
	for deadline := time.Now().Add(5 * time.Second); r.Stats().Sets < 50 && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	if st := r.Stats(); st.Sets != 50 || st.Errors != 0 {
		t.Fatalf("stats %+v", st)
	}
	// Keys landed on more than one master.
	var masters atomic.Int32 // ForEachMaster runs concurrently
	_ = client.(*redis.ClusterClient).ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error {
		if n, _ := c.DBSize(ctx).Result(); n > 0 {
			masters.Add(1)
		}
		return nil
	})
	if masters.Load() < 2 {
		t.Fatalf("keys on %d masters", masters.Load())
	}
	for i := range 50 {
		sum := HashToken(fmt.Sprintf("token-%d", i))
		if n, err := r.Purge(ctx, sum); err != nil || n != 1 {
			t.Fatalf("purge token-%d: %d %v", i, n, err)
		}
	}
	deadline := time.Now().Add(2 * time.Second)
	for l1.Len() > 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if l1.Len() != 0 {
		t.Fatalf("%d L1 entries left after purging everything", l1.Len())
	}
}
