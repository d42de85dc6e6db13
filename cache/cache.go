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
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"strings"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/mcp-authz/mcp-authz/internal/tracing"
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
// validate a fresh token (the Redis tier). Its lock only saves
// validations: it never decides, and a replica that cannot get an answer
// from it in time validates itself.
type Locker interface {
	// Acquire is one look at a fresh token in the fleet, in one round
	// trip: the fleet's verdict (found), or else the lock on validating k
	// for owner (a random id of this turn) for at most ttl (LockHeld), or
	// else LockBusy: another replica holds it. force takes the lock
	// whatever verdict is stored (the caller found it unusable). A second
	// call with the same owner after an unanswered one (LockUnknown, with
	// the error) finds out whether the first took the lock. LockSkipped:
	// the store is not in use (Redis failing).
	Acquire(ctx context.Context, k Key, owner string, ttl time.Duration, force bool) (state LockState, e Entry, found bool, err error)
	// Release keeps e for ttl (when ttl > 0) and then gives the lock on k
	// back if owner still holds it. The verdict is in the in-process tier
	// when Release returns; the fleet's tier is written in the
	// background, so the Check that validated does not wait for it.
	Release(ctx context.Context, k Key, owner string, e Entry, ttl time.Duration)
}

// LockState is the outcome of Locker.Acquire.
type LockState int

const (
	// LockUnknown: the store did not answer in time; the lock may or may
	// not have been taken.
	LockUnknown LockState = iota
	// LockHeld: this caller validates, then unlocks.
	LockHeld
	// LockBusy: another replica is validating; wait for its verdict.
	LockBusy
	// LockSkipped: the store is not in use (Redis failing); validate
	// without waiting.
	LockSkipped
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
	// LockWait bounds how long a replica waits for another replica's
	// verdict on a fresh token (or for the shared store to answer) before
	// validating itself; it applies only with a Locker store. Zero means
	// until the Check's deadline less the margin kept for the answer, and
	// 100 ms for a Check without a deadline: a replica that stopped
	// waiting sooner would only repeat a validation still running
	// elsewhere (an introspection takes 200-300 ms at real providers), and
	// a replica whose holder disappears still validates the token itself
	// in time when validating is quick (a JWT). LockTTL bounds how long a
	// lock is held. Zero means 2 s.
	LockWait, LockTTL time.Duration
	// Now overrides the clock, for tests.
	Now func() time.Time
	// Tracer, when set, puts a span around each tier's lookup (cache.l1,
	// cache.l2, with the result: hit, negative_hit or miss) and around the
	// inner validation of a miss (validate.miss). Nil: no tracing.
	Tracer tracing.Tracer
}

// The defaults of Options.
const (
	defaultTTL         = 5 * time.Minute
	defaultNegativeTTL = 5 * time.Second
	// defaultLockWait is LockWait for a Check without a deadline.
	defaultLockWait = 100 * time.Millisecond
)

// boundable is a store whose contents are untrusted (the Redis tier, or a
// Tiered in front of it): New reads it through a view that refuses
// verdicts claiming to live longer than the Validator's own TTLs.
type boundable interface {
	bounded(bounds) Store
}

// lockPoll is how soon a waiting replica first looks for the verdict; it
// then waits twice as long each time, up to maxLockPoll, so that a burst
// of fresh tokens does not turn into a flood of polls.
const (
	lockPoll    = 10 * time.Millisecond
	maxLockPoll = 40 * time.Millisecond
)

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
	// one: the shared tier is read once per fresh token by the leader of
	// its flight, not by every concurrent caller.
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

// fleetTurn returns the fleet's verdict on a fresh token (done), or says
// that this replica is to validate it: holding the fleet's lock (owner is
// its id), or because the fleet could not say in time (owner is empty).
//
// While another replica holds the lock, this one looks again with a
// growing interval until LockWait or the Check's deadline. Each look is
// one round trip (Locker.Acquire) that takes the verdict if it is there
// and the lock if it is free. A look that goes unanswered (each is bounded
// by the tier's fleet timeout) is not taken for a refusal: the next one
// tells whether it took the lock after all; only maxUnanswered in a row
// make the replica validate by itself. So while Redis answers, a fresh
// token is validated once in the whole fleet (again only after a
// validation that left no verdict, one replica at a time); when Redis is
// down, failing, or slower than its timeout, at most once per replica.
func (v *Validator) fleetTurn(ctx context.Context, l Locker, key Key) (p *validators.Principal, done bool, owner string, err error) {
	wait := v.opts.LockWait
	if _, ok := ctx.Deadline(); !ok && wait <= 0 {
		wait = defaultLockWait
	}
	lctx, cancel := ctx, context.CancelFunc(func() {})
	if wait > 0 {
		lctx, cancel = context.WithTimeout(ctx, wait)
	}
	defer cancel()
	owner = newOwner()
	force := false
	unanswered := 0
	poll := lockPoll
	var timer *time.Timer
	for looks := 0; ; looks++ {
		state, e, found, aerr := l.Acquire(lctx, key, owner, v.opts.LockTTL, force)
		if found {
			var usable bool
			if p, usable, err = v.use(e); usable {
				if looks > 0 {
					v.fromFleet.Add(1)
				}
				return p, true, "", err
			}
			if force {
				// The lock was taken whatever was stored, and still an
				// unusable verdict came back: the store is not the one
				// this code talks to. Validate alone rather than ask
				// again, at once, until the deadline.
				return nil, false, "", nil
			}
			force = true // expired: take the lock whatever is stored, at once
			continue
		}
		if state == LockUnknown && aerr != nil {
			unanswered++
		} else {
			unanswered = 0
		}
		switch {
		case state == LockHeld:
			return nil, false, owner, nil
		case state == LockSkipped, unanswered >= maxUnanswered:
			return nil, false, "", nil
		case state == LockUnknown && aerr == nil:
			if force {
				return nil, false, "", nil // as above
			}
			// The verdict's key held something unusable: take the lock
			// whatever is stored, at once.
			force = true
			continue
		}
		if timer == nil {
			timer = time.NewTimer(poll)
			defer timer.Stop()
		} else {
			timer.Reset(poll)
		}
		select {
		case <-timer.C:
		case <-lctx.Done():
			return nil, false, "", nil
		}
		poll = min(2*poll, maxLockPoll)
	}
}

