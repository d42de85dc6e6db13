package config

import (
	"crypto/tls"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

func envFunc(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

// loadSeed loads the configuration of seedEnv with extra variables on top.
func loadSeed(extra map[string]string) (*Config, error) {
	env := seedEnv()
	for k, v := range extra {
		env[k] = v
	}
	return Load("", envFunc(env))
}

func seedEnv() map[string]string {
	return map[string]string{
		"OAUTH_RESOURCE":             "https://mcp.example.com/mcp",
		"OAUTH_AUTHORIZATION_SERVER": "https://auth.example.com",
	}
}

func TestLoadConfigFromSeedEnvironment(t *testing.T) {
	env := seedEnv()
	env["OAUTH_JWKS_URI"] = "https://auth.example.com/keys"
	env["OAUTH_ALGORITHMS"] = "RS256, PS256"
	env["OAUTH_JWKS_CACHE_TTL"] = "900000"
	env["OAUTH_SCOPES_SUPPORTED"] = "mcp:read,mcp:write"
	env["OAUTH_REQUIRED_SCOPES"] = "mcp:read"
	cfg, err := Load("", envFunc(env))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.GRPCAddr != ":9191" || cfg.HTTPAddr != ":9192" {
		t.Errorf("addresses %s %s", cfg.GRPCAddr, cfg.HTTPAddr)
	}
	r := cfg.Resources[0]
	if len(r.Audiences) != 1 || r.Audiences[0] != "https://mcp.example.com/mcp" {
		t.Errorf("audience defaults to the resource: %v", r.Audiences)
	}
	is := r.Issuers[0]
	if is.Issuer != "https://auth.example.com" || is.JWKSURI != "https://auth.example.com/keys" {
		t.Errorf("issuer %+v", is)
	}
	if strings.Join(is.Algorithms, ",") != "RS256,PS256" {
		t.Errorf("algorithms %v", is.Algorithms)
	}
	if is.JWKSCacheTTL.D() != 15*time.Minute {
		t.Errorf("jwks ttl from milliseconds: %v", is.JWKSCacheTTL.D())
	}
	if r.Leeway.D() != 60*time.Second {
		t.Errorf("leeway %v", r.Leeway.D())
	}
	if strings.Join(r.ScopesSupported, " ") != "mcp:read mcp:write" || strings.Join(r.RequiredScopes, " ") != "mcp:read" {
		t.Errorf("scopes %v %v", r.ScopesSupported, r.RequiredScopes)
	}
}

func TestEnvironmentOverridesFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.yaml")
	yaml := `
grpc_addr: 127.0.0.1:7000
resources:
  - resource: https://file.example.com/mcp
    authorization_servers: [https://auth.example.com]
    leeway: 5s
    issuers:
      - issuer: https://auth.example.com
        algorithms: [ES256]
        require_at_jwt: true
`
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := Load(path, envFunc(map[string]string{
		"OAUTH_RESOURCE":      "https://env.example.com/mcp",
		"MCP_AUTHZ_GRPC_ADDR": "127.0.0.1:7001",
	}))
	if err != nil {
		t.Fatal(err)
	}
	r := cfg.Resources[0]
	if r.Resource != "https://env.example.com/mcp" || cfg.GRPCAddr != "127.0.0.1:7001" {
		t.Errorf("env did not override: %s %s", r.Resource, cfg.GRPCAddr)
	}
	if r.Leeway.D() != 5*time.Second || !r.Issuers[0].RequireATJWT || r.Issuers[0].Algorithms[0] != "ES256" {
		t.Errorf("file values lost: %+v", r)
	}
}

func TestConfigErrorsNameTheField(t *testing.T) {
	tests := []struct {
		name  string
		env   map[string]string
		yaml  string
		field string
	}{
		{"nothing", nil, "", "resources"},
		{"resource missing", map[string]string{"OAUTH_AUTHORIZATION_SERVER": "https://a.example"}, "", "OAUTH_RESOURCE"},
		{"resource http", map[string]string{"OAUTH_RESOURCE": "http://mcp.example.com/mcp"}, "", "OAUTH_RESOURCE"},
		{"resource with fragment", map[string]string{"OAUTH_RESOURCE": "https://mcp.example.com/mcp#x"}, "", "OAUTH_RESOURCE"},
		{"no authorization server", map[string]string{"OAUTH_AUTHORIZATION_SERVER": ""}, "", "OAUTH_AUTHORIZATION_SERVER"},
		{"http authorization server", map[string]string{"OAUTH_AUTHORIZATION_SERVER": "http://a.example"}, "", "OAUTH_AUTHORIZATION_SERVER"},
		{"http JWKS", map[string]string{"OAUTH_JWKS_URI": "http://a.example/keys"}, "", "OAUTH_JWKS_URI"},
		{"HS256", map[string]string{"OAUTH_ALGORITHMS": "RS256,HS256"}, "", "OAUTH_ALGORITHMS"},
		{"none alg", map[string]string{"OAUTH_ALGORITHMS": "none"}, "", "OAUTH_ALGORITHMS"},
		{"bad ttl", map[string]string{"OAUTH_JWKS_CACHE_TTL": "often"}, "", "OAUTH_JWKS_CACHE_TTL"},
		{"tiny ttl", map[string]string{"OAUTH_JWKS_CACHE_TTL": "10"}, "", "OAUTH_JWKS_CACHE_TTL"},
		{"validation mode", map[string]string{"OAUTH_VALIDATION": "magic"}, "", "OAUTH_VALIDATION"},
		{"introspection without client id", map[string]string{"OAUTH_INTROSPECTION_ENDPOINT": "https://a.example/introspect"}, "", "OAUTH_CLIENT_ID"},
		{"introspection without secret", map[string]string{"OAUTH_INTROSPECTION_ENDPOINT": "https://a.example/introspect", "OAUTH_CLIENT_ID": "rs"}, "", "OAUTH_CLIENT_SECRET"},
		{"introspection over http", map[string]string{"OAUTH_INTROSPECTION_ENDPOINT": "http://a.example/introspect", "OAUTH_CLIENT_ID": "rs", "OAUTH_CLIENT_SECRET": "x"}, "", "OAUTH_INTROSPECTION_ENDPOINT"},
		{"introspection secret file missing", map[string]string{"OAUTH_INTROSPECTION_ENDPOINT": "https://a.example/introspect", "OAUTH_CLIENT_ID": "rs", "OAUTH_CLIENT_SECRET_FILE": "/nonexistent/secret"}, "", "OAUTH_CLIENT_SECRET_FILE"},
		{"introspection bad cache ttl", map[string]string{"OAUTH_INTROSPECTION_CACHE_TTL": "later"}, "", "OAUTH_INTROSPECTION_CACHE_TTL"},
		{"introspection mode without settings", map[string]string{"OAUTH_VALIDATION": "introspection"}, "", "OAUTH_CLIENT_ID, OAUTH_CLIENT_SECRET: required"},
		{"introspection mode without settings in yaml", nil, okResource + "  validation: introspection\n", "resources[0].introspection: required for validation \"introspection\": client_id and client_secret"},
		{"zero jwks ttl", map[string]string{"OAUTH_JWKS_CACHE_TTL": "0"}, "", "OAUTH_JWKS_CACHE_TTL: 0 is not allowed: it must be at least 1s"},
		{"zero jwks ttl in go syntax", map[string]string{"OAUTH_JWKS_CACHE_TTL": "0s"}, "", "OAUTH_JWKS_CACHE_TTL: 0 is not allowed"},
		{"sub-second jwks ttl", map[string]string{"OAUTH_JWKS_CACHE_TTL": "500ms"}, "", `OAUTH_JWKS_CACHE_TTL: "500ms" is shorter than 1s`},
		{"zero introspection cache ttl", map[string]string{"OAUTH_INTROSPECTION_CACHE_TTL": "0"}, "", "OAUTH_INTROSPECTION_CACHE_TTL: 0 is not allowed"},
		{"zero introspection timeout", map[string]string{"OAUTH_INTROSPECTION_TIMEOUT": "0"}, "", "OAUTH_INTROSPECTION_TIMEOUT: 0 is not allowed"},
		{"negative jwks ttl", map[string]string{"OAUTH_JWKS_CACHE_TTL": "-1s"}, "", "OAUTH_JWKS_CACHE_TTL: \"-1s\" is negative"},
		{"redis url scheme", map[string]string{"REDIS_URL": "http://127.0.0.1:6379"}, "", "REDIS_URL"},
		{"redis url and addresses in the file", nil, "redis: {url: redis://127.0.0.1:6379, addresses: [127.0.0.1:7000]}\nresources: [{resource: https://m.example/mcp, authorization_servers: [https://a.example]}]\n", "redis.addresses"},
		{"sentinel password without sentinel", map[string]string{"REDIS_URL": "redis://127.0.0.1:6379", "MCP_AUTHZ_CACHE_SECRET": strings.Repeat("s", 32)},
			"redis: {sentinel_password: x}\n" + okResource, "redis.sentinel_password: only for Sentinel"},
		{"sentinel password twice", map[string]string{"MCP_AUTHZ_CACHE_SECRET": strings.Repeat("s", 32)},
			"redis: {addresses: [127.0.0.1:26379], master_name: m, sentinel_password: x, sentinel_password_file: /nonexistent}\n" + okResource, "redis.sentinel_password_file: set either"},
		{"sentinel password file missing", map[string]string{"MCP_AUTHZ_CACHE_SECRET": strings.Repeat("s", 32)},
			"redis: {addresses: [127.0.0.1:26379], master_name: m, sentinel_password_file: /nonexistent/pw}\n" + okResource, "redis.sentinel_password_file"},
		{"bad bool", map[string]string{"MCP_DEBUG_CONSOLE": "yes please"}, "", "MCP_DEBUG_CONSOLE"},
		{"bad grpc addr", map[string]string{"MCP_AUTHZ_GRPC_ADDR": "9191"}, "", "MCP_AUTHZ_GRPC_ADDR"},
		{"bad unavailable mode", map[string]string{"MCP_AUTHZ_UNAVAILABLE_MODE": "teapot"}, "", "MCP_AUTHZ_UNAVAILABLE_MODE"},
		{"negative max recv bytes", map[string]string{"MCP_AUTHZ_GRPC_MAX_RECV_BYTES": "-1"}, "", "MCP_AUTHZ_GRPC_MAX_RECV_BYTES: -1 is negative"},
		{"negative max recv bytes in yaml", nil, okResource + "grpc: {max_recv_bytes: -262144}\n", "grpc.max_recv_bytes: -262144 is negative"},
		{"max recv bytes not a number", map[string]string{"MCP_AUTHZ_GRPC_MAX_RECV_BYTES": "256KiB"}, "", "MCP_AUTHZ_GRPC_MAX_RECV_BYTES"},
		{"unknown yaml field", nil, "resourcez: []\n", "resourcez"},
		{"yaml bad duration", nil, "cache:\n  ttl: forever\n", "forever"},
		{"yaml leeway too large", nil, "resources:\n- resource: https://m.example/mcp\n  authorization_servers: [https://a.example]\n  leeway: 1h\n", "resources[0].leeway"},
		{"yaml duplicate names", nil, "resources:\n- {name: x, resource: https://m.example/a, authorization_servers: [https://a.example]}\n- {name: x, resource: https://m.example/b, authorization_servers: [https://a.example]}\n", "resources[1].name"},
		{"env with several resources", map[string]string{"OAUTH_REQUIRED_SCOPES": "a"}, "resources:\n- {resource: https://m.example/a}\n- {resource: https://m.example/b}\n", "OAUTH_"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := map[string]string{}
			if tt.env != nil && tt.yaml == "" && tt.name != "resource missing" {
				env = seedEnv()
			}
			for k, v := range tt.env {
				env[k] = v
			}
			path := ""
			if tt.yaml != "" {
				path = filepath.Join(t.TempDir(), "c.yaml")
				if err := os.WriteFile(path, []byte(tt.yaml), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			_, err := Load(path, envFunc(env))
			if err == nil {
				t.Fatal("accepted")
			}
			msg := err.Error()
			if strings.Contains(msg, "\n") || !strings.Contains(msg, tt.field) {
				t.Fatalf("error %q does not name %s on one line", msg, tt.field)
			}
		})
	}
}

func TestParseDuration(t *testing.T) {
	tests := []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"15m", 15 * time.Minute, true},
		{"900000", 15 * time.Minute, true},
		{"1.5s", 1500 * time.Millisecond, true},
		{" 250 ", 250 * time.Millisecond, true},
		{"-5", 0, false},
		{"-1s", 0, false},
		{"soon", 0, false},
		// Milliseconds past what a duration holds (about 292 years) are
		// refused, as time.ParseDuration refuses "9999999h", not wrapped.
		{"9223372036854", 9223372036854 * time.Millisecond, true},
		{"9223372036855", 0, false},
		{"9223372036854775807", 0, false},
		{"99999999999999999999", 0, false},
		{"9999999h", 0, false},
	}
	for _, tt := range tests {
		got, err := ParseDuration(tt.in)
		if (err == nil) != tt.ok || (tt.ok && got.D() != tt.want) {
			t.Errorf("ParseDuration(%q) = %v, %v", tt.in, got.D(), err)
		}
	}
}

