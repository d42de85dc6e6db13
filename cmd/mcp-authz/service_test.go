package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc/codes"

	"github.com/mcp-authz/mcp-authz/config"
)

// introspectionServer answers active for one token.
func introspectionServer(t *testing.T, token, subject string) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = r.ParseForm()
		if r.PostForm.Get("token") != token {
			fmt.Fprint(w, `{"active":false}`)
			return
		}
		fmt.Fprintf(w, `{"active":true,"aud":"https://m.example/mcp","sub":%q,"exp":%d}`, subject, time.Now().Add(time.Hour).Unix())
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

// TestServiceWithTwoIntrospectionServers wires a resource that trusts two
// authorization servers for opaque tokens, from YAML, and decides with it.
func TestServiceWithTwoIntrospectionServers(t *testing.T) {
	a := introspectionServer(t, "token-from-a", "alice")
	b := introspectionServer(t, "token-from-b", "bob")
	yaml := fmt.Sprintf(`
resources:
  - resource: https://m.example/mcp
    authorization_servers: [%[1]s, %[2]s]
    issuers:
      - issuer: %[1]s
        introspection: {endpoint: %[1]s/introspect, client_id: rs, client_secret: s1}
      - issuer: %[2]s
        introspection: {endpoint: %[2]s/introspect, client_id: rs, client_secret: s2}
`, a, b)
	path := filepath.Join(t.TempDir(), "c.yaml")
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path, func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Resources[0].Validation != "introspection" {
		t.Fatalf("validation %q", cfg.Resources[0].Validation)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	svc, err := newService(ctx, cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	check := func(tok string) *authv3.CheckResponse {
		req := &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{
			Http: &authv3.AttributeContext_HttpRequest{Host: "m.example", Path: "/mcp", Headers: map[string]string{"authorization": "Bearer " + tok}},
		}}}
		resp, err := svc.current().authz.Check(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	for tok, sub := range map[string]string{"token-from-a": "alice", "token-from-b": "bob"} {
		resp := check(tok)
		if codes.Code(resp.GetStatus().GetCode()) != codes.OK || resp.GetDynamicMetadata().GetFields()["sub"].GetStringValue() != sub {
			t.Fatalf("%s: %v", tok, resp)
		}
	}
	if resp := check("token-from-nowhere"); resp.GetDeniedResponse().GetStatus().GetCode() != 401 {
		t.Fatalf("unknown token: %v", resp)
	}
}
