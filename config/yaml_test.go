package config

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

var goish = regexp.MustCompile(`\b(main|config)\.[A-Z]|!!str|unmarshal|\[\]string|struct`)

// okResource is a valid resource to put bad settings next to.
const okResource = "resources:\n- resource: https://m.example/mcp\n  authorization_servers: [https://a.example]\n"

// TestYAMLErrorsNameFieldAndLine: every problem in a file is one line
// "FILE:LINE: field.path: what is wrong", in the file's terms (never Go
// type names), with a suggestion for a misspelt key.
func TestYAMLErrorsNameFieldAndLine(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want string // "LINE: path: message part"
	}{
		{"bad duration", "cache:\n  ttl: forever\n", `2: cache.ttl: "forever" is not a duration`},
		{"zero duration", "cache:\n  negative_ttl: 0\n", `2: cache.negative_ttl: 0 is not allowed`},
		{"zero jwks ttl", okResource + "  issuers:\n  - {issuer: https://a.example, jwks_cache_ttl: 0s}\n", `5: resources[0].issuers[0].jwks_cache_ttl: 0 is not allowed`},
		{"negative leeway", okResource + "  leeway: -1s\n", `4: resources[0].leeway: "-1s" is negative`},
		{"negative milliseconds", "redis:\n  timeout: -5\n", `2: redis.timeout: "-5" is negative`},
		{"token bytes not a number", "max_token_bytes: abc\n", `1: max_token_bytes: "abc" is not a whole number`},
		{"max bytes negative", "cache: {max_bytes: -1}\n", `1: cache.max_bytes: "-1" is not a whole number of 0 or more`},
		{"bool", "log:\n  file: sometimes\n", `2: log.file: "sometimes" is not a boolean`},
		{"misspelt resource key", okResource + "  requried_scopes: [a]\n", `4: resources[0].requried_scopes: unknown field; did you mean required_scopes?`},
		{"misspelt top key", "grpc_adr: :9191\n", `1: grpc_adr: unknown field; did you mean grpc_addr?`},
		{"dash instead of underscore", "identity-headers: {prefix: x-}\n", `1: identity-headers: unknown field; did you mean identity_headers?`},
		{"unknown key far from any", "cache:\n  colour: blue\n", `2: cache.colour: unknown field: not a setting of cache`},
		{"unknown top key", "resourcez: []\n", `1: resourcez: unknown field; did you mean resources?`},
		{"operation scopes not a list", okResource + "- resource: https://m.example/b\n  authorization_servers: [https://a.example]\n  operations:\n  - method: tools/call\n    scopes: mcp:write\n", `8: resources[1].operations[0].scopes: expected a list`},
		{"operation unknown key", okResource + "  operations:\n  - {method: tools/call, scope: [a]}\n", `5: resources[0].operations[0].scope: unknown field; did you mean scopes?`},
		{"nested issuer key", okResource + "  issuers:\n  - issuer: https://a.example\n    jwks_url: https://a.example/k\n", `6: resources[0].issuers[0].jwks_url: unknown field; did you mean jwks_uri?`},
		{"introspection key", okResource + "  introspection:\n    client_secert: x\n", `5: resources[0].introspection.client_secert: unknown field; did you mean client_secret?`},
		{"resources not a list", "resources:\n  resource: https://m.example/mcp\n", `2: resources: expected a list`},
		{"section is a scalar", "log: debug\n", `1: log: expected a mapping (key: value), found "debug"`},
		{"list where a value goes", "grpc_addr: [a, b]\n", `1: grpc_addr: expected a single value, found a list`},
		{"duplicate key", "cache:\n  ttl: 1m\n  ttl: 2m\n", `3: cache.ttl: given twice`},
		{"scope_implies value", okResource + "  scope_implies: {mcp:admin: mcp:write}\n", `4: resources[0].scope_implies.mcp:admin: expected a list`},
		{"endpoints bool", okResource + "  endpoints: {initialize: no-thanks}\n", `4: resources[0].endpoints.initialize: "no-thanks" is not a boolean`},
		{"api key in wrong place", okResource + "  api_keys:\n    keys:\n    - {name: ci, sha: abc}\n", `6: resources[0].api_keys.keys[0].sha: unknown field; did you mean sha256?`},
		{"redis db", "redis:\n  url: redis://127.0.0.1:6379/0\n  db: first\n", `3: redis.db: "first" is not a whole number`},
		{"syntax error", "cache:\n  ttl: 1m\n bad: [\n", `not valid YAML`},
		{"tab indentation", "cache:\n\tttl: 1m\n", `not valid YAML`},
		{"top level list", "- a\n- b\n", `1: (top level): expected a mapping`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "bad.yaml")
			if err := os.WriteFile(path, []byte(tt.yaml), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := Load(path, envFunc(nil))
			if err == nil {
				t.Fatal("accepted")
			}
			msg := err.Error()
			if strings.Contains(msg, "\n") {
				t.Fatalf("not one line: %q", msg)
			}
			if !strings.HasPrefix(msg, path+":") || !strings.Contains(msg, tt.want) {
				t.Fatalf("got  %q\nwant %s:%s...", msg, path, tt.want)
			}
			if goish.MatchString(msg) {
				t.Errorf("%q speaks Go", msg)
			}
		})
	}
}

// TestYAMLGoodFilesStillDecode: anchors, merge keys, nulls and flow style
// decode as before.
func TestYAMLGoodFilesStillDecode(t *testing.T) {
	const doc = `
log: ~
cache: {ttl: 90s}
resources:
  - &first
    resource: https://m.example/a
    authorization_servers: [https://a.example]
    required_scopes: [mcp:read]
    leeway: 0s
    path_prefix: /a
  - <<: *first
    resource: https://m.example/b
    path_prefix: /b
  - <<: [*first]
    resource: https://m.example/c
    path_prefix: ~
`
	path := filepath.Join(t.TempDir(), "ok.yaml")
	if err := os.WriteFile(path, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := Load(path, envFunc(nil))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Cache.TTL.D().String() != "1m30s" || len(cfg.Resources) != 3 || cfg.Resources[0].Leeway.D() != 0 ||
		cfg.Resources[2].RequiredScopes[0] != "mcp:read" || cfg.Resources[1].Resource != "https://m.example/b" {
		t.Fatalf("decoded %+v", cfg)
	}
	// A bad value reached through a merge is still named.
	bad := strings.Replace(doc, "leeway: 0s", "leeway: -1s", 1)
	if err := os.WriteFile(path, []byte(bad), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(path, envFunc(nil)); err == nil || !strings.Contains(err.Error(), "resources[0].leeway") {
		t.Fatalf("got %v", err)
	}
}
