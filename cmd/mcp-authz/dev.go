package main

import (
	"crypto/rand"
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/mcp-authz/mcp-authz/config"
	"github.com/mcp-authz/mcp-authz/internal/devissuer"
)

// devCmd runs the service against an embedded development issuer, all on
// loopback, and prints a ready token and check commands.
func devCmd(args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("dev", flag.ContinueOnError)
	fs.SetOutput(stderr)
	grpcAddr := fs.String("grpc-addr", envOr(getenv, "MCP_AUTHZ_GRPC_ADDR", "127.0.0.1:9191"), "gRPC listen address")
	httpAddr := fs.String("http-addr", envOr(getenv, "MCP_AUTHZ_HTTP_ADDR", "127.0.0.1:9192"), "HTTP side server listen address")
	issuerAddr := fs.String("issuer-addr", "127.0.0.1:0", "development issuer listen address (loopback only)")
	if err := fs.Parse(args); err != nil {
		return 2
	}

	secret := make([]byte, 16)
	_, _ = rand.Read(secret)
	const clientID = "mcp-dev-client"
	clientSecret := hex.EncodeToString(secret)
	resource := "http://" + *httpAddr + "/mcp"
	if strings.HasPrefix(*httpAddr, ":") {
		resource = "http://127.0.0.1" + *httpAddr + "/mcp"
	}
	scopes := []string{"mcp:read", "mcp:write"}
	iss, err := devissuer.Start(devissuer.Config{
		Addr:            *issuerAddr,
		Clients:         map[string]string{clientID: clientSecret},
		DefaultScopes:   scopes,
		DefaultAudience: resource,
	})
	if err != nil {
		fmt.Fprintf(stderr, "mcp-authz dev: %v\n", err)
		return 1
	}
	defer iss.Close()

	cfg := &config.Config{
		GRPCAddr: *grpcAddr,
		HTTPAddr: *httpAddr,
		Log:      config.LogConfig{Level: "info", Format: "text"},
		GRPC:     config.GRPCConfig{Reflection: true},
		Resources: []config.ResourceConfig{{
			Resource:             resource,
			ResourceName:         "mcp-authz development resource",
			AuthorizationServers: []string{iss.URL},
			ScopesSupported:      scopes,
			RequiredScopes:       []string{"mcp:read"},
		}},
	}
	if getenv("MCP_DEBUG_CONSOLE") == "true" {
		cfg.Log.Level = "debug"
	}
	// The seed's file logging: a copy of the log in MCP_LOG_DIRECTORY
	// (default ./logs)/mcp-authz.log.
	if v := strings.TrimSpace(getenv("MCP_ENABLE_FILE_LOGGING")); v != "" {
		on, err := strconv.ParseBool(v)
		if err != nil {
			fmt.Fprintf(stderr, "mcp-authz dev: config: MCP_ENABLE_FILE_LOGGING: %q is not a boolean (true/false)\n", v)
			return 2
		}
		cfg.Log.File = on
	}
	cfg.Log.Directory = strings.TrimSpace(getenv("MCP_LOG_DIRECTORY"))
	if u := getenv("REDIS_URL"); u != "" {
		// dev is one process: an ephemeral verdict secret serves unless the
		// fleet's is given.
		secret := getenv("MCP_AUTHZ_CACHE_SECRET")
		if secret == "" {
			b := make([]byte, 32)
			_, _ = rand.Read(b)
			secret = hex.EncodeToString(b)
		}
		cfg.Redis = &config.RedisConfig{URL: u}
		cfg.Redis.Secrets = [][]byte{[]byte(secret)}
	}
	if err := cfg.Complete(); err != nil {
		fmt.Fprintf(stderr, "mcp-authz dev: config: %v\n", err)
		return 2
	}
	return runService(cfg, stderr, "mcp-authz dev", func(svc *service) error {
		token, err := iss.Issue(devissuer.TokenRequest{Subject: "dev-user", ClientID: clientID})
		if err != nil {
			return err
		}
		self := selfCommand()
		grpcTarget := svc.grpcLn.Addr().String()
		fmt.Fprintf(stdout, `mcp-authz dev: everything below runs on loopback and ends with this process.

  ext_authz (gRPC)    %s
  protected resource  %s   (requires scope mcp:read)
  resource metadata   http://%s/.well-known/oauth-protected-resource/mcp
  dev issuer          %s   (client %s, secret %s)

Access token (1h, scopes %q):
%s

Try it from another terminal:
  curl -s http://%s/.well-known/oauth-protected-resource/mcp
  %s check --addr %s %s
  %s check --addr %s %s -H 'Authorization: Bearer %s'

New tokens:
  curl -s -u %s:%s -d grant_type=client_credentials -d resource=%s %s

`, grpcTarget, resource, svc.httpLn.Addr(), iss.URL, clientID, clientSecret,
			strings.Join(scopes, " "), token,
			svc.httpLn.Addr(),
			self, grpcTarget, resource,
			self, grpcTarget, resource, token,
			clientID, clientSecret, resource, iss.TokenURL())
		return nil
	})
}

func envOr(getenv func(string) string, name, def string) string {
	if v := getenv(name); v != "" {
		return v
	}
	return def
}

// selfCommand is how the user can invoke this binary again: "go run" builds
// into a temporary directory that will not exist later.
func selfCommand() string {
	exe := os.Args[0]
	if strings.Contains(exe, "go-build") {
		return "go run ./cmd/mcp-authz"
	}
	return exe
}
