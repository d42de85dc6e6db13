// Package e2e runs the real mcp-authz binary against a real third-party
// authorization server (oidc-provider on Node.js) and talks to it over real
// gRPC, the way Envoy does. Everything listens on loopback.
package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mcp-authz/mcp-authz/internal/freeport"
	"github.com/mcp-authz/mcp-authz/internal/syncbuf"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

const resource = "https://mcp.example.com/mcp"

var (
	binary string // the built mcp-authz
	issuer string // oidc-provider's issuer URL
)

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	root, err := filepath.Abs("..")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	tmp, err := os.MkdirTemp("", "mcp-authz-e2e")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(tmp)

	binary = filepath.Join(tmp, "mcp-authz")
	build := exec.Command("go", "build", "-o", binary, "./cmd/mcp-authz")
	build.Dir = root
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "e2e: building mcp-authz:", err)
		return 1
	}

	stop, err := startProvider(filepath.Join(root, "e2e", "oidc"))
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	defer stop()
	return m.Run()
}

// startProvider installs the pinned oidc-provider when it is missing (the
// project's own install step, as in .ci/run) and starts it.
func startProvider(dir string) (func(), error) {
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "oidc-provider")); err != nil {
		npm := exec.Command("npm", "ci", "--no-audit", "--no-fund")
		npm.Dir = dir
		npm.Stdout, npm.Stderr = os.Stderr, os.Stderr
		if err := npm.Run(); err != nil {
			return nil, fmt.Errorf("npm ci in %s (Node.js and npm are required): %w", dir, err)
		}
	}
	cmd := exec.Command("node", "server.mjs", "0")
	cmd.Dir = dir
	cmd.Stderr = io.Discard
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting oidc-provider: %w", err)
	}
	stop := func() { _ = cmd.Process.Signal(syscall.SIGTERM); _ = cmd.Wait() }
	ready := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if iss, ok := strings.CutPrefix(sc.Text(), "READY "); ok {
				ready <- iss
			}
		}
	}()
	select {
	case issuer = <-ready:
		return stop, nil
	case <-time.After(30 * time.Second):
		stop()
		return nil, fmt.Errorf("oidc-provider did not start")
	}
}

