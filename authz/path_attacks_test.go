package authz

import (
	"testing"

	"github.com/mcp-authz/mcp-authz/internal/pathnorm"
)

// TestNormalizePathAdminAttacks routes each attack of the issue between a
// tools resource on /mcp and an admin resource on /mcp/admin: every one is
// refused or lands on admin, where the upstream serves it.
func TestNormalizePathAdminAttacks(t *testing.T) {
	v := &fakeValidator{}
	s, err := NewServer(Config{Resources: []*Resource{
		{Name: "/mcp", URI: "https://h.example/mcp", PathPrefixes: []string{"/mcp"}, Validator: v},
		{Name: "/mcp/admin", URI: "https://h.example/mcp/admin", PathPrefixes: []string{"/mcp/admin"}, Validator: v},
	}})
	if err != nil {
		t.Fatal(err)
	}
	route := func(p string) string {
		rt, ambiguous := s.router.find(&checkInput{host: "h.example"}, p)
		switch {
		case ambiguous:
			return "refused"
		case rt != nil:
			return rt.Name
		}
		return ""
	}
	for _, in := range []string{
		"/mcp//admin", "/mcp/./admin", "/mcp/x/../admin", "/mcp/%2e/admin", "/mcp/%61dmin",
		"/mcp/admin;x", "/mcp/admin%2Fx", "/mcp/admin%00", "/mcp/%2E%2E/mcp/admin", "/mcp/tools/../admin",
		"/mcp///admin/", "/mcp/x/%2e%2e/admin/.", "/mcp/x//../admin", "/mcp/ADMIN/../admin",
		"/mcp/admin%3Bx", `/mcp\admin`, "/mcp%2Fadmin", "/mcp/adm%69n/tools", "/../mcp/admin",
		// An upstream that routes without regard to case (Express) serves
		// these as /mcp/admin.
		"/mcp/ADMIN", "/mcp/Admin/x", "/mcp/adm%49n", "/mcp/aDmin/",
	} {
		got, err := pathnorm.Normalize(in)
		if r := route(got); err == nil && r != "/mcp/admin" && r != "refused" {
			t.Errorf("%q normalizes to %q, routed to %q, want /mcp/admin or refused", in, got, route(got))
		}
	}
}
