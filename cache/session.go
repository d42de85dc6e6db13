package cache

import (
	"context"
	"crypto/sha256"
	"errors"
	"time"

	"github.com/maypok86/otter/v2"
)

// SharedSessions is a fleet-wide session store (the Redis tier).
type SharedSessions interface {
	// BindShared binds key to principal unless it is bound (SET NX), and
	// returns the principal it is bound to; ok is false when the store
	// could not say.
	BindShared(ctx context.Context, key [sha256.Size]byte, principal string, ttl time.Duration) (bound string, ok bool)
	// RenewShared extends the binding of key, which is principal's.
	RenewShared(ctx context.Context, key [sha256.Size]byte, principal string, ttl time.Duration)
}

// SessionOptions configures Sessions.
type SessionOptions struct {
	// MaxBytes bounds the in-process bindings. Zero means 16 MiB. An
	// evicted binding is looked up in Shared again, or, without one, made
	// anew by the next request.
	MaxBytes uint64
	// Shared, when set, makes the whole fleet agree on bindings.
	Shared SharedSessions
	// RenewEvery bounds how often a binding is written again: each
	// authorized request renews it, but a write per request would cost
	// more than the check. Writes come at most every min(RenewEvery,
	// ttl/60), so a binding ends a TTL after its principal's last request
	// less at most that interval (a second for the shortest session_ttl,
	// a minute for a day). Zero means one minute.
	RenewEvery time.Duration
	// Now overrides the clock, for tests.
	Now func() time.Time
}

// Sessions binds MCP session ids (hashed with their resource by the
// caller) to the principal that first used them. It implements
// authz.SessionStore.
type Sessions struct {
	local *otter.Cache[[sha256.Size]byte, binding]
	opts  SessionOptions
}

type binding struct {
	principal string
	// renewed is when the binding was last written; life is its TTL from
	// then (otter computes an entry's expiry from the entry alone).
	renewed time.Time
	life    time.Duration
}

// NewSessions returns a session store.
func NewSessions(opts SessionOptions) (*Sessions, error) {
	if opts.MaxBytes == 0 {
		opts.MaxBytes = 16 << 20
	}
	if opts.RenewEvery <= 0 {
		opts.RenewEvery = time.Minute
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	c, err := otter.New(&otter.Options[[sha256.Size]byte, binding]{
		MaximumWeight: opts.MaxBytes,
		Executor:      runHere, // see memory.go
		Weigher: func(_ [sha256.Size]byte, b binding) uint32 {
			return uint32(128 + len(b.principal))
		},
		// Each write (bind or renewal) restarts the binding's life.
		ExpiryCalculator: otter.ExpiryWritingFunc(func(e otter.Entry[[sha256.Size]byte, binding]) time.Duration {
			return e.Value.ttl()
		}),
	})
	if err != nil {
		return nil, errors.Join(errors.New("cache: session store"), err)
	}
	return &Sessions{local: c, opts: opts}, nil
}

func (b binding) ttl() time.Duration { return b.life }

// renewal is how often a binding of ttl is written again at most (see
// SessionOptions.RenewEvery).
func (s *Sessions) renewal(ttl time.Duration) time.Duration {
	return min(s.opts.RenewEvery, ttl/60)
}

// Bind implements authz.SessionStore. Each request of the bound principal
// renews the binding (DESIGN §6), in writes spaced by renewal(ttl).
func (s *Sessions) Bind(ctx context.Context, key [sha256.Size]byte, principal string, ttl time.Duration) string {
	now := s.opts.Now()
	every := s.renewal(ttl)
	if b, ok := s.local.GetIfPresent(key); ok {
		if b.principal == principal && now.Sub(b.renewed) >= every {
			s.local.Set(key, binding{principal: principal, renewed: now, life: ttl})
			if s.opts.Shared != nil {
				s.opts.Shared.RenewShared(ctx, key, principal, ttl)
			}
		}
		return b.principal
	}
	if s.opts.Shared != nil {
		if bound, ok := s.opts.Shared.BindShared(ctx, key, principal, ttl); ok {
			b, _ := s.local.SetIfAbsent(key, binding{principal: bound, renewed: now, life: ttl})
			return b.principal
		}
	}
	// Without a shared answer this replica decides alone: the first
	// principal it sees keeps the session.
	b, _ := s.local.SetIfAbsent(key, binding{principal: principal, renewed: now, life: ttl})
	return b.principal
}

// Len returns the number of bindings held in process.
func (s *Sessions) Len() int { return s.local.EstimatedSize() }
