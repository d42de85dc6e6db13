package e2e

import (
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
)

const opaqueResource = "https://mcp.example.com/opaque"

// countingProxy sits between mcp-authz and oidc-provider and counts
// introspection calls.
func countingProxy(t *testing.T) (string, *atomic.Int64) {
	t.Helper()
	target, _ := url.Parse(issuer)
	proxy := httputil.NewSingleHostReverseProxy(target)
	var calls atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/token/introspection" {
			calls.Add(1)
		}
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv.URL, &calls
}

func introspectionEnv(proxy string) map[string]string {
	return map[string]string{
		"OAUTH_RESOURCE":                opaqueResource,
		"OAUTH_AUTHORIZATION_SERVER":    issuer,
		"OAUTH_INTROSPECTION_ENDPOINT":  proxy + "/token/introspection",
		"OAUTH_CLIENT_ID":               "mcp-authz",
		"OAUTH_CLIENT_SECRET":           "mcp-authz-secret",
		"OAUTH_REQUIRED_SCOPES":         "mcp:read",
		"OAUTH_INTROSPECTION_CACHE_TTL": "1s",
		// oidc-provider on a loaded 2-core test machine can take longer
		// than the 150 ms default.
		"OAUTH_INTROSPECTION_TIMEOUT": "3s",
	}
}

func allowed(t *testing.T, p *authzProc, tok string) (bool, string) {
	t.Helper()
	resp := p.check(t, envoyCheck("POST", "/opaque", map[string]string{"authorization": "Bearer " + tok}))
	if codes.Code(resp.GetStatus().GetCode()) == codes.OK {
		return true, ""
	}
	return false, deniedHeader(resp, "www-authenticate")
}

// burst sends n concurrent checks of tok, spread over procs, and returns
// how many were denied.
func burst(t *testing.T, tok string, n int, procs ...*authzProc) int64 {
	t.Helper()
	var wg sync.WaitGroup
	var denied atomic.Int64
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if ok, _ := allowed(t, procs[i%len(procs)], tok); !ok {
				denied.Add(1)
			}
		}()
	}
	wg.Wait()
	return denied.Load()
}

func TestIntrospectionAgainstOIDCProvider(t *testing.T) {
	proxy, calls := countingProxy(t)
	p := startAuthz(t, introspectionEnv(proxy), true)

	tok := token(t, "rs-client", "mcp:read", opaqueResource)
	if strings.Count(tok, ".") == 2 {
		t.Fatalf("expected an opaque token, got a JWT")
	}

	t.Run("active token is allowed, 50 checks cost one call", func(t *testing.T) {
		before := calls.Load()
		for i := range 50 {
			if ok, www := allowed(t, p, tok); !ok {
				t.Fatalf("check %d denied: %s", i, www)
			}
		}
		if got := calls.Load() - before; got != 1 {
			t.Fatalf("50 sequential checks cost %d introspection calls, want 1", got)
		}
	})

	t.Run("100 concurrent checks of a fresh token cost one call", func(t *testing.T) {
		fresh := token(t, "rs-client", "mcp:read", opaqueResource)
		before := calls.Load()
		if denied := burst(t, fresh, 100, p); denied != 0 {
			t.Fatalf("%d of 100 denied", denied)
		}
		if got := calls.Load() - before; got != 1 {
			t.Fatalf("100 concurrent checks cost %d introspection calls, want 1", got)
		}
	})

	t.Run("unknown token is invalid_token", func(t *testing.T) {
		ok, www := allowed(t, p, "not-a-token-this-AS-issued")
		if ok || !strings.Contains(www, `error="invalid_token", error_description="Token is not active"`) {
			t.Fatalf("got %v %q", ok, www)
		}
	})

	t.Run("token for another resource is refused", func(t *testing.T) {
		other := token(t, "rs-client", "mcp:read", "https://other.example.com/opaque")
		ok, www := allowed(t, p, other)
		if ok || !strings.Contains(www, `error_description="Token audience invalid"`) {
			t.Fatalf("got %v %q", ok, www)
		}
	})

	t.Run("revoked at the AS: refused once the cache TTL has passed", func(t *testing.T) {
		rev := token(t, "rs-client", "mcp:read", opaqueResource)
		if ok, _ := allowed(t, p, rev); !ok {
			t.Fatal("fresh token denied")
		}
		revoke(t, rev)
		time.Sleep(1100 * time.Millisecond) // OAUTH_INTROSPECTION_CACHE_TTL=1s
		ok, www := allowed(t, p, rev)
		if ok || !strings.Contains(www, "Token is not active") {
			t.Fatalf("revoked token: %v %q", ok, www)
		}
	})
}