// maxUnanswered is how many Redis calls in a row may go unanswered before
// a replica stops waiting for the fleet.
const maxUnanswered = 3

// newOwner is a random id for one lock attempt.
func newOwner() string {
	var id [16]byte
	_, _ = rand.Read(id[:])
	return hex.EncodeToString(id[:])
}

// Validate answers from the store when it can, and otherwise validates once
// for all concurrent callers of the same token. token is used only until
// Validate returns: authz passes the request's own bytes.
func (v *Validator) Validate(ctx context.Context, token string) (*validators.Principal, error) {
	key := NewKey(v.opts.Policy, token)
	if v.opts.Tracer != nil {
		if p, done, err := v.tracedLocal(ctx, key); done {
			return p, err
		}
	} else if e, ok := v.local(ctx, key); ok {
		if p, usable, err := v.use(e); usable {
			return p, err
		}
	}
	v.misses.Add(1)
	// The validation may outlive this call (its caller stops waiting at
	// its deadline), and token may be the caller's request buffer, which
	// is reused once the call returns: the validation gets its own copy.
	token = strings.Clone(token)
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
	l, fleet := v.store.(Locker)
	owner := ""
	if fleet {
		p, done, held, err := v.fleetTurnTraced(ctx, l, key)
		if done {
			return p, err
		}
		owner = held
	}
	p, err := v.validateInner(ctx, token)
	var e Entry
	var ttl time.Duration
	if err != nil {
		var verr *validators.Error
		if errors.As(err, &verr) && errors.Is(verr.Kind, validators.ErrInvalidToken) && !verr.Retryable && v.opts.NegativeTTL > 0 {
			e, ttl = Entry{Err: verr}, v.opts.NegativeTTL
		}
	} else {
		e, ttl = Entry{Principal: p}, v.opts.TTL
		if exp := p.ExpiresAt(); !exp.IsZero() {
			ttl = min(ttl, exp.Sub(v.opts.Now()))
		}
	}
	switch {
	case owner != "":
		l.Release(ctx, key, owner, e, ttl)
	case ttl > 0:
		v.store.Set(ctx, key, e, ttl)
	}
	return p, err
}

// Results of a cache lookup, as spans name them.
const (
	resultHit         = "hit"
	resultNegativeHit = "negative_hit"
	resultMiss        = "miss"
)

// tracedLocal is the in-process lookup of Validate with its span. done
// reports whether the stored verdict answers.
func (v *Validator) tracedLocal(ctx context.Context, key Key) (p *validators.Principal, done bool, err error) {
	_, span := v.opts.Tracer.Start(ctx, "cache.l1")
	defer span.End()
	if e, ok := v.local(ctx, key); ok {
		if p, usable, err := v.use(e); usable {
			span.Set(tracing.AttrCacheResult, lookupResult(err))
			return p, true, err
		}
	}
	span.Set(tracing.AttrCacheResult, resultMiss)
	return nil, false, nil
}

// fleetTurnTraced is fleetTurn with a span on the fleet's tier when
// tracing: hit or negative hit when the stored verdict answers, else miss.
func (v *Validator) fleetTurnTraced(ctx context.Context, l Locker, key Key) (p *validators.Principal, done bool, owner string, err error) {
	if v.opts.Tracer == nil {
		return v.fleetTurn(ctx, l, key)
	}
	_, span := v.opts.Tracer.Start(ctx, "cache.l2")
	defer span.End()
	p, done, owner, err = v.fleetTurn(ctx, l, key)
	if done {
		span.Set(tracing.AttrCacheResult, lookupResult(err))
	} else {
		span.Set(tracing.AttrCacheResult, resultMiss)
	}
	return p, done, owner, err
}

func lookupResult(err error) string {
	if err != nil {
		return resultNegativeHit
	}
	return resultHit
}

// validateInner asks the inner validator, with a span when tracing.
func (v *Validator) validateInner(ctx context.Context, token string) (*validators.Principal, error) {
	if v.opts.Tracer == nil {
		return v.inner.Validate(ctx, token)
	}
	ctx, span := v.opts.Tracer.Start(ctx, "validate.miss")
	defer span.End()
	return v.inner.Validate(ctx, token)
}