func TestExampleConfigLoads(t *testing.T) {
	cfg, err := Load("../config.example.yaml", envFunc(nil))
	if err != nil {
		t.Fatalf("config.example.yaml: %v", err)
	}
	if len(cfg.Resources) == 0 {
		t.Fatal("example has no resource")
	}
}

// TestShippedConfigsLoad keeps the configuration files under deploy/ valid.
func TestShippedConfigsLoad(t *testing.T) {
	if _, err := Load("../deploy/envoy/mcp-authz.yaml", envFunc(map[string]string{
		"OAUTH_AUTHORIZATION_SERVER": "https://auth.example.com",
	})); err != nil {
		t.Errorf("deploy/envoy/mcp-authz.yaml: %v", err)
	}
	raw, err := os.ReadFile("../deploy/kubernetes/base/mcp-authz.yaml")
	if err != nil {
		t.Fatal(err)
	}
	// The ConfigMap's config.yaml block, de-indented.
	_, block, ok := strings.Cut(string(raw), "config.yaml: |\n")
	if !ok {
		t.Fatal("no config.yaml in the ConfigMap")
	}
	block, _, _ = strings.Cut(block, "---")
	var lines []string
	for _, l := range strings.Split(block, "\n") {
		lines = append(lines, strings.TrimPrefix(l, "    "))
	}
	path := filepath.Join(t.TempDir(), "k8s.yaml")
	if err := os.WriteFile(path, []byte(strings.Join(lines, "\n")), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(path, envFunc(nil)); err != nil {
		t.Errorf("deploy/kubernetes ConfigMap: %v", err)
	}
}

func TestIntrospectionConfigFromEnvironment(t *testing.T) {
	secret := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(secret, []byte("from-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name       string
		env        map[string]string
		validation string
	}{
		{"only introspection: inferred", map[string]string{"OAUTH_INTROSPECTION_ENDPOINT": "https://auth.example.com/introspect", "OAUTH_CLIENT_ID": "rs", "OAUTH_CLIENT_SECRET": "x"}, "introspection"},
		{"introspection and JWKS: auto", map[string]string{"OAUTH_INTROSPECTION_ENDPOINT": "https://auth.example.com/introspect", "OAUTH_CLIENT_ID": "rs", "OAUTH_CLIENT_SECRET": "x", "OAUTH_JWKS_URI": "https://auth.example.com/jwks"}, "auto"},
		{"explicit auto", map[string]string{"OAUTH_VALIDATION": "auto", "OAUTH_CLIENT_ID": "rs", "OAUTH_CLIENT_SECRET_FILE": secret}, "auto"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := loadSeed(tt.env)
			if err != nil {
				t.Fatal(err)
			}
			r := cfg.Resources[0]
			if r.Validation != tt.validation {
				t.Fatalf("validation %q, want %q", r.Validation, tt.validation)
			}
			in := r.Introspection
			if in.Issuer != "https://auth.example.com" || in.CacheTTL.D() != 5*time.Minute || in.AuthMethod != "client_secret_basic" {
				t.Fatalf("defaults %+v", in)
			}
			if tt.env["OAUTH_CLIENT_SECRET_FILE"] != "" && in.ClientSecret != "from-file" {
				t.Fatalf("secret from file: %q", in.ClientSecret)
			}
			if (tt.validation == "introspection") != (len(r.Issuers) == 0) {
				t.Fatalf("issuers %+v for %s", r.Issuers, tt.validation)
			}
		})
	}
}

func TestProviderPresets(t *testing.T) {
	tests := []struct {
		name      string
		env       map[string]string
		issuer    string
		jwks      string
		audiences string
		tokenUse  string
	}{
		{"auth0 adds the issuer's trailing slash",
			map[string]string{"OAUTH_PROVIDER": "auth0", "OAUTH_AUTHORIZATION_SERVER": "https://tenant.us.auth0.com"},
			"https://tenant.us.auth0.com/", "https://tenant.us.auth0.com/.well-known/jwks.json", "https://mcp.example.com/mcp", ""},
		{"okta accepts api://default",
			map[string]string{"OAUTH_PROVIDER": "okta", "OAUTH_AUTHORIZATION_SERVER": "https://org.okta.com/oauth2/default"},
			"https://org.okta.com/oauth2/default", "https://org.okta.com/oauth2/default/v1/keys", "https://mcp.example.com/mcp api://default", ""},
		{"okta with an explicit audience keeps it",
			map[string]string{"OAUTH_PROVIDER": "okta", "OAUTH_AUTHORIZATION_SERVER": "https://org.okta.com/oauth2/aus1", "OAUTH_AUDIENCE": "api://mcp"},
			"https://org.okta.com/oauth2/aus1", "https://org.okta.com/oauth2/aus1/v1/keys", "api://mcp", ""},
		{"cognito requires token_use access",
			map[string]string{"OAUTH_PROVIDER": "cognito", "OAUTH_AUTHORIZATION_SERVER": "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_Abc", "OAUTH_ALLOWED_CLIENT_IDS": "client1,client2"},
			"https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_Abc", "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_Abc/.well-known/jwks.json", "https://mcp.example.com/mcp", "access"},
		{"azure v2 keys",
			map[string]string{"OAUTH_PROVIDER": "azure", "OAUTH_AUTHORIZATION_SERVER": "https://login.microsoftonline.com/tenant-1/v2.0", "OAUTH_AUDIENCE": "api://app,6e74172b-be56-4843-9ff4-e66a39bb12e3"},
			"https://login.microsoftonline.com/tenant-1/v2.0", "https://login.microsoftonline.com/tenant-1/discovery/v2.0/keys", "api://app 6e74172b-be56-4843-9ff4-e66a39bb12e3", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := loadSeed(tt.env)
			if err != nil {
				t.Fatal(err)
			}
			r := cfg.Resources[0]
			is := r.Issuers[0]
			if is.Issuer != tt.issuer || is.JWKSURI != tt.jwks || strings.Join(r.Audiences, " ") != tt.audiences || is.RequireTokenUse != tt.tokenUse {
				t.Fatalf("issuer %q jwks %q audiences %v token_use %q", is.Issuer, is.JWKSURI, r.Audiences, is.RequireTokenUse)
			}
		})
	}
	for name, env := range map[string]map[string]string{
		"OAUTH_ALLOWED_CLIENT_IDS":                                {"OAUTH_PROVIDER": "cognito"},
		"OAUTH_ALLOWED_CLIENT_IDS: required for a Cognito issuer": {"OAUTH_AUTHORIZATION_SERVER": "https://cognito-idp.us-east-1.amazonaws.com/us-east-1_AbC123"},
		"OAUTH_ISSUER":   {"OAUTH_PROVIDER": "azure", "OAUTH_AUTHORIZATION_SERVER": "https://login.example.com/t/v2.0"},
		"OAUTH_PROVIDER": {"OAUTH_PROVIDER": "keycloak"},
	} {
		if _, err := loadSeed(env); err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("want an error naming %s, got %v", name, err)
		}
	}
}

