package cache

import (
	"context"
	"errors"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"github.com/mcp-authz/mcp-authz/validators"
)

type countingValidator struct {
	calls  atomic.Int64
	delay  time.Duration
	answer func(token string) (*validators.Principal, error)
}

func (c *countingValidator) Validate(_ context.Context, token string) (*validators.Principal, error) {
	c.calls.Add(1)
	time.Sleep(c.delay)
	return c.answer(token)
}

func validFor(d time.Duration) func(string) (*validators.Principal, error) {
	return func(string) (*validators.Principal, error) {
		return validators.NewPrincipal(validators.Identity{Subject: "s", ExpiresAt: time.Now().Add(d)}), nil
	}
}

func newCached(t *testing.T, inner Inner, store Store, opts Options) *Validator {
	t.Helper()
	if opts.Policy == "" {
		opts.Policy = "policy-a"
	}
	v, err := New(inner, store, opts)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func newMemory(t *testing.T) *Memory {
	t.Helper()
	m, err := NewMemory(MemoryOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestPositiveVerdictIsCached(t *testing.T) {
	inner := &countingValidator{answer: validFor(time.Hour)}
	v := newCached(t, inner, newMemory(t), Options{})
	for range 50 {
		if _, err := v.Validate(context.Background(), "tok"); err != nil {
			t.Fatal(err)
		}
	}
	if inner.calls.Load() != 1 {
		t.Fatalf("50 checks of one token cost %d validations", inner.calls.Load())
	}
	if s := v.Stats(); s.Hits != 49 || s.Misses != 1 {
		t.Fatalf("stats %+v", s)
	}
}

func TestTTLBoundedByExpiry(t *testing.T) {
	inner := &countingValidator{answer: validFor(150 * time.Millisecond)}
	v := newCached(t, inner, newMemory(t), Options{TTL: time.Hour})
	_, _ = v.Validate(context.Background(), "tok")
	_, _ = v.Validate(context.Background(), "tok")
	if inner.calls.Load() != 1 {
		t.Fatalf("calls %d", inner.calls.Load())
	}
	time.Sleep(200 * time.Millisecond)
	_, _ = v.Validate(context.Background(), "tok")
	if inner.calls.Load() != 2 {
		t.Fatalf("verdict outlived the token's exp: calls %d", inner.calls.Load())
	}
}

// staleStore returns whatever was set, ignoring TTL: exp must still be
// re-checked on every hit.
type staleStore struct{ m sync.Map }

func (s *staleStore) Get(_ context.Context, k Key) (Entry, bool) {
	e, ok := s.m.Load(k)
	if !ok {
		return Entry{}, false
	}
	return e.(Entry), true
}
func (s *staleStore) Set(_ context.Context, k Key, e Entry, _ time.Duration) { s.m.Store(k, e) }

func TestExpiryRecheckedOnHit(t *testing.T) {
	now := time.Now()
	clock := now
	inner := &countingValidator{answer: func(string) (*validators.Principal, error) {
		return validators.NewPrincipal(validators.Identity{Subject: "s", ExpiresAt: now.Add(time.Minute)}), nil
	}}
	v := newCached(t, inner, &staleStore{}, Options{Now: func() time.Time { return clock }})
	_, _ = v.Validate(context.Background(), "tok")
	clock = now.Add(2 * time.Minute)
	_, _ = v.Validate(context.Background(), "tok")
	if inner.calls.Load() != 2 {
		t.Fatal("expired principal served from the store")
	}
}

func TestNegativeCaching(t *testing.T) {
	tests := []struct {
		name      string
		err       *validators.Error
		wantCalls int64
	}{
		{"invalid token cached", &validators.Error{Kind: validators.ErrInvalidToken, Description: "x"}, 1},
		{"retryable invalid token not cached", &validators.Error{Kind: validators.ErrInvalidToken, Description: "x", Retryable: true}, 3},
		{"unavailable never cached", &validators.Error{Kind: validators.ErrUnavailable, Description: "x"}, 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			inner := &countingValidator{answer: func(string) (*validators.Principal, error) { return nil, tt.err }}
			v := newCached(t, inner, newMemory(t), Options{})
			for range 3 {
				_, err := v.Validate(context.Background(), "bad")
				if !errors.Is(err, tt.err.Kind) {
					t.Fatalf("err %v", err)
				}
			}
			if inner.calls.Load() != tt.wantCalls {
				t.Fatalf("calls %d, want %d", inner.calls.Load(), tt.wantCalls)
			}
		})
	}
}

func TestConcurrentMissesCollapse(t *testing.T) {
	inner := &countingValidator{delay: 50 * time.Millisecond, answer: validFor(time.Hour)}
	v := newCached(t, inner, newMemory(t), Options{})
	var wg sync.WaitGroup
	for range 100 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := v.Validate(context.Background(), "fresh"); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if inner.calls.Load() != 1 {
		t.Fatalf("100 concurrent checks of a fresh token cost %d validations", inner.calls.Load())
	}
}

func TestCancelledCallerDoesNotFailOthers(t *testing.T) {
	inner := &countingValidator{delay: 100 * time.Millisecond, answer: validFor(time.Hour)}
	v := newCached(t, inner, newMemory(t), Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	done := make(chan error)
	go func() { _, err := v.Validate(context.Background(), "tok"); done <- err }()
	time.Sleep(time.Millisecond)
	if _, err := v.Validate(ctx, "tok"); !errors.Is(err, validators.ErrUnavailable) {
		t.Fatalf("timed-out caller: %v", err)
	}
	if err := <-done; err != nil {
		t.Fatalf("patient caller failed: %v", err)
	}
}

// TestCancelledLeaderWithoutDeadline: the first caller of a fresh token,
// whose Check has no deadline, stops waiting when it is cancelled; the
// validation goes on and its verdict is kept for the next caller.
func TestCancelledLeaderWithoutDeadline(t *testing.T) {
	inner := &countingValidator{delay: 100 * time.Millisecond, answer: validFor(time.Hour)}
	v := newCached(t, inner, newMemory(t), Options{})
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(10*time.Millisecond, cancel)
	if _, err := v.Validate(ctx, "tok"); !errors.Is(err, validators.ErrUnavailable) {
		t.Fatalf("cancelled caller: %v", err)
	}
	time.Sleep(150 * time.Millisecond)
	if _, err := v.Validate(context.Background(), "tok"); err != nil || inner.calls.Load() != 1 {
		t.Fatalf("after the flight landed: %v, %d validations", err, inner.calls.Load())
	}
}

func TestPoliciesDoNotShareVerdicts(t *testing.T) {
	store := newMemory(t)
	allow := &countingValidator{answer: validFor(time.Hour)}
	deny := &countingValidator{answer: func(string) (*validators.Principal, error) {
		return nil, &validators.Error{Kind: validators.ErrInvalidToken, Description: validators.DescAudience}
	}}
	a := newCached(t, allow, store, Options{Policy: "audience-a"})
	b := newCached(t, deny, store, Options{Policy: "audience-b"})
	if _, err := a.Validate(context.Background(), "tok"); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Validate(context.Background(), "tok"); err == nil {
		t.Fatal("policy b served policy a's verdict")
	}
}

func TestKeyNeverHoldsTheToken(t *testing.T) {
	k := NewKey("p", "secret-token-value")
	if s := k.String(); len(s) != len("p:")+64 || s[:2] != "p:" {
		t.Fatalf("key %q", s)
	}
}

func TestMemoryBoundedByBytes(t *testing.T) {
	m, err := NewMemory(MemoryOptions{MaxBytes: 64 << 10})
	if err != nil {
		t.Fatal(err)
	}
	p := validators.NewPrincipal(validators.Identity{Subject: "s", ClaimsJSON: string(make([]byte, 1000))})
	for i := range 1000 {
		m.Set(context.Background(), NewKey("p", string(rune(i))+"tok"), Entry{Principal: p}, time.Hour)
	}
	m.c.CleanUp()
	if n := m.Len(); n > 64 {
		t.Fatalf("%d entries of ~1.3 KB in a 64 KiB store", n)
	}
}

// TestMemoryHonoursMaxBytes: filled far past its bound with realistic
// principals, the in-process store holds about MaxBytes of heap: the
// weigher counts what the allocator takes.
func TestMemoryHonoursMaxBytes(t *testing.T) {
	const bound = 16 << 20
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	m, err := NewMemory(MemoryOptions{MaxBytes: bound})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 * bound / 500 {
		m.Set(context.Background(), NewKey("0123456789abcdef0123456789abcdef", strconv.Itoa(i)), Entry{Principal: realisticPrincipal()}, time.Hour)
		if i%10000 == 0 {
			m.c.CleanUp()
		}
	}
	m.c.CleanUp()
	runtime.GC()
	runtime.ReadMemStats(&after)
	heap := int64(after.HeapAlloc) - int64(before.HeapAlloc)
	t.Logf("%d entries, weighed %d bytes, heap %d bytes (bound %d)", m.Len(), m.c.WeightedSize(), heap, bound)
	if heap > bound*11/10 || heap < bound*9/10 {
		t.Fatalf("heap %d bytes for a bound of %d", heap, bound)
	}
	runtime.KeepAlive(m)
}

func TestNewRejectsMissingPolicy(t *testing.T) {
	if _, err := New(&countingValidator{}, newMemory(t), Options{}); err == nil {
		t.Fatal("accepted an empty policy fingerprint")
	}
}

// deadlineValidator records the deadline its validation ran under.
type deadlineValidator struct {
	got chan time.Time
}

func (d *deadlineValidator) Validate(ctx context.Context, _ string) (*validators.Principal, error) {
	dl, ok := ctx.Deadline()
	d.got <- dl
	if ok {
		<-ctx.Done()
	}
	return nil, &validators.Error{Kind: validators.ErrUnavailable, Description: validators.DescIntrospect, Err: ctx.Err()}
}

// TestValidationKeepsTheCheckDeadline: a validation's outbound calls are
// bounded by the deadline Envoy sent with the Check, less a margin, even
// though the validation is shared with other callers.
func TestValidationKeepsTheCheckDeadline(t *testing.T) {
	inner := &deadlineValidator{got: make(chan time.Time, 1)}
	store, _ := NewMemory(MemoryOptions{})
	v, _ := New(inner, store, Options{Policy: "p"})
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	want, _ := ctx.Deadline()
	_, err := v.Validate(ctx, "tok")
	if !errors.Is(err, validators.ErrUnavailable) {
		t.Fatalf("err %v, want unavailable", err)
	}
	got := <-inner.got
	if got.IsZero() || got.After(want) || want.Sub(got) > 30*time.Millisecond {
		t.Fatalf("validation deadline %v, Check deadline %v", got, want)
	}
	// Without a deadline the validation is bounded by the validators alone.
	inner2 := &deadlineValidator{got: make(chan time.Time, 1)}
	v2, _ := New(inner2, store, Options{Policy: "q"})
	cctx, ccancel := context.WithCancel(context.Background())
	go func() { time.Sleep(20 * time.Millisecond); ccancel() }()
	_, _ = v2.Validate(cctx, "tok")
	if got := <-inner2.got; !got.IsZero() {
		t.Fatalf("deadline %v without one on the Check", got)
	}
}

// hostileLocker is a shared store that answers every look with what an
// attacker controlling Redis could send back: a verdict that cannot be
// used (expired), or an answer that is neither a verdict nor a lock.
type hostileLocker struct {
	Store
	expired bool
	looks   atomic.Int64
}

func (h *hostileLocker) Acquire(context.Context, Key, string, time.Duration, bool) (LockState, Entry, bool, error) {
	h.looks.Add(1)
	if h.expired {
		p := validators.NewPrincipal(validators.Identity{Subject: "old", ExpiresAt: time.Now().Add(-time.Hour)})
		return LockUnknown, Entry{Principal: p}, true, nil
	}
	return LockUnknown, Entry{}, false, nil
}

func (h *hostileLocker) Release(context.Context, Key, string, Entry, time.Duration) {}

// TestHostileSharedStoreCannotHoldAValidation: whatever a shared store
// answers, a fresh token is validated after at most one forced look, not
// asked about again and again until the Check's deadline.
func TestHostileSharedStoreCannotHoldAValidation(t *testing.T) {
	for _, expired := range []bool{true, false} {
		mem, _ := NewMemory(MemoryOptions{})
		store := &hostileLocker{Store: mem, expired: expired}
		inner := &countingValidator{answer: func(string) (*validators.Principal, error) {
			return validators.NewPrincipal(validators.Identity{Subject: "alice", ExpiresAt: time.Now().Add(time.Hour)}), nil
		}}
		v, err := New(inner, store, Options{Policy: "p"})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		p, err := v.Validate(ctx, "fresh-token")
		cancel()
		if err != nil || p.Subject() != "alice" {
			t.Fatalf("expired=%v: %v %v", expired, p, err)
		}
		if n := store.looks.Load(); n > 2 {
			t.Fatalf("expired=%v: the store was asked %d times", expired, n)
		}
		if inner.calls.Load() != 1 {
			t.Fatalf("expired=%v: %d validations", expired, inner.calls.Load())
		}
	}
}

// TestValidationOutlivesTheCallersBuffer: the token a caller passes may be
// its request's own bytes, reused once Validate returns (authz reads
// requests in place). A validation that outlives its caller, which
// stopped waiting at its deadline, still validates the token it was
// given, and its verdict is found by that token.
func TestValidationOutlivesTheCallersBuffer(t *testing.T) {
	release := make(chan struct{})
	seen := make(chan string, 1)
	inner := &countingValidator{answer: func(token string) (*validators.Principal, error) {
		<-release
		seen <- strings.Clone(token)
		return validators.NewPrincipal(validators.Identity{Subject: token, ExpiresAt: time.Now().Add(time.Hour)}), nil
	}}
	v := newCached(t, inner, newMemory(t), Options{})
	buf := []byte("token-of-the-first-request")
	token := unsafe.String(&buf[0], len(buf))
	// A Check without a deadline, cancelled (Envoy gave up): its
	// validation runs on, on a goroutine of its own.
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(50*time.Millisecond, cancel)
	if _, err := v.Validate(ctx, token); err == nil {
		t.Fatal("answered before the validation ended")
	}
	copy(buf, "TOKEN-OF-ANOTHER-REQUEST!!") // the buffer is reused
	close(release)
	if got := <-seen; got != "token-of-the-first-request" {
		t.Fatalf("the validation saw %q", got)
	}
	for deadline := time.Now().Add(time.Second); ; time.Sleep(5 * time.Millisecond) {
		p, err := v.Validate(context.Background(), "token-of-the-first-request")
		if err == nil && p.Subject() == "token-of-the-first-request" && inner.calls.Load() == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the verdict was not kept for its token: %v %v, %d calls", p, err, inner.calls.Load())
		}
	}
}

// TestMemoryMaintenanceOnCallers: otter's maintenance runs on the
// goroutines that read and write (runHere), including a first hit's
// compute; many of them at once over a store far too small for them must
// neither deadlock nor leave the store above its bound.
func TestMemoryMaintenanceOnCallers(t *testing.T) {
	const bound = 256 << 10
	m, err := NewMemory(MemoryOptions{MaxBytes: bound})
	if err != nil {
		t.Fatal(err)
	}
	p := realisticPrincipal()
	runCallers(t, func(wg *sync.WaitGroup) {
		for w := range 8 {
			wg.Go(func() {
				ctx := context.Background()
				for i := range 20000 {
					k := NewKey("p", strconv.Itoa(w*1_000_000+i%5000))
					if _, ok := m.Get(ctx, k); !ok {
						m.Set(ctx, k, Entry{Principal: p}, time.Hour)
					}
				}
			})
		}
	})
	m.Set(context.Background(), NewKey("p", "last"), Entry{Principal: p}, time.Hour)
	if w := m.c.WeightedSize(); w > bound {
		t.Fatalf("weighed %d bytes in a store bounded at %d", w, bound)
	}
}

// runCallers runs the goroutines start adds to wg and waits for them, for
// a minute at most: callers still running then means the cache's
// maintenance, which runs on them (runHere), deadlocked.
func runCallers(t *testing.T, start func(wg *sync.WaitGroup)) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		var wg sync.WaitGroup
		start(&wg)
		wg.Wait()
	}()
	select {
	case <-done:
	case <-time.After(time.Minute):
		t.Fatal("callers still running after a minute: maintenance deadlocked")
	}
}
