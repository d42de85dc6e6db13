package authz

import (
	"bytes"
	"fmt"
	"reflect"
	"slices"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// testRead is how the test server reads requests.
var testRead = &readOptions{identityPrefix: "x-mcp-auth-"}

// checkRequests are the shapes Envoy sends, plus the odd ones.
func checkRequests() map[string]*authv3.CheckRequest {
	withExt := envoyRequest("/mcp", map[string]string{"authorization": "Bearer abc"})
	withExt.Attributes.ContextExtensions = map[string]string{"mcp_resource": "tools", "other": "x"}
	raw := envoyRequest("/mcp?x=1", nil)
	raw.Attributes.Request.Http.Headers = nil
	raw.Attributes.Request.Http.HeaderMap = &corev3.HeaderMap{Headers: []*corev3.HeaderValue{
		{Key: ":path", RawValue: []byte("/mcp")},
		{Key: "Authorization", RawValue: []byte("Bearer one")},
		{Key: "authorization", Value: "Bearer two"},
		{Key: "authorization", RawValue: []byte("Bearer three")},
		{Key: "X-Api-Key", Value: "k1"},
	}}
	emptyMap := envoyRequest("/mcp", map[string]string{"authorization": "Bearer abc"})
	emptyMap.Attributes.Request.Http.HeaderMap = &corev3.HeaderMap{}
	pathHeader := envoyRequest("", map[string]string{"authorization": "Bearer abc"})
	noHTTP := &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{}}}
	emptyHTTP := &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{}}}}
	withBody := envoyRequest("/mcp", map[string]string{"authorization": "Bearer abc"})
	withBody.Attributes.Request.Http.Body = `{"jsonrpc":"2.0","method":"tools/call"}`
	withBody.Attributes.Source = &authv3.AttributeContext_Peer{Principal: "spiffe://x"}
	mcp := envoyRequest("/mcp", map[string]string{
		"authorization": "Bearer abc", "origin": "https://app.example", "mcp-session-id": "s-1",
		"access-control-request-method": "POST", "content-encoding": "identity", "x-envoy-auth-partial-body": "true",
		"x_mcp_auth_subject": "admin", "x-mcp-auth-claims": "e30", "x-mcp-authority": "no",
	})
	mcp.Attributes.Request.Http.RawBody = []byte(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x"}}`)
	mcp.Attributes.Request.Http.Body = "ignored when raw_body is set"
	rawMCP := envoyRequest("/mcp", nil)
	rawMCP.Attributes.Request.Http.Method = ""
	rawMCP.Attributes.Request.Http.Headers = nil
	rawMCP.Attributes.Request.Http.HeaderMap = &corev3.HeaderMap{Headers: []*corev3.HeaderValue{
		{Key: ":method", RawValue: []byte("DELETE")},
		{Key: "Origin", Value: "https://a.example"},
		{Key: "origin", RawValue: []byte("https://b.example")},
		{Key: "origin", RawValue: []byte("https://c.example")},
		{Key: "X_MCP_AUTH_Subject", Value: "admin"},
		{Key: "x-mcp-auth-tool", Value: "t"},
		{Key: "x-mcp-auth-tool", Value: "t2"},
		{Key: "Mcp-Session-Id", RawValue: []byte("s-2")},
	}}
	return map[string]*authv3.CheckRequest{
		"mcp headers and body":  mcp,
		"raw mcp headers":       rawMCP,
		"plain":                 envoyRequest("/mcp", nil),
		"bearer":                envoyRequest("/mcp", map[string]string{"authorization": "Bearer abc"}),
		"empty authorization":   envoyRequest("/mcp", map[string]string{"authorization": ""}),
		"query token":           envoyRequest("/mcp?access_token=x", map[string]string{"authorization": "Bearer abc"}),
		"context extension":     withExt,
		"raw header map":        raw,
		"empty header map":      emptyMap,
		"path from :path":       pathHeader,
		"no http":               noHTTP,
		"empty http":            emptyHTTP,
		"empty request":         {},
		"body and source":       withBody,
		"authorization cased":   envoyRequest("/mcp", map[string]string{"Authorization": "Bearer abc"}),
		"several authorization": envoyRequest("/mcp", map[string]string{"authorization": "Bearer a,Bearer b"}),
		"api key":               envoyRequest("/mcp", map[string]string{"x-api-key": "k1"}),
	}
}

