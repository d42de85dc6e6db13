package e2e

import (
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"net/url"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/mcp-authz/mcp-authz/internal/redistest"
)

func revoke(t *testing.T, tok string) {
	t.Helper()
	form := url.Values{"token": {tok}}
	req, _ := http.NewRequest(http.MethodPost, issuer+"/token/revocation", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth("rs-client", "rs-client-secret")
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("revocation: %v %v", resp, err)
	}
	resp.Body.Close()
}

// deniedWithin checks tok until p denies it, failing after d.
func deniedWithin(t *testing.T, p *authzProc, tok string, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		if ok, _ := allowed(t, p, tok); !ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("still allowed %v after the purge", d)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestPurge: a revoked token stops working on every replica within a
// second of `mcp-authz purge` or POST /admin/purge, long before its cache
// TTL (5 min) or the in-process TTL (30 s).
func TestPurge(t *testing.T) {
	rs := redistest.Start(t)
	proxy, _ := countingProxy(t)
	env := introspectionEnv(proxy)
	env["REDIS_URL"] = rs.URL()
	env["MCP_AUTHZ_CACHE_SECRET"] = testCacheSecret
	env["OAUTH_INTROSPECTION_CACHE_TTL"] = "5m"
	const adminToken = "admin-token-0123456789"
	env["MCP_AUTHZ_ADMIN_TOKEN"] = adminToken
	a := startAuthz(t, env, true)
	b := startAuthz(t, env, true)

	cached := func() string {
		tok := token(t, "rs-client", "mcp:read", opaqueResource)
		for _, p := range []*authzProc{a, b} {
			if ok, www := allowed(t, p, tok); !ok {
				t.Fatalf("fresh token denied: %s", www)
			}
		}
		revoke(t, tok)
		if ok, _ := allowed(t, b, tok); !ok {
			t.Fatal("the cache should still hold the verdict before the purge")
		}
		return tok
	}

	t.Run("mcp-authz purge --sha256", func(t *testing.T) {
		tok := cached()
		sum := sha256.Sum256([]byte(tok))
		cmd := exec.Command(binary, "purge", "--sha256", hex.EncodeToString(sum[:]))
		cmd.Env = []string{"REDIS_URL=" + rs.URL(), "MCP_AUTHZ_CACHE_SECRET=" + testCacheSecret}
		out, err := cmd.CombinedOutput()
		if err != nil || !strings.Contains(string(out), "Redis keys deleted") {
			t.Fatalf("purge: %v\n%s", err, out)
		}
		if strings.Contains(string(out), tok) {
			t.Fatal("purge printed the token")
		}
		deniedWithin(t, a, tok, time.Second)
		deniedWithin(t, b, tok, time.Second)
	})

	t.Run("POST /admin/purge", func(t *testing.T) {
		tok := cached()
		post := func(auth string) int {
			req, _ := http.NewRequest(http.MethodPost, "http://"+a.httpAddr+"/admin/purge", strings.NewReader(`{"token":"`+tok+`"}`))
			req.Header.Set("Authorization", auth)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			return resp.StatusCode
		}
		if code := post("Bearer wrong-admin-token-xxxx"); code != 401 {
			t.Fatalf("wrong admin token: %d", code)
		}
		if ok, _ := allowed(t, b, tok); !ok {
			t.Fatal("a refused purge changed something")
		}
		if code := post("Bearer " + adminToken); code != 200 {
			t.Fatalf("purge: %d", code)
		}
		deniedWithin(t, b, tok, time.Second) // the other replica
		deniedWithin(t, a, tok, time.Second)
	})
}
