package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"

	"github.com/mcp-authz/mcp-authz/config"
	"github.com/mcp-authz/mcp-authz/internal/devissuer"
)

func loadYAML(t *testing.T, yaml string) *config.Config {
	t.Helper()
	path := filepath.Join(t.TempDir(), "c.yaml")
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path, func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// TestMetricsOnTheSideServer: GET /metrics on the side server reports the
// decisions, the introspection outcomes and the cache tier.
func TestMetricsOnTheSideServer(t *testing.T) {
	a := introspectionServer(t, "opaque-token", "alice")
	cfg := loadYAML(t, fmt.Sprintf(`
resources:
  - name: tools
    resource: https://m.example/mcp
    authorization_servers: [%[1]s]
    issuers:
      - issuer: %[1]s
        introspection: {endpoint: %[1]s/introspect, client_id: rs, client_secret: s1}
`, a))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	svc, err := newService(ctx, cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	for _, tok := range []string{"opaque-token", "opaque-token", "unknown"} {
		req := &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{
			Http: &authv3.AttributeContext_HttpRequest{Host: "m.example", Path: "/mcp", Headers: map[string]string{"authorization": "Bearer " + tok}},
		}}}
		if _, err := svc.current().authz.Check(ctx, req); err != nil {
			t.Fatal(err)
		}
	}
	rec := httptest.NewRecorder()
	svc.httpHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body := rec.Body.String()
	if rec.Code != 200 {
		t.Fatalf("status %d: %s", rec.Code, body)
	}
	for _, want := range []string{
		`mcp_authz_checks_total{decision="allow",reason="ok",resource="tools"} 2`,
		`mcp_authz_checks_total{decision="deny",reason="invalid_token",resource="tools"} 1`,
		`mcp_authz_introspection_requests_total{issuer="` + a + `",result="active"} 1`,
		`mcp_authz_introspection_requests_total{issuer="` + a + `",result="inactive"} 1`,
		`mcp_authz_cache_requests_total{result="hit",tier="l1"} 1`,
		`mcp_authz_check_duration_seconds_count 3`,
		`mcp_authz_config_reloads_total{result="failure"} 0`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("no %q in /metrics", want)
		}
	}
	if strings.Contains(body, "mcp_authz_redis_up") {
		t.Error("Redis metrics without Redis")
	}
	if strings.Contains(body, "opaque-token") {
		t.Fatal("a token in /metrics")
	}
}

// TestResourceStartupLog: each resource is announced at INFO with its
// strategy, issuers and JWKS URIs (or introspection endpoints); no secret.
func TestResourceStartupLog(t *testing.T) {
	iss, err := devissuer.Start(devissuer.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer iss.Close()
	a := introspectionServer(t, "x", "y")
	cfg := loadYAML(t, fmt.Sprintf(`
resources:
  - name: jwt
    resource: https://m.example/mcp
    path_prefix: /mcp
    authorization_servers: [%[1]s]
    issuers:
      - issuer: %[1]s
        jwks_uri: %[2]s
  - resource: https://m.example/opaque
    path_prefix: /opaque
    authorization_servers: [%[3]s]
    introspection: {endpoint: %[3]s/introspect, client_id: rs, client_secret: very-secret-value}
`, iss.URL, iss.JWKSURL(), a))
	var buf bytes.Buffer
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if _, err := newService(ctx, cfg, slog.New(slog.NewJSONHandler(&buf, nil))); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(buf.String(), "very-secret-value") {
		t.Fatal("a secret in the log")
	}
	got := map[string]map[string]any{}
	sc := bufio.NewScanner(&buf)
	for sc.Scan() {
		var rec map[string]any
		if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
			t.Fatal(err)
		}
		if msg, _ := rec["msg"].(string); strings.HasPrefix(msg, "resource initialized") {
			got[rec["resource"].(string)] = rec
		}
	}
	jwt := got["https://m.example/mcp"]
	if jwt == nil || jwt["msg"] != "resource initialized with JWT validation" || jwt["level"] != "INFO" || jwt["name"] != "jwt" ||
		fmt.Sprint(jwt["issuers"]) != "["+iss.URL+"]" || fmt.Sprint(jwt["jwks_uris"]) != "["+iss.JWKSURL()+"]" {
		t.Fatalf("JWT resource line: %v", jwt)
	}
	opaque := got["https://m.example/opaque"]
	if opaque == nil || opaque["msg"] != "resource initialized with token introspection validation" ||
		fmt.Sprint(opaque["issuers"]) != "["+a+"]" || fmt.Sprint(opaque["introspection_endpoints"]) != "["+a+"/introspect]" {
		t.Fatalf("introspection resource line: %v", opaque)
	}
}
