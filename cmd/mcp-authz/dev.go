package main

import (
	"crypto/rand"
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"strings"

	"github.com/mcp-authz/mcp-authz/config"
	"github.com/mcp-authz/mcp-authz/internal/devissuer"
	"github.com/mcp-authz/mcp-authz/validators"
)

// devResource is the name of dev's resource: the one deploy/envoy/envoy.yaml
// names in its mcp_resource context extension.
const devResource = "tools"

// devCmd runs the service against an embedded development issuer, all on
// loopback, and prints a ready token and check commands.
func devCmd(args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	c := command{name: "dev", usage: "mcp-authz dev [--grpc-addr ADDR] [--http-addr ADDR] [--issuer-addr ADDR]",
		about: "Runs the service against an embedded development issuer (ephemeral keys, JWKS, token " +
			"endpoint), everything on loopback and gone when it ends: nothing else needs to run. It " +
			"prints an access token as export TOKEN=..., the resource it protects (named " + devResource + ", as " +
			"deploy/envoy/envoy.yaml's mcp_resource context extension names it) and check commands to " +
			"paste into another terminal. Addresses must be loopback (127.0.0.1, ::1, localhost; an empty " +
			"host means 127.0.0.1), since the issuer hands a token to anyone who asks; port 0 picks a " +
			"free port. gRPC server reflection is on.",
		env: []string{
			"MCP_AUTHZ_GRPC_ADDR      default of --grpc-addr",
			"MCP_AUTHZ_HTTP_ADDR      default of --http-addr",
			"MCP_DEBUG_CONSOLE=true   debug logs",
			"MCP_ENABLE_FILE_LOGGING  also log to MCP_LOG_DIRECTORY/mcp-authz.log",
			"MCP_LOG_DIRECTORY        where (default logs)",
			"REDIS_URL                add the Redis tier at this URL",
			"MCP_AUTHZ_CACHE_SECRET   its verdict secret (default: a random one for this run), or",
			"MCP_AUTHZ_CACHE_SECRET_FILE  a file of them",
		}}
	fs := c.flagSet()
	grpcAddr := fs.String("grpc-addr", envOr(getenv, "MCP_AUTHZ_GRPC_ADDR", "127.0.0.1:9191"), "gRPC listen `address` (loopback)")
	httpAddr := fs.String("http-addr", envOr(getenv, "MCP_AUTHZ_HTTP_ADDR", "127.0.0.1:9192"), "HTTP side server listen `address` (loopback); the resource is http://ADDRESS/mcp")
	issuerAddr := fs.String("issuer-addr", "127.0.0.1:0", "development issuer listen `address` (loopback)")
	if _, code, done := c.parse(fs, args, 0, stdout, stderr); done {
		return code
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	for _, a := range []struct {
		flag, env string
		addr      *string
	}{{"grpc-addr", "MCP_AUTHZ_GRPC_ADDR", grpcAddr}, {"http-addr", "MCP_AUTHZ_HTTP_ADDR", httpAddr}, {"issuer-addr", "", issuerAddr}} {
		name := "--" + a.flag
		if !set[a.flag] && a.env != "" && getenv(a.env) != "" {
			name = a.env
		}
		addr, err := loopbackAddr(*a.addr)
		if err != nil {
			fmt.Fprintf(stderr, "mcp-authz dev: %s %s: %v\n", name, *a.addr, err)
			return 2
		}
		*a.addr = addr
	}
	// The resource names the side server's port, which must be known
	// before anything is configured: with port 0, take a free one now.
	if _, port, _ := net.SplitHostPort(*httpAddr); port == "0" {
		ln, err := net.Listen("tcp", *httpAddr)
		if err != nil {
			fmt.Fprintf(stderr, "mcp-authz dev: --http-addr %s: %v\n", *httpAddr, err)
			return 1
		}
		*httpAddr = ln.Addr().String()
		_ = ln.Close()
	}

	secret := make([]byte, 16)
	_, _ = rand.Read(secret)
	const clientID = "mcp-dev-client"
	clientSecret := hex.EncodeToString(secret)
	resource := "http://" + *httpAddr + "/mcp"
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
			Name:                 devResource,
			Resource:             resource,
			ResourceName:         "mcp-authz development resource",
			AuthorizationServers: []string{iss.URL},
			ScopesSupported:      scopes,
			RequiredScopes:       []string{"mcp:read"},
		}},
	}
	cfg.NameField("grpc_addr", "--grpc-addr")
	cfg.NameField("http_addr", "--http-addr")
	if err := cfg.ApplyDevEnv(getenv); err != nil {
		fmt.Fprintf(stderr, "mcp-authz dev: config: %v\n", err)
		return 2
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
		printDevGuide(stdout, devGuide{
			self: selfCommand(), grpc: svc.grpcLn.Addr().String(), http: svc.httpLn.Addr().String(),
			resource: resource, issuer: iss.URL, tokenURL: iss.TokenURL(),
			clientID: clientID, clientSecret: clientSecret, scopes: scopes, token: token,
		})
		return nil
	})
}

// loopbackAddr checks that addr is host:port on loopback; an empty host
// becomes 127.0.0.1 (not every interface).
func loopbackAddr(addr string) (string, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", fmt.Errorf("not host:port")
	}
	if host == "" {
		host = "127.0.0.1"
	}
	if !validators.IsLoopbackHost(host) {
		return "", fmt.Errorf("dev listens on loopback only (its issuer hands a token to anyone who asks): use 127.0.0.1:%s, or mcp-authz serve with a real authorization server", port)
	}
	return net.JoinHostPort(host, port), nil
}

type devGuide struct {
	self, grpc, http, resource, issuer, tokenURL string
	clientID, clientSecret, token                string
	scopes                                       []string
}

func printDevGuide(w io.Writer, g devGuide) {
	fmt.Fprintf(w, `mcp-authz dev: everything below runs on loopback and ends with this process.

  ext_authz (gRPC)    %[1]s   (Envoy's ext_authz grpc_service; server reflection on)
  resource %[2]q    %[3]s   (requires scope mcp:read)
                      the resource identifier tokens are issued for (RFC 9728, RFC 8707), not a
                      URL served here: in a deployment the MCP server answers it behind Envoy,
                      and Envoy asks mcp-authz about every request
  resource metadata   http://%[4]s/.well-known/oauth-protected-resource/mcp
  dev issuer          %[5]s   (client %[6]s, secret %[7]s)

Access token (1h, scopes %[8]q); paste this line into the other terminal first:
export TOKEN=%[9]s

Then try:
  curl -s http://%[4]s/.well-known/oauth-protected-resource/mcp
  %[10]s check --addr %[1]s %[3]s
  %[10]s check --addr %[1]s %[3]s -H "Authorization: Bearer $TOKEN"
  %[10]s check --addr %[1]s --context-extension mcp_resource=%[2]s %[3]s -H "Authorization: Bearer $TOKEN"

New tokens:
  curl -s -u %[6]s:%[7]s -d grant_type=client_credentials -d resource=%[3]s %[11]s

`, g.grpc, devResource, g.resource, g.http, g.issuer, g.clientID, g.clientSecret,
		strings.Join(g.scopes, " "), g.token, g.self, g.tokenURL)
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
