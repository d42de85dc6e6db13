package e2e

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/mcp-authz/mcp-authz/internal/pathnorm"
)

// Red-team tests of the forward-auth recipes: an attacker who can send any
// bytes to a real nginx or Caddy (shipped recipes), with the real mcp-authz
// deciding, tries to reach the MCP server without a valid token, with
// another identity, with spoofed identity headers or the token surviving,
// or with a path, method or host other than the one mcp-authz judged.

// redStack: two resources on one MCP server, as in
// TestPathTricksDoNotReachAnotherResource: tools on /mcp (mcp:read) and
// admin on /mcp/admin (mcp:admin), behind nginx and Caddy.
type redStack struct {
	up           *upstreamRecorder
	ng, cd       string
	read, reader string // a mcp:read token for tools; another principal's
}

func startRedStack(t *testing.T) *redStack {
	t.Helper()
	cfg := writeConfig(t, fmt.Sprintf(`
resources:
  - name: tools
    resource: https://mcp.example.com/mcp
    authorization_servers: [%[1]s]
    scopes_supported: [mcp:read, mcp:write, mcp:admin]
    required_scopes: [mcp:read]
    path_prefixes: [/mcp]
    session_binding: true
    allowed_origins: ["https://app.example.com"]
    issuers: [{issuer: %[1]s, algorithms: [RS256, ES256]}]
  - name: admin
    resource: https://mcp.example.com/mcp/admin
    authorization_servers: [%[1]s]
    audiences: [https://mcp.example.com/mcp]
    required_scopes: [mcp:admin]
    path_prefixes: [/mcp/admin]
    issuers: [{issuer: %[1]s, algorithms: [RS256, ES256]}]
`, issuer))
	fwd := freeAddr(t)
	p := startAuthz(t, map[string]string{"MCP_AUTHZ_FORWARD_ADDR": fwd, "MCP_AUTHZ_STRIP_AUTHORIZATION": "true"}, true, "serve", "--config", cfg)
	s := &redStack{up: startUpstream(t)}
	s.ng = strings.TrimPrefix(startNginx(t, fwd, p.httpAddr, s.up.srv.Listener.Addr().String()), "http://")
	s.cd = strings.TrimPrefix(startCaddy(t, fwd, p.httpAddr, s.up.srv.Listener.Addr().String()), "http://")
	s.read = token(t, "rs-client", "mcp:read", resource)
	s.reader = token(t, "es-client", "mcp:read", resource)
	return s
}

// raw sends bytes as they are to addr and reads the answers (all of them,
// pipelined ones included; 100 Continue skipped). It returns the statuses.
func raw(t *testing.T, addr, req string) []int {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write([]byte(req)); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	var statuses []int
	for {
		var r *http.Request
		if strings.HasPrefix(req, "HEAD ") { // no body follows the answer
			r = &http.Request{Method: http.MethodHead}
		}
		resp, err := http.ReadResponse(br, r)
		if err != nil {
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				t.Fatalf("the proxy hangs: %v", statuses)
			}
			return statuses
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusContinue {
			statuses = append(statuses, resp.StatusCode)
		}
		if resp.Close {
			return statuses
		}
	}
}

// checkUpstream holds every request that reached the MCP server to the
// guarantees: no token, no spoofed identity, the token's own identity or
// none, and a path that is what mcp-authz judged (already normal).
func (s *redStack) checkUpstream(t *testing.T, from int) {
	t.Helper()
	s.up.mu.Lock()
	defer s.up.mu.Unlock()
	for i := from; i < len(s.up.got); i++ {
		h, target := s.up.got[i], s.up.targets[i]
		if h.Get("Authorization") != "" {
			t.Errorf("%s: the token reached the upstream", target)
		}
		if sub := h.Get("X-Mcp-Auth-Subject"); sub != "" && sub != "rs-client" && sub != "es-client" {
			t.Errorf("%s: upstream subject %q", target, sub)
		}
		for k, vs := range h {
			if matchesIdentity(k) {
				for _, v := range vs {
					if strings.Contains(v, "evil") {
						t.Errorf("%s: a client's %s: %q reached the upstream", target, k, v)
					}
				}
			}
		}
		if v := h.Get("X-Forwarded-Host"); v != "" && v != "mcp.example.com" {
			t.Errorf("%s: upstream X-Forwarded-Host %q, mcp-authz judged mcp.example.com", target, v)
		}
		if v := h.Get("X-Forwarded-Proto"); v != "" && v != "http" {
			t.Errorf("%s: upstream X-Forwarded-Proto %q", target, v)
		}
		if v := h.Values("Forwarded"); len(v) > 0 {
			t.Errorf("%s: a client's Forwarded %q reached the upstream", target, v)
		}
		path, _, _ := strings.Cut(strings.SplitN(target, " ", 2)[1], "?")
		if n, err := pathnorm.Normalize(path); err != nil || n != path {
			t.Errorf("%s: the upstream got a path mcp-authz judged as %q (%v)", target, n, err)
		}
	}
}