func TestParseCheckInputMatchesProto(t *testing.T) {
	for name, req := range checkRequests() {
		t.Run(name, func(t *testing.T) {
			b, err := proto.Marshal(req)
			if err != nil {
				t.Fatal(err)
			}
			got, err := parseCheckInput(b, testRead)
			if err != nil {
				t.Fatal(err)
			}
			if want := inputFromProto(req, testRead); !reflect.DeepEqual(got, want) {
				t.Fatalf("wire: %+v\nproto: %+v", got, want)
			}
		})
	}
}

// TestParseCheckInputMergeRules: a message sent in pieces reads as one, as
// protobuf defines it: singular messages merge, the last scalar and map
// entry win.
func TestParseCheckInputMergeRules(t *testing.T) {
	part := func(req *authv3.CheckRequest) []byte {
		b, err := proto.Marshal(req)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	a := envoyRequest("/first", map[string]string{"authorization": "Bearer one"})
	b := envoyRequest("/second", map[string]string{"authorization": "Bearer two"})
	b.Attributes.ContextExtensions = map[string]string{"mcp_resource": "r"}
	wire := append(part(a), part(b)...)
	wire = protowire.AppendTag(wire, 99, protowire.VarintType) // an unknown field
	wire = protowire.AppendVarint(wire, 7)
	var full authv3.CheckRequest
	if err := proto.Unmarshal(wire, &full); err != nil {
		t.Fatal(err)
	}
	got, err := parseCheckInput(wire, testRead)
	if err != nil {
		t.Fatal(err)
	}
	if want := inputFromProto(&full, testRead); !reflect.DeepEqual(got, want) {
		t.Fatalf("wire: %+v\nproto: %+v", got, want)
	}
	if got.path != "/second" || got.authorization[0] != "Bearer two" || got.resource != "r" {
		t.Fatalf("merge: %+v", got)
	}
}

// TestParseCheckInputFlagsInvalidUTF8: protobuf refuses a whole
// CheckRequest with one non-UTF-8 byte in a header, which would be an
// INTERNAL error for Envoy; the reader flags it so the client gets 400.
func TestParseCheckInputFlagsInvalidUTF8(t *testing.T) {
	// Envoy sends bytes protobuf-go will not marshal: marshal a two-byte
	// marker and replace it on the wire.
	const marker = "\u00ff"
	for name, mutate := range map[string]func(h *authv3.AttributeContext_HttpRequest){
		"header value": func(h *authv3.AttributeContext_HttpRequest) { h.Headers["user-agent"] = "x" + marker },
		"header name":  func(h *authv3.AttributeContext_HttpRequest) { h.Headers["x"+marker] = "y" },
		"path":         func(h *authv3.AttributeContext_HttpRequest) { h.Path = "/mcp" + marker },
		"host":         func(h *authv3.AttributeContext_HttpRequest) { h.Host = "h" + marker },
		"raw value": func(h *authv3.AttributeContext_HttpRequest) {
			h.HeaderMap = &corev3.HeaderMap{Headers: []*corev3.HeaderValue{{Key: "x", RawValue: []byte(marker)}}}
		},
	} {
		t.Run(name, func(t *testing.T) {
			req := envoyRequest("/mcp", map[string]string{"authorization": "Bearer abc"})
			mutate(req.Attributes.Request.Http)
			b, err := proto.Marshal(req)
			if err != nil {
				t.Fatal(err)
			}
			b = bytes.ReplaceAll(b, []byte(marker), []byte{0xff, 0xfe})
			if proto.Unmarshal(b, new(authv3.CheckRequest)) == nil && name != "raw value" {
				t.Fatal("protobuf accepts the request: the test lost its point")
			}
			in, err := parseCheckInput(b, testRead)
			if err != nil || !in.badHeader {
				t.Fatalf("badHeader %v, err %v", in.badHeader, err)
			}
		})
	}
}

func TestParseCheckInputRejectsMalformed(t *testing.T) {
	valid, _ := proto.Marshal(envoyRequest("/mcp", map[string]string{"authorization": "Bearer abc"}))
	for name, b := range map[string][]byte{
		"truncated":        valid[:len(valid)-3],
		"bad tag":          {0x00},
		"length overflow":  {0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f},
		"stray end group":  {0x0c},
		"invalid wiretype": {0x0f},
	} {
		if _, err := parseCheckInput(b, testRead); err == nil {
			var full authv3.CheckRequest
			if proto.Unmarshal(b, &full) != nil {
				t.Errorf("%s: accepted what protobuf rejects", name)
			}
		}
	}
}

// FuzzParseCheckInput holds the wire reader to proto.Unmarshal: whatever
// protobuf accepts, parseCheckInput must read the same way.
func FuzzParseCheckInput(f *testing.F) {
	for _, req := range checkRequests() {
		b, _ := proto.Marshal(req)
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		got, err := parseCheckInput(b, testRead)
		var full authv3.CheckRequest
		if proto.Unmarshal(b, &full) != nil {
			return // protobuf rejects it; the reader need only not panic
		}
		if err != nil {
			t.Fatalf("rejected what protobuf accepts: %v", err)
		}
		if want := inputFromProto(&full, testRead); !reflect.DeepEqual(got, want) {
			t.Fatalf("wire: %+v\nproto: %+v", got, want)
		}
	})
}

