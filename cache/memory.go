package cache

import (
	"context"
	"crypto/sha256"
	"errors"
	"sync/atomic"
	"time"

	"github.com/maypok86/otter/v2"
)

// MemoryOptions bounds an in-process store.
type MemoryOptions struct {
	// MaxBytes bounds the estimated memory of all entries. Zero means 64 MiB.
	MaxBytes uint64
}

// Memory is an in-process store with per-entry TTL, bounded by an estimate
// of the bytes its entries hold (otter/v2, W-TinyLFU eviction).
type Memory struct {
	c            *otter.Cache[Key, Entry]
	hits, misses atomic.Int64
}

// MemoryStats are cumulative counters of the in-process tier.
type MemoryStats struct {
	Hits, Misses int64
	Entries      int
}

// Stats returns the counters.
func (m *Memory) Stats() MemoryStats {
	return MemoryStats{Hits: m.hits.Load(), Misses: m.misses.Load(), Entries: m.c.EstimatedSize()}
}

// entryOverhead approximates the fixed cost of one entry: key, Principal
// struct, slice headers and the cache's own node.
const entryOverhead = 320

// NewMemory returns an in-process store.
func NewMemory(opts MemoryOptions) (*Memory, error) {
	if opts.MaxBytes == 0 {
		opts.MaxBytes = 64 << 20
	}
	c, err := otter.New(&otter.Options[Key, Entry]{
		MaximumWeight: opts.MaxBytes,
		Weigher:       weigh,
		ExpiryCalculator: otter.ExpiryWritingFunc(func(e otter.Entry[Key, Entry]) time.Duration {
			return time.Until(e.Value.until)
		}),
	})
	if err != nil {
		return nil, errors.Join(errors.New("cache: memory store"), err)
	}
	return &Memory{c: c}, nil
}

// Get implements Store.
func (m *Memory) Get(_ context.Context, key Key) (Entry, bool) {
	e, ok := m.c.GetIfPresent(key)
	if ok {
		m.hits.Add(1)
	} else {
		m.misses.Add(1)
	}
	return e, ok
}

// Set implements Store.
func (m *Memory) Set(_ context.Context, key Key, e Entry, ttl time.Duration) {
	if ttl <= 0 {
		return
	}
	e.until = time.Now().Add(ttl)
	m.c.Set(key, e)
}

// InvalidateToken drops every verdict about the token with digest sum,
// under every policy. It walks the store: purges are rare.
func (m *Memory) InvalidateToken(sum [sha256.Size]byte) int {
	n := 0
	for k := range m.c.Keys() {
		if k.Token == sum {
			m.c.Invalidate(k)
			n++
		}
	}
	return n
}

// Len returns the number of entries.
func (m *Memory) Len() int { return m.c.EstimatedSize() }

func weigh(k Key, e Entry) uint32 {
	n := entryOverhead + len(k.Policy)
	if p := e.Principal; p != nil {
		n += len(p.Subject) + len(p.ClientID) + len(p.Issuer) + len(p.Claims)
		for _, s := range p.Scopes {
			n += len(s) + 16
		}
		for _, a := range p.Audience {
			n += len(a) + 16
		}
	}
	if e.Err != nil {
		n += len(e.Err.Description)
	}
	return uint32(n)
}
