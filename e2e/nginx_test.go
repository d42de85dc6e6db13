package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// upstreamRecorder is the MCP server behind the proxy: it answers 200 and
// keeps the headers of every request it receives.
type upstreamRecorder struct {
	srv *httptest.Server
	mu  sync.Mutex
	got []http.Header
	// targets: the method and request target of each request, as received.
	targets []string
}

func startUpstream(t *testing.T) *upstreamRecorder {
	t.Helper()
	u := &upstreamRecorder{}
	u.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.mu.Lock()
		u.got = append(u.got, r.Header.Clone())
		u.targets = append(u.targets, r.Method+" "+r.RequestURI)
		u.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"jsonrpc":"2.0","id":1,"result":{}}`)
	}))
	t.Cleanup(u.srv.Close)
	return u
}

// last returns the headers of the latest request and how many arrived.
func (u *upstreamRecorder) last() (http.Header, int) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if len(u.got) == 0 {
		return nil, 0
	}
	return u.got[len(u.got)-1], len(u.got)
}

func (u *upstreamRecorder) count() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return len(u.got)
}

// nginxBinary finds Debian's nginx (scripts/test.sh installs it).
func nginxBinary(t *testing.T) string {
	t.Helper()
	if p, err := exec.LookPath("nginx"); err == nil {
		return p
	}
	if _, err := os.Stat("/usr/sbin/nginx"); err == nil {
		return "/usr/sbin/nginx"
	}
	t.Fatal("nginx not found: run scripts/test.sh (it installs Debian's nginx) or apt-get install nginx")
	return ""
}

// startNginx runs a real nginx on a free loopback port with the shipped
// recipe, deploy/nginx/mcp-authz.conf, pointed at the given addresses. It
// returns nginx's base URL.
func startNginx(t *testing.T, forwardAddr, sideAddr, upstreamAddr string) string {
	t.Helper()
	return startNginxOn(t, freeAddr(t), forwardAddr, sideAddr, upstreamAddr)
}

// startNginxOn is startNginx listening on listen.
func startNginxOn(t *testing.T, listen, forwardAddr, sideAddr, upstreamAddr string) string {
	t.Helper()
	bin := nginxBinary(t)
	recipe, err := os.ReadFile(filepath.Join("..", "deploy", "nginx", "mcp-authz.conf"))
	if err != nil {
		t.Fatal(err)
	}
	conf := string(recipe)
	for _, r := range []struct{ old, new string }{
		{"server mcp-authz:9193;", "server " + forwardAddr + ";"},
		{"server mcp-authz:9192;", "server " + sideAddr + ";"},
		{"server mcp-server:8080;", "server " + upstreamAddr + ";"},
		{"listen 80;", "listen " + listen + ";"},
	} {
		if strings.Count(conf, r.old) != 1 {
			t.Fatalf("deploy/nginx/mcp-authz.conf: expected %q once", r.old)
		}
		conf = strings.Replace(conf, r.old, r.new, 1)
	}
	dir := t.TempDir()
	// Workers of an nginx started as root run as nobody: they must be able
	// to reach the temporary directories.
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"client_body", "proxy", "fastcgi", "uwsgi", "scgi"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o777); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "mcp-authz.conf"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	main := fmt.Sprintf(`
pid %[1]s/nginx.pid;
error_log %[1]s/error.log info;
worker_processes 1;
events { worker_connections 256; }
http {
    access_log %[1]s/access.log;
    client_body_temp_path %[1]s/client_body;
    proxy_temp_path %[1]s/proxy;
    fastcgi_temp_path %[1]s/fastcgi;
    uwsgi_temp_path %[1]s/uwsgi;
    scgi_temp_path %[1]s/scgi;
    include %[1]s/mcp-authz.conf;
}
`, dir)
	if err := os.WriteFile(filepath.Join(dir, "nginx.conf"), []byte(main), 0o644); err != nil {
		t.Fatal(err)
	}
	args := []string{"-p", dir, "-c", filepath.Join(dir, "nginx.conf"), "-e", filepath.Join(dir, "error.log"), "-g", "daemon off;"}
	if out, err := exec.Command(bin, append([]string{"-t"}, args...)...).CombinedOutput(); err != nil {
		t.Fatalf("nginx -t: %v\n%s", err, out)
	}
	cmd := exec.Command(bin, args...)
	runServer(t, "nginx", cmd, listen, func() string {
		errLog, _ := os.ReadFile(filepath.Join(dir, "error.log"))
		return "nginx error.log:\n" + string(errLog)
	})
	return "http://" + listen
}

// nginxResult is what a client of nginx received.
type nginxResult struct {
	status int
	header http.Header
	body   string
}

func (r nginxResult) String() string {
	return fmt.Sprintf("%d %v %s", r.status, r.header, r.body)
}

// proxyClient is the MCP client's HTTP client in front of a proxy: a
// recipe that lets a request hang fails its test in seconds, not at go
// test's timeout.
var proxyClient = &http.Client{Timeout: 30 * time.Second}

// through sends a request to a proxy (nginx, Caddy) as an MCP client would.
func through(t *testing.T, base, method, path string, headers map[string][]string) nginxResult {
	t.Helper()
	var body io.Reader
	if method == http.MethodPost {
		body = strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"tools/list"}`)
	}
	req, err := http.NewRequest(method, base+path, body)
	if err != nil {
		t.Fatal(err)
	}
	req.Host = "mcp.example.com"
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json, text/event-stream")
	}
	for k, vs := range headers {
		for _, v := range vs {
			req.Header.Add(k, v)
		}
	}
	resp, err := proxyClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return nginxResult{status: resp.StatusCode, header: resp.Header, body: string(b)}
}