// TestIdentityLikeHeaderFlood: a client sending thousands of headers named
// like identity headers is refused, and reading them stays linear: no more
// than one name past the bound is kept, however many come, in either of
// Envoy's header encodings.
func TestIdentityLikeHeaderFlood(t *testing.T) {
	s, fv := newTestServer(t, nil)
	many := envoyRequest("/mcp", map[string]string{"authorization": "Bearer good"})
	for i := range 5000 {
		many.Attributes.Request.Http.Headers[fmt.Sprintf("x-mcp-auth-x%d", i)] = "admin"
	}
	same := envoyRequest("/mcp", nil)
	same.Attributes.Request.Http.Headers = nil
	hm := &corev3.HeaderMap{Headers: []*corev3.HeaderValue{{Key: ":path", Value: "/mcp"}, {Key: "authorization", Value: "Bearer good"}}}
	for range 5000 {
		hm.Headers = append(hm.Headers, &corev3.HeaderValue{Key: "x_mcp_auth_subject", Value: "admin"})
	}
	same.Attributes.Request.Http.HeaderMap = hm
	for name, tc := range map[string]struct {
		req   *authv3.CheckRequest
		allow bool
	}{
		"5000 distinct names": {many, false},
		"one name 5000 times": {same, true},
	} {
		t.Run(name, func(t *testing.T) {
			b, err := proto.Marshal(tc.req)
			if err != nil {
				t.Fatal(err)
			}
			in, err := parseCheckInput(b, testRead)
			if err != nil {
				t.Fatal(err)
			}
			if n := len(in.identityLike); n > maxIdentityLike+1 {
				t.Fatalf("kept %d identity-like names", n)
			}
			if ip := inputFromProto(tc.req, testRead); len(ip.identityLike) > maxIdentityLike+1 {
				t.Fatalf("the proto reader kept %d identity-like names", len(ip.identityLike))
			}
			before := fv.calls.Load()
			d := decide(t, s, tc.req)
			if tc.allow {
				if d.grpc != codes.OK || !slices.Contains(d.ok.GetHeadersToRemove(), "x_mcp_auth_subject") {
					t.Fatalf("got %v %d, removes %v", d.grpc, d.http, d.ok.GetHeadersToRemove())
				}
				return
			}
			if d.http != 400 || fv.calls.Load() != before {
				t.Fatalf("got %v %d; validator called %d times", d.grpc, d.http, fv.calls.Load()-before)
			}
		})
	}
}
