package authz

import (
	"bytes"
	"sync"
	"sync/atomic"
	"unsafe"

	"github.com/mcp-authz/mcp-authz/validators"
)

// allowSet holds the allow responses rendered for one cached principal on
// one route: rendering identity headers and metadata is most of the cost of
// a cached Check, and a cached principal is the same pointer on every hit,
// so each response is rendered once and shared read-only (gRPC marshals it
// concurrently, which protobuf allows). One response per JSON-RPC
// operation, since the method and tool are forwarded too; a client calls a
// handful of tools, and past maxOpResponses the rest are rendered per
// request. The response without an operation, the most used, is held in
// the set itself: at a million verdicts in use every pointer followed on a
// hit is a cache miss, which is also why the set heads with the Kept that
// the principal points to (see setOf).
type allowSet struct {
	kept validators.Kept // first: see setOf
	rt   *route
	// next is the set of another route of the same Server: resources with
	// one validation policy share cached principals.
	next     atomic.Pointer[allowSet]
	baseOnce sync.Once
	base     prepared // no operation known; set by baseOnce
	ops      sync.Map // opKey -> *prepared
	n        atomic.Int32
}

const maxOpResponses = 32

// setOf returns the set that k heads: every Kept that Principal.Memo
// returns for a Server is the first field of an allowSet that the Server
// made (allowResponse), so k points to that set, as the unsafe.Pointer
// rule for a struct and its first field allows.
func setOf(k *validators.Kept) *allowSet { return (*allowSet)(unsafe.Pointer(k)) }

// The conversion in setOf needs kept at offset 0; this fails to compile
// otherwise.
var _ [0]struct{} = [unsafe.Offsetof(allowSet{}.kept)]struct{}{}

// of returns the set of rt in the list that starts at set, adding one at
// its end when rt has none. A principal is used on one route of a Server
// as a rule; the list is as long as the routes it is used on.
func (set *allowSet) of(rt *route) *allowSet {
	for {
		if set.rt == rt {
			return set
		}
		next := set.next.Load()
		if next == nil {
			if n := (&allowSet{rt: rt}); set.next.CompareAndSwap(nil, n) {
				return n
			}
			next = set.next.Load()
		}
		set = next
	}
}

// allowResponse is the allow for p, found by token, on rt. The first use
// of a principal renders it for this request alone: most tokens of a burst
// of fresh ones are used once, and keeping their responses would cost
// memory and the garbage collector's time for nothing. From its second use
// on, the responses are kept with the principal (see keep), under the
// Server: a reload's Server replaces them all at once, and the routes of
// one Server keep theirs side by side.
func (s *Server) allowResponse(rt *route, p *validators.Principal, token string, op opKey) result {
	kept := p.Memo(s, func() *validators.Kept { return &(&allowSet{rt: rt}).kept })
	if kept == nil {
		return rendered(s.allowed(rt, p, p.Claims(token), op))
	}
	set := setOf(kept).of(rt)
	if op == (opKey{}) {
		set.baseOnce.Do(func() { s.keep(&set.base, rt, p, token, op) })
		return shared(&set.base)
	}
	if r, ok := set.ops.Load(op); ok {
		return shared(r.(*prepared))
	}
	r := new(prepared)
	s.keep(r, rt, p, token, op)
	if set.n.Add(1) <= maxOpResponses {
		set.ops.Store(op, r)
	}
	return shared(r)
}

// keep prepares in r the allow for p to be kept as long as its verdict is
// cached, which may be for a million principals at once: only the wire
// form stays, with what every decision reads (allow, reason), about half
// of the whole outcome. The uses of the whole (forward auth, a request
// that needs more removals, Server.Check's message) render it again, with
// the claims read from the wire form, which holds them already.
func (s *Server) keep(r *prepared, rt *route, p *validators.Principal, token string, op opKey) {
	claims := p.Claims(token)
	o := s.allowed(rt, p, claims, op)
	r.out, r.allow, r.reason = o, o.allow, o.reason
	wire := r.encoded()
	if claims != "" {
		if i := bytes.Index(wire, unsafe.Slice(unsafe.StringData(claims), len(claims))); i >= 0 {
			claims = unsafe.String(&wire[i], len(claims)) // wire is never written again
		}
	}
	r.out, r.render = nil, func() *outcome { return s.allowed(rt, p, claims, op) }
}
