// Package cache caches validation verdicts.
//
// The cache is a decorator: Validator wraps any validator, so every strategy
// gets the same keys, TTL rules, negative caching and request collapsing.
// Verdicts live in a Store; Memory is the in-process store, Redis the
// fleet's shared one, whose contents are untrusted: every verdict stored
// there is signed with the fleet's secret and checked when read
// (verdict.go).
package cache

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/mcp-authz/mcp-authz/validators"
)

// Key identifies a verdict: the validation policy's fingerprint and the
// SHA-256 of the token. The raw token is never stored.
type Key struct {
	Policy string
	Token  [sha256.Size]byte
}

// NewKey returns the cache key of token under policy.
func NewKey(policy, token string) Key {
	return Key{Policy: policy, Token: HashToken(token)}
}

// HashToken is the digest under which a token's verdicts are stored.
func HashToken(token string) [sha256.Size]byte {
	// The token's own bytes, not a copy: sha256.Sum256 only reads them,
	// and a copy of a JWT was the largest allocation of a cached Check.
	return sha256.Sum256(unsafe.Slice(unsafe.StringData(token), len(token)))
}

// String renders the key as "<policy>:<hex sha256>", the form used by
// shared stores and logs.
func (k Key) String() string {
	return k.Policy + ":" + hex.EncodeToString(k.Token[:])
}

// Entry is a cached verdict: a principal, or the validation error.
type Entry struct {
	Principal *validators.Principal
	Err       *validators.Error
	// until is when the store must forget the entry.
	until time.Time
}

// Store keeps entries for at most ttl. Errors are not part of the contract:
// a store that cannot answer reports a miss.
type Store interface {
	Get(ctx context.Context, key Key) (Entry, bool)
	Set(ctx context.Context, key Key, e Entry, ttl time.Duration)
}

// Locker is a store shared by a fleet that can elect one replica to
// validate a fresh token (the Redis tier).
type Locker interface {
	// Lock takes the lock on k if it is free; release gives it back.
	Lock(ctx context.Context, k Key, ttl time.Duration) (state LockState, release func())
	// Shared reads the fleet's verdict for k.
	Shared(ctx context.Context, k Key) (Entry, bool)
}

// LockState is the outcome of Locker.Lock.
type LockState int

const (
	// LockUnknown: the store could not say; validate without waiting.
	LockUnknown LockState = iota
	// LockHeld: this caller validates, then releases.
	LockHeld
	// LockBusy: another replica is validating; wait for its verdict.
	LockBusy
)

// Inner is the validator being cached.
type Inner interface {
	Validate(ctx context.Context, token string) (*validators.Principal, error)
}

// Options configures a caching Validator.
type Options struct {
	// Policy is the fingerprint of the inner validator's rules. Required.
	Policy string
	// TTL caps how long a positive verdict is kept; it is further capped by
	// the token's exp. Zero means 5 minutes. It also bounds what is read
	// from a shared store: a verdict there that claims to live longer is a
	// miss (an integrity failure), so replicas sharing Redis must agree on
	// their TTLs.
	TTL time.Duration
	// NegativeTTL is how long an invalid_token verdict is kept, to shield the
	// authorization server from replays of bad tokens. Zero means 5 seconds;
	// negative disables negative caching. It bounds negative verdicts read
	// from a shared store as TTL bounds positive ones.
	NegativeTTL time.Duration
	// LockWait is how long a replica waits for another replica's verdict on
	// a fresh token before validating itself; it applies only with a
	// Locker store. Zero means 100 ms; keep it under Envoy's ext_authz
	// timeout. LockTTL bounds how long a lock is held. Zero means 2 s.
	LockWait, LockTTL time.Duration
	// Now overrides the clock, for tests.
	Now func() time.Time
}

// The defaults of Options.
const (
	defaultTTL         = 5 * time.Minute
	defaultNegativeTTL = 5 * time.Second
)

// boundable is a store whose contents are untrusted (the Redis tier, or a
// Tiered in front of it): New reads it through a view that refuses
// verdicts claiming to live longer than the Validator's own TTLs.
type boundable interface {
	bounded(bounds) Store
}

// lockPoll is how often a waiting replica looks for the verdict.
const lockPoll = 5 * time.Millisecond

// Stats are cumulative counters of a caching Validator.
type Stats struct {
	Hits, NegativeHits, Misses, Collapsed int64
	// FromFleet counts misses answered by another replica's verdict.
	FromFleet int64
}

// Validator caches the verdicts of an inner validator.
type Validator struct {
	inner Inner
	store Store
	// local reads the in-process tier alone when the store has a shared
	// one: the shared tier is read once per fresh token by the
	// singleflight leader, not by every concurrent caller.
	local   func(context.Context, Key) (Entry, bool)
	opts    Options
	flights flights

	hits, negHits, misses, collapsed, fromFleet atomic.Int64
}