// errorCode is the "error" member of a JSON denial body.
func errorCode(t *testing.T, body string) string {
	t.Helper()
	var e struct {
		Error string `json:"error"`
	}
	if err := json.Unmarshal([]byte(body), &e); err != nil {
		t.Fatalf("denial body %q is not JSON: %v", body, err)
	}
	return e.Error
}

// startForwardAuthz runs mcp-authz with its forward-auth listener; a JWKS
// set in env is taken to be unreachable (no waiting for /readyz).
func startForwardAuthz(t *testing.T, env map[string]string) (*authzProc, string) {
	t.Helper()
	fwd := freeAddr(t)
	full := baseEnv()
	full["MCP_AUTHZ_FORWARD_ADDR"] = fwd
	full["MCP_AUTHZ_STRIP_AUTHORIZATION"] = "true"
	for k, v := range env {
		full[k] = v
	}
	_, jwksDown := env["OAUTH_JWKS_URI"]
	return startAuthz(t, full, !jwksDown), fwd
}

const prmURL = "https://mcp.example.com/.well-known/oauth-protected-resource/mcp"

// TestNginx puts a real nginx, configured with the shipped recipe, between
// an MCP client and an MCP server, with the real mcp-authz binary deciding
// through its /nginx endpoint and real tokens from oidc-provider.
func TestNginx(t *testing.T) {
	up := startUpstream(t)
	p, fwd := startForwardAuthz(t, nil)
	base := startNginx(t, fwd, p.httpAddr, up.srv.Listener.Addr().String())
	good := token(t, "rs-client", "mcp:read mcp:write", resource)
	recipeAnswers(t, base, up, good)

	t.Run("valid token: identity reaches the upstream, the token and spoofed identity do not", func(t *testing.T) {
		r := through(t, base, "POST", "/mcp", map[string][]string{
			"Authorization":      {"Bearer " + good},
			"X-Mcp-Auth-Subject": {"spoofed-admin"},
			"X-Mcp-Auth-Tool":    {"spoofed-tool"},
			"X_Mcp_Auth_Scopes":  {"mcp:admin"},
			"X-Original-URI":     {"/.well-known/oauth-protected-resource/mcp"},
		})
		if r.status != 200 {
			t.Fatalf("got %s", r)
		}
		h, _ := up.last()
		assertRecipeIdentity(t, h)
		if len(h.Values("X-Mcp-Auth-Subject")) != 1 {
			t.Fatalf("subject values %v", h.Values("X-Mcp-Auth-Subject"))
		}
		// No body reaches mcp-authz from auth_request: no method or tool is
		// known, and the client's copy must not survive.
		if _, ok := h["X-Mcp-Auth-Tool"]; ok {
			t.Fatalf("client's x-mcp-auth-tool reached the upstream: %v", h)
		}
		if _, ok := h["X_mcp_auth_scopes"]; ok {
			t.Fatalf("client's x_mcp_auth_scopes reached the upstream: %v", h)
		}
	})
}

// TestNginxUnavailable: when mcp-authz cannot validate tokens (its
// authorization server is unreachable), or cannot be reached at all, the
// client sees 503 with Retry-After, never nginx's 500 and never the
// upstream.
func TestNginxUnavailable(t *testing.T) {
	up := startUpstream(t)
	good := token(t, "rs-client", "mcp:read", resource)

	recipeUnavailable(t, up, good, startNginx)
	if up.count() != 0 {
		t.Fatal("the upstream was reached")
	}
}
