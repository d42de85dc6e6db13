package authz

import (
	"context"
	"crypto/sha256"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc/codes"

	"github.com/mcp-authz/mcp-authz/internal/pathnorm"
	"github.com/mcp-authz/mcp-authz/validators"
)

// mcpRequest is a streamable HTTP request with a JSON-RPC body.
func mcpRequest(method, path, body string, headers map[string]string) *authv3.CheckRequest {
	req := envoyRequest(path, headers)
	h := req.Attributes.Request.Http
	h.Method = method
	h.Headers[":method"] = method
	if body != "" {
		h.RawBody = []byte(body)
	}
	return req
}

const (
	initializeBody = `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}`
	listToolsBody  = `{"jsonrpc":"2.0","id":2,"method":"tools/list"}`
)

func callTool(name string) string {
	return `{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"` + name + `","arguments":{}}}`
}

func TestEndpointClasses(t *testing.T) {
	bearer := map[string]string{"authorization": "Bearer good"}
	session := map[string]string{"mcp-session-id": "s-1"}
	tests := []struct {
		name                string
		unprotectInitialize bool
		unprotectMessages   bool
		method, path, body  string
		headers             map[string]string
		wantGRPC            codes.Code
		wantIdentity        bool
	}{
		{"initialize open: initialize passes without a token", true, false, "POST", "/mcp", initializeBody, nil, codes.OK, false},
		{"initialize open: a token is not even looked at", true, false, "POST", "/mcp", initializeBody, map[string]string{"authorization": "Bearer expired"}, codes.OK, false},
		{"initialize open: tools/call still needs a token", true, false, "POST", "/mcp", callTool("echo"), session, codes.Unauthenticated, false},
		{"initialize open: a session-less tools/call is messages", true, false, "POST", "/mcp", callTool("echo"), nil, codes.Unauthenticated, false},
		{"initialize open: initialize with a session id is messages", true, false, "POST", "/mcp", initializeBody, session, codes.Unauthenticated, false},
		{"initialize open: a batch holding initialize is messages", true, false, "POST", "/mcp", "[" + initializeBody + "," + callTool("x") + "]", nil, codes.Unauthenticated, false},
		{"initialize open: no body cannot prove initialize", true, false, "POST", "/mcp", "", nil, codes.Unauthenticated, false},
		{"initialize open: a body that is not JSON cannot prove it", true, false, "POST", "/mcp", `{"method":"initialize"`, nil, codes.Unauthenticated, false},
		{"initialize open: legacy SSE stream passes", true, false, "GET", "/sse", "", nil, codes.OK, false},
		{"initialize open: legacy messages need a token", true, false, "POST", "/messages?sessionId=abc", callTool("echo"), nil, codes.Unauthenticated, false},
		{"initialize open: GET stream of a session needs a token", true, false, "GET", "/mcp", "", session, codes.Unauthenticated, false},
		{"messages open: messages pass", false, true, "POST", "/mcp", callTool("echo"), session, codes.OK, false},
		{"messages open: DELETE passes", false, true, "DELETE", "/mcp", "", session, codes.OK, false},
		{"messages open: initialize needs a token", false, true, "POST", "/mcp", initializeBody, nil, codes.Unauthenticated, false},
		{"messages open: unknown class is protected", false, true, "POST", "/mcp", "garbage", nil, codes.Unauthenticated, false},
		{"messages open: with a token, initialize is allowed with identity", false, true, "POST", "/mcp", initializeBody, bearer, codes.OK, true},
		{"both open: unknown class passes", true, true, "POST", "/mcp", "garbage", nil, codes.OK, false},
		{"both protected: initialize needs a token", false, false, "POST", "/mcp", initializeBody, nil, codes.Unauthenticated, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, fv := newTestServer(t, func(_ *Config, r *Resource) {
				r.UnprotectedInitialize, r.UnprotectedMessages = tt.unprotectInitialize, tt.unprotectMessages
			})
			headers := map[string]string{"x-mcp-auth-subject": "forged", "x_mcp_auth_scopes": "admin"}
			for k, v := range tt.headers {
				headers[k] = v
			}
			d := decide(t, s, mcpRequest(tt.method, tt.path, tt.body, headers))
			if d.grpc != tt.wantGRPC {
				t.Fatalf("got %v %d, want %v", d.grpc, d.http, tt.wantGRPC)
			}
			if d.grpc != codes.OK {
				return
			}
			removed := d.ok.GetHeadersToRemove()
			if !slices.Contains(removed, "x_mcp_auth_scopes") {
				t.Errorf("client's underscore identity header not removed: %v", removed)
			}
			hasSubject := false
			for _, h := range d.ok.GetHeaders() {
				hasSubject = hasSubject || h.GetHeader().GetKey() == "x-mcp-auth-subject"
			}
			if hasSubject != tt.wantIdentity {
				t.Errorf("identity forwarded %v, want %v", hasSubject, tt.wantIdentity)
			}
			if !tt.wantIdentity {
				if !slices.Contains(removed, "x-mcp-auth-subject") {
					t.Errorf("client's identity header not removed on an unauthenticated pass: %v", removed)
				}
				if fv.calls.Load() != 0 {
					t.Error("validator called for an unprotected class")
				}
			}
		})
	}
}

