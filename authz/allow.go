package authz

import (
	"sync"
	"sync/atomic"

	"github.com/mcp-authz/mcp-authz/validators"
)

// allowSet holds the allow responses rendered for one cached principal on
// one route: rendering identity headers and metadata is most of the cost of
// a cached Check, and a cached principal is the same pointer on every hit,
// so each response is rendered once and shared read-only (gRPC marshals it
// concurrently, which protobuf allows). One response per JSON-RPC
// operation, since the method and tool are forwarded too; a client calls a
// handful of tools, and past maxOpResponses the rest are rendered per
// request.
type allowSet struct {
	base atomic.Pointer[prepared] // no operation known
	ops  sync.Map                 // opKey -> *prepared
	n    atomic.Int32
}

const maxOpResponses = 32

// allowResponse is the allow for p, found by token, on rt. The first use of a principal
// renders it for this request alone: most tokens of a burst of fresh ones
// are used once, and keeping their responses would cost memory and the
// garbage collector's time for nothing. From its second use on, the
// responses are kept with the principal.
func (s *Server) allowResponse(rt *route, p *validators.Principal, token string, op opKey) result {
	set, _ := p.Memo(rt, newAllowSet).(*allowSet)
	if set == nil {
		return rendered(s.allowed(rt, p, token, op))
	}
	if op == (opKey{}) {
		if r := set.base.Load(); r != nil {
			return shared(r)
		}
		r := prepare(s.allowed(rt, p, token, op))
		set.base.Store(r)
		return shared(r)
	}
	if r, ok := set.ops.Load(op); ok {
		return shared(r.(*prepared))
	}
	r := prepare(s.allowed(rt, p, token, op))
	if set.n.Add(1) <= maxOpResponses {
		set.ops.Store(op, r)
	}
	return shared(r)
}

func newAllowSet() any { return new(allowSet) }
