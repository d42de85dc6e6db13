package authz

import (
	"context"
	"testing"

	"github.com/mcp-authz/mcp-authz/cache"
	"github.com/mcp-authz/mcp-authz/validators"
)

type onePrincipal struct{}

func (onePrincipal) Validate(context.Context, string) (*validators.Principal, error) {
	return validators.NewPrincipal(validators.Identity{Subject: "user-1", Issuer: "https://as.example", Scopes: []string{"mcp:read"}}), nil
}

// TestKeptAllowAfterReload: verdicts outlive a reload, and so do their
// principals; the allow kept with one follows the new configuration's
// route, instead of being rendered again on every Check for as long as
// the verdict stays cached.
func TestKeptAllowAfterReload(t *testing.T) {
	store, _ := cache.NewMemory(cache.MemoryOptions{})
	cv, _ := cache.New(onePrincipal{}, store, cache.Options{Policy: "p"})
	newServer := func() *Server {
		s, err := NewServer(Config{Resources: []*Resource{{URI: testResource, RequiredScopes: []string{"mcp:read"}, Validator: cv}}})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	ctx := context.Background()
	req := envoyRequest("/mcp", map[string]string{"authorization": "Bearer tok"})
	kept := func(s *Server) *prepared {
		t.Helper()
		in := inputFromProto(req, &s.read)
		r, err := s.check(ctx, &in)
		if err != nil || !r.allowed() {
			t.Fatalf("not allowed: %v", err)
		}
		return r.prepared
	}
	old := newServer()
	for range 3 {
		kept(old)
	}
	reloaded := newServer()
	kept(reloaded)
	if a, b := kept(reloaded), kept(reloaded); a == nil || a != b {
		t.Fatal("after a reload, the allow of a cached principal is rendered on every Check")
	}
}
