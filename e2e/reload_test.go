package e2e

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
)

// TestReloadUnderLoad: 100 reloads (SIGHUP, alternating two valid
// configurations) while checks run, without one failed or wrong Check;
// unchanged issuers keep their JWKS; an invalid configuration is refused
// and the running one stays (DESIGN §8).
func TestReloadUnderLoad(t *testing.T) {
	base := `
resources:
  - name: tools
    resource: %[1]s
    authorization_servers: [%[2]s]
    scopes_supported: [mcp:read, mcp:write]
    required_scopes: [mcp:read]
    path_prefixes: [/mcp]
    issuers: [{issuer: %[2]s, algorithms: [RS256, ES256]}]
`
	a := fmt.Sprintf(base, resource, issuer)
	b := a + fmt.Sprintf(`  - name: other
    resource: https://mcp.example.com/other
    authorization_servers: [%[1]s]
    required_scopes: [mcp:admin]
    path_prefixes: [/other]
    issuers: [{issuer: %[1]s}]
`, issuer)
	cfg := writeConfig(t, a)
	p := startAuthz(t, nil, true, "serve", "--config", cfg)
	good := token(t, "rs-client", "mcp:read", resource)
	jwksBefore := providerStats(t)

	ctx, cancel := context.WithCancel(context.Background())
	var checks, wrong atomic.Int64
	var firstWrong atomic.Value
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				var h map[string]string
				want := codes.Unauthenticated
				switch w % 2 {
				case 0:
					h, want = map[string]string{"authorization": "Bearer " + good}, codes.OK
				case 1:
					h = map[string]string{"authorization": "Bearer " + good + "x"}
				}
				cctx, ccancel := context.WithTimeout(ctx, 5*time.Second)
				resp, err := p.client.Check(cctx, envoyCheck("POST", "/mcp", h))
				ccancel()
				if ctx.Err() != nil {
					return
				}
				checks.Add(1)
				if err != nil || codes.Code(resp.GetStatus().GetCode()) != want {
					wrong.Add(1)
					firstWrong.CompareAndSwap(nil, fmt.Sprintf("want %v, got %v %v", want, resp.GetStatus(), err))
				}
			}
		}()
	}

	for i := range 100 {
		next := a
		if i%2 == 0 {
			next = b
		}
		if err := os.WriteFile(cfg, []byte(next), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
		// Signals that arrive during a reload coalesce: wait for this one
		// to be applied, so that there are 100 distinct reloads.
		for deadline := time.Now().Add(10 * time.Second); strings.Count(p.logs.String(), "configuration reloaded") < i+1; {
			if time.Now().After(deadline) {
				t.Fatalf("reload %d not applied", i+1)
			}
			time.Sleep(2 * time.Millisecond)
		}
	}
	cancel()
	wg.Wait()
	if n := strings.Count(p.logs.String(), "configuration reloaded"); n < 100 {
		t.Fatalf("%d reloads applied, want at least 100", n)
	}
	if n := wrong.Load(); n != 0 {
		t.Fatalf("%d of %d checks failed or were wrong during the reloads; first: %v", n, checks.Load(), firstWrong.Load())
	}
	t.Logf("%d checks during 100 reloads, none wrong", checks.Load())
	if got := providerStats(t); got != jwksBefore {
		t.Errorf("JWKS fetched %d times during the reloads: unchanged issuers must keep their keys", got-jwksBefore)
	}

	// The last configuration written is a: the second resource is gone.
	status := func(path string) int {
		resp, err := http.Get("http://" + p.httpAddr + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if got := status("/.well-known/oauth-protected-resource/other"); got != http.StatusNotFound {
		t.Errorf("metadata of a removed resource: %d", got)
	}
	if err := os.WriteFile(cfg, []byte(b), 0o600); err != nil {
		t.Fatal(err)
	}
	_ = p.cmd.Process.Signal(syscall.SIGHUP)
	for deadline := time.Now().Add(5 * time.Second); status("/.well-known/oauth-protected-resource/other") != http.StatusOK; {
		if time.Now().After(deadline) {
			t.Fatal("the added resource's metadata never appeared")
		}
		time.Sleep(20 * time.Millisecond)
	}

	t.Run("an invalid configuration is refused and the running one stays", func(t *testing.T) {
		before := strings.Count(p.logs.String(), "reload refused")
		if err := os.WriteFile(cfg, []byte("resources:\n  - resource: ftp://nope\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		_ = p.cmd.Process.Signal(syscall.SIGHUP)
		for deadline := time.Now().Add(5 * time.Second); strings.Count(p.logs.String(), "reload refused") == before; {
			if time.Now().After(deadline) {
				t.Fatal("the invalid configuration was not refused")
			}
			time.Sleep(20 * time.Millisecond)
		}
		resp := p.check(t, envoyCheck("POST", "/mcp", map[string]string{"authorization": "Bearer " + good}))
		if codes.Code(resp.GetStatus().GetCode()) != codes.OK {
			t.Fatalf("after a refused reload: %v", resp.GetDeniedResponse())
		}
		if status("/.well-known/oauth-protected-resource/other") != http.StatusOK {
			t.Fatal("the running configuration was replaced")
		}
	})

	t.Run("a change of the file is picked up without a signal", func(t *testing.T) {
		if err := os.WriteFile(cfg, []byte(a), 0o600); err != nil {
			t.Fatal(err)
		}
		for deadline := time.Now().Add(10 * time.Second); status("/.well-known/oauth-protected-resource/other") != http.StatusNotFound; {
			if time.Now().After(deadline) {
				t.Fatal("the file change was not picked up")
			}
			time.Sleep(50 * time.Millisecond)
		}
	})
}