func TestIntrospectionWithWrongClientSecret(t *testing.T) {
	proxy, _ := countingProxy(t)
	env := introspectionEnv(proxy)
	env["OAUTH_CLIENT_SECRET"] = "wrong"
	p := startAuthz(t, env, true)
	tok := token(t, "rs-client", "mcp:read", opaqueResource)
	resp := p.check(t, envoyCheck("POST", "/opaque", map[string]string{"authorization": "Bearer " + tok}))
	if resp.GetDeniedResponse().GetStatus().GetCode() != 503 || deniedHeader(resp, "www-authenticate") != "" {
		t.Fatalf("a wrong client secret must be 503, not 401: %v", resp.GetDeniedResponse())
	}
	deadline := time.Now().Add(2 * time.Second)
	for !strings.Contains(p.logs.String(), "client credentials") && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	logs := p.logs.String()
	if !strings.Contains(logs, "client credentials") {
		t.Errorf("the log does not name the wrong client credentials:\n%s", logs)
	}
	if strings.Contains(logs, tok) || strings.Contains(logs, "mcp-authz-secret") {
		t.Error("token or secret in logs")
	}
}

func TestAutoValidationJWTAndOpaque(t *testing.T) {
	proxy, calls := countingProxy(t)
	env := introspectionEnv(proxy)
	env["OAUTH_VALIDATION"] = "auto"
	p := startAuthz(t, env, true)
	// oidc-provider issues JWTs for resources without /opaque; both kinds
	// carry this resource as aud when requested for it.
	opaque := token(t, "rs-client", "mcp:read", opaqueResource)
	if ok, www := allowed(t, p, opaque); !ok {
		t.Fatalf("opaque token: %s", www)
	}
	before := calls.Load()
	jwtTok := token(t, "es-client", "mcp:read", resource) // a JWT, but for another resource
	if ok, www := allowed(t, p, jwtTok); ok || !strings.Contains(www, "Token audience invalid") {
		t.Fatalf("JWT for another resource: %v %q", ok, www)
	}
	if calls.Load() != before {
		t.Fatal("a JWT from the configured issuer was introspected instead of validated locally")
	}
}

// TestIntrospectionEndpointDiscovered: without OAUTH_INTROSPECTION_ENDPOINT
// the endpoint is discovered from oidc-provider at start-up (/readyz waits
// for it); an issuer that does not answer leaves the replica not ready and
// its Checks 503, never 401.
func TestIntrospectionEndpointDiscovered(t *testing.T) {
	env := introspectionEnv("")
	delete(env, "OAUTH_INTROSPECTION_ENDPOINT")
	env["OAUTH_VALIDATION"] = "introspection"
	p := startAuthz(t, env, true)
	tok := token(t, "rs-client", "mcp:read", opaqueResource)
	if ok, www := allowed(t, p, tok); !ok {
		t.Fatalf("denied with a discovered endpoint: %s", www)
	}

	env["OAUTH_AUTHORIZATION_SERVER"] = "http://" + freeAddr(t) // nothing listens there
	down := startAuthz(t, env, false)
	r, err := http.Get("http://" + down.httpAddr + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(r.Body)
	r.Body.Close()
	if r.StatusCode != http.StatusServiceUnavailable || !strings.Contains(string(body), "waiting for introspection endpoint discovery") {
		t.Fatalf("/readyz with an unreachable issuer: %d %s", r.StatusCode, body)
	}
	resp := down.check(t, envoyCheck("POST", "/opaque", map[string]string{"authorization": "Bearer " + tok}))
	if d := resp.GetDeniedResponse(); d.GetStatus().GetCode() != 503 || !strings.Contains(d.GetBody(), "Token introspection failed") {
		t.Fatalf("want 503 Token introspection failed, got %v", resp)
	}
}
