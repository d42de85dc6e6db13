package main

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mcp-authz/mcp-authz/authz"
	"github.com/mcp-authz/mcp-authz/config"
)

// TestForwardListenerLimits: the forward-auth listener is bounded like the
// side server (DESIGN §7), with room for a 16 KiB token in its headers and
// for the body Envoy's http_service may send.
func TestForwardListenerLimits(t *testing.T) {
	hs := newSideServer(http.NotFoundHandler(), forwardLimits, slog.New(slog.DiscardHandler))
	if hs.ReadHeaderTimeout != 5*time.Second || hs.ReadTimeout != 10*time.Second || hs.WriteTimeout != 10*time.Second ||
		hs.IdleTimeout != 60*time.Second || forwardLimits.body != authz.ForwardMaxBody+1 || forwardMaxHeaderBytes < 32<<10 {
		t.Fatalf("limits %+v, headers %d", forwardLimits, forwardMaxHeaderBytes)
	}
}

// TestForwardListenerInUseNamesWhatToChange: a forward-auth address in
// use stops start-up with one line naming what set it, as the gRPC and
// HTTP listeners do (DESIGN §9: MCP_AUTHZ_FORWARD_ADDR, YAML forward_addr).
func TestForwardListenerInUseNamesWhatToChange(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	a := introspectionServer(t, "x", "y")
	env := map[string]string{
		"OAUTH_RESOURCE": "https://m.example/mcp", "OAUTH_AUTHORIZATION_SERVER": a,
		"OAUTH_INTROSPECTION_ENDPOINT": a + "/introspect", "OAUTH_CLIENT_ID": "rs", "OAUTH_CLIENT_SECRET": "s",
		"MCP_AUTHZ_GRPC_ADDR": "127.0.0.1:0", "MCP_AUTHZ_HTTP_ADDR": "127.0.0.1:0",
	}
	yamlPath := filepath.Join(t.TempDir(), "c.yaml")
	if err := os.WriteFile(yamlPath, []byte("forward_addr: "+busy.Addr().String()+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, path, env, want string
	}{
		{"by the variable", "", busy.Addr().String(), "MCP_AUTHZ_FORWARD_ADDR: "},
		{"by the file", yamlPath, "", "MCP_AUTHZ_FORWARD_ADDR / forward_addr: "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := map[string]string{"MCP_AUTHZ_FORWARD_ADDR": tc.env}
			for k, v := range env {
				e[k] = v
			}
			cfg, err := config.Load(tc.path, func(k string) string { return e[k] })
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			svc, err := newService(ctx, cfg, slog.New(slog.DiscardHandler))
			if err != nil {
				t.Fatal(err)
			}
			err = svc.listen()
			if err == nil {
				t.Fatal("listened on a port in use")
			}
			_ = svc.grpcLn.Close()
			_ = svc.httpLn.Close()
			msg := err.Error()
			if !strings.HasPrefix(msg, tc.want) || !strings.Contains(msg, "address already in use") || strings.Contains(msg, "\n") {
				t.Fatalf("%q, want one line starting %q", msg, tc.want)
			}
		})
	}
}
