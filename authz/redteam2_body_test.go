package authz

// Red-team attacks on unreadable bodies refused without rules (51be594).
// A test that passes documents a defence.

import (
	"fmt"
	"net/http/httptest"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"
)

// TestRedteamBodyEncodingAndTruncation: DESIGN §6 without operation
// rules. A body the MCP server reads as the JSON-RPC message it is
// (whitespace around it, a batch of notifications, content-encoding
// identity in any case) passes; one whose reading is unknown
// (content-encoding other than identity, in any header line; truncated)
// is 400 invalid_request by default, whichever reader and header
// encoding carries it.
func TestRedteamBodyEncodingAndTruncation(t *testing.T) {
	auth := [2]string{"authorization", "Bearer good"}
	session := [2]string{"mcp-session-id", "s-1"}
	ce := func(v string) [2]string { return [2]string{"content-encoding", v} }
	partial := func(v string) [2]string { return [2]string{"x-envoy-auth-partial-body", v} }
	notifications := `[{"jsonrpc":"2.0","method":"notifications/initialized"},{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":1}}]`
	tests := []struct {
		name  string
		body  string
		lines [][2]string
		deny  bool
	}{
		{"whitespace around the message", " \r\n\t" + callTool("x") + "\n\t ", nil, false},
		{"batch of notifications", notifications, nil, false},
		{"batch of responses", `[{"jsonrpc":"2.0","id":1,"result":{}},{"jsonrpc":"2.0","id":2,"error":{"code":-1,"message":"m"}}]`, nil, false},
		{"content-encoding identity", callTool("x"), [][2]string{ce("identity")}, false},
		{"content-encoding IDENTITY, padded", callTool("x"), [][2]string{ce(" IDENTITY ")}, false},
		{"content-encoding empty", callTool("x"), [][2]string{ce("")}, false},
		{"partial body false", callTool("x"), [][2]string{partial("false")}, false},
		// RFC 8259 §8.1: a sender must not add a BOM; read strictly, the
		// body is unreadable (jsonrpc.go), and the default refuses it.
		{"BOM", "\ufeff" + callTool("x"), nil, true},
		{"gzip", callTool("x"), [][2]string{ce("gzip")}, true},
		{"GZIP", callTool("x"), [][2]string{ce("GZIP")}, true},
		{"identity then gzip in one line", callTool("x"), [][2]string{ce("identity, gzip")}, true},
		{"gzip then identity, two lines", callTool("x"), [][2]string{ce("gzip"), ce("identity")}, true},
		{"identity then br, two lines", callTool("x"), [][2]string{ce("identity"), ce("br")}, true},
		{"unknown coding", callTool("x"), [][2]string{ce("x-custom")}, true},
		{"partial body true", callTool("x"), [][2]string{partial("true")}, true},
		{"partial body TRUE, padded", callTool("x"), [][2]string{partial(" TRUE ")}, true},
		{"not JSON-RPC", `{"id":1}`, nil, true},
		{"JSON string", `"tools/call"`, nil, true},
	}
	s, _ := newTestServer(t, func(_ *Config, r *Resource) { r.Operations = nil })
	for _, tt := range tests {
		for _, raw := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/raw=%v", tt.name, raw), func(t *testing.T) {
				lines := append([][2]string{auth, session}, tt.lines...)
				d := rtDecideBoth(t, s, rtHeaderLines("/mcp", tt.body, raw, lines...))
				switch {
				case tt.deny && (d.http != 400 || !strings.Contains(d.headers["www-authenticate"], `error="invalid_request"`)):
					t.Fatalf("got %v %d, want 400 invalid_request", d.grpc, d.http)
				case !tt.deny && d.grpc != codes.OK:
					t.Fatalf("a readable body denied: %d %s", d.http, d.body)
				}
			})
		}
	}
}

// TestRedteamForwardBodyTruncation: on /envoy/<path> (Envoy's HTTP
// ext_authz), a body longer than ForwardMaxBody is truncated here, and
// its reading is unknown whatever an x-envoy-auth-partial-body header
// says (Envoy's "false" only means it sent the whole body); two
// Content-Encoding lines are read as one list, as on the gRPC side.
func TestRedteamForwardBodyTruncation(t *testing.T) {
	long := `{"jsonrpc":"2.0","id":1,"method":"ping"}` + strings.Repeat(" ", ForwardMaxBody)
	tests := []struct {
		name    string
		body    string
		headers [][2]string
		deny    bool
	}{
		{"whole body", callTool("x"), nil, false},
		{"truncated", long, nil, true},
		{"truncated, partial-body false", long, [][2]string{{"X-Envoy-Auth-Partial-Body", "false"}}, true},
		{"whole body, partial-body true", callTool("x"), [][2]string{{"X-Envoy-Auth-Partial-Body", "true"}}, true},
		{"gzip then identity", callTool("x"), [][2]string{{"Content-Encoding", "gzip"}, {"Content-Encoding", "identity"}}, true},
		{"identity", callTool("x"), [][2]string{{"Content-Encoding", "identity"}}, false},
	}
	s, _ := newTestServer(t, func(_ *Config, r *Resource) { r.Operations = nil })
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			headers := append([][2]string{{"Authorization", "Bearer good"}, {"Mcp-Session-Id", "s-1"}}, tt.headers...)
			w := httptest.NewRecorder()
			s.ForwardHandler().ServeHTTP(w, forwardRequest(ForwardPathEnvoy, original{method: "POST", target: "/mcp", headers: headers, body: tt.body}))
			switch {
			case tt.deny && w.Code != 400:
				t.Fatalf("got %d, want 400", w.Code)
			case !tt.deny && w.Code != 200:
				t.Fatalf("a readable body denied: %d %s", w.Code, w.Body)
			}
		})
	}
}

// TestRedteamManyContentEncodingLines: thousands of Content-Encoding lines
// in header_map cost the reader what one does, not the square of their
// number (a join grown line by line copies everything before it each
// time), and the body stays unreadable.
func TestRedteamManyContentEncodingLines(t *testing.T) {
	lines := make([][2]string, 10_000)
	for i := range lines {
		lines[i] = [2]string{"content-encoding", "identity"}
	}
	wire, err := proto.Marshal(rtHeaderLines("/mcp", callTool("x"), true, lines...))
	if err != nil {
		t.Fatal(err)
	}
	s, _ := newTestServer(t, nil)
	in, err := parseCheckInput(wire, &s.read)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(in.contentEncoding); n > 64 {
		t.Fatalf("the Content-Encoding lines were joined into %d bytes", n)
	}
	if state, _ := readBody(&in, nil); state != bodyUnreadable {
		t.Fatalf("body state %v, want unreadable", state)
	}
}
