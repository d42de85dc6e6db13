package main

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"

	"github.com/mcp-authz/mcp-authz/config"
)

// TestReloadSwapsOrRefuses: a reload re-reads the --config file; a valid
// one is swapped in and counted as success, an invalid one is refused
// with an ERROR log line naming the field and counted as failure, and the
// running configuration stays (DESIGN §8).
func TestReloadSwapsOrRefuses(t *testing.T) {
	a := introspectionServer(t, "opaque-token", "alice")
	one := fmt.Sprintf(`
resources:
  - name: tools
    resource: https://m.example/mcp
    path_prefix: /mcp
    authorization_servers: [%[1]s]
    introspection: {endpoint: %[1]s/introspect, client_id: rs, client_secret: s1}
`, a)
	two := one + fmt.Sprintf(`  - name: other
    resource: https://m.example/other
    path_prefix: /other
    authorization_servers: [%[1]s]
    introspection: {endpoint: %[1]s/introspect, client_id: rs, client_secret: s1}
`, a)
	path := filepath.Join(t.TempDir(), "c.yaml")
	write := func(s string) {
		t.Helper()
		if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(one)
	svc, logs := reloadableService(t, path)
	metadata := func(name string) int {
		rec := httptest.NewRecorder()
		svc.httpHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/.well-known/oauth-protected-resource/"+name, nil))
		return rec.Code
	}
	metric := func(result string) string {
		rec := httptest.NewRecorder()
		svc.httpHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
		for _, line := range strings.Split(rec.Body.String(), "\n") {
			if strings.HasPrefix(line, `mcp_authz_config_reloads_total{result="`+result+`"} `) {
				return strings.Fields(line)[1]
			}
		}
		return "absent"
	}

	steps := []struct {
		name              string
		file              string
		wantErr           bool
		success, failure  string
		otherServed       bool
		wantLog, wantLogB string
	}{
		{"valid: swapped in", two, false, "1", "0", true, "configuration reloaded", ""},
		{"invalid value: refused", strings.Replace(two, "resource: https://m.example/other", "resource: ftp://m.example/other", 1), true, "1", "1", true,
			"configuration reload refused", "resources[1].resource"},
		{"not YAML: refused", "resources: [", true, "1", "2", true, "configuration reload refused", "not valid YAML"},
		{"unknown field: refused", two + "    path_prefixs: [/x]\n", true, "1", "3", true, "configuration reload refused", "path_prefixs"},
		{"valid again: swapped in", one, false, "2", "3", false, "configuration reloaded", ""},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			write(st.file)
			logs.Reset()
			before := svc.current()
			err := svc.reload(context.Background(), "test")
			if (err != nil) != st.wantErr {
				t.Fatalf("reload: %v", err)
			}
			if st.wantErr && svc.current() != before {
				t.Fatal("a refused configuration replaced the running one")
			}
			if got := metric("success"); got != st.success {
				t.Errorf(`config_reloads_total{result="success"} = %s, want %s`, got, st.success)
			}
			if got := metric("failure"); got != st.failure {
				t.Errorf(`config_reloads_total{result="failure"} = %s, want %s`, got, st.failure)
			}
			if served := metadata("other") == 200; served != st.otherServed {
				t.Errorf("the second resource served: %v, want %v", served, st.otherServed)
			}
			if metadata("mcp") != 200 {
				t.Error("the first resource is not served")
			}
			out := logs.String()
			if !strings.Contains(out, st.wantLog) || !strings.Contains(out, st.wantLogB) {
				t.Errorf("log %q lacks %q / %q", out, st.wantLog, st.wantLogB)
			}
			if st.wantErr && (strings.Count(strings.TrimSpace(out), "\n") != 0 || !strings.Contains(out, `"level":"ERROR"`)) {
				t.Errorf("a refusal is one ERROR line: %q", out)
			}
		})
	}
}

