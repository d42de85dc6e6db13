package main

import (
	"bytes"
	"context"
	"net"
	"strings"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// fakeAuthz answers Check with a fixed response (or error) and keeps the
// request it got.
type fakeAuthz struct {
	authv3.UnimplementedAuthorizationServer
	resp *authv3.CheckResponse
	err  error
	got  *authv3.CheckRequest
}

func (f *fakeAuthz) Check(_ context.Context, req *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	f.got = req
	return f.resp, f.err
}

func startFakeAuthz(t *testing.T, f *fakeAuthz) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	authv3.RegisterAuthorizationServer(gs, f)
	go func() { _ = gs.Serve(ln) }()
	t.Cleanup(gs.Stop)
	return ln.Addr().String()
}

func hdr(k, v string) *corev3.HeaderValueOption {
	return &corev3.HeaderValueOption{Header: &corev3.HeaderValue{Key: k, Value: v}}
}

// TestCheckCommand: mcp-authz check sends an Envoy-shaped CheckRequest for
// a URL, method, headers and optional body, and prints the decision, the
// status and the headers (DESIGN §5); exit 0 allowed, 1 denied, 2 error.
func TestCheckCommand(t *testing.T) {
	allow := &authv3.CheckResponse{
		Status: &rpcstatus.Status{Code: int32(codes.OK)},
		HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: &authv3.OkHttpResponse{
			Headers: []*corev3.HeaderValueOption{hdr("x-mcp-auth-subject", "alice")}, HeadersToRemove: []string{"authorization"},
		}},
	}
	deny := &authv3.CheckResponse{
		Status: &rpcstatus.Status{Code: int32(codes.Unauthenticated)},
		HttpResponse: &authv3.CheckResponse_DeniedResponse{DeniedResponse: &authv3.DeniedHttpResponse{
			Status:  &typev3.HttpStatus{Code: typev3.StatusCode_Unauthorized},
			Headers: []*corev3.HeaderValueOption{hdr("www-authenticate", `Bearer resource_metadata="https://m.example/.well-known/oauth-protected-resource/mcp"`)},
			Body:    `{"error":"unauthorized"}`,
		}},
	}
	tests := []struct {
		name       string
		resp       *authv3.CheckResponse
		err        error
		args       []string
		code       int
		wantOut    []string
		method     string
		path, host string
		headers    map[string]string
		body       string
		ext        map[string]string
	}{
		{"allowed GET", allow, nil, []string{"-H", "Authorization: Bearer t", "https://m.example/mcp?x=1"}, 0,
			[]string{"decision: ALLOWED", "upstream header: x-mcp-auth-subject: alice", "upstream header removed: authorization"},
			"GET", "/mcp?x=1", "m.example", map[string]string{"authorization": "Bearer t", ":path": "/mcp?x=1", ":method": "GET", ":authority": "m.example", ":scheme": "https"}, "", nil},
		{"denied POST with a body", deny, nil, []string{"https://m.example:8443/mcp", "-d", `{"jsonrpc":"2.0"}`, "-H", "Origin: https://app.example", "-H", "X-A: 1", "-H", "x-a: 2"}, 1,
			[]string{"decision: DENIED (gRPC Unauthenticated)", "status: 401", `www-authenticate: Bearer resource_metadata="https://m.example/.well-known/oauth-protected-resource/mcp"`, `body: {"error":"unauthorized"}`},
			"POST", "/mcp", "m.example:8443", map[string]string{"origin": "https://app.example", "x-a": "1,2"}, `{"jsonrpc":"2.0"}`, nil},
		{"method and context extension", allow, nil, []string{"-X", "delete", "--context-extension", "mcp_resource=tools", "http://127.0.0.1:9192/mcp"}, 0,
			[]string{"decision: ALLOWED"}, "DELETE", "/mcp", "127.0.0.1:9192", map[string]string{":method": "DELETE", ":scheme": "http"}, "", map[string]string{"mcp_resource": "tools"}},
		{"UNAVAILABLE", nil, status.Error(codes.Unavailable, "authorization server unavailable"), []string{"https://m.example/mcp"}, 2,
			[]string{"decision: ERROR (gRPC Unavailable: authorization server unavailable)"}, "GET", "/mcp", "m.example", nil, "", nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := &fakeAuthz{resp: tc.resp, err: tc.err}
			addr := startFakeAuthz(t, f)
			var stdout, stderr bytes.Buffer
			code := run(append([]string{"check", "--addr", addr}, tc.args...), func(string) string { return "" }, &stdout, &stderr)
			if code != tc.code {
				t.Fatalf("exit %d, want %d; stdout %s stderr %s", code, tc.code, stdout.String(), stderr.String())
			}
			for _, w := range tc.wantOut {
				if !strings.Contains(stdout.String(), w+"\n") {
					t.Errorf("output lacks %q:\n%s", w, stdout.String())
				}
			}
			h := f.got.GetAttributes().GetRequest().GetHttp()
			if h.GetMethod() != tc.method || h.GetPath() != tc.path || h.GetHost() != tc.host || h.GetBody() != tc.body {
				t.Errorf("request %s %s host %s body %q", h.GetMethod(), h.GetPath(), h.GetHost(), h.GetBody())
			}
			for k, v := range tc.headers {
				if h.GetHeaders()[k] != v {
					t.Errorf("header %s = %q, want %q", k, h.GetHeaders()[k], v)
				}
			}
			for k, v := range tc.ext {
				if f.got.GetAttributes().GetContextExtensions()[k] != v {
					t.Errorf("context extension %s = %q", k, f.got.GetAttributes().GetContextExtensions()[k])
				}
			}
		})
	}
	t.Run("service unreachable", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().String()
		ln.Close()
		var stdout, stderr bytes.Buffer
		if code := run([]string{"check", "--addr", addr, "--timeout", "2s", "https://m.example/mcp"}, func(string) string { return "" }, &stdout, &stderr); code != 2 {
			t.Fatalf("exit %d: %s %s", code, stdout.String(), stderr.String())
		}
	})
	t.Run("bad URL", func(t *testing.T) {
		var stdout, stderr bytes.Buffer
		if code := run([]string{"check", "/mcp"}, func(string) string { return "" }, &stdout, &stderr); code != 2 || strings.Count(stderr.String(), "\n") != 1 {
			t.Fatalf("exit %d: %q", code, stderr.String())
		}
	})
}
