package main

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"strings"
	"syscall"
	"testing"

	"github.com/mcp-authz/mcp-authz/config"
)

func runArgs(args []string, env map[string]string) (stdout, stderr string, code int) {
	var out, errOut bytes.Buffer
	code = run(args, func(k string) string { return env[k] }, &out, &errOut)
	return out.String(), errOut.String(), code
}

// TestEveryCommandHasHelp: --help (and -h, and help COMMAND) prints the
// command's usage, a paragraph, its flags and the variables it reads to
// stdout, and exits 0 without doing anything else.
func TestEveryCommandHasHelp(t *testing.T) {
	tests := []struct {
		cmd  string
		want []string // flags and variables the help must name
	}{
		{"serve", []string{"usage: mcp-authz [serve] [--config FILE]", "-config", "OAUTH_RESOURCE", "MCP_AUTHZ_GRPC_ADDR", "REDIS_URL", "MCP_AUTHZ_CACHE_SECRET_FILE", "/readyz, /metrics"}},
		{"dev", []string{"usage: mcp-authz dev", "-grpc-addr", "-http-addr", "-issuer-addr", "MCP_AUTHZ_GRPC_ADDR", "MCP_AUTHZ_HTTP_ADDR", "REDIS_URL", "loopback"}},
		{"check", []string{"usage: mcp-authz check [flags] URL", "-addr", "-H", "-X", "-d", "-timeout", "-context-extension", "Exit status"}},
		{"purge", []string{"usage: mcp-authz purge", "-token-file", "-sha256", "-config", "REDIS_URL", "MCP_AUTHZ_CACHE_SECRET"}},
		{"healthcheck", []string{"usage: mcp-authz healthcheck [URL]", "MCP_AUTHZ_HTTP_ADDR"}},
		{"version", []string{"usage: mcp-authz version", "commit"}},
		{"help", []string{"usage: mcp-authz help [COMMAND]"}},
	}
	for _, tt := range tests {
		for _, args := range [][]string{{tt.cmd, "--help"}, {tt.cmd, "-h"}, {tt.cmd, "-help"}, {"help", tt.cmd}} {
			t.Run(strings.Join(args, " "), func(t *testing.T) {
				out, errOut, code := runArgs(args, nil)
				if code != 0 || errOut != "" {
					t.Fatalf("exit %d, stderr %q", code, errOut)
				}
				for _, w := range append(tt.want, "Environment:") {
					if !strings.Contains(out, w) {
						t.Errorf("help does not mention %q:\n%s", w, out)
					}
				}
				// The paragraph: the usage line, a blank line, then prose.
				lines := strings.Split(out, "\n")
				if len(lines) < 4 || lines[1] != "" || len(strings.Fields(lines[2])) < 5 {
					t.Errorf("no paragraph after the usage line:\n%s", out)
				}
			})
		}
	}
	// serve's help lists every variable the configuration reads.
	out, _, _ := runArgs([]string{"serve", "--help"}, nil)
	for _, v := range config.EnvironmentVariables() {
		if !strings.Contains(out, v) {
			t.Errorf("serve --help does not list %s", v)
		}
	}
}

func TestTopLevelHelp(t *testing.T) {
	for _, args := range [][]string{{"--help"}, {"-h"}, {"-help"}, {"help"}} {
		out, errOut, code := runArgs(args, nil)
		if code != 0 || errOut != "" {
			t.Fatalf("%v: exit %d, stderr %q", args, code, errOut)
		}
		for _, cmd := range []string{"serve", "dev", "check", "purge", "healthcheck", "version", "help"} {
			if !strings.Contains(out, "mcp-authz "+cmd) && !strings.Contains(out, "mcp-authz ["+cmd+"]") {
				t.Errorf("%v: the list lacks %s:\n%s", args, cmd, out)
			}
		}
		if strings.Contains(out, "Usage of") {
			t.Errorf("%v: the flag package's bare usage:\n%s", args, out)
		}
	}
}

