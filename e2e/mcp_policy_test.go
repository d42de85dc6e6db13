package e2e

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc/codes"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"
)

// writeConfig writes a YAML configuration for one test.
func writeConfig(t *testing.T, yaml string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// mcpCheck is a streamable HTTP request as Envoy sends it with
// with_request_body (pack_as_bytes).
func mcpCheck(method, body string, headers map[string]string) *authv3.CheckRequest {
	req := envoyCheck(method, "/mcp", headers)
	if body != "" {
		req.Attributes.Request.Http.RawBody = []byte(body)
	}
	return req
}

func toolCall(name string) string {
	return fmt.Sprintf(`{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":%q,"arguments":{}}}`, name)
}

// TestMCPPolicy: per-endpoint auth, per-tool scopes with the step-up
// challenge, Origin and session binding, with real tokens from
// oidc-provider (mcp:write stands for "may call tools", mcp:admin for
// "may call delete_* tools").
func TestMCPPolicy(t *testing.T) {
	cfg := writeConfig(t, fmt.Sprintf(`
resources:
  - name: tools
    resource: %[1]s
    authorization_servers: [%[2]s]
    scopes_supported: [mcp:read, mcp:write, mcp:admin]
    required_scopes: [mcp:read]
    path_prefixes: [/mcp, /sse, /messages]
    endpoints: {initialize: false, messages: true}
    operations:
      - {method: tools/call, scopes: [mcp:write]}
      - {method: tools/call, name: "delete_*", scopes: [mcp:admin]}
    session_binding: true
    allowed_origins: ["https://app.example.com", "http://localhost:*"]
    issuers: [{issuer: %[2]s, algorithms: [RS256, ES256]}]
`, resource, issuer))
	p := startAuthz(t, nil, true, "serve", "--config", cfg)
	writer := token(t, "rs-client", "mcp:read mcp:write", resource)
	admin := token(t, "rs-client", "mcp:read mcp:write mcp:admin", resource)
	other := token(t, "es-client", "mcp:read mcp:write mcp:admin", resource)
	bearer := func(tok string, extra ...string) map[string]string {
		h := map[string]string{"authorization": "Bearer " + tok}
		for i := 0; i+1 < len(extra); i += 2 {
			h[extra[i]] = extra[i+1]
		}
		return h
	}
	allowed := func(resp *authv3.CheckResponse) bool { return codes.Code(resp.GetStatus().GetCode()) == codes.OK }

	t.Run("initialize: false lets initialize through without a token", func(t *testing.T) {
		resp := p.check(t, mcpCheck("POST", `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{}}`, map[string]string{"x-mcp-auth-subject": "forged"}))
		if !allowed(resp) {
			t.Fatalf("denied: %v", resp.GetDeniedResponse())
		}
		for _, h := range resp.GetOkResponse().GetHeaders() {
			if strings.HasPrefix(h.GetHeader().GetKey(), "x-mcp-auth-") {
				t.Fatalf("identity forwarded without credentials: %v", h)
			}
		}
	})
	t.Run("tools/call still needs a token", func(t *testing.T) {
		resp := p.check(t, mcpCheck("POST", toolCall("echo"), map[string]string{"mcp-session-id": "s-anon"}))
		if resp.GetDeniedResponse().GetStatus().GetCode() != 401 {
			t.Fatalf("got %v", resp)
		}
	})
	t.Run("a tool that needs more: 403 step-up challenge naming every scope", func(t *testing.T) {
		resp := p.check(t, mcpCheck("POST", toolCall("delete_repo"), bearer(writer)))
		if resp.GetDeniedResponse().GetStatus().GetCode() != 403 {
			t.Fatalf("got %v", resp)
		}
		want := `Bearer error="insufficient_scope", scope="mcp:read mcp:write mcp:admin", resource_metadata="https://mcp.example.com/.well-known/oauth-protected-resource/mcp"`
		if got := deniedHeader(resp, "www-authenticate"); got != want {
			t.Fatalf("challenge\n got %s\nwant %s", got, want)
		}
	})
	t.Run("the same token may call other tools", func(t *testing.T) {
		if resp := p.check(t, mcpCheck("POST", toolCall("echo"), bearer(writer))); !allowed(resp) {
			t.Fatalf("denied: %v", resp.GetDeniedResponse())
		}
	})
	t.Run("a token with both scopes passes, and the tool is named upstream", func(t *testing.T) {
		resp := p.check(t, mcpCheck("POST", toolCall("delete_repo"), bearer(admin)))
		if !allowed(resp) {
			t.Fatalf("denied: %v", resp.GetDeniedResponse())
		}
		hdr := map[string]string{}
		for _, h := range resp.GetOkResponse().GetHeaders() {
			hdr[h.GetHeader().GetKey()] = h.GetHeader().GetValue()
		}
		if hdr["x-mcp-auth-tool"] != "delete_repo" || hdr["x-mcp-auth-method"] != "tools/call" || hdr["x-mcp-auth-resource"] != resource {
			t.Fatalf("identity %v", hdr)
		}
	})
	t.Run("a session bound to one client is refused to another", func(t *testing.T) {
		if resp := p.check(t, mcpCheck("POST", toolCall("echo"), bearer(admin, "mcp-session-id", "sess-rs"))); !allowed(resp) {
			t.Fatalf("binding request denied: %v", resp.GetDeniedResponse())
		}
		resp := p.check(t, mcpCheck("POST", toolCall("echo"), bearer(other, "mcp-session-id", "sess-rs")))
		if resp.GetDeniedResponse().GetStatus().GetCode() != 403 || !strings.Contains(resp.GetDeniedResponse().GetBody(), "session_mismatch") {
			t.Fatalf("replayed session: %v", resp)
		}
		if deniedHeader(resp, "www-authenticate") != "" {
			t.Fatal("session mismatch carries a challenge")
		}
		if resp := p.check(t, mcpCheck("GET", "", bearer(writer, "mcp-session-id", "sess-rs"))); !allowed(resp) {
			t.Fatalf("the binding principal's other token refused: %v", resp.GetDeniedResponse())
		}
	})
	t.Run("a foreign Origin is refused before any token work", func(t *testing.T) {
		resp := p.check(t, mcpCheck("POST", toolCall("echo"), bearer(admin, "origin", "https://evil.example")))
		if resp.GetDeniedResponse().GetStatus().GetCode() != 403 || !strings.Contains(resp.GetDeniedResponse().GetBody(), "invalid_origin") {
			t.Fatalf("got %v", resp)
		}
		resp = p.check(t, mcpCheck("POST", toolCall("echo"), map[string]string{"origin": "http://localhost:6274"}))
		if resp.GetDeniedResponse().GetStatus().GetCode() != 401 || deniedHeader(resp, "access-control-allow-origin") != "http://localhost:6274" {
			t.Fatalf("allowed origin without a token: %v", resp)
		}
	})
	t.Run("reflection is off outside dev", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		stream, err := reflectionpb.NewServerReflectionClient(p.conn).ServerReflectionInfo(ctx)
		if err == nil {
			// Send reports io.EOF when the server has already ended the
			// stream; its status comes with Recv.
			if err = stream.Send(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}}); err == nil || errors.Is(err, io.EOF) {
				_, err = stream.Recv()
			}
		}
		if status.Code(err) != codes.Unimplemented {
			t.Fatalf("reflection answered: %v", err)
		}
	})
}