func matchesIdentity(k string) bool {
	l := strings.NewReplacer("_", "-").Replace(strings.ToLower(k))
	return strings.HasPrefix(l, "x-mcp-auth")
}

// req builds a request; {T} is the mcp:read token, {U} another principal's.
func (s *redStack) req(r string) string {
	return strings.NewReplacer("{T}", s.read, "{U}", s.reader, "\n", "\r\n").Replace(r)
}

const hostLine = "Host: mcp.example.com\n"

// TestRedteamProxyPaths: nginx and Caddy pass the client's path on as it
// was sent; mcp-authz used to judge it with dot segments resolved and
// slashes merged, so "/mcp/admin/../x" was allowed as /mcp/x with a
// mcp:read token and reached the MCP server as /mcp/admin/../x, which a
// server that does not resolve dot segments (Express) serves as
// /mcp/admin. Such paths are now refused (400) on /nginx and /forwarded.
// So is "/mcp/ADMIN", judged as /mcp's while Express, which routes without
// regard to case by default, serves it as /mcp/admin: a path whose
// resource changes when case is ignored is refused everywhere.
func TestRedteamProxyPaths(t *testing.T) {
	s := startRedStack(t)
	for _, path := range []string{
		"/mcp/admin/../x", "/mcp/admin/%2e%2e/x", "/mcp/admin/%2E%2e/", "/mcp/admin/./..", "/mcp/./admin/..",
		"//mcp/admin", "/mcp//admin", "/./mcp", "/mcp/x/..", "/mcp#/../admin", "/mcp/admin/..?x=1",
		"/mcp/ADMIN", "/mcp/Admin/x", "/mcp/adm%49n",
	} {
		for name, addr := range map[string]string{"nginx": s.ng, "caddy": s.cd} {
			before := s.up.count()
			st := raw(t, addr, s.req("GET "+path+" HTTP/1.1\n"+hostLine+"Authorization: Bearer {T}\nConnection: close\n\n"))
			if len(st) != 1 || st[0] != 400 || s.up.count() != before {
				t.Errorf("%s %s: %v, upstream got %v", name, path, st, s.up.targets[before:])
			}
			s.checkUpstream(t, before)
		}
	}
}