func TestOperationScopes(t *testing.T) {
	ops := []Operation{
		{Method: "tools/call", Scopes: []string{"mcp:tools"}},
		{Method: "tools/call", Name: "delete_*", Scopes: []string{"repo:admin"}},
		{Method: "resources/read", Name: "file:///secrets/*", Scopes: []string{"secrets:read"}},
		{Method: "notifications/cancelled", Scopes: []string{"mcp:cancel"}},
	}
	grants := map[string][]string{
		"tools":    {"mcp:read", "mcp:tools"},
		"admin":    {"mcp:read", "mcp:tools", "repo:admin"},
		"secrets":  {"mcp:read", "secrets:read"},
		"super":    {"mcp:read", "mcp:super"},
		"readonly": {"mcp:read"},
	}
	tests := []struct {
		name, token, body string
		wantHTTP          int    // 0: allowed
		wantScope         string // scope of the 403 challenge
	}{
		{"tools/call with mcp:tools", "tools", callTool("echo"), 0, ""},
		{"tools/call without mcp:tools", "readonly", callTool("echo"), 403, "mcp:read mcp:tools"},
		{"delete_ tool needs repo:admin too", "tools", callTool("delete_repo"), 403, "mcp:read mcp:tools repo:admin"},
		{"delete_ tool with both", "admin", callTool("delete_repo"), 0, ""},
		{"glob is case-sensitive", "tools", callTool("Delete_repo"), 0, ""},
		{"glob matches the whole value", "tools", callTool("undelete_repo"), 0, ""},
		{"resource glob crosses slashes", "secrets", `{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"file:///secrets/a/b"}}`, 0, ""},
		{"resource glob needs its scope", "tools", `{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"file:///secrets/x"}}`, 403, "mcp:read secrets:read"},
		{"other resources need the route scope only", "readonly", `{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"file:///public"}}`, 0, ""},
		{"a notification is executed too", "readonly", `{"jsonrpc":"2.0","method":"tools/call","params":{"name":"delete_x"}}`, 403, "mcp:read mcp:tools repo:admin"},
		{"notifications match rules", "readonly", `{"jsonrpc":"2.0","method":"notifications/cancelled","params":{}}`, 403, "mcp:read mcp:cancel"},
		{"a response needs the route scope only", "readonly", `{"jsonrpc":"2.0","id":1,"result":{}}`, 0, ""},
		{"an error response needs the route scope only", "readonly", `{"jsonrpc":"2.0","id":1,"error":{"code":1,"message":"x"}}`, 0, ""},
		{"a batch needs the union", "tools", "[" + callTool("echo") + "," + `{"jsonrpc":"2.0","id":9,"method":"resources/read","params":{"uri":"file:///secrets/k"}}` + "]", 403, "mcp:read mcp:tools secrets:read"},
		{"a response cannot hide a request in a batch", "readonly", `[{"jsonrpc":"2.0","id":1,"result":{}},` + callTool("x") + `]`, 403, "mcp:read mcp:tools"},
		{"scope_implies grants the implied scopes", "super", callTool("delete_repo"), 0, ""},
		{"an escaped member name is read as the server reads it", "readonly", `{"jsonrpc":"2.0","id":1,"met\u0068od":"tools/call","params":{"name":"x"}}`, 403, "mcp:read mcp:tools"},
		{"an escaped tool name is read as the server reads it", "tools", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"\u0064elete_x"}}`, 403, "mcp:read mcp:tools repo:admin"},
		{"a body that is not JSON is refused", "admin", `{"method":`, 400, ""},
		{"JSON that is not a message is refused", "admin", `{"jsonrpc":"2.0"}`, 400, ""},
		{"an empty batch is refused", "admin", `[]`, 400, ""},
		{"no body is refused while rules exist", "admin", "", 400, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, fv := newTestServer(t, func(_ *Config, r *Resource) {
				r.Operations = ops
				r.ScopeImplies = map[string][]string{"mcp:super": {"mcp:admin"}, "mcp:admin": {"mcp:tools", "repo:admin"}}
			})
			for name, scopes := range grants {
				fv.answers[name] = principal(scopes...)
			}
			d := decide(t, s, mcpRequest("POST", "/mcp", tt.body, map[string]string{"authorization": "Bearer " + tt.token, "mcp-session-id": "s"}))
			if tt.wantHTTP == 0 {
				if d.grpc != codes.OK {
					t.Fatalf("denied: %d %s", d.http, d.headers["www-authenticate"])
				}
				return
			}
			if d.http != tt.wantHTTP {
				t.Fatalf("got %v %d %s, want %d", d.grpc, d.http, d.body, tt.wantHTTP)
			}
			if tt.wantHTTP == 403 {
				want := `Bearer error="insufficient_scope", scope="` + tt.wantScope + `", resource_metadata="` + testPRM + `"`
				if got := d.headers["www-authenticate"]; got != want {
					t.Errorf("challenge\n got %s\nwant %s", got, want)
				}
			}
		})
	}
}

func TestOperationScopesWithoutBodyRules(t *testing.T) {
	// GET and DELETE carry no operation: route scopes only, never the body.
	s, _ := newTestServer(t, func(_ *Config, r *Resource) {
		r.Operations = []Operation{{Method: "tools/call", Scopes: []string{"mcp:tools"}}}
	})
	for _, m := range []string{"GET", "DELETE"} {
		if d := decide(t, s, mcpRequest(m, "/mcp", "", map[string]string{"authorization": "Bearer good", "mcp-session-id": "s"})); d.grpc != codes.OK {
			t.Errorf("%s: %d", m, d.http)
		}
	}
	// unreadable_body: route_scopes lets an unreadable body through on the route's scopes.
	s, _ = newTestServer(t, func(_ *Config, r *Resource) {
		r.Operations = []Operation{{Method: "tools/call", Scopes: []string{"mcp:tools"}}}
		r.UnreadableBodyRouteScopes = true
	})
	for name, req := range map[string]*authv3.CheckRequest{
		"absent":     mcpRequest("POST", "/mcp", "", map[string]string{"authorization": "Bearer good"}),
		"truncated":  mcpRequest("POST", "/mcp", callTool("x"), map[string]string{"authorization": "Bearer good", "x-envoy-auth-partial-body": "true"}),
		"compressed": mcpRequest("POST", "/mcp", callTool("x"), map[string]string{"authorization": "Bearer good", "content-encoding": "gzip"}),
	} {
		if d := decide(t, s, req); d.grpc != codes.OK {
			t.Errorf("route_scopes, %s body: %d", name, d.http)
		}
	}
	// Duplicate members are refused whatever unreadable_body says.
	dup := mcpRequest("POST", "/mcp", `{"jsonrpc":"2.0","id":1,"method":"tools/list","method":"tools/call","params":{"name":"x"}}`,
		map[string]string{"authorization": "Bearer good"})
	if d := decide(t, s, dup); d.http != 400 {
		t.Errorf("duplicate method: %d", d.http)
	}
}

// TestUnreadableBodyWithoutRules: DESIGN §6 refuses a POST body that is
// truncated, compressed, not JSON or not JSON-RPC (unreadable_body: deny,
// the default) whether or not operation rules exist, since what the MCP
// server will read cannot be known; only an absent body (Envoy not
// configured to send it, or nginx and Traefik, which never do) depends on
// rules. unreadable_body: route_scopes lets each through on the route's
// scopes.
func TestUnreadableBodyWithoutRules(t *testing.T) {
	headers := func(extra ...string) map[string]string {
		h := map[string]string{"authorization": "Bearer good", "mcp-session-id": "s"}
		for i := 0; i < len(extra); i += 2 {
			h[extra[i]] = extra[i+1]
		}
		return h
	}
	for _, tc := range []struct {
		name    string
		req     *authv3.CheckRequest
		deny400 bool // with the default unreadable_body: deny
	}{
		{"readable", mcpRequest("POST", "/mcp", callTool("x"), headers()), false},
		{"absent", mcpRequest("POST", "/mcp", "", headers()), false},
		{"truncated", mcpRequest("POST", "/mcp", callTool("x"), headers("x-envoy-auth-partial-body", "true")), true},
		{"compressed", mcpRequest("POST", "/mcp", callTool("x"), headers("content-encoding", "gzip")), true},
		{"identity encoding is not compression", mcpRequest("POST", "/mcp", callTool("x"), headers("content-encoding", "identity")), false},
		{"not JSON", mcpRequest("POST", "/mcp", `{"method":`, headers()), true},
		{"JSON but no message", mcpRequest("POST", "/mcp", `{"jsonrpc":"2.0"}`, headers()), true},
		{"empty batch", mcpRequest("POST", "/mcp", `[]`, headers()), true},
	} {
		for _, routeScopes := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/route_scopes=%v", tc.name, routeScopes), func(t *testing.T) {
				s, _ := newTestServer(t, func(_ *Config, r *Resource) {
					r.Operations = nil
					r.UnreadableBodyRouteScopes = routeScopes
				})
				d := decide(t, s, tc.req)
				if tc.deny400 && !routeScopes {
					if d.http != 400 || !strings.Contains(d.headers["www-authenticate"], `error="invalid_request"`) {
						t.Fatalf("got %v %d %s, want 400 invalid_request", d.grpc, d.http, d.headers["www-authenticate"])
					}
					return
				}
				if d.grpc != codes.OK {
					t.Fatalf("denied: %d %s", d.http, d.body)
				}
			})
		}
	}
}

func TestIdentityNamesTheOperation(t *testing.T) {
	s, _ := newTestServer(t, nil)
	for range 2 { // the second answer comes from the per-principal memo
		d := decide(t, s, mcpRequest("POST", "/mcp", callTool(`say\r\nx-evil: 1`), map[string]string{"authorization": "Bearer good"}))
		got := map[string]string{}
		for _, h := range d.ok.GetHeaders() {
			got[h.GetHeader().GetKey()] = h.GetHeader().GetValue()
		}
		if got["x-mcp-auth-method"] != "tools/call" || got["x-mcp-auth-tool"] != "say%0D%0Ax-evil: 1" || got["x-mcp-auth-resource"] != testResource {
			t.Fatalf("identity headers %v", got)
		}
		md := d.resp.GetDynamicMetadata().GetFields()
		if md["method"].GetStringValue() != "tools/call" || md["tool"].GetStringValue() != "say\r\nx-evil: 1" {
			t.Fatalf("metadata %v", md)
		}
	}
	d := decide(t, s, mcpRequest("POST", "/mcp", listToolsBody, map[string]string{"authorization": "Bearer good"}))
	for _, h := range d.ok.GetHeaders() {
		if h.GetHeader().GetKey() == "x-mcp-auth-tool" {
			t.Fatalf("a tool forwarded for tools/list: %v", h)
		}
	}
	if !slices.Contains(d.ok.GetHeadersToRemove(), "x-mcp-auth-tool") {
		t.Error("x-mcp-auth-tool not removed when unknown")
	}
}

func TestHeaderValueEncoding(t *testing.T) {
	for in, want := range map[string]string{
		"alice":          "alice",
		"José":           "Jos%C3%A9",
		"100%":           "100%25",
		"a\r\nb":         "a%0D%0Ab",
		"del\x7f":        "del%7F",
		"tab\there":      "tab%09here",
		"mcp:read mcp:x": "mcp:read mcp:x",
	} {
		if got := headerValue(in); got != want {
			t.Errorf("headerValue(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestOrigins(t *testing.T) {
	s, fv := newTestServer(t, func(_ *Config, r *Resource) {
		r.AllowedOrigins = []string{"https://app.example.com", "http://localhost:*"}
	})
	tests := []struct {
		name    string
		method  string
		headers map[string]string
		http    int // 0: allowed
		cors    bool
	}{
		{"no Origin passes the check", "POST", map[string]string{"authorization": "Bearer good"}, 0, false},
		{"allowed origin with a token", "POST", map[string]string{"origin": "https://app.example.com", "authorization": "Bearer good"}, 0, false},
		{"allowed origin, no token: challenge readable by the page", "POST", map[string]string{"origin": "https://app.example.com"}, 401, true},
		{"origin case does not matter", "POST", map[string]string{"origin": "HTTPS://APP.example.com"}, 401, true},
		{"localhost on any port", "POST", map[string]string{"origin": "http://localhost:5173"}, 401, true},
		{"localhost without a port", "POST", map[string]string{"origin": "http://localhost"}, 401, true},
		{"foreign origin refused before any token work", "POST", map[string]string{"origin": "https://evil.example", "authorization": "Bearer good"}, 403, false},
		{"a prefix of an allowed origin is foreign", "POST", map[string]string{"origin": "https://app.example.com.evil.example"}, 403, false},
		{"another scheme is foreign", "POST", map[string]string{"origin": "http://app.example.com"}, 403, false},
		{"null origin is foreign", "POST", map[string]string{"origin": "null"}, 403, false},
		{"two origins joined by Envoy are foreign", "POST", map[string]string{"origin": "https://app.example.com,https://evil.example"}, 403, false},
		{"a port on the wildcard must be a number", "POST", map[string]string{"origin": "http://localhost:80x"}, 403, false},
		{"preflight from an allowed origin passes without a token", "OPTIONS", map[string]string{"origin": "https://app.example.com", "access-control-request-method": "POST"}, 0, false},
		{"preflight from a foreign origin is refused", "OPTIONS", map[string]string{"origin": "https://evil.example", "access-control-request-method": "POST"}, 403, false},
		{"OPTIONS without Access-Control-Request-Method is no preflight", "OPTIONS", map[string]string{"origin": "https://app.example.com"}, 401, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := fv.calls.Load()
			d := decide(t, s, mcpRequest(tt.method, "/mcp", callTool("x"), tt.headers))
			if tt.http == 0 {
				if d.grpc != codes.OK {
					t.Fatalf("denied %d", d.http)
				}
				return
			}
			if d.http != tt.http {
				t.Fatalf("got %d, want %d", d.http, tt.http)
			}
			if tt.http == 403 {
				if d.headers["www-authenticate"] != "" || !strings.Contains(d.body, `"invalid_origin"`) {
					t.Errorf("origin denial: %v %s", d.headers, d.body)
				}
				if fv.calls.Load() != before {
					t.Error("token validated for a foreign origin")
				}
			}
			acao := d.headers["access-control-allow-origin"]
			if tt.cors != (acao != "") {
				t.Fatalf("CORS headers %v, want %v", d.headers, tt.cors)
			}
			if tt.cors && (acao != tt.headers["origin"] || d.headers["vary"] != "Origin" ||
				d.headers["access-control-expose-headers"] != "WWW-Authenticate, Mcp-Session-Id") {
				t.Errorf("CORS headers %v", d.headers)
			}
		})
	}
	// Without a list, Origin is not checked.
	s, _ = newTestServer(t, nil)
	if d := decide(t, s, mcpRequest("POST", "/mcp", callTool("x"), map[string]string{"origin": "https://any.example", "authorization": "Bearer good"})); d.grpc != codes.OK {
		t.Fatalf("origin checked without a list: %d", d.http)
	}
}

// memorySessions is a SessionStore for tests.
type memorySessions struct {
	mu sync.Mutex
	m  map[[sha256.Size]byte]string
}

func (m *memorySessions) Bind(_ context.Context, key [sha256.Size]byte, principal string, _ time.Duration) string {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.m == nil {
		m.m = map[[sha256.Size]byte]string{}
	}
	if b, ok := m.m[key]; ok {
		return b
	}
	m.m[key] = principal
	return principal
}

func TestSessionBinding(t *testing.T) {
	store := &memorySessions{}
	s, fv := newTestServer(t, func(c *Config, r *Resource) {
		c.Sessions = store
		r.SessionBinding = true
	})
	fv.answers["alice"] = func() (*validators.Principal, error) {
		return validators.NewPrincipal(validators.Identity{Subject: "alice", Issuer: "https://as.example", Scopes: []string{"mcp:read"}}), nil
	}
	fv.answers["alice-2"] = fv.answers["alice"] // another token of the same principal
	fv.answers["bob"] = func() (*validators.Principal, error) {
		return validators.NewPrincipal(validators.Identity{Subject: "bob", Issuer: "https://as.example", Scopes: []string{"mcp:read"}}), nil
	}
	fv.answers["alice-elsewhere"] = func() (*validators.Principal, error) {
		return validators.NewPrincipal(validators.Identity{Subject: "alice", Issuer: "https://other-as.example", Scopes: []string{"mcp:read"}}), nil
	}
	call := func(token, session, path string) decision {
		h := map[string]string{"authorization": "Bearer " + token}
		if session != "" {
			h["mcp-session-id"] = session
		}
		return decide(t, s, mcpRequest("POST", path, listToolsBody, h))
	}
	steps := []struct {
		name, token, session, path string
		http                       int
	}{
		{"alice binds s-1", "alice", "s-1", "/mcp", 0},
		{"alice uses s-1 again", "alice", "s-1", "/mcp", 0},
		{"alice with a refreshed token", "alice-2", "s-1", "/mcp", 0},
		{"bob replays alice's session", "bob", "s-1", "/mcp", 403},
		{"same subject at another issuer is another principal", "alice-elsewhere", "s-1", "/mcp", 403},
		{"bob binds his own session", "bob", "s-2", "/mcp", 0},
		{"no session: nothing to bind", "bob", "", "/mcp", 0},
		{"legacy sessionId binds too", "alice", "", "/messages?sessionId=legacy-1", 0},
		{"legacy sessionId replayed", "bob", "", "/messages?sessionId=legacy-1", 403},
		{"two sessionId parameters are ambiguous", "bob", "", "/messages?sessionId=a&sessionId=b", 400},
		{"a joined session header is ambiguous", "alice", "s-1,s-2", "/mcp", 400},
		{"a session id with a control character", "alice", "s\x01", "/mcp", 400},
		{"a session id longer than 1 KiB", "alice", strings.Repeat("s", 1025), "/mcp", 400},
		{"a legacy sessionId with a control character", "alice", "", "/messages?sessionId=a%01b", 400},
	}
	for _, st := range steps {
		d := call(st.token, st.session, st.path)
		got := d.http
		if d.grpc == codes.OK {
			got = 0
		}
		if got != st.http {
			t.Fatalf("%s: got %d (%s), want %d", st.name, got, d.body, st.http)
		}
		if st.http == 403 && (d.headers["www-authenticate"] != "" || !strings.Contains(d.body, `"session_mismatch"`)) {
			t.Fatalf("%s: mismatch answer %v %s", st.name, d.headers, d.body)
		}
	}
	if _, err := NewServer(Config{Resources: []*Resource{{URI: testResource, Validator: fv, SessionBinding: true}}}); err == nil {
		t.Fatal("session binding without a store accepted")
	}
}

func TestRoutingPrecedenceAndConflicts(t *testing.T) {
	v := &fakeValidator{answers: map[string]func() (*validators.Principal, error){"tok": principal()}}
	res := func(name string, hosts []string, prefixes ...string) *Resource {
		return &Resource{Name: name, URI: "https://h.example/" + name, Hosts: hosts, PathPrefixes: prefixes, Validator: v}
	}
	s, err := NewServer(Config{Logger: discardLogger(), Resources: []*Resource{
		res("any-mcp", nil, "/mcp"),
		res("host-mcp", []string{"strong.example"}, "/mcp/"),
		res("any-admin", nil, "/mcp/admin"),
		res("multi", nil, "/tools", "/sse", "/messages"),
		res("root", []string{"root.example"}),
	}})
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct{ host, path, want string }{
		{"weak.example", "/mcp", "any-mcp"},
		{"strong.example", "/mcp", "host-mcp"},
		{"STRONG.example:443", "/mcp/x", "host-mcp"},
		{"strong.example", "/mcp/admin/x", "any-admin"},
		{"weak.example", "/mcp/admin", "any-admin"},
		{"weak.example", "/sse", "multi"},
		{"weak.example", "/messages?sessionId=1", "multi"},
		{"root.example", "/anything", "root"},
		{"root.example", "/mcp", "any-mcp"},
		{"weak.example", "/mcpx", ""},
		// Letter case: the same resource either way is judged; a path
		// whose resource changes when case is ignored is refused.
		{"weak.example", "/mcp/X", "any-mcp"},
		{"weak.example", "/mcp/ADMIN", "ambiguous"},
		{"strong.example", "/mcp/Admin/x", "ambiguous"},
		{"weak.example", "/MCP", ""}, // no resource: denied as before
		{"root.example", "/MCP/x", "ambiguous"},
		{"root.example", "/Other", "root"},
	} {
		in := inputFromProto(envoyRequest(tt.path, nil), testRead)
		in.host = tt.host
		path, _ := pathnorm.Normalize(pathOnly(tt.path))
		got := ""
		if rt, ambiguous := s.router.find(&in, path); ambiguous {
			got = "ambiguous"
		} else if rt != nil {
			got = rt.Name
		}
		if got != tt.want {
			t.Errorf("%s%s: routed to %q, want %q", tt.host, tt.path, got, tt.want)
		}
	}
	// A context extension names the resource, and still a path that another
	// resource claims but for letter case is refused.
	in := inputFromProto(envoyRequest("/mcp/ADMIN", nil), testRead)
	in.host, in.hasResource, in.resource = "weak.example", true, "any-mcp"
	if rt, ambiguous := s.router.find(&in, "/mcp/ADMIN"); !ambiguous {
		t.Errorf("extension any-mcp, /mcp/ADMIN: routed to %v, not refused", rt)
	}
	if rt, ambiguous := s.router.find(&in, "/mcp/x"); ambiguous || rt == nil || rt.Name != "any-mcp" {
		t.Errorf("extension any-mcp, /mcp/x: %v, %v", rt, ambiguous)
	}
	// Judged and served as the same resource however case is read.
	if rt, ambiguous := s.router.find(&in, "/MCP/x"); ambiguous || rt == nil || rt.Name != "any-mcp" {
		t.Errorf("extension any-mcp, /MCP/x: %v, %v", rt, ambiguous)
	}
	for name, rs := range map[string][]*Resource{
		"same prefix, both any-host":      {res("a", nil, "/mcp"), res("b", nil, "/mcp/")},
		"same prefix, overlapping hosts":  {res("a", []string{"x.example", "y.example"}, "/mcp"), res("b", []string{"Y.example"}, "/mcp")},
		"two resources without prefixes":  {res("a", nil), res("b", nil)},
		"root written two ways":           {res("a", nil, "/"), res("b", nil)},
		"dot segments reach the same one": {res("a", nil, "/mcp"), res("b", nil, "/x/../mcp")},
		"the same but for letter case":    {res("a", nil, "/mcp/admin"), res("b", nil, "/mcp/Admin")},
		"same name":                       {{Name: "a", URI: "https://h.example/1", Validator: v, PathPrefixes: []string{"/1"}}, {Name: "a", URI: "https://h.example/2", Validator: v, PathPrefixes: []string{"/2"}}},
	} {
		if _, err := NewServer(Config{Resources: rs}); err == nil {
			t.Errorf("%s: accepted", name)
		} else if !strings.Contains(err.Error(), `"a"`) && !strings.Contains(err.Error(), "a\"") {
			t.Errorf("%s: error does not name the resources: %v", name, err)
		}
	}
}
