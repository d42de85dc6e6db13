package e2e

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// caddyBinary finds Debian's caddy (scripts/test.sh installs it).
func caddyBinary(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("caddy")
	if err != nil {
		t.Fatal("caddy not found: run scripts/test.sh (it installs Debian's caddy) or apt-get install caddy")
	}
	return p
}

// startCaddy runs a real Caddy on a free loopback port with the shipped
// recipe, deploy/caddy/Caddyfile, pointed at the given addresses. It returns
// Caddy's base URL; requests name the site with Host: mcp.example.com.
func startCaddy(t *testing.T, forwardAddr, sideAddr, upstreamAddr string) string {
	t.Helper()
	return startCaddyOn(t, freeAddr(t), "mcp.example.com", forwardAddr, sideAddr, upstreamAddr)
}

// startCaddyOn is startCaddy listening on listen, for the site host.
func startCaddyOn(t *testing.T, listen, host, forwardAddr, sideAddr, upstreamAddr string) string {
	t.Helper()
	bin := caddyBinary(t)
	recipe, err := os.ReadFile(filepath.Join("..", "deploy", "caddy", "Caddyfile"))
	if err != nil {
		t.Fatal(err)
	}
	_, port, _ := net.SplitHostPort(listen)
	conf := string(recipe)
	for _, r := range []struct{ old, new string }{
		{"forward_auth mcp-authz:9193 {", "forward_auth " + forwardAddr + " {"},
		{"reverse_proxy mcp-authz:9192", "reverse_proxy " + sideAddr},
		{"reverse_proxy mcp-server:8080 {", "reverse_proxy " + upstreamAddr + " {"},
		// Plain HTTP on the test's port, on loopback only.
		{"mcp.example.com {", "http://" + host + ":" + port + " {\n\tbind 127.0.0.1"},
	} {
		if strings.Count(conf, r.old) != 1 {
			t.Fatalf("deploy/caddy/Caddyfile: expected %q once", r.old)
		}
		conf = strings.Replace(conf, r.old, r.new, 1)
	}
	// No admin endpoint (its default port would be shared by every test),
	// no HTTP/3 listener.
	conf = "{\n\tadmin off\n\tservers {\n\t\tprotocols h1 h2\n\t}\n}\n\n" + conf
	dir := t.TempDir()
	file := filepath.Join(dir, "Caddyfile")
	if err := os.WriteFile(file, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "run", "--config", file, "--adapter", "caddyfile")
	// Caddy keeps its state (autosaved config, certificates) under these.
	cmd.Env = append(os.Environ(), "HOME="+dir, "XDG_DATA_HOME="+dir, "XDG_CONFIG_HOME="+dir)
	runServer(t, "caddy", cmd, listen, nil)
	return "http://" + listen
}

// TestCaddy puts a real Caddy, configured with the shipped recipe, between
// an MCP client and an MCP server, with the real mcp-authz binary deciding
// through its /forwarded endpoint and real tokens from oidc-provider.
func TestCaddy(t *testing.T) {
	up := startUpstream(t)
	p, fwd := startForwardAuthz(t, nil)
	base := startCaddy(t, fwd, p.httpAddr, up.srv.Listener.Addr().String())
	good := token(t, "rs-client", "mcp:read mcp:write", resource)
	recipeAnswers(t, base, up, good)

	t.Run("valid token: identity reaches the upstream, the token and spoofed identity do not", func(t *testing.T) {
		r := through(t, base, "POST", "/mcp", map[string][]string{
			"Authorization":      {"Bearer " + good},
			"X-Mcp-Auth-Subject": {"spoofed-admin"},
			"X-Mcp-Auth-Tool":    {"spoofed-tool"},
			"X_Mcp_Auth_Scopes":  {"mcp:admin"},
			"X-Mcp-Auth-Other":   {"spoofed"},
		})
		if r.status != 200 {
			t.Fatalf("got %s", r)
		}
		h, _ := up.last()
		assertRecipeIdentity(t, h)
		if len(h.Values("X-Mcp-Auth-Subject")) != 1 || len(h.Values("X-Mcp-Auth-Scopes")) != 1 {
			t.Fatalf("identity values %v", h)
		}
		// No body reaches mcp-authz from forward_auth: no method or tool is
		// known, and the client's copies must not survive.
		for _, name := range []string{"X-Mcp-Auth-Tool", "X_mcp_auth_scopes", "X_Mcp_Auth_Scopes", "X-Mcp-Auth-Other"} {
			if v := h.Values(name); len(v) > 0 && v[0] != "" {
				t.Fatalf("client's %s reached the upstream: %v", name, h)
			}
		}
	})

	// Caddy writes X-Forwarded-Method and -Uri from the request itself: a
	// client's copies cannot point the decision at the public metadata path.
	t.Run("a client's X-Forwarded-Uri changes nothing", func(t *testing.T) {
		before := up.count()
		r := through(t, base, "POST", "/mcp", map[string][]string{
			"X-Forwarded-Uri":    {"/.well-known/oauth-protected-resource/mcp"},
			"X-Forwarded-Method": {"OPTIONS"},
		})
		if r.status != 401 || up.count() != before {
			t.Fatalf("got %s", r)
		}
	})
}

// TestCaddyUnavailable: when mcp-authz cannot validate tokens, or cannot be
// reached at all, the client sees 503 with Retry-After, never Caddy's 502
// and never the upstream; a failing MCP server stays Caddy's own answer.
func TestCaddyUnavailable(t *testing.T) {
	up := startUpstream(t)
	good := token(t, "rs-client", "mcp:read", resource)

	recipeUnavailable(t, up, good, startCaddy)

	t.Run("mcp-authz too slow", func(t *testing.T) {
		p, _ := startForwardAuthz(t, nil)
		// Accepts connections and never answers.
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { l.Close() })
		go func() {
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				t.Cleanup(func() { c.Close() })
			}
		}()
		base := startCaddy(t, l.Addr().String(), p.httpAddr, up.srv.Listener.Addr().String())
		start := time.Now()
		r := through(t, base, "GET", "/mcp", map[string][]string{"Authorization": {"Bearer " + good}})
		if r.status != 503 || r.header.Get("Retry-After") != "5" || errorCode(t, r.body) != "temporarily_unavailable" {
			t.Fatalf("got %s after %v", r, time.Since(start))
		}
	})
	if up.count() != 0 {
		t.Fatal("the upstream was reached")
	}

	t.Run("the MCP server down is not mcp-authz's 503", func(t *testing.T) {
		p, fwd := startForwardAuthz(t, nil)
		base := startCaddy(t, fwd, p.httpAddr, freeAddr(t))
		r := through(t, base, "GET", "/mcp", map[string][]string{"Authorization": {"Bearer " + good}})
		if r.status != 502 || strings.Contains(r.body, "temporarily_unavailable") {
			t.Fatalf("got %s", r)
		}
	})
}
