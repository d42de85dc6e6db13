package authz

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"
)

// Red-team attacks on Authorization values read as RFC 7235 lists
// (39a08eb). A test that passes documents a defence.

// rtHeaderLines builds a POST CheckRequest carrying the given header lines
// (name, value pairs) either as Envoy's default headers map (repeated
// names joined with ",") or as encode_raw_headers' header_map (one entry
// per line).
func rtHeaderLines(path, body string, raw bool, lines ...[2]string) *authv3.CheckRequest {
	req := mcpRequest("POST", path, body, nil)
	h := req.Attributes.Request.Http
	if !raw {
		for _, l := range lines {
			if v, ok := h.Headers[l[0]]; ok {
				h.Headers[l[0]] = v + "," + l[1]
			} else {
				h.Headers[l[0]] = l[1]
			}
		}
		return req
	}
	hm := &corev3.HeaderMap{}
	for k, v := range h.Headers {
		hm.Headers = append(hm.Headers, &corev3.HeaderValue{Key: k, RawValue: []byte(v)})
	}
	for _, l := range lines {
		hm.Headers = append(hm.Headers, &corev3.HeaderValue{Key: l[0], RawValue: []byte(l[1])})
	}
	h.Headers, h.HeaderMap = nil, hm
	return req
}

// rtDecideBoth decides req through both readers (the decoded message, and
// the wire read in place) and fails when they disagree.
func rtDecideBoth(t *testing.T, s *Server, req *authv3.CheckRequest) decision {
	t.Helper()
	d := decide(t, s, req)
	wire, err := proto.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	got, err := s.CheckWire(context.Background(), wire)
	if err != nil {
		if d.grpc == codes.OK || d.http != 0 {
			t.Fatalf("wire reader: %v, message reader: %v %d", err, d.grpc, d.http)
		}
		return d
	}
	var resp authv3.CheckResponse
	if err := proto.Unmarshal(got, &resp); err != nil {
		t.Fatal(err)
	}
	if code := resp.GetStatus().GetCode(); codes.Code(code) != d.grpc || int(resp.GetDeniedResponse().GetStatus().GetCode()) != d.http {
		t.Fatalf("readers disagree: wire %v %d, message %v %d", codes.Code(code), resp.GetDeniedResponse().GetStatus().GetCode(), d.grpc, d.http)
	}
	return d
}

