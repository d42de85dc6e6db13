package authz

import (
	"net/http"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"

	"github.com/mcp-authz/mcp-authz/validators"
)

// TestWireMatchesMessage: the bytes written for an outcome decode to the
// message built for it, for every kind of answer.
func TestWireMatchesMessage(t *testing.T) {
	s, _ := newTestServer(t, func(c *Config, _ *Resource) { c.StripAuthorization = true })
	rt := s.router.byName[testResource]
	full := validators.NewPrincipal(validators.Identity{Subject: "user-1", ClientID: "client-1", Issuer: "https://as.example",
		Scopes: []string{"mcp:read", "mcp:write"}, ExpiresAt: time.Unix(2000000000, 0), ClaimsJSON: `{"sub":"user-1"}`})
	odd := validators.NewPrincipal(validators.Identity{Subject: "Jos\u00e9 %", Scopes: nil})
	long := validators.NewPrincipal(validators.Identity{Subject: string(make([]byte, 300)), ClaimsJSON: string(make([]byte, 20000))})
	outcomes := map[string]*outcome{
		"allow":                    s.allowed(rt, full, full.Claims(""), opKey{}),
		"allow with operation":     s.allowed(rt, full, full.Claims(""), opKey{method: "tools/call", tool: "search"}),
		"allow, empty identity":    s.allowed(rt, odd, odd.Claims(""), opKey{}),
		"allow, long values":       s.allowed(rt, long, long.Claims(""), opKey{method: "m"}),
		"allow with removals":      s.allowed(rt, full, full.Claims(""), opKey{}).withRemovals([]string{"x-mcp-auth-other", "x-mcp-auth-subject"}),
		"unauthenticated":          s.unauthenticated(reasonUnprotected),
		"denied 401":               rt.noCredential.out,
		"denied 503":               rt.unavailable.out,
		"denied with CORS":         rt.noCredential.out.withCORS("https://app.example"),
		"denied 403 insufficient":  denied(http.StatusForbidden, codes.PermissionDenied, rt.challengeInsufficientScope([]string{"a", "b"}), reasonInsufficientScope, "Insufficient scope"),
		"denied without challenge": denied(http.StatusForbidden, codes.PermissionDenied, "", reasonInvalidOrigin, "Origin not allowed"),
	}
	for name, o := range outcomes {
		b := o.wire()
		if len(b) != o.wireSize() {
			t.Errorf("%s: wrote %d bytes, sized %d", name, len(b), o.wireSize())
		}
		var got authv3.CheckResponse
		if err := proto.Unmarshal(b, &got); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if want := o.message(); !proto.Equal(&got, want) {
			t.Errorf("%s:\n wire    %v\n message %v", name, &got, want)
		}
	}
}
