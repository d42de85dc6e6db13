package e2e

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"google.golang.org/grpc/codes"
)

// TestAPIKeys runs the binary with the seed's migration path: static API
// keys, stored as digests in a mounted file.
func TestAPIKeys(t *testing.T) {
	sum := sha256.Sum256([]byte("key-123-abc"))
	file := filepath.Join(t.TempDir(), "api-keys")
	content := "# name sha256 scopes\nci " + hex.EncodeToString(sum[:]) + " mcp:read\n"
	if err := os.WriteFile(file, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	p := startAuthz(t, map[string]string{
		"OAUTH_RESOURCE":        resource,
		"MCP_API_KEYS_FILE":     file,
		"OAUTH_REQUIRED_SCOPES": "mcp:read",
	}, true)
	for _, tt := range []struct {
		name    string
		headers map[string]string
		ok      bool
		www     string
	}{
		{"X-API-Key", map[string]string{"x-api-key": "key-123-abc"}, true, ""},
		{"Authorization: ApiKey", map[string]string{"authorization": "ApiKey key-123-abc"}, true, ""},
		{"wrong key", map[string]string{"x-api-key": "key-123-abd"}, false, `ApiKey header="X-API-Key", error="invalid_key", error_description="Invalid API key", scope="mcp:read"`},
		{"no key", nil, false, `ApiKey header="X-API-Key", scope="mcp:read"`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			resp := p.check(t, envoyCheck("POST", "/mcp", tt.headers))
			if got := codes.Code(resp.GetStatus().GetCode()) == codes.OK; got != tt.ok {
				t.Fatalf("allowed=%v: %v", got, resp.GetDeniedResponse())
			}
			if !tt.ok && deniedHeader(resp, "www-authenticate") != tt.www {
				t.Fatalf("WWW-Authenticate %q", deniedHeader(resp, "www-authenticate"))
			}
		})
	}
	if strings.Contains(p.logs.String(), "key-123") {
		t.Fatal("an API key reached the logs")
	}
}

// TestSharedSecretJWT runs the binary with HS256 tokens signed by a shared
// secret, requiring exp where the seed did not.
func TestSharedSecretJWT(t *testing.T) {
	secret := "a-shared-secret-of-at-least-32-bytes!"
	p := startAuthz(t, map[string]string{"OAUTH_RESOURCE": resource, "MCP_JWT_SECRET": secret}, true)
	sign := func(c jwt.MapClaims) string {
		s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString([]byte(secret))
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	ok := sign(jwt.MapClaims{"sub": "svc", "exp": time.Now().Add(time.Hour).Unix()})
	if r := p.check(t, envoyCheck("POST", "/mcp", map[string]string{"authorization": "Bearer " + ok})); codes.Code(r.GetStatus().GetCode()) != codes.OK {
		t.Fatalf("valid HS256 token denied: %v", r.GetDeniedResponse())
	}
	noExp := sign(jwt.MapClaims{"sub": "svc"})
	r := p.check(t, envoyCheck("POST", "/mcp", map[string]string{"authorization": "Bearer " + noExp}))
	if !strings.Contains(deniedHeader(r, "www-authenticate"), `error_description="Token has no expiry"`) {
		t.Fatalf("token without exp: %v", r.GetDeniedResponse())
	}
}
