package cache

import (
	"context"
	"crypto/sha256"
	"errors"
	"math"
	"slices"
	"sync/atomic"
	"time"

	"github.com/maypok86/otter/v2"

	"github.com/mcp-authz/mcp-authz/validators"
)

// MemoryOptions bounds an in-process store.
type MemoryOptions struct {
	// MaxBytes bounds the heap all entries hold (TestMemoryHonoursMaxBytes
	// holds the weigher to the heap it measures). Zero means 64 MiB.
	MaxBytes uint64
}

// Memory is an in-process store with per-entry TTL, bounded by the bytes
// its entries hold (otter/v2, W-TinyLFU eviction).
type Memory struct {
	c            *otter.Cache[Key, memEntry]
	hits, misses atomic.Int64
}

// memEntry is an Entry as the in-process store keeps it: the end of its
// life in 8 bytes instead of a time.Time's 24, and nothing else.
type memEntry struct {
	p   *validators.Principal
	err *validators.Error
	// until is when the entry ends, in Unix nanoseconds; its lowest bit
	// says that the entry is in use (see warm).
	until int64
}

// warm reports whether the verdict has been read since it was stored:
// authz then keeps the principal's rendered allow with it, which the
// weigher counts from then on.
func (e memEntry) warm() bool { return e.until&1 == 1 }

// MemoryStats are cumulative counters of the in-process tier.
type MemoryStats struct {
	Hits, Misses int64
	Entries      int
}

// Stats returns the counters.
func (m *Memory) Stats() MemoryStats {
	return MemoryStats{Hits: m.hits.Load(), Misses: m.misses.Load(), Entries: m.c.EstimatedSize()}
}

// NewMemory returns an in-process store.
func NewMemory(opts MemoryOptions) (*Memory, error) {
	if opts.MaxBytes == 0 {
		opts.MaxBytes = 64 << 20
	}
	c, err := otter.New(&otter.Options[Key, memEntry]{
		MaximumWeight: opts.MaxBytes,
		Weigher:       weigh,
		Executor:      runHere,
		ExpiryCalculator: otter.ExpiryWritingFunc(func(e otter.Entry[Key, memEntry]) time.Duration {
			return time.Duration(e.Value.until - time.Now().UnixNano())
		}),
	})
	if err != nil {
		return nil, errors.Join(errors.New("cache: memory store"), err)
	}
	return &Memory{c: c}, nil
}

// runHere is otter's executor: its maintenance (draining the read and
// write buffers, evicting) runs on the goroutine whose read or write
// called for it. The default starts a goroutine for each pass, and waking a
// thread for it cost a fresh token's Check about 4 µs, more than the pass
// itself. Nothing the store gives otter (the weigher, the expiry, Get's
// compute function) calls the cache back, which is what a synchronous
// executor forbids.
func runHere(fn func()) { fn() }

// Get implements Store.
func (m *Memory) Get(_ context.Context, key Key) (Entry, bool) {
	e, ok := m.c.GetIfPresent(key)
	if !ok {
		m.misses.Add(1)
		return Entry{}, false
	}
	m.hits.Add(1)
	if e.p != nil && !e.warm() {
		// Its first hit: weigh it again, with the allow authz will keep.
		m.c.ComputeIfPresent(key, func(old memEntry) (memEntry, otter.ComputeOp) {
			if old.p != e.p || old.warm() {
				return old, otter.CancelOp
			}
			old.until |= 1
			return old, otter.WriteOp
		})
	}
	return Entry{Principal: e.p, Err: e.err, until: time.Unix(0, e.until&^1)}, true
}

// Set implements Store.
func (m *Memory) Set(_ context.Context, key Key, e Entry, ttl time.Duration) {
	if ttl <= 0 {
		return
	}
	m.c.Set(key, memEntry{p: e.Principal, err: e.Err, until: time.Now().Add(ttl).UnixNano() &^ 1})
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

// entryOverhead is what an entry costs besides its verdict: otter's node
// (its 56-byte header, the key and a memEntry, 128 bytes as allocated) and
// its share of otter's hash table and frequency sketch (about 24 bytes;
// BenchmarkMemoryPerEntry measures the whole).
const entryOverhead = 128 + 24

// weigh is the heap an entry holds, as the allocator rounds it: the bound
// MaxBytes is of real memory. The policy string is shared by every entry
// of a policy. An entry in use also holds the allow response authz keeps
// with its principal from its second use on (the principal's first hit
// here): BenchmarkMemoryPerAllow in authz measures 1.2 KB for 270 bytes of
// claims, which allowWeight estimates.
func weigh(k Key, e memEntry) uint32 {
	n := entryOverhead
	if p := e.p; p != nil {
		st, data := p.Size()
		n += allocSize(st) + allocSize(data)
		if e.warm() {
			n += allowWeight(p)
		}
	}
	if e.err != nil {
		// The error, its description and (usually) a cause.
		n += 64 + allocSize(len(e.err.Description)) + 64
	}
	return uint32(min(n, math.MaxUint32))
}

// sizeClasses are the Go allocator's size classes up to 32 KiB
// (internal/runtime/gc/sizeclasses.go).
var sizeClasses = [...]uint16{8, 16, 24, 32, 48, 64, 80, 96, 112, 128, 144, 160, 176, 192, 208, 224, 240, 256, 288, 320,
	352, 384, 416, 448, 480, 512, 576, 640, 704, 768, 896, 1024, 1152, 1280, 1408, 1536, 1792, 2048, 2304, 2688, 3072,
	3200, 3456, 4096, 4864, 5376, 6144, 6528, 6784, 6912, 8192, 9472, 9728, 10240, 10880, 12288, 13568, 14336, 16384,
	18432, 19072, 20480, 21760, 24576, 27264, 28672, 32768}

// allocSize is what the Go allocator takes for an object of n bytes.
func allocSize(n int) int {
	if n == 0 {
		return 0
	}
	if n > 32768 {
		return (n + 8191) &^ 8191 // whole pages
	}
	i, _ := slices.BinarySearch(sizeClasses[:], uint16(n))
	return int(sizeClasses[i])
}

// allowWeight estimates the allow response authz keeps with p: its wire
// form, which holds the base64url claims twice (the header and the
// dynamic metadata) and every identity value once more besides about 300
// bytes of names and framing, and about 450 bytes of bookkeeping around
// it.
func allowWeight(p *validators.Principal) int {
	n, _ := p.ClaimsSize()
	claims := (n*4 + 2) / 3
	return 450 + allocSize(310+2*claims+len(p.ClientID())+len(p.Subject())+len(p.Issuer())+len(p.ScopeString()))
}