// TestCognitoIssuerRecognized: the seed's Cognito recipe (the pool as the
// authorization server, the app client id as OAUTH_AUDIENCE, no preset)
// gets the cognito preset, with the audience as the accepted client id;
// without a client id it stops start-up saying what to set.
func TestCognitoIssuerRecognized(t *testing.T) {
	const pool = "https://cognito-idp.us-east-1.amazonaws.com/us-east-1_AbC123"
	tests := []struct {
		name      string
		env       map[string]string
		clientIDs string
		err       string
	}{
		{"seed recipe", map[string]string{"OAUTH_AUDIENCE": "7abcdefghijklmnopqrstuvwxy"}, "7abcdefghijklmnopqrstuvwxy", ""},
		{"several app clients", map[string]string{"OAUTH_AUDIENCE": "client1,client2"}, "client1 client2", ""},
		{"client ids win over the audience", map[string]string{"OAUTH_AUDIENCE": "client1", "OAUTH_ALLOWED_CLIENT_IDS": "client3"}, "client3", ""},
		{"explicit preset takes the audience too", map[string]string{"OAUTH_PROVIDER": "cognito", "OAUTH_AUDIENCE": "client1"}, "client1", ""},
		{"no audience", nil, "", "OAUTH_ALLOWED_CLIENT_IDS: required for a Cognito issuer"},
		{"audience is a URL", map[string]string{"OAUTH_AUDIENCE": "https://mcp.example.com/mcp"}, "", "OAUTH_ALLOWED_CLIENT_IDS: required for a Cognito issuer"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := map[string]string{"OAUTH_AUTHORIZATION_SERVER": pool}
			for k, v := range tt.env {
				env[k] = v
			}
			cfg, err := loadSeed(env)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) || strings.Contains(err.Error(), "\n") {
					t.Fatalf("want one line with %q, got %v", tt.err, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			is := cfg.Resources[0].Issuers[0]
			if is.Preset != "cognito" || is.RequireTokenUse != "access" || is.JWKSURI != pool+"/.well-known/jwks.json" ||
				strings.Join(is.Algorithms, ",") != "RS256" || strings.Join(is.ClientIDs, " ") != tt.clientIDs {
				t.Fatalf("issuer %+v", is)
			}
		})
	}
	// Other AWS-looking issuers are left alone.
	cfg, err := loadSeed(map[string]string{"OAUTH_AUTHORIZATION_SERVER": "https://cognito-idp.us-east-1.amazonaws.com.evil.example/pool"})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Resources[0].Issuers[0].Preset != "" {
		t.Fatal("preset applied to a look-alike")
	}
}

