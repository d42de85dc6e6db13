package deploy

import (
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/mcp-authz/mcp-authz/config"
	"go.yaml.in/yaml/v3"
)

// composeVar is docker compose's interpolation: ${NAME}, ${NAME:-default},
// ${NAME:?message}.
var composeVar = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:-|:\?)([^}]*))?\}`)

// TestComposeStackConfigLoads: the mcp-authz service of
// envoy/docker-compose.yaml starts, that is its environment over its
// mounted configuration file passes config.Load, given only what the file
// tells the user to set (its ${NAME:?...} variables).
func TestComposeStackConfigLoads(t *testing.T) {
	raw, err := os.ReadFile("envoy/docker-compose.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var compose struct {
		Services map[string]struct {
			Environment map[string]string `yaml:"environment"`
			Volumes     []string          `yaml:"volumes"`
			Command     []string          `yaml:"command"`
		} `yaml:"services"`
	}
	if err := yaml.Unmarshal(raw, &compose); err != nil {
		t.Fatal(err)
	}
	svc, ok := compose.Services["mcp-authz"]
	if !ok {
		t.Fatal("no mcp-authz service")
	}
	// What a user supplies for the variables the file requires.
	user := map[string]string{
		"OAUTH_AUTHORIZATION_SERVER": "https://auth.example.com",
		"MCP_AUTHZ_CACHE_SECRET":     strings.Repeat("s", 32),
	}
	env := map[string]string{}
	for name, v := range svc.Environment {
		env[name] = composeVar.ReplaceAllStringFunc(v, func(m string) string {
			p := composeVar.FindStringSubmatch(m)
			switch p[2] {
			case ":-":
				return p[3]
			case ":?":
				u, ok := user[p[1]]
				if !ok {
					t.Errorf("%s requires ${%s}, which this test does not know a value for", name, p[1])
				}
				return u
			}
			t.Errorf("%s: ${%s} without a default or a message: compose would use an empty value silently", name, p[1])
			return ""
		})
	}
	// The configuration file, from the volume mounted at --config.
	cfgPath := ""
	for i, a := range svc.Command {
		if a == "--config" && i+1 < len(svc.Command) {
			for _, vol := range svc.Volumes {
				if src, dst, ok := strings.Cut(vol, ":"); ok && strings.TrimSuffix(dst, ":ro") == svc.Command[i+1] {
					cfgPath = "envoy/" + strings.TrimPrefix(src, "./")
				}
			}
		}
	}
	if cfgPath == "" {
		t.Fatalf("no volume provides the --config file of %v", svc.Command)
	}
	if _, err := config.Load(cfgPath, func(k string) string { return env[k] }); err != nil {
		t.Fatalf("the compose stack's mcp-authz would not start: %v", err)
	}
}
