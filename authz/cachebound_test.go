package authz_test

import (
	"context"
	"runtime"
	"testing"

	"google.golang.org/protobuf/proto"
)

// TestCacheBoundCountsKeptAllows: the in-process cache's bound holds for
// verdicts in use too, whose principals keep their rendered allow: filled
// past its bound with tokens checked twice each, the heap it holds stays
// within 15 % of cache.max_bytes. (A kept allow that pointed into its
// request's token instead of copying the claims out of it would keep the
// token too, and break the bound.)
func TestCacheBoundCountsKeptAllows(t *testing.T) {
	if testing.Short() {
		t.Skip("fills 16 MiB")
	}
	const bound = 16 << 20
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	s, store, _ := stubServer(t, bound)
	ctx := context.Background()
	n := 3 * bound / 2500
	for i := range n {
		req, _ := proto.Marshal(checkRequest("Bearer " + stubToken(i)))
		for range 2 {
			if _, err := s.CheckWire(ctx, req); err != nil {
				t.Fatal(err)
			}
		}
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	heap := int64(after.HeapAlloc) - int64(before.HeapAlloc)
	t.Logf("%d tokens checked twice: %d kept, heap %d bytes (bound %d)", n, store.Len(), heap, bound)
	if heap > bound*115/100 || heap < bound*85/100 {
		t.Fatalf("heap %d bytes for a bound of %d", heap, bound)
	}
	runtime.KeepAlive(s)
}
