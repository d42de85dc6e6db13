package config

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// designEnv is every variable DESIGN §5, §7, §8 and §9 name for the
// service and the single-resource form.
var designEnv = []string{
	"MCP_AUTHZ_GRPC_ADDR", "MCP_AUTHZ_HTTP_ADDR", "MCP_AUTHZ_FORWARD_ADDR",
	"OAUTH_RESOURCE", "OAUTH_AUTHORIZATION_SERVER", "OAUTH_JWKS_URI", "OAUTH_AUDIENCE", "OAUTH_ISSUER",
	"OAUTH_ALGORITHMS", "OAUTH_INTROSPECTION_ENDPOINT", "OAUTH_CLIENT_ID", "OAUTH_CLIENT_SECRET",
	"OAUTH_VALIDATION", "OAUTH_JWKS_CACHE_TTL", "OAUTH_INTROSPECTION_CACHE_TTL", "OAUTH_SCOPES_SUPPORTED",
	"OAUTH_REQUIRED_SCOPES", "REDIS_URL", "MCP_DEBUG_CONSOLE", "MCP_ENABLE_FILE_LOGGING", "MCP_LOG_DIRECTORY",
	"MCP_AUTHZ_CACHE_SECRET", "MCP_AUTHZ_CACHE_SECRET_FILE", "OAUTH_PROTECT_INITIALIZE", "OAUTH_PROTECT_MESSAGES",
	"MCP_AUTHZ_ALLOWED_ORIGINS", "MCP_AUTHZ_GRPC_MAX_RECV_BYTES", "MCP_AUTHZ_GRPC_REFLECTION",
	"MCP_AUTHZ_GRPC_TLS_CERT_FILE", "MCP_AUTHZ_GRPC_TLS_KEY_FILE", "MCP_AUTHZ_GRPC_TLS_CLIENT_CA_FILE",
}

// TestDesignVariablesAreRead: Load reads every variable the design names.
func TestDesignVariablesAreRead(t *testing.T) {
	read := EnvironmentVariables()
	for _, n := range designEnv {
		if !slices.Contains(read, n) {
			t.Errorf("%s is not read", n)
		}
	}
}