func TestLegacyValidationConfig(t *testing.T) {
	dir := t.TempDir()
	keys := filepath.Join(dir, "keys")
	if err := os.WriteFile(keys, []byte("ci 2bb80d537b1da3e38bd30361aa855686bde0eacd7162fef6a25fe97bf527a25b mcp:read\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(dir, "bad")
	if err := os.WriteFile(bad, []byte("ci nothex\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := Load("", envFunc(map[string]string{"OAUTH_RESOURCE": "https://m.example/mcp", "MCP_API_KEYS_FILE": keys}))
	if err != nil || cfg.Resources[0].Validation != "apikey" {
		t.Fatalf("api keys: %v", err)
	}
	cfg, err = Load("", envFunc(map[string]string{"OAUTH_RESOURCE": "https://m.example/mcp", "MCP_JWT_SECRET": strings.Repeat("s", 32)}))
	if err != nil || cfg.Resources[0].Validation != "hmac" {
		t.Fatalf("hmac: %v", err)
	}
	for want, env := range map[string]map[string]string{
		"MCP_API_KEYS_FILE": {"OAUTH_RESOURCE": "https://m.example/mcp", "MCP_API_KEYS_FILE": bad},
		"MCP_JWT_SECRET":    {"OAUTH_RESOURCE": "https://m.example/mcp", "MCP_JWT_SECRET": "short"},
	} {
		if _, err := Load("", envFunc(env)); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("want an error naming %s, got %v", want, err)
		}
	}
}

func TestRedisConfig(t *testing.T) {
	env := seedEnv()
	env["REDIS_URL"] = "rediss://user:pa55@cache.internal:6380/3"
	env["MCP_AUTHZ_CACHE_SECRET"] = strings.Repeat("a", 32) + "," + strings.Repeat("b", 40)
	cfg, err := Load("", envFunc(env))
	if err != nil {
		t.Fatal(err)
	}
	o, err := cfg.Redis.UniversalOptions()
	if err != nil {
		t.Fatal(err)
	}
	if len(o.Addrs) != 1 || o.Addrs[0] != "cache.internal:6380" || o.Username != "user" || o.Password != "pa55" || o.DB != 3 || o.TLSConfig == nil {
		t.Fatalf("options %+v", o)
	}
	if !o.ContextTimeoutEnabled || o.MaxRetries != -1 {
		t.Fatal("cache calls must be bounded by their context")
	}
	if cfg.Redis.Timeout.D() != 10*time.Millisecond || cfg.Redis.L1TTL.D() != 30*time.Second || cfg.Redis.Prefix != "mcp-authz" {
		t.Fatalf("defaults %+v", cfg.Redis)
	}
	if len(cfg.Redis.Secrets) != 2 || len(cfg.Redis.Secrets[1]) != 40 {
		t.Fatalf("verdict secrets %d", len(cfg.Redis.Secrets))
	}
	dir := t.TempDir()
	secretFile := filepath.Join(dir, "secrets")
	if err := os.WriteFile(secretFile, []byte(strings.Repeat("n", 32)+"\r\n\n"+strings.Repeat("o", 33)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "c.yaml")
	yaml := "redis: {addresses: [10.0.0.1:26379, 10.0.0.2:26379], master_name: mymaster, password: x, verdict_secret_file: " + secretFile + "}\n"
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err = Load(path, envFunc(seedEnv()))
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Redis.Secrets) != 2 || string(cfg.Redis.Secrets[0]) != strings.Repeat("n", 32) {
		t.Fatalf("secrets from the file: %q", cfg.Redis.Secrets)
	}
	o, _ = cfg.Redis.UniversalOptions()
	if o.MasterName != "mymaster" || len(o.Addrs) != 2 {
		t.Fatalf("sentinel options %+v", o)
	}
	// go-redis picks Sentinel with a master name, Cluster with several
	// addresses and none.
	if _, ok := redis.NewUniversalClient(o).(*redis.Client); !ok {
		t.Error("master_name does not give a Sentinel-backed client")
	}
	o.MasterName = ""
	if _, ok := redis.NewUniversalClient(o).(*redis.ClusterClient); !ok {
		t.Error("several addresses do not give a Cluster client")
	}
}

// TestVerdictSecretErrors: Redis without a usable secret stops start-up
// with a line naming the setting, never the secret.
func TestVerdictSecretErrors(t *testing.T) {
	short := "too-short-secret-value"
	for name, tc := range map[string]struct {
		env  map[string]string
		want string
	}{
		"missing":      {map[string]string{"REDIS_URL": "redis://127.0.0.1:6379/0"}, "required with Redis"},
		"short":        {map[string]string{"REDIS_URL": "redis://127.0.0.1:6379/0", "MCP_AUTHZ_CACHE_SECRET": short}, "MCP_AUTHZ_CACHE_SECRET: secret 1 of 1 is 22 bytes"},
		"second short": {map[string]string{"REDIS_URL": "redis://127.0.0.1:6379/0", "MCP_AUTHZ_CACHE_SECRET": strings.Repeat("x", 32) + "," + short}, "secret 2 of 2"},
		"both":         {map[string]string{"REDIS_URL": "redis://127.0.0.1:6379/0", "MCP_AUTHZ_CACHE_SECRET": strings.Repeat("x", 32), "MCP_AUTHZ_CACHE_SECRET_FILE": "/nonexistent"}, "not both"},
		"no file":      {map[string]string{"REDIS_URL": "redis://127.0.0.1:6379/0", "MCP_AUTHZ_CACHE_SECRET_FILE": "/nonexistent/secret"}, "MCP_AUTHZ_CACHE_SECRET_FILE"},
	} {
		t.Run(name, func(t *testing.T) {
			env := seedEnv()
			for k, v := range tc.env {
				env[k] = v
			}
			_, err := Load("", envFunc(env))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want %q", err, tc.want)
			}
			if strings.Contains(err.Error(), short) || strings.Contains(err.Error(), "xxxxxxxx") {
				t.Fatalf("error echoes a secret: %v", err)
			}
		})
	}
}

// TestApplyDevEnv: dev reads logging and Redis from the environment through
// the same readers as serve; without a fleet secret Redis gets a random one.
func TestApplyDevEnv(t *testing.T) {
	dev := func(env map[string]string) (*Config, error) {
		c := &Config{Resources: []ResourceConfig{{Resource: "http://127.0.0.1:9192/mcp", AuthorizationServers: []string{"http://127.0.0.1:1"}}}}
		if err := c.ApplyDevEnv(envFunc(env)); err != nil {
			return nil, err
		}
		return c, c.Complete()
	}
	c, err := dev(map[string]string{"REDIS_URL": "redis://127.0.0.1:6379/0", "MCP_ENABLE_FILE_LOGGING": "true", "MCP_LOG_DIRECTORY": "/tmp/x"})
	if err != nil {
		t.Fatal(err)
	}
	if !c.Log.File || c.Log.Directory != "/tmp/x" || len(c.Redis.Secrets) != 1 || len(c.Redis.Secrets[0]) < 32 {
		t.Fatalf("log %+v, secrets %d", c.Log, len(c.Redis.Secrets))
	}
	given := strings.Repeat("g", 40)
	if c, err = dev(map[string]string{"REDIS_URL": "redis://127.0.0.1:6379/0", "MCP_AUTHZ_CACHE_SECRET": given}); err != nil {
		t.Fatal(err)
	}
	if len(c.Redis.Secrets) != 1 || string(c.Redis.Secrets[0]) != given {
		t.Fatal("the given secret was not used")
	}
	if _, err := dev(map[string]string{"MCP_ENABLE_FILE_LOGGING": "maybe"}); err == nil || !strings.Contains(err.Error(), "MCP_ENABLE_FILE_LOGGING") {
		t.Fatalf("bad boolean: %v", err)
	}
}

// TestRedisURLKeepsTheOtherSettings: REDIS_URL (or redis.url) names the
// server; what the URL leaves out (a password from password_file, TLS,
// a username, a database) still comes from the redis section (DESIGN §4:
// Redis with TLS and password; §5: the environment overrides the file,
// it does not erase it). What the URL does give wins.
func TestRedisURLKeepsTheOtherSettings(t *testing.T) {
	dir := t.TempDir()
	pwFile := filepath.Join(dir, "redis-password")
	if err := os.WriteFile(pwFile, []byte("from-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, url, yaml string
		user, password  string
		db              int
		tls             bool
	}{
		{"password_file with a bare URL", "redis://cache.internal:6379", "redis: {password_file: " + pwFile + "}\n", "", "from-file", 0, false},
		{"password with a bare URL", "redis://cache.internal:6379", "redis: {password: p1}\n", "", "p1", 0, false},
		{"username and password", "redis://cache.internal:6379", "redis: {username: app, password: p1}\n", "app", "p1", 0, false},
		{"tls with a redis:// URL", "redis://cache.internal:6379", "redis: {tls: true}\n", "", "", 0, true},
		{"db with a URL without one", "redis://cache.internal:6379", "redis: {db: 4}\n", "", "", 4, false},
		{"the URL's credentials win", "redis://u:from-url@cache.internal:6379/2", "redis: {username: app, password: p1, db: 4}\n", "u", "from-url", 2, false},
		{"rediss:// is TLS", "rediss://cache.internal:6380", "", "", "", 0, true},
		{"URL alone", "redis://cache.internal:6379/3", "", "", "", 3, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := ""
			if tc.yaml != "" {
				path = filepath.Join(t.TempDir(), "c.yaml")
				if err := os.WriteFile(path, []byte(tc.yaml), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			env := seedEnv()
			env["REDIS_URL"] = tc.url
			env["MCP_AUTHZ_CACHE_SECRET"] = strings.Repeat("s", 32)
			cfg, err := Load(path, envFunc(env))
			if err != nil {
				t.Fatal(err)
			}
			o, err := cfg.Redis.UniversalOptions()
			if err != nil {
				t.Fatal(err)
			}
			if len(o.Addrs) != 1 || !strings.HasPrefix(o.Addrs[0], "cache.internal:") {
				t.Errorf("addresses %v", o.Addrs)
			}
			if o.Username != tc.user || o.Password != tc.password || o.DB != tc.db || (o.TLSConfig != nil) != tc.tls {
				t.Errorf("username %q password %q db %d tls %v; want %q %q %d %v",
					o.Username, o.Password, o.DB, o.TLSConfig != nil, tc.user, tc.password, tc.db, tc.tls)
			}
			if o.TLSConfig != nil && o.TLSConfig.MinVersion < tls.VersionTLS12 {
				t.Errorf("TLS minimum version %x", o.TLSConfig.MinVersion)
			}
		})
	}
}

// TestCacheSecretWithoutRedis: REDIS_URL absent (and no redis section)
// means the in-process cache only (DESIGN §5); the verdict secret
// variables, which go with REDIS_URL, do not make Redis required.
func TestCacheSecretWithoutRedis(t *testing.T) {
	secretFile := filepath.Join(t.TempDir(), "secrets")
	if err := os.WriteFile(secretFile, []byte(strings.Repeat("s", 32)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for name, extra := range map[string]map[string]string{
		"MCP_AUTHZ_CACHE_SECRET":      {"MCP_AUTHZ_CACHE_SECRET": strings.Repeat("s", 32)},
		"MCP_AUTHZ_CACHE_SECRET_FILE": {"MCP_AUTHZ_CACHE_SECRET_FILE": secretFile},
		"neither":                     {},
	} {
		t.Run(name, func(t *testing.T) {
			cfg, err := loadSeed(extra)
			if err != nil {
				t.Fatal(err)
			}
			if cfg.Redis != nil {
				t.Fatalf("a Redis tier without REDIS_URL: %+v", cfg.Redis)
			}
		})
	}
	// With REDIS_URL the secret is still required, and used.
	if _, err := loadSeed(map[string]string{"REDIS_URL": "redis://127.0.0.1:6379/0"}); err == nil {
		t.Fatal("Redis without a verdict secret was accepted")
	}
	cfg, err := loadSeed(map[string]string{"REDIS_URL": "redis://127.0.0.1:6379/0", "MCP_AUTHZ_CACHE_SECRET_FILE": secretFile})
	if err != nil || cfg.Redis == nil || len(cfg.Redis.Secrets) != 1 {
		t.Fatalf("REDIS_URL with a secret file: %v", err)
	}
	// A redis section in the file takes the secret from the environment.
	path := filepath.Join(t.TempDir(), "c.yaml")
	if err := os.WriteFile(path, []byte("redis: {addresses: [127.0.0.1:26379], master_name: m}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	env := seedEnv()
	env["MCP_AUTHZ_CACHE_SECRET"] = strings.Repeat("t", 32)
	if cfg, err = Load(path, envFunc(env)); err != nil || string(cfg.Redis.Secrets[0]) != strings.Repeat("t", 32) {
		t.Fatalf("secret for the file's redis section: %v", err)
	}
}

// TestIntrospectionTuningAloneInfersNothing: OAUTH_VALIDATION is inferred
// when unset (DESIGN §5) from what configures a strategy: the
// introspection cache TTL or timeout, which only tune introspection, leave
// a JWT resource a JWT resource (and are still checked).
func TestIntrospectionTuningAloneInfersNothing(t *testing.T) {
	for _, tc := range []struct {
		name       string
		env        map[string]string
		validation string
		ttl        time.Duration // of the introspection section, 0: none
	}{
		{"cache TTL with the issuer", map[string]string{"OAUTH_INTROSPECTION_CACHE_TTL": "300000"}, "jwt", 0},
		{"cache TTL with a JWKS URI", map[string]string{"OAUTH_INTROSPECTION_CACHE_TTL": "60s", "OAUTH_JWKS_URI": "https://auth.example.com/jwks"}, "jwt", 0},
		{"timeout", map[string]string{"OAUTH_INTROSPECTION_TIMEOUT": "2s"}, "jwt", 0},
		{"cache TTL with an endpoint", map[string]string{"OAUTH_INTROSPECTION_CACHE_TTL": "60000", "OAUTH_INTROSPECTION_ENDPOINT": "https://auth.example.com/introspect",
			"OAUTH_CLIENT_ID": "rs", "OAUTH_CLIENT_SECRET": "x"}, "introspection", time.Minute},
		{"cache TTL with client credentials", map[string]string{"OAUTH_INTROSPECTION_CACHE_TTL": "60000", "OAUTH_CLIENT_ID": "rs", "OAUTH_CLIENT_SECRET": "x"}, "introspection", time.Minute},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := loadSeed(tc.env)
			if err != nil {
				t.Fatal(err)
			}
			r := cfg.Resources[0]
			if r.Validation != tc.validation {
				t.Fatalf("validation %q, want %q", r.Validation, tc.validation)
			}
			if (r.Introspection != nil) != (tc.ttl != 0) || (r.Introspection != nil && r.Introspection.CacheTTL.D() != tc.ttl) {
				t.Fatalf("introspection %+v", r.Introspection)
			}
		})
	}
	// A file's introspection section takes them.
	path := filepath.Join(t.TempDir(), "c.yaml")
	yaml := "resources:\n- resource: https://m.example/mcp\n  authorization_servers: [https://as.example]\n  introspection: {client_id: rs, client_secret: x}\n"
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := Load(path, envFunc(map[string]string{"OAUTH_INTROSPECTION_CACHE_TTL": "45s", "OAUTH_INTROSPECTION_TIMEOUT": "500"}))
	if err != nil {
		t.Fatal(err)
	}
	if in := cfg.Resources[0].Introspection; in.CacheTTL.D() != 45*time.Second || in.Timeout.D() != 500*time.Millisecond {
		t.Fatalf("tuning of the file's section: %+v", in)
	}
}

// TestRedisEnvOverridesTheFile: the environment overrides the file
// (DESIGN §5) for Redis too: REDIS_URL replaces the file's Sentinels or
// Cluster nodes, and MCP_AUTHZ_CACHE_SECRET the file's secret file; the
// rest of the section (prefix, password, timeouts) stays.
func TestRedisEnvOverridesTheFile(t *testing.T) {
	dir := t.TempDir()
	secretFile := filepath.Join(dir, "secrets")
	if err := os.WriteFile(secretFile, []byte(strings.Repeat("f", 32)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "c.yaml")
	yaml := "redis: {addresses: [127.0.0.1:26379], master_name: mymaster, prefix: fleet, password: pw, verdict_secret_file: " + secretFile + "}\n" + okResource
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name        string
		env         map[string]string
		wantURL     string
		wantAddrs   int
		wantSecret  string
		wantErrPart string
	}{
		{"the file alone", nil, "", 1, strings.Repeat("f", 32), ""},
		{"REDIS_URL", map[string]string{"REDIS_URL": "redis://127.0.0.1:6380/2"}, "redis://127.0.0.1:6380/2", 0, strings.Repeat("f", 32), ""},
		{"MCP_AUTHZ_CACHE_SECRET", map[string]string{"MCP_AUTHZ_CACHE_SECRET": strings.Repeat("e", 32)}, "", 1, strings.Repeat("e", 32), ""},
		{"both secret variables", map[string]string{"MCP_AUTHZ_CACHE_SECRET": strings.Repeat("e", 32), "MCP_AUTHZ_CACHE_SECRET_FILE": secretFile}, "", 0, "", "not both"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := Load(path, envFunc(tc.env))
			if tc.wantErrPart != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErrPart) {
					t.Fatalf("error %v, want %q", err, tc.wantErrPart)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			r := cfg.Redis
			if r.URL != tc.wantURL || len(r.Addresses) != tc.wantAddrs || len(r.Secrets) != 1 || string(r.Secrets[0]) != tc.wantSecret {
				t.Fatalf("url %q, addresses %v, %d secrets", r.URL, r.Addresses, len(r.Secrets))
			}
			if r.Prefix != "fleet" || r.Password != "pw" {
				t.Fatalf("the rest of the section was lost: prefix %q", r.Prefix)
			}
			if tc.wantURL != "" && r.MasterName != "" {
				t.Fatalf("a URL with a Sentinel master name %q", r.MasterName)
			}
		})
	}
}

// TestGRPCLimitNames: DESIGN §7's gRPC settings, by their names: the
// receive limit defaults to 256 KiB and is set by
// MCP_AUTHZ_GRPC_MAX_RECV_BYTES or grpc.max_recv_bytes; reflection is off
// unless MCP_AUTHZ_GRPC_REFLECTION=true or grpc.reflection.
func TestGRPCLimitNames(t *testing.T) {
	tests := []struct {
		name       string
		env        map[string]string
		yaml       string
		maxRecv    int
		reflection bool
	}{
		{"defaults", nil, "", 256 << 10, false},
		{"environment", map[string]string{"MCP_AUTHZ_GRPC_MAX_RECV_BYTES": "1048576", "MCP_AUTHZ_GRPC_REFLECTION": "true"}, "", 1 << 20, true},
		{"file", nil, "grpc: {max_recv_bytes: 524288, reflection: true}\n", 512 << 10, true},
		{"environment over file", map[string]string{"MCP_AUTHZ_GRPC_MAX_RECV_BYTES": "1048576", "MCP_AUTHZ_GRPC_REFLECTION": "false"},
			"grpc: {max_recv_bytes: 524288, reflection: true}\n", 1 << 20, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := ""
			if tt.yaml != "" {
				path = filepath.Join(t.TempDir(), "c.yaml")
				if err := os.WriteFile(path, []byte(tt.yaml), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			env := seedEnv()
			for k, v := range tt.env {
				env[k] = v
			}
			cfg, err := Load(path, envFunc(env))
			if err != nil {
				t.Fatal(err)
			}
			if cfg.GRPC.MaxRecvBytes != tt.maxRecv || cfg.GRPC.Reflection != tt.reflection {
				t.Fatalf("max_recv_bytes %d, reflection %v; want %d, %v", cfg.GRPC.MaxRecvBytes, cfg.GRPC.Reflection, tt.maxRecv, tt.reflection)
			}
		})
	}
}

// TestMCPPolicyNames: the DESIGN §6 policy by its YAML and environment
// names, with its defaults (both classes protected, unreadable_body deny,
// session_ttl 24h, no origin check).
func TestMCPPolicyNames(t *testing.T) {
	const policyYAML = `
resources:
  - resource: https://mcp.example.com/mcp
    authorization_servers: [https://auth.example.com]
    path_prefixes: [/mcp, /sse, /messages]
    endpoints: {initialize: false, messages: true}
    legacy_sse: {sse_path: /events, messages_path: /msg}
    operations:
      - {method: tools/call, scopes: [mcp:tools]}
      - {method: tools/call, name: "delete_*", scopes: [repo:admin]}
    scope_implies: {mcp:admin: [mcp:tools]}
    unreadable_body: route_scopes
    allowed_origins: [https://app.example.com, "http://localhost:*"]
    session_binding: true
    session_ttl: 2h
`
	tests := []struct {
		name  string
		yaml  string
		env   map[string]string
		check func(t *testing.T, r ResourceConfig)
	}{
		{"defaults", "", nil, func(t *testing.T, r ResourceConfig) {
			if !Protects(r.Endpoints.Initialize) || !Protects(r.Endpoints.Messages) || r.UnreadableBody != "deny" ||
				r.SessionTTL.D() != 24*time.Hour || r.SessionBinding || len(r.AllowedOrigins) != 0 || len(r.Operations) != 0 {
				t.Fatalf("defaults %+v", r)
			}
		}},
		{"yaml", policyYAML, nil, func(t *testing.T, r ResourceConfig) {
			if Protects(r.Endpoints.Initialize) || !Protects(r.Endpoints.Messages) {
				t.Errorf("endpoints %+v", r.Endpoints)
			}
			if strings.Join(r.Prefixes(), " ") != "/mcp /sse /messages" || r.LegacySSE.SSEPath != "/events" || r.LegacySSE.MessagesPath != "/msg" {
				t.Errorf("paths %v %+v", r.Prefixes(), r.LegacySSE)
			}
			if len(r.Operations) != 2 || r.Operations[1].Method != "tools/call" || r.Operations[1].Name != "delete_*" || r.Operations[1].Scopes[0] != "repo:admin" {
				t.Errorf("operations %+v", r.Operations)
			}
			if strings.Join(r.ScopeImplies["mcp:admin"], " ") != "mcp:tools" || r.UnreadableBody != "route_scopes" {
				t.Errorf("scope_implies %v, unreadable_body %q", r.ScopeImplies, r.UnreadableBody)
			}
			if strings.Join(r.AllowedOrigins, " ") != "https://app.example.com http://localhost:*" || !r.SessionBinding || r.SessionTTL.D() != 2*time.Hour {
				t.Errorf("origins %v, session %v %v", r.AllowedOrigins, r.SessionBinding, r.SessionTTL.D())
			}
		}},
		{"environment", "", map[string]string{
			"OAUTH_PROTECT_INITIALIZE":  "false",
			"OAUTH_PROTECT_MESSAGES":    "false",
			"MCP_AUTHZ_ALLOWED_ORIGINS": "https://app.example.com, http://localhost:*",
		}, func(t *testing.T, r ResourceConfig) {
			if Protects(r.Endpoints.Initialize) || Protects(r.Endpoints.Messages) {
				t.Errorf("endpoints %+v", r.Endpoints)
			}
			if strings.Join(r.AllowedOrigins, " ") != "https://app.example.com http://localhost:*" {
				t.Errorf("origins %q", r.AllowedOrigins)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := ""
			env := map[string]string{}
			if tt.yaml != "" {
				path = filepath.Join(t.TempDir(), "c.yaml")
				if err := os.WriteFile(path, []byte(tt.yaml), 0o600); err != nil {
					t.Fatal(err)
				}
			} else {
				env = seedEnv()
			}
			for k, v := range tt.env {
				env[k] = v
			}
			cfg, err := Load(path, envFunc(env))
			if err != nil {
				t.Fatal(err)
			}
			tt.check(t, cfg.Resources[0])
		})
	}
}