// TestReloadWarnsAboutRestartOnlySettings: settings a reload cannot apply
// (listeners, Redis, gRPC, logging) are named in a warning rather than
// silently kept.
func TestReloadWarnsAboutRestartOnlySettings(t *testing.T) {
	a := introspectionServer(t, "opaque-token", "alice")
	base := fmt.Sprintf(`
resources:
  - resource: https://m.example/mcp
    authorization_servers: [%[1]s]
    introspection: {endpoint: %[1]s/introspect, client_id: rs, client_secret: s1}
`, a)
	cert, key := newTestCA(t).issue(t, t.TempDir(), "side", 1, false)
	for _, tc := range []struct{ field, yaml string }{
		{"grpc_addr", "grpc_addr: 127.0.0.1:7001\n"},
		{"http_addr", "http_addr: 127.0.0.1:7002\n"},
		{"forward_addr", "forward_addr: 127.0.0.1:7003\n"},
		{"grpc", "grpc: {max_recv_bytes: 524288}\n"},
		{"http_tls", fmt.Sprintf("http_tls: {cert_file: %s, key_file: %s}\n", cert, key)},
		{"log", "log: {level: debug}\n"},
		{"cache.max_bytes", "cache: {max_bytes: 1048576}\n"},
	} {
		t.Run(tc.field, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "c.yaml")
			if err := os.WriteFile(path, []byte(base), 0o600); err != nil {
				t.Fatal(err)
			}
			svc, logs := reloadableService(t, path)
			if err := os.WriteFile(path, []byte(tc.yaml+base), 0o600); err != nil {
				t.Fatal(err)
			}
			logs.Reset()
			if err := svc.reload(context.Background(), "test"); err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(logs.String(), `"field":"`+tc.field+`"`) {
				t.Fatalf("no warning naming %s: %s", tc.field, logs.String())
			}
		})
	}
}

// reloadableService is a service built from the configuration file at
// path, which its reloads read again, logging JSON lines into logs.
func reloadableService(t *testing.T, path string) (svc *service, logs *bytes.Buffer) {
	t.Helper()
	load := func() (*config.Config, error) { return config.Load(path, func(string) string { return "" }) }
	cfg, err := load()
	if err != nil {
		t.Fatal(err)
	}
	logs = new(bytes.Buffer)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	svc, err = newService(ctx, cfg, slog.New(slog.NewJSONHandler(logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	svc.load = load
	return svc, logs
}

// TestReloadKeepsDiscoveredIntrospectionEndpoint: a reload's validators
// start from the introspection endpoint the running ones discovered, so a
// reload while the authorization server's discovery is down neither makes
// the replica unready nor fails its Checks.
func TestReloadKeepsDiscoveredIntrospectionEndpoint(t *testing.T) {
	var down atomic.Bool
	as := introspectionServer(t, "opaque-token", "alice")
	var issuer string
	mux := http.NewServeMux()
	mux.HandleFunc("/.well-known/", func(w http.ResponseWriter, r *http.Request) {
		if down.Load() {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintf(w, `{"issuer":%q,"introspection_endpoint":%q}`, issuer, as+"/introspect")
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	issuer = srv.URL
	conf := func(scopes string) string {
		return fmt.Sprintf(`
resources:
  - resource: https://m.example/mcp
    authorization_servers: [%s]
    required_scopes: [%s]
    introspection: {client_id: rs, client_secret: s1}
`, issuer, scopes)
	}
	path := filepath.Join(t.TempDir(), "c.yaml")
	if err := os.WriteFile(path, []byte(conf("")), 0o600); err != nil {
		t.Fatal(err)
	}
	svc, _ := reloadableService(t, path)
	ready := func() int {
		rec := httptest.NewRecorder()
		svc.httpHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/readyz", nil))
		return rec.Code
	}
	for end := time.Now().Add(10 * time.Second); ready() != http.StatusOK; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatal("not ready after 10 s with discovery answering")
		}
	}
	down.Store(true)
	if err := os.WriteFile(path, []byte(conf("mcp:read")), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := svc.reload(context.Background(), "test"); err != nil {
		t.Fatal(err)
	}
	if code := ready(); code != http.StatusOK {
		t.Fatalf("/readyz = %d after a reload with discovery down", code)
	}
	req := &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{
		Http: &authv3.AttributeContext_HttpRequest{Host: "m.example", Path: "/mcp", Headers: map[string]string{"authorization": "Bearer opaque-token"}},
	}}}
	resp, err := svc.current().authz.Check(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	// The reloaded policy needs mcp:read, which the token lacks: a 403
	// proves the new generation introspected it.
	if d := resp.GetDeniedResponse(); d.GetStatus().GetCode() != 403 {
		t.Fatalf("after the reload: %v", resp)
	}
}