// New wraps inner with store.
func New(inner Inner, store Store, opts Options) (*Validator, error) {
	if inner == nil || store == nil {
		return nil, errors.New("cache: inner validator and store are required")
	}
	if opts.Policy == "" {
		return nil, errors.New("cache: a policy fingerprint is required")
	}
	if opts.TTL <= 0 {
		opts.TTL = defaultTTL
	}
	if opts.NegativeTTL == 0 {
		opts.NegativeTTL = defaultNegativeTTL
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.LockWait <= 0 {
		opts.LockWait = 100 * time.Millisecond
	}
	if opts.LockTTL <= 0 {
		opts.LockTTL = 2 * time.Second
	}
	if b, ok := store.(boundable); ok {
		store = b.bounded(bounds{ttl: opts.TTL, negativeTTL: opts.NegativeTTL})
	}
	v := &Validator{inner: inner, store: store, opts: opts, local: store.Get}
	if l, ok := store.(interface {
		Local(context.Context, Key) (Entry, bool)
	}); ok {
		v.local = l.Local
	}
	return v, nil
}

// Stats returns the counters.
func (v *Validator) Stats() Stats {
	return Stats{Hits: v.hits.Load(), NegativeHits: v.negHits.Load(), Misses: v.misses.Load(), Collapsed: v.collapsed.Load(),
		FromFleet: v.fromFleet.Load()}
}

// awaitShared polls the fleet's store for the verdict another replica is
// producing, up to LockWait.
func (v *Validator) awaitShared(ctx context.Context, l Locker, key Key) (Entry, bool) {
	deadline := time.Now().Add(v.opts.LockWait)
	t := time.NewTicker(lockPoll)
	defer t.Stop()
	for time.Now().Before(deadline) {
		select {
		case <-t.C:
		case <-ctx.Done():
			return Entry{}, false
		}
		if e, ok := l.Shared(ctx, key); ok {
			v.fromFleet.Add(1)
			return e, true
		}
	}
	return Entry{}, false
}

// Validate answers from the store when it can, and otherwise validates once
// for all concurrent callers of the same token.
func (v *Validator) Validate(ctx context.Context, token string) (*validators.Principal, error) {
	key := NewKey(v.opts.Policy, token)
	if e, ok := v.local(ctx, key); ok {
		if p, usable, err := v.use(e); usable {
			return p, err
		}
	}
	v.misses.Add(1)
	p, shared, err := v.flights.do(ctx, key.Token, func() (*validators.Principal, error) {
		vctx, cancel := detach(ctx)
		defer cancel()
		return v.validate(vctx, key, token)
	})
	if shared {
		v.collapsed.Add(1)
	}
	if err != nil && err == ctx.Err() { // this caller stopped waiting
		return nil, &validators.Error{Kind: validators.ErrUnavailable, Description: "Token validation timed out", Err: ctx.Err()}
	}
	return p, err
}

// deadlineMargin is kept between a validation's outbound calls and the
// deadline Envoy sent with the Check: a 503 the client receives tells it
// more than Envoy's own timeout would.
const deadlineMargin = 25 * time.Millisecond

// detach returns the context a shared validation runs in: free of the
// first caller's cancellation (the others waiting for the same token share
// the result), but bounded by its deadline less a margin (at most a tenth
// of the time left), since an answer after Envoy has given up helps no one.
func detach(ctx context.Context) (context.Context, context.CancelFunc) {
	d, ok := ctx.Deadline()
	free := context.WithoutCancel(ctx)
	if !ok {
		return free, func() {}
	}
	margin := min(deadlineMargin, time.Until(d)/10)
	return context.WithDeadline(free, d.Add(-margin))
}

// use turns a stored entry into the verdict, re-checking exp: a store may
// keep an entry a little past its TTL.
func (v *Validator) use(e Entry) (p *validators.Principal, usable bool, err error) {
	if e.Err != nil {
		v.negHits.Add(1)
		return nil, true, e.Err
	}
	if e.Principal != nil && (e.Principal.ExpiresAt().IsZero() || v.opts.Now().Before(e.Principal.ExpiresAt())) {
		v.hits.Add(1)
		return e.Principal, true, nil
	}
	return nil, false, nil
}

func (v *Validator) validate(ctx context.Context, key Key, token string) (*validators.Principal, error) {
	if l, ok := v.store.(Locker); ok {
		if e, ok := l.Shared(ctx, key); ok {
			if p, usable, err := v.use(e); usable {
				return p, err
			}
		}
		switch state, release := l.Lock(ctx, key, v.opts.LockTTL); state {
		case LockHeld:
			defer release()
		case LockBusy:
			// If the holder is slow or fails, validate ourselves.
			if e, ok := v.awaitShared(ctx, l, key); ok {
				if p, usable, err := v.use(e); usable {
					return p, err
				}
			}
		}
	}
	p, err := v.inner.Validate(ctx, token)
	if err != nil {
		var verr *validators.Error
		if errors.As(err, &verr) && errors.Is(verr.Kind, validators.ErrInvalidToken) && !verr.Retryable && v.opts.NegativeTTL > 0 {
			v.store.Set(ctx, key, Entry{Err: verr}, v.opts.NegativeTTL)
		}
		return nil, err
	}
	ttl := v.opts.TTL
	if exp := p.ExpiresAt(); !exp.IsZero() {
		ttl = min(ttl, exp.Sub(v.opts.Now()))
	}
	if ttl > 0 {
		v.store.Set(ctx, key, Entry{Principal: p}, ttl)
	}
	return p, nil
}
