package authz

import (
	"reflect"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

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
	return map[string]*authv3.CheckRequest{
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
			got, err := parseCheckInput(b)
			if err != nil {
				t.Fatal(err)
			}
			if want := inputFromProto(req); !reflect.DeepEqual(got, want) {
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
	got, err := parseCheckInput(wire)
	if err != nil {
		t.Fatal(err)
	}
	if want := inputFromProto(&full); !reflect.DeepEqual(got, want) {
		t.Fatalf("wire: %+v\nproto: %+v", got, want)
	}
	if got.path != "/second" || got.authorization[0] != "Bearer two" || got.resource != "r" {
		t.Fatalf("merge: %+v", got)
	}
}

func TestParseCheckInputRejectsMalformed(t *testing.T) {
	valid, _ := proto.Marshal(envoyRequest("/mcp", map[string]string{"authorization": "Bearer abc"}))
	for name, b := range map[string][]byte{
		"truncated":        valid[:len(valid)-3],
		"bad tag":          {0x00},
		"length overflow":  {0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f},
		"invalid utf-8":    append([]byte{0x0a, 0x0c, 0x22, 0x0a, 0x12, 0x08, 0x2a, 0x06, 0x2f, 0x6d}, 0xff, 0xfe, 0x80, 0x81),
		"stray end group":  {0x0c},
		"invalid wiretype": {0x0f},
	} {
		if _, err := parseCheckInput(b); err == nil {
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
		got, err := parseCheckInput(b)
		var full authv3.CheckRequest
		if proto.Unmarshal(b, &full) != nil {
			return // protobuf rejects it; the reader need only not panic
		}
		if err != nil {
			t.Fatalf("rejected what protobuf accepts: %v", err)
		}
		if want := inputFromProto(&full); !reflect.DeepEqual(got, want) {
			t.Fatalf("wire: %+v\nproto: %+v", got, want)
		}
	})
}