// TestBadArgumentsAreOneLine: stray arguments, unknown flags and commands
// are refused (exit 2) with one line on stderr that says what to do.
func TestBadArgumentsAreOneLine(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"serve", "config.yaml"}, `unexpected argument "config.yaml": did you mean --config config.yaml?`},
		{[]string{"serve", "--config", "a.yaml", "b.yaml"}, `did you mean --config b.yaml?`},
		{[]string{"serve", "extra"}, `unexpected argument "extra": serve takes only flags`},
		{[]string{"config.yaml"}, `unknown command "config.yaml" (did you mean mcp-authz serve --config config.yaml?)`},
		{[]string{"frobnicate"}, `unknown command "frobnicate" (mcp-authz --help lists the commands)`},
		{[]string{"serve", "--confg", "x.yaml"}, `flag provided but not defined: -confg (mcp-authz serve --help lists the flags)`},
		{[]string{"dev", "now"}, `mcp-authz dev: unexpected argument "now"`},
		{[]string{"purge", "token.txt"}, `mcp-authz purge: unexpected argument "token.txt"`},
		{[]string{"version", "--short"}, `flag provided but not defined: -short`},
		{[]string{"version", "x"}, `version takes no arguments`},
		{[]string{"healthcheck", "a", "b"}, `unexpected argument "b"`},
		{[]string{"healthcheck", "127.0.0.1:9192"}, `"127.0.0.1:9192" is not an http(s) URL`},
		{[]string{"check"}, `the URL to check is missing`},
		{[]string{"check", "http://a/mcp", "http://b/mcp"}, `unexpected argument "http://b/mcp"`},
		{[]string{"check", "--timeout", "soon", "http://a/mcp"}, `invalid value "soon" for flag -timeout`},
		{[]string{"help", "nope"}, `unknown command "nope"`},
		{[]string{"dev", "--http-addr", "0.0.0.0:9192"}, `--http-addr 0.0.0.0:9192: dev listens on loopback only`},
		{[]string{"dev", "--grpc-addr", "192.0.2.1:9191"}, `--grpc-addr 192.0.2.1:9191: dev listens on loopback only`},
		{[]string{"dev", "--issuer-addr", "[::]:0"}, `--issuer-addr [::]:0: dev listens on loopback only`},
		{[]string{"dev", "--http-addr", "9192"}, `--http-addr 9192: not host:port`},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			out, errOut, code := runArgs(tt.args, nil)
			if code != 2 || out != "" {
				t.Fatalf("exit %d, stdout %q, stderr %q", code, out, errOut)
			}
			if strings.Count(errOut, "\n") != 1 || !strings.Contains(errOut, tt.want) {
				t.Fatalf("want one line with %q, got %q", tt.want, errOut)
			}
		})
	}
	// An address from the environment is named as such.
	_, errOut, code := runArgs([]string{"dev"}, map[string]string{"MCP_AUTHZ_HTTP_ADDR": "0.0.0.0:9192"})
	if code != 2 || !strings.Contains(errOut, "MCP_AUTHZ_HTTP_ADDR 0.0.0.0:9192: dev listens on loopback only") {
		t.Fatalf("exit %d: %q", code, errOut)
	}
}

func TestVersion(t *testing.T) {
	defer func(v, c string) { buildVersion, buildCommit = v, c }(buildVersion, buildCommit)
	buildVersion, buildCommit = "v1.2.3", "0123456789abcdef0123456789abcdef01234567"
	out, _, code := runArgs([]string{"version"}, nil)
	if code != 0 || !strings.HasPrefix(out, "mcp-authz v1.2.3 (commit 0123456789ab) go1.") {
		t.Fatalf("exit %d: %q", code, out)
	}
	// Unstamped (a test binary has no VCS information): still both.
	buildVersion, buildCommit = "", ""
	if v := version(); !strings.Contains(v, " (commit ") {
		t.Fatalf("unstamped: %q", v)
	}
}

// TestListenErrorNamesWhatToChange: a port in use names the variable,
// flag or field that gave the address, and says what to do.
func TestListenErrorNamesWhatToChange(t *testing.T) {
	inUse := &net.OpError{Op: "listen", Net: "tcp", Err: fmt.Errorf("bind: %w", syscall.EADDRINUSE)}
	load := func(env map[string]string) *config.Config {
		t.Helper()
		base := map[string]string{"OAUTH_RESOURCE": "https://m.example/mcp", "OAUTH_AUTHORIZATION_SERVER": "https://a.example"}
		for k, v := range env {
			base[k] = v
		}
		cfg, err := config.Load("", func(k string) string { return base[k] })
		if err != nil {
			t.Fatal(err)
		}
		return cfg
	}
	for _, tt := range []struct {
		cfg   *config.Config
		field string
		want  string
	}{
		{load(nil), "grpc_addr", "MCP_AUTHZ_GRPC_ADDR / grpc_addr: "},
		{load(map[string]string{"MCP_AUTHZ_GRPC_ADDR": "127.0.0.1:1"}), "grpc_addr", "MCP_AUTHZ_GRPC_ADDR: "},
		{load(nil), "http_addr", "MCP_AUTHZ_HTTP_ADDR / http_addr: "},
	} {
		msg := listenError(tt.cfg, tt.field, inUse).Error()
		if !strings.HasPrefix(msg, tt.want) || !strings.Contains(msg, "address already in use") || !strings.Contains(msg, "set "+strings.TrimSuffix(tt.want, ": ")+" to a free address") {
			t.Errorf("%q", msg)
		}
		if !errors.Is(listenError(tt.cfg, tt.field, inUse), syscall.EADDRINUSE) {
			t.Error("the cause is lost")
		}
	}
	cfg := load(nil)
	cfg.NameField("grpc_addr", "--grpc-addr")
	if msg := listenError(cfg, "grpc_addr", inUse).Error(); !strings.HasPrefix(msg, "--grpc-addr: ") {
		t.Errorf("%q", msg)
	}
}
