package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// DESIGN §5, §6: two resources claiming the same host (or both any host)
// and the same normalized path prefix (letter case aside: servers may
// route without regard to it), or whose metadata documents would
// be served at one place, stop start-up, like any other bad
// configuration: at Load, with one line naming the field. Nested prefixes,
// and a host-specific resource beside an any-host one, are fine.
func TestRouteConflictsNameTheField(t *testing.T) {
	const as = "authorization_servers: [https://a.example]"
	tests := []struct {
		name  string
		yaml  string
		field string // "" means accepted
	}{
		{"same prefix, any host", "resources:\n- {resource: https://m.example/a, " + as + ", path_prefix: /mcp}\n- {resource: https://m.example/b, " + as + ", path_prefix: /mcp}\n",
			"resources[1].path_prefix"},
		{"trailing slash ignored", "resources:\n- {resource: https://m.example/a, " + as + ", path_prefix: /mcp}\n- {resource: https://m.example/b, " + as + ", path_prefixes: [/x, /mcp/]}\n",
			"resources[1].path_prefixes[1]"},
		{"dot segments normalized", "resources:\n- {resource: https://m.example/a, " + as + ", path_prefix: /mcp}\n- {resource: https://m.example/b, " + as + ", path_prefix: /x/../mcp}\n",
			"resources[1].path_prefix"},
		{"both without prefix", "resources:\n- {resource: https://m.example/a, " + as + "}\n- {resource: https://m.example/b, " + as + "}\n",
			"resources[1].path_prefix"},
		{"same host set", "resources:\n- {resource: https://m.example/a, " + as + ", hosts: [m.example], path_prefix: /mcp}\n- {resource: https://m.example/b, " + as + ", hosts: [M.example], path_prefix: /mcp}\n",
			"resources[1].path_prefix"},
		{"the same but for letter case", "resources:\n- {resource: https://m.example/a, " + as + ", path_prefix: /mcp/admin}\n- {resource: https://m.example/b, " + as + ", path_prefix: /mcp/Admin}\n",
			"resources[1].path_prefix"},
		{"undecidable prefix", "resources:\n- {resource: https://m.example/a, " + as + ", path_prefix: /mcp%2Fx}\n",
			"resources[0].path_prefix"},
		{"nested prefixes", "resources:\n- {resource: https://m.example/a, " + as + ", path_prefix: /mcp}\n- {resource: https://m.example/b, " + as + ", path_prefix: /mcp/admin}\n", ""},
		{"different hosts", "resources:\n- {resource: https://m.example/a, " + as + ", hosts: [a.example], path_prefix: /mcp}\n- {resource: https://m.example/b, " + as + ", hosts: [b.example], path_prefix: /mcp}\n", ""},
		{"same resource URI", "resources:\n- {name: a, resource: https://m.example/mcp, " + as + ", path_prefix: /a}\n- {name: b, resource: https://m.example/mcp, " + as + ", path_prefix: /b}\n",
			"resources[1].resource"},
		{"resource URIs one trailing slash apart", "resources:\n- {resource: https://m.example/mcp, " + as + ", path_prefix: /a}\n- {resource: https://M.example/mcp/, " + as + ", path_prefix: /b}\n",
			"resources[1].resource"},
		{"same path, other hosts", "resources:\n- {resource: https://a.example/mcp, " + as + ", path_prefix: /a}\n- {resource: https://b.example/mcp, " + as + ", path_prefix: /b}\n", ""},
		{"host-specific beside any host", "resources:\n- {resource: https://m.example/a, " + as + ", path_prefix: /mcp}\n- {resource: https://m.example/b, " + as + ", hosts: [b.example], path_prefix: /mcp}\n", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "c.yaml")
			if err := os.WriteFile(path, []byte(tt.yaml), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := Load(path, envFunc(nil))
			switch {
			case tt.field == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tt.field == "":
			case err == nil:
				t.Fatal("accepted")
			case strings.Contains(err.Error(), "\n") || !strings.HasPrefix(err.Error(), tt.field+":"):
				t.Fatalf("error %q does not name %s on one line", err, tt.field)
			}
		})
	}
}
