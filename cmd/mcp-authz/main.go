// Command mcp-authz is an Envoy external authorization (ext_authz v3) service
// that puts OAuth 2.1 in front of MCP servers.
//
// Usage:
//
//	mcp-authz [serve] [--config FILE]   run the service
//	mcp-authz dev                       run it with an embedded development issuer
//	mcp-authz check [flags] URL         send an Envoy-shaped CheckRequest
//	mcp-authz purge --sha256 H          drop a token's verdicts fleet-wide
//	mcp-authz healthcheck [URL]         probe the side server's /healthz
//	mcp-authz version
package main

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"runtime/debug"
	"strings"
	"time"
)

func main() {
	os.Exit(run(os.Args[1:], os.Getenv, os.Stdout, os.Stderr))
}

const usage = `usage:
  mcp-authz [serve] [--config FILE]   run the ext_authz service (configured by FILE and OAUTH_* variables)
  mcp-authz dev                       run it against an embedded development issuer on loopback
  mcp-authz check [flags] URL         send an Envoy-shaped CheckRequest and print the decision
  mcp-authz purge (--token-file F | --sha256 H)   drop a token's cached verdicts fleet-wide (Redis)
  mcp-authz healthcheck [URL]         exit 0 when the local side server answers /healthz (for container probes)
  mcp-authz version                   print the version
`

func run(args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	cmd := "serve"
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		cmd, args = args[0], args[1:]
	}
	switch cmd {
	case "serve":
		return serveCmd(args, getenv, stderr)
	case "dev":
		return devCmd(args, getenv, stdout, stderr)
	case "check":
		return checkCmd(args, stdout, stderr)
	case "purge":
		return purgeCmd(args, getenv, stdout, stderr)
	case "healthcheck":
		return healthcheckCmd(args, getenv, stderr)
	case "version":
		fmt.Fprintln(stdout, "mcp-authz", version())
		return 0
	case "help":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "mcp-authz: unknown command %q\n%s", cmd, usage)
		return 2
	}
}

func version() string {
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" && len(s.Value) >= 12 {
				return s.Value[:12]
			}
		}
		if bi.Main.Version != "" {
			return bi.Main.Version
		}
	}
	return "devel"
}

// healthcheckCmd probes the side server, for container HEALTHCHECKs in
// images without a shell or curl.
func healthcheckCmd(args []string, getenv func(string) string, stderr io.Writer) int {
	target := "http://127.0.0.1:9192/healthz"
	if addr := getenv("MCP_AUTHZ_HTTP_ADDR"); addr != "" {
		host, port, err := net.SplitHostPort(addr)
		if err == nil {
			if host == "" || host == "0.0.0.0" || host == "::" {
				host = "127.0.0.1"
			}
			target = "http://" + net.JoinHostPort(host, port) + "/healthz"
		}
	}
	if len(args) > 0 {
		target = args[0]
	}
	client := &http.Client{Timeout: 3 * time.Second}
	resp, err := client.Get(target)
	if err != nil {
		fmt.Fprintf(stderr, "mcp-authz healthcheck: %v\n", err)
		return 1
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		fmt.Fprintf(stderr, "mcp-authz healthcheck: %s answered %d\n", target, resp.StatusCode)
		return 1
	}
	return 0
}