// TestRedteamProxyHeld: attacks that held against both recipes. status is
// what the client gets from nginx and from Caddy (0: any answer but a
// 5xx); reach says whether the MCP server is reached.
func TestRedteamProxyHeld(t *testing.T) {
	s := startRedStack(t)
	for _, c := range []struct {
		name      string
		req       string
		ng, cd    []int
		ngR, cdR  bool
		principal string
	}{
		{"no token", "POST /mcp HTTP/1.1\n" + hostLine + "Content-Length: 2\nConnection: close\n\n{}", []int{401}, []int{401}, false, false, ""},
		{"identity headers in every spelling are replaced", "GET /mcp HTTP/1.1\n" + hostLine + "Authorization: Bearer {T}\nX-MCP-AUTH-SUBJECT: evil\nx-mcp-auth-subject: evil\nX-Mcp-Auth-Scopes: evil\nx_mcp_auth_subject: evil\nX_Mcp_Auth_Tool: evil\nX-Mcp-Auth-Tool: evil\nConnection: close\n\n", []int{200}, []int{200}, true, true, "rs-client"},
		{"an identity-like header nginx cannot remove is refused", "GET /mcp HTTP/1.1\n" + hostLine + "Authorization: Bearer {T}\nX-Mcp-Auth-Role: evil\nConnection: close\n\n", []int{400}, []int{200}, false, true, "rs-client"},
		{"a client's original-request headers change nothing", "POST /mcp HTTP/1.1\n" + hostLine + "X-Original-URI: /.well-known/oauth-protected-resource/mcp\nX-Original-Method: OPTIONS\nX-Forwarded-Uri: /.well-known/oauth-protected-resource/mcp\nX-Forwarded-Method: OPTIONS\nX-Forwarded-Host: evil.example\nContent-Length: 0\nConnection: close\n\n", []int{401}, []int{401}, false, false, ""},
		{"a client's X-Forwarded-Host does not reach the upstream", "GET /mcp HTTP/1.1\n" + hostLine + "Authorization: Bearer {T}\nX-Forwarded-Host: evil.example\nX-Forwarded-Proto: evil\nConnection: close\n\n", []int{200}, []int{200}, true, true, "rs-client"},
		{"a client's Forwarded does not reach the upstream", "GET /mcp HTTP/1.1\n" + hostLine + "Authorization: Bearer {T}\nForwarded: host=evil.example;proto=https\nConnection: close\n\n", []int{200}, []int{200}, true, true, "rs-client"},
		{"absolute-form target naming the admin path", "GET http://mcp.example.com/mcp/admin HTTP/1.1\nHost: other.example\nAuthorization: Bearer {T}\nConnection: close\n\n", []int{403}, []int{0}, false, false, ""},
		{"absolute-form target, no token", "GET http://mcp.example.com/mcp HTTP/1.1\n" + hostLine + "Connection: close\n\n", []int{401}, []int{401}, false, false, ""},
		{"two Host headers", "GET /mcp HTTP/1.1\n" + hostLine + "Host: other.example\nAuthorization: Bearer {T}\nConnection: close\n\n", []int{400}, []int{400}, false, false, ""},
		{"token in the query only", "GET /mcp?access_token={T} HTTP/1.1\n" + hostLine + "Connection: close\n\n", []int{401}, []int{401}, false, false, ""},
		{"token in the query and the header", "GET /mcp?token={T} HTTP/1.1\n" + hostLine + "Authorization: Bearer {T}\nConnection: close\n\n", []int{400}, []int{400}, false, false, ""},
		{"scheme in lower case, extra spaces: allowed, token stripped", "GET /mcp HTTP/1.1\n" + hostLine + "Authorization: bearer   {T}\nConnection: close\n\n", []int{200}, []int{200}, true, true, "rs-client"},
		{"obs-folded Authorization", "GET /mcp HTTP/1.1\n" + hostLine + "Authorization: Bearer\n {T}\nConnection: close\n\n", []int{400}, []int{200}, false, true, "rs-client"},
		{"encoded slash", "GET /mcp/admin%2F..%2Fx HTTP/1.1\n" + hostLine + "Authorization: Bearer {T}\nConnection: close\n\n", []int{400}, []int{400}, false, false, ""},
		{"encoded backslash", "GET /mcp%5Cadmin HTTP/1.1\n" + hostLine + "Authorization: Bearer {T}\nConnection: close\n\n", []int{400}, []int{400}, false, false, ""},
		{"path parameter", "GET /mcp;x HTTP/1.1\n" + hostLine + "Authorization: Bearer {T}\nConnection: close\n\n", []int{400}, []int{400}, false, false, ""},
		{"encoded NUL", "GET /mcp%00 HTTP/1.1\n" + hostLine + "Authorization: Bearer {T}\nConnection: close\n\n", []int{400}, []int{400}, false, false, ""},
		{"metadata traversal", "GET /.well-known/oauth-protected-resource/../../mcp HTTP/1.1\n" + hostLine + "Connection: close\n\n", []int{400}, []int{400}, false, false, ""},
		{"metadata, case-folded", "GET /.WELL-KNOWN/oauth-protected-resource/mcp HTTP/1.1\n" + hostLine + "Connection: close\n\n", []int{403}, []int{404}, false, false, ""},
		{"TE and CL smuggling a second request", "POST /mcp HTTP/1.1\n" + hostLine + "Content-Length: 6\nTransfer-Encoding: chunked\n\n0\n\nGET /mcp HTTP/1.1\n" + hostLine + "Connection: close\n\n", []int{400}, []int{401, 401}, false, false, ""},
		{"a body carrying a request", "POST /mcp HTTP/1.1\n" + hostLine + "Content-Length: 5\n\nhelloGET /mcp HTTP/1.1\n" + hostLine + "Connection: close\n\n", []int{401, 401}, []int{401, 401}, false, false, ""},
		{"Expect: 100-continue without a token", "POST /mcp HTTP/1.1\n" + hostLine + "Expect: 100-continue\nContent-Length: 10\nConnection: close\n\n", []int{401}, []int{401}, false, false, ""},
		{"HEAD without a token", "HEAD /mcp HTTP/1.1\n" + hostLine + "Connection: close\n\n", []int{401}, []int{401}, false, false, ""},
		{"unknown method and a method override without a token", "FOO /mcp HTTP/1.1\n" + hostLine + "X-HTTP-Method-Override: OPTIONS\nConnection: close\n\n", []int{401}, []int{401}, false, false, ""},
		{"preflight passes without a token and without identity", "OPTIONS /mcp HTTP/1.1\n" + hostLine + "Origin: https://app.example.com\nAccess-Control-Request-Method: POST\nX-Mcp-Auth-Subject: evil\nConnection: close\n\n", []int{200}, []int{200}, true, true, ""},
		{"preflight from another origin", "OPTIONS /mcp HTTP/1.1\n" + hostLine + "Origin: https://evil.example\nAccess-Control-Request-Method: POST\nConnection: close\n\n", []int{403}, []int{403}, false, false, ""},
		{"a 7 kB path", "GET /mcp/" + strings.Repeat("a", 7000) + " HTTP/1.1\n" + hostLine + "Connection: close\n\n", []int{401}, []int{401}, false, false, ""},
		{"100 kB of headers", "GET /mcp HTTP/1.1\n" + hostLine + "Authorization: Bearer {T}\nX-Big: " + strings.Repeat("a", 100000) + "\nConnection: close\n\n", []int{0}, []int{0}, false, false, ""},
	} {
		for _, p := range []struct {
			name, addr string
			want       []int
			reach      bool
		}{{"nginx", s.ng, c.ng, c.ngR}, {"caddy", s.cd, c.cd, c.cdR}} {
			before := s.up.count()
			got := raw(t, p.addr, s.req(c.req))
			ok := len(got) == len(p.want)
			for i := 0; ok && i < len(got); i++ {
				ok = got[i] == p.want[i] || (p.want[i] == 0 && got[i] < 500)
			}
			if !ok || (s.up.count() > before) != p.reach {
				t.Errorf("%s, %s: got %v, want %v; reached the upstream: %v", p.name, c.name, got, p.want, s.up.targets[before:])
			}
			if h, n := s.up.last(); p.reach && n > before && h.Get("X-Mcp-Auth-Subject") != c.principal {
				t.Errorf("%s, %s: upstream subject %q, want %q", p.name, c.name, h.Get("X-Mcp-Auth-Subject"), c.principal)
			}
			s.checkUpstream(t, before)
		}
	}

	// A session bound to one principal is refused to another through either proxy.
	for name, addr := range map[string]string{"nginx": s.ng, "caddy": s.cd} {
		sess := "Mcp-Session-Id: redteam-" + name + "\n"
		if st := raw(t, addr, s.req("GET /mcp HTTP/1.1\n"+hostLine+sess+"Authorization: Bearer {T}\nConnection: close\n\n")); len(st) != 1 || st[0] != 200 {
			t.Fatalf("%s: owner %v", name, st)
		}
		before := s.up.count()
		if st := raw(t, addr, s.req("GET /mcp HTTP/1.1\n"+hostLine+sess+"Authorization: Bearer {U}\nConnection: close\n\n")); len(st) != 1 || st[0] != 403 || s.up.count() != before {
			t.Errorf("%s: another principal's request on the session: %v", name, st)
		}
	}
}
