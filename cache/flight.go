package cache

import (
	"context"
	"crypto/sha256"
	"sync"

	"github.com/mcp-authz/mcp-authz/validators"
)

// flights collapses concurrent validations of one token into one, like
// golang.org/x/sync/singleflight, but shaped for a cold Check, where the
// validation is a signature check of some tens of microseconds and the
// collapsing machinery should cost next to nothing:
//
//   - the first caller (the leader) validates on its own goroutine when
//     its Check has a deadline, which bounds the validation (detach): no
//     goroutine is started, so none grows a stack for the JSON decoder
//     and the RSA arithmetic. Without a deadline it validates on a new
//     goroutine, so that it can stop waiting when its Check is cancelled;
//   - a flight is keyed by the token's digest alone (a Validator's flights
//     share one policy), so no key string is built;
//   - the channel that wakes waiting callers is made only when one waits:
//     a token seen once never needs it.
type flights struct {
	mu sync.Mutex
	m  map[[sha256.Size]byte]*flight
}

type flight struct {
	// done is closed when the flight lands; nil until a caller waits.
	done chan struct{}
	p    *validators.Principal
	err  error
}

// do returns fn's result for key, calling fn once for all concurrent
// callers. shared reports whether the result came from another caller's
// call. A caller whose ctx ends stops waiting with ctx's error (the
// flight goes on for the others).
func (f *flights) do(ctx context.Context, key [sha256.Size]byte, fn func() (*validators.Principal, error)) (
	p *validators.Principal, shared bool, err error) {
	f.mu.Lock()
	if f.m == nil {
		f.m = make(map[[sha256.Size]byte]*flight)
	}
	if c, ok := f.m[key]; ok {
		if c.done == nil {
			c.done = make(chan struct{})
		}
		f.mu.Unlock()
		return c.wait(ctx, true)
	}
	c := new(flight)
	f.m[key] = c
	f.mu.Unlock()

	if _, ok := ctx.Deadline(); ok {
		f.land(key, c, fn)
		return c.p, false, c.err
	}
	f.mu.Lock()
	if c.done == nil {
		c.done = make(chan struct{})
	}
	f.mu.Unlock()
	go f.land(key, c, fn)
	return c.wait(ctx, false)
}

// land runs the flight and wakes whoever waits for it.
func (f *flights) land(key [sha256.Size]byte, c *flight, fn func() (*validators.Principal, error)) {
	p, err := fn()
	f.mu.Lock()
	c.p, c.err = p, err
	delete(f.m, key)
	done := c.done
	f.mu.Unlock()
	if done != nil {
		close(done)
	}
}

// wait returns c's result once it lands, or ctx's error if ctx ends first.
func (c *flight) wait(ctx context.Context, shared bool) (*validators.Principal, bool, error) {
	select {
	case <-c.done:
		return c.p, shared, c.err
	case <-ctx.Done():
		return nil, shared, ctx.Err()
	}
}