// TestEnvironmentOverridesEachFileField: for each variable, the file sets
// its field one way and the environment another; the environment wins
// (DESIGN §5), in the parsing the design gives it (lists comma-separated,
// durations in Go syntax or milliseconds, booleans).
func TestEnvironmentOverridesEachFileField(t *testing.T) {
	const resource = "resources:\n- resource: https://file.example/mcp\n  authorization_servers: [https://as-file.example]\n"
	const issuer = resource + "  issuers: [{issuer: https://as-file.example, jwks_uri: https://as-file.example/keys, algorithms: [ES256], jwks_cache_ttl: 1h}]\n"
	const introspection = resource + "  validation: introspection\n  introspection: {endpoint: https://as-file.example/introspect, client_id: file-id, client_secret: file-secret, cache_ttl: 1h}\n"
	secret := strings.Repeat("e", 32)
	dir := t.TempDir()
	fileSecret := filepath.Join(dir, "file-secret")
	envSecret := filepath.Join(dir, "env-secret")
	for p, v := range map[string]string{fileSecret: strings.Repeat("f", 32), envSecret: strings.Repeat("g", 32)} {
		if err := os.WriteFile(p, []byte(v+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		env, value, yaml string
		got              func(c *Config) any
		want             any
	}{
		{"MCP_AUTHZ_GRPC_ADDR", "127.0.0.1:7001", "grpc_addr: 127.0.0.1:7000\n" + resource, func(c *Config) any { return c.GRPCAddr }, "127.0.0.1:7001"},
		{"MCP_AUTHZ_HTTP_ADDR", "127.0.0.1:7003", "http_addr: 127.0.0.1:7002\n" + resource, func(c *Config) any { return c.HTTPAddr }, "127.0.0.1:7003"},
		{"MCP_AUTHZ_FORWARD_ADDR", "127.0.0.1:7005", "forward_addr: 127.0.0.1:7004\n" + resource, func(c *Config) any { return c.ForwardAddr }, "127.0.0.1:7005"},
		{"OAUTH_RESOURCE", "https://env.example/mcp", resource, func(c *Config) any { return c.Resources[0].Resource }, "https://env.example/mcp"},
		{"OAUTH_AUTHORIZATION_SERVER", "https://as1.example, https://as2.example", resource,
			func(c *Config) any { return strings.Join(c.Resources[0].AuthorizationServers, " ") }, "https://as1.example https://as2.example"},
		{"OAUTH_AUDIENCE", "api://a,api://b", resource + "  audiences: [api://file]\n", func(c *Config) any { return strings.Join(c.Resources[0].Audiences, " ") }, "api://a api://b"},
		{"OAUTH_ISSUER", "https://as-env.example", issuer, func(c *Config) any { return c.Resources[0].Issuers[0].Issuer }, "https://as-env.example"},
		{"OAUTH_JWKS_URI", "https://as-file.example/env-keys", issuer, func(c *Config) any { return c.Resources[0].Issuers[0].JWKSURI }, "https://as-file.example/env-keys"},
		{"OAUTH_ALGORITHMS", "RS256,PS256", issuer, func(c *Config) any { return strings.Join(c.Resources[0].Issuers[0].Algorithms, " ") }, "RS256 PS256"},
		{"OAUTH_JWKS_CACHE_TTL", "120000", issuer, func(c *Config) any { return c.Resources[0].Issuers[0].JWKSCacheTTL.D() }, 2 * time.Minute},
		{"OAUTH_JWKS_CACHE_TTL", "90s", issuer, func(c *Config) any { return c.Resources[0].Issuers[0].JWKSCacheTTL.D() }, 90 * time.Second},
		{"OAUTH_INTROSPECTION_ENDPOINT", "https://as-file.example/env-introspect", introspection,
			func(c *Config) any { return c.Resources[0].Introspection.Endpoint }, "https://as-file.example/env-introspect"},
		{"OAUTH_CLIENT_ID", "env-id", introspection, func(c *Config) any { return c.Resources[0].Introspection.ClientID }, "env-id"},
		{"OAUTH_CLIENT_SECRET", "env-secret", introspection, func(c *Config) any { return c.Resources[0].Introspection.ClientSecret }, "env-secret"},
		{"OAUTH_INTROSPECTION_CACHE_TTL", "30000", introspection, func(c *Config) any { return c.Resources[0].Introspection.CacheTTL.D() }, 30 * time.Second},
		{"OAUTH_VALIDATION", "jwt", introspection, func(c *Config) any { return c.Resources[0].Validation }, "jwt"},
		{"OAUTH_SCOPES_SUPPORTED", "a,b", resource + "  scopes_supported: [c]\n", func(c *Config) any { return strings.Join(c.Resources[0].ScopesSupported, " ") }, "a b"},
		{"OAUTH_REQUIRED_SCOPES", "a", resource + "  required_scopes: [c]\n", func(c *Config) any { return strings.Join(c.Resources[0].RequiredScopes, " ") }, "a"},
		{"OAUTH_PROTECT_INITIALIZE", "false", resource + "  endpoints: {initialize: true}\n", func(c *Config) any { return Protects(c.Resources[0].Endpoints.Initialize) }, false},
		{"OAUTH_PROTECT_MESSAGES", "true", resource + "  endpoints: {messages: false}\n", func(c *Config) any { return Protects(c.Resources[0].Endpoints.Messages) }, true},
		{"MCP_AUTHZ_ALLOWED_ORIGINS", "https://a.example,http://localhost:*", resource + "  allowed_origins: [https://file.example]\n",
			func(c *Config) any { return strings.Join(c.Resources[0].AllowedOrigins, " ") }, "https://a.example http://localhost:*"},
		{"REDIS_URL", "redis://127.0.0.1:6380/1", "redis: {url: redis://127.0.0.1:6379/0, verdict_secret_file: " + fileSecret + "}\n" + resource,
			func(c *Config) any { return c.Redis.URL }, "redis://127.0.0.1:6380/1"},
		{"MCP_AUTHZ_CACHE_SECRET_FILE", envSecret, "redis: {url: redis://127.0.0.1:6379/0, verdict_secret_file: " + fileSecret + "}\n" + resource,
			func(c *Config) any { return string(c.Redis.Secrets[0]) }, strings.Repeat("g", 32)},
		{"MCP_AUTHZ_CACHE_SECRET", secret, "redis: {url: redis://127.0.0.1:6379/0}\n" + resource, func(c *Config) any { return string(c.Redis.Secrets[0]) }, secret},
		{"MCP_DEBUG_CONSOLE", "true", "log: {level: error}\n" + resource, func(c *Config) any { return c.Log.Level }, "debug"},
		{"MCP_ENABLE_FILE_LOGGING", "true", "log: {file: false}\n" + resource, func(c *Config) any { return c.Log.File }, true},
		{"MCP_LOG_DIRECTORY", "/var/log/env", "log: {directory: /var/log/file}\n" + resource, func(c *Config) any { return c.Log.Directory }, "/var/log/env"},
		{"MCP_AUTHZ_GRPC_MAX_RECV_BYTES", "524288", "grpc: {max_recv_bytes: 1024}\n" + resource, func(c *Config) any { return c.GRPC.MaxRecvBytes }, 524288},
		{"MCP_AUTHZ_GRPC_REFLECTION", "true", "grpc: {reflection: false}\n" + resource, func(c *Config) any { return c.GRPC.Reflection }, true},
	}
	for _, tc := range tests {
		t.Run(tc.env+"="+tc.value, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "c.yaml")
			if err := os.WriteFile(path, []byte(tc.yaml), 0o600); err != nil {
				t.Fatal(err)
			}
			cfg, err := Load(path, envFunc(map[string]string{tc.env: tc.value}))
			if err != nil {
				t.Fatal(err)
			}
			if got := tc.got(cfg); fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Fatalf("%s over the file: %v, want %v", tc.env, got, tc.want)
			}
		})
	}
	// The TLS files are loaded at validation: with the environment's
	// (valid) files, a file naming missing ones loads.
	cert, key := selfSigned(t)
	for _, tc := range []struct{ env, field, value string }{
		{"MCP_AUTHZ_GRPC_TLS_CERT_FILE", "cert_file", cert},
		{"MCP_AUTHZ_GRPC_TLS_KEY_FILE", "key_file", key},
		{"MCP_AUTHZ_GRPC_TLS_CLIENT_CA_FILE", "client_ca_file", cert},
	} {
		t.Run(tc.env, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "c.yaml")
			files := map[string]string{"cert_file": cert, "key_file": key}
			files[tc.field] = "/nonexistent/from-file"
			var parts []string
			for f, v := range files {
				parts = append(parts, f+": "+v)
			}
			yaml := "grpc: {tls: {" + strings.Join(parts, ", ") + "}}\n" + resource
			if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
				t.Fatal(err)
			}
			cfg, err := Load(path, envFunc(map[string]string{tc.env: tc.value}))
			if err != nil {
				t.Fatal(err)
			}
			got := map[string]string{"cert_file": cfg.GRPC.TLS.CertFile, "key_file": cfg.GRPC.TLS.KeyFile, "client_ca_file": cfg.GRPC.TLS.ClientCAFile}
			if got[tc.field] != tc.value {
				t.Fatalf("grpc.tls.%s = %q, want %q", tc.field, got[tc.field], tc.value)
			}
		})
	}
}

// selfSigned writes a self-signed certificate and its key.
func selfSigned(t *testing.T) (certFile, keyFile string) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "mcp-authz"}, NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}
