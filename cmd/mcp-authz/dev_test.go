package main

import (
	"bytes"
	"strings"
	"testing"
)

func TestLoopbackAddr(t *testing.T) {
	for in, want := range map[string]string{
		":9192":          "127.0.0.1:9192",
		"127.0.0.1:0":    "127.0.0.1:0",
		"localhost:9192": "localhost:9192",
		"[::1]:9192":     "[::1]:9192",
		"127.0.0.2:1":    "127.0.0.2:1",
	} {
		if got, err := loopbackAddr(in); err != nil || got != want {
			t.Errorf("loopbackAddr(%q) = %q, %v", in, got, err)
		}
	}
	for _, in := range []string{"0.0.0.0:9192", "[::]:9192", "example.com:80", "10.0.0.1:1"} {
		if _, err := loopbackAddr(in); err == nil {
			t.Errorf("loopbackAddr(%q) accepted", in)
		}
	}
}

func TestPrintDevGuide(t *testing.T) {
	var b bytes.Buffer
	printDevGuide(&b, devGuide{self: "mcp-authz", grpc: "127.0.0.1:1", http: "127.0.0.1:2", resource: "http://127.0.0.1:2/mcp",
		issuer: "http://127.0.0.1:3", tokenURL: "http://127.0.0.1:3/token", clientID: "c", clientSecret: "s",
		scopes: []string{"mcp:read"}, token: "eyJtoken"})
	out := b.String()
	for _, w := range []string{
		"\nexport TOKEN=eyJtoken\n",
		`-H "Authorization: Bearer $TOKEN"`,
		"--context-extension mcp_resource=tools",
		`resource "tools"`,
		"URL served here",
		"http://127.0.0.1:2/.well-known/oauth-protected-resource/mcp",
	} {
		if !strings.Contains(out, w) {
			t.Errorf("guide lacks %q:\n%s", w, out)
		}
	}
}