// TestRedteamAuthorizationLists: Authorization header lines as a client
// sends them, joined by Envoy (headers map) or one per entry
// (header_map). No bearer token is ever accepted next to a comma; two
// lines are 400 invalid_request (DESIGN §2) whenever their joined value
// cannot be one credential, in particular when a quote in the first line
// (not a quoted string: it opens no auth-param value, or never closes)
// would hide the second; one credential with auth-params stays a 401
// challenge; nothing loops or panics.
func TestRedteamAuthorizationLists(t *testing.T) {
	const ok, challenge, invalid = 200, 401, 400
	tests := []struct {
		name   string
		lines  []string
		joined int // the answer to the lines joined with ","
		raw    int // the answer to them as header_map entries
	}{
		{"one bearer", []string{"Bearer good"}, ok, ok},
		{"lower-case scheme, trailing space", []string{"bearer good "}, ok, ok},
		{"two bearers", []string{"Bearer good", "Bearer good"}, invalid, invalid},
		{"basic then bearer", []string{"Basic dXNlcjpw", "Bearer good"}, invalid, invalid},
		{"bearer then an auth-param", []string{"Bearer good", "x=y"}, invalid, invalid},
		{"bearer then an empty line", []string{"Bearer good", ""}, invalid, invalid},
		{"empty line then bearer", []string{"", "Bearer good"}, invalid, invalid},
		{"two basics", []string{"Basic a", "Basic b"}, invalid, invalid},
		{"bearer with a trailing comma", []string{"Bearer good,"}, invalid, invalid},
		{"bearer, tab-separated credential", []string{"Bearer\tgood,Basic x"}, invalid, invalid},
		{"digest then bearer", []string{`Digest a=b`, "Bearer good"}, invalid, invalid},

		// A quote that opens no auth-param value is no quoted string.
		{"lone quote hides a bearer", []string{`Basic "`, "Bearer good"}, invalid, invalid},
		{"quote pair across two lines", []string{`Basic "`, `Bearer good"`}, invalid, invalid},
		{"quote pair across two basics", []string{`Basic "`, `Basic "`}, invalid, invalid},
		// A quoted string that never closes is none either.
		{"unterminated auth-param value hides a bearer", []string{`Digest a="`, "Bearer good"}, invalid, invalid},
		{"unterminated value with an escape", []string{`Digest a="x\`, "Bearer good"}, invalid, invalid},
		// A closed quoted string across two lines is one valid Digest
		// credential once joined: nothing can tell it from one header.
		{"closed quoted string across two lines", []string{`Digest a="x`, `Bearer good"`}, challenge, invalid},

		// One credential with auth-params: commas and "Bearer" inside
		// quoted values are its own.
		{"digest with auth-params", []string{`Digest username="a", realm="r", nonce="n"`}, challenge, challenge},
		{"bearer inside a quoted value", []string{`Digest username="a,Bearer good", realm="r"`}, challenge, challenge},
		{"escaped quote inside a value", []string{`Digest a="\",Bearer good"`}, challenge, challenge},
		{"escaped backslash closes the value", []string{`Digest a="x\\", Bearer good`}, invalid, invalid},
		{"value with whitespace before the quote", []string{`Digest a = "x,Bearer good", b=c`}, challenge, challenge},
		{"second auth-param names bearer", []string{`Digest a="b", c="Bearer good"`}, challenge, challenge},
	}
	s, _ := newTestServer(t, nil)
	for _, tt := range tests {
		for _, raw := range []bool{false, true} {
			want := tt.joined
			if raw {
				want = tt.raw
			}
			t.Run(fmt.Sprintf("%s/raw=%v", tt.name, raw), func(t *testing.T) {
				var lines [][2]string
				for _, l := range tt.lines {
					lines = append(lines, [2]string{"authorization", l})
				}
				d := rtDecideBoth(t, s, rtHeaderLines("/mcp", callTool("x"), raw, lines...))
				got := d.http
				if d.grpc == codes.OK {
					got = ok
				}
				if got != want {
					t.Fatalf("%q: got %d (%v), want %d", tt.lines, got, d.grpc, want)
				}
				if got == invalid && !strings.Contains(d.headers["www-authenticate"], `error="invalid_request"`) {
					t.Fatalf("400 without invalid_request: %v", d.headers)
				}
			})
		}
	}
}

// TestRedteamAuthorizationListsStayLinear: values built to make the list
// reader rescan (quotes that never close, escapes, commas) at the gRPC
// message limit are read in linear time and never as a bearer token.
func TestRedteamAuthorizationListsStayLinear(t *testing.T) {
	const n = 256 << 10
	for name, v := range map[string]string{
		"quotes and commas":        strings.Repeat(`",`, n/2),
		"auth-params opening":      "Digest " + strings.Repeat(`a=",`, n/4),
		"unterminated after pairs": "Digest " + strings.Repeat(`a="x",`, n/6) + `b="` + strings.Repeat(`\",`, n/3),
		"escapes":                  "Digest a=\"" + strings.Repeat(`\`, n),
		"commas":                   strings.Repeat(",", n) + "Bearer good",
		"empty elements":           "Basic x" + strings.Repeat(", ", n/2),
	} {
		t.Run(name, func(t *testing.T) {
			start := time.Now()
			c := parseAuthorization(v)
			if c.kind == credBearer {
				t.Fatalf("token %q accepted", c.token)
			}
			if d := time.Since(start); d > 2*time.Second {
				t.Fatalf("%d bytes took %v", len(v), d)
			}
		})
	}
}