// runServer starts cmd, a server of the test's own that will listen on
// addr, and returns once it does. It is stopped when the test ends (SIGTERM,
// then a kill after 10 s); when the test failed, its output is logged, with
// more() when given.
func runServer(t *testing.T, name string, cmd *exec.Cmd, addr string, more func() string) {
	t.Helper()
	var logs syncBuffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM) // nginx: fast shutdown, the master stops its workers
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			extra := ""
			if more != nil {
				extra = "\n" + more()
			}
			t.Logf("%s output:\n%s%s", name, logs.String(), extra)
		}
	})
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, 100*time.Millisecond)
		if err == nil {
			c.Close()
			return
		}
		select {
		case err := <-exited:
			exited <- err // for the cleanup
			t.Fatalf("%s exited: %v\n%s", name, err, logs.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not listening on %s: %v", name, addr, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func freeAddr(t *testing.T) string {
	t.Helper()
	return freeport.Addr(t)
}

// authzProc is a running mcp-authz.
type authzProc struct {
	cmd      *exec.Cmd
	grpcAddr string
	httpAddr string
	client   authv3.AuthorizationClient
	conn     *grpc.ClientConn
	logs     *syncBuffer
	exited   chan error
}

type syncBuffer = syncbuf.Buffer

// baseEnv configures mcp-authz against oidc-provider with the seed's variables.
func baseEnv() map[string]string {
	return map[string]string{
		"OAUTH_RESOURCE":             resource,
		"OAUTH_AUTHORIZATION_SERVER": issuer,
		"OAUTH_ALGORITHMS":           "RS256,ES256",
		"OAUTH_SCOPES_SUPPORTED":     "mcp:read,mcp:write,mcp:admin",
		"OAUTH_REQUIRED_SCOPES":      "mcp:read",
	}
}

// startAuthz runs the binary with env and waits until it serves. With
// waitReady it also waits for /readyz (JWKS loaded).
func startAuthz(t *testing.T, env map[string]string, waitReady bool, args ...string) *authzProc {
	t.Helper()
	p := &authzProc{grpcAddr: freeAddr(t), httpAddr: freeAddr(t), logs: &syncBuffer{}, exited: make(chan error, 1)}
	p.cmd = exec.Command(binary, args...)
	p.cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "MCP_AUTHZ_GRPC_ADDR=" + p.grpcAddr, "MCP_AUTHZ_HTTP_ADDR=" + p.httpAddr}
	for k, v := range env {
		p.cmd.Env = append(p.cmd.Env, k+"="+v)
	}
	p.cmd.Stdout, p.cmd.Stderr = p.logs, p.logs
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.exited <- p.cmd.Wait() }()
	t.Cleanup(func() {
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.exited:
		case <-time.After(10 * time.Second):
			_ = p.cmd.Process.Kill()
		}
		if p.conn != nil {
			p.conn.Close()
		}
		if t.Failed() {
			t.Logf("mcp-authz logs:\n%s", p.logs.String())
		}
	})
	path := "/healthz"
	if waitReady {
		path = "/readyz"
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		resp, err := http.Get("http://" + p.httpAddr + path)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		select {
		case err := <-p.exited:
			t.Fatalf("mcp-authz exited: %v\n%s", err, p.logs.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("mcp-authz not serving %s: %v\n%s", path, err, p.logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	conn, err := grpc.NewClient(p.grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	p.conn = conn
	p.client = authv3.NewAuthorizationClient(conn)
	return p
}

// token obtains an access token from oidc-provider by client_credentials
// with an RFC 8707 resource indicator.
func token(t *testing.T, client, scope, res string) string {
	t.Helper()
	form := url.Values{"grant_type": {"client_credentials"}, "scope": {scope}, "resource": {res}}
	req, _ := http.NewRequest(http.MethodPost, issuer+"/token", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(client, client+"-secret")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct {
		AccessToken string `json:"access_token"`
		Error       string `json:"error"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil || body.AccessToken == "" {
		t.Fatalf("token request: %d %v %s", resp.StatusCode, err, body.Error)
	}
	return body.AccessToken
}

func providerStats(t *testing.T) int {
	t.Helper()
	resp, err := http.Get(issuer + "/__stats")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var s struct{ JWKS int }
	if err := json.NewDecoder(resp.Body).Decode(&s); err != nil {
		t.Fatal(err)
	}
	return s.JWKS
}

// envoyCheck builds a CheckRequest as Envoy's ext_authz filter sends it.
func envoyCheck(method, path string, headers map[string]string) *authv3.CheckRequest {
	h := map[string]string{
		":authority": "mcp.example.com", ":path": path, ":method": method, ":scheme": "https",
		"user-agent": "mcp-e2e", "x-request-id": "e2e", "x-forwarded-proto": "https",
	}
	for k, v := range headers {
		h[strings.ToLower(k)] = v
	}
	return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			Id: "e2e", Method: method, Headers: h, Path: path, Host: "mcp.example.com", Scheme: "https", Protocol: "HTTP/2",
		}},
	}}
}

func (p *authzProc) check(t *testing.T, req *authv3.CheckRequest) *authv3.CheckResponse {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := p.client.Check(ctx, req)
	if err != nil {
		t.Fatalf("Check: %v", err)
	}
	return resp
}

func deniedHeader(resp *authv3.CheckResponse, name string) string {
	for _, h := range resp.GetDeniedResponse().GetHeaders() {
		if h.GetHeader().GetKey() == name {
			return h.GetHeader().GetValue()
		}
	}
	return ""
}

// testCacheSecret is the fleet's verdict secret in tests with Redis.
const testCacheSecret = "e2e-verdict-secret-0123456789abcdef"
