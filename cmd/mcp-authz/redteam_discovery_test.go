package main

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc/codes"

	"github.com/mcp-authz/mcp-authz/config"
)

// Red-team attacks on the reload side of the introspection endpoint's
// background discovery (5d4fd7a). A test that passes documents a defence.

// discoveryServer is an issuer whose discovery document names endpoint
// until down is set, and counts the documents asked for.
type discoveryServer struct {
	url  string
	down atomic.Bool
	hits atomic.Int64
}

func newDiscoveryServer(t *testing.T, endpoint string) *discoveryServer {
	t.Helper()
	d := &discoveryServer{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		d.hits.Add(1)
		if d.down.Load() {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintf(w, `{"issuer":%q,"introspection_endpoint":%q}`, d.url, endpoint)
	}))
	t.Cleanup(srv.Close)
	d.url = srv.URL
	return d
}

// TestRedteamReloadSeedsEachIssuerItsOwnEndpoint: a resource trusts two
// authorization servers whose introspection endpoints are discovered; a
// reload while both discoveries are down starts each issuer's validator
// from that issuer's endpoint, never the other's (a token of B sent to A
// would come back inactive, and be refused).
func TestRedteamReloadSeedsEachIssuerItsOwnEndpoint(t *testing.T) {
	a := newDiscoveryServer(t, introspectionServer(t, "token-from-a", "alice")+"/introspect")
	b := newDiscoveryServer(t, introspectionServer(t, "token-from-b", "bob")+"/introspect")
	conf := func(name string) string {
		return fmt.Sprintf(`
resources:
  - name: %s
    resource: https://m.example/mcp
    authorization_servers: [%[2]s, %[3]s]
    issuers:
      - issuer: %[2]s
        introspection: {client_id: rs, client_secret: s1}
      - issuer: %[3]s
        introspection: {client_id: rs, client_secret: s2}
`, name, a.url, b.url)
	}
	path := filepath.Join(t.TempDir(), "c.yaml")
	if err := os.WriteFile(path, []byte(conf("before")), 0o600); err != nil {
		t.Fatal(err)
	}
	svc, _ := reloadableService(t, path)
	t.Cleanup(svc.current().close)
	for end := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		rec := httptest.NewRecorder()
		svc.httpHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/readyz", nil))
		if rec.Code == http.StatusOK {
			break
		}
		if time.Now().After(end) {
			t.Fatalf("not ready after 10 s: %s", rec.Body)
		}
	}
	a.down.Store(true)
	b.down.Store(true)
	if err := os.WriteFile(path, []byte(conf("after")), 0o600); err != nil {
		t.Fatal(err)
	}
	old := svc.current()
	if err := svc.reload(context.Background(), "test"); err != nil {
		t.Fatal(err)
	}
	old.close()
	t.Cleanup(svc.current().close)
	for tok, sub := range map[string]string{"token-from-a": "alice", "token-from-b": "bob"} {
		req := &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{
			Http: &authv3.AttributeContext_HttpRequest{Host: "m.example", Path: "/mcp", Headers: map[string]string{"authorization": "Bearer " + tok}},
		}}}
		resp, err := svc.current().authz.Check(context.Background(), req)
		if err != nil {
			t.Fatal(err)
		}
		if codes.Code(resp.GetStatus().GetCode()) != codes.OK || resp.GetDynamicMetadata().GetFields()["sub"].GetStringValue() != sub {
			t.Fatalf("%s after the reload: %v", tok, resp)
		}
	}
}

// TestRedteamRefusedReloadStopsItsDiscovery: a reload refused after its
// validators were built (here an API key file gone between the read of
// the configuration and the build) stops the discoveries they started:
// its issuer, whose discovery fails and would be retried at 1 s and 2 s,
// is asked nothing more.
func TestRedteamRefusedReloadStopsItsDiscovery(t *testing.T) {
	a := introspectionServer(t, "opaque-token", "alice")
	b := newDiscoveryServer(t, "")
	b.down.Store(true)
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
    introspection: {client_id: rs, client_secret: s1}
  - name: keys
    resource: https://m.example/keys
    path_prefix: /keys
    validation: apikey
    api_keys: {keys: [{name: k, key: abcdefabcdefabcdefabcdef}]}
`, b.url)
	path := filepath.Join(t.TempDir(), "c.yaml")
	if err := os.WriteFile(path, []byte(one), 0o600); err != nil {
		t.Fatal(err)
	}
	svc, _ := reloadableService(t, path)
	if err := os.WriteFile(path, []byte(two), 0o600); err != nil {
		t.Fatal(err)
	}
	svc.load = func() (*config.Config, error) {
		c, err := config.Load(path, func(string) string { return "" })
		if err == nil {
			c.Resources[2].APIKeys.File = filepath.Join(t.TempDir(), "gone")
		}
		return c, err
	}
	if err := svc.reload(context.Background(), "test"); err == nil {
		t.Fatal("the reload was not refused")
	}
	n := b.hits.Load()
	time.Sleep(3500 * time.Millisecond)
	if m := b.hits.Load(); m != n {
		t.Fatalf("the refused configuration's issuer was asked %d more discovery documents", m-n)
	}
}
