package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
)

// TestOutboundBoundedByEnvoyDeadline: an introspection that does not
// answer is given up at the deadline Envoy sent with the Check, less a
// small margin, so Envoy gets the 503 rather than its own timeout; with a
// longer deadline the introspection timeout (default 1 s) bounds it
// (DESIGN §8).
func TestOutboundBoundedByEnvoyDeadline(t *testing.T) {
	var mu sync.Mutex
	var held []time.Duration // how long each introspection request was held open
	hang := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		// Once the body is read, the server notices the client going away.
		_, _ = io.Copy(io.Discard, r.Body)
		select {
		case <-r.Context().Done():
		case <-time.After(10 * time.Second):
		}
		mu.Lock()
		held = append(held, time.Since(start))
		mu.Unlock()
	}))
	defer hang.Close()
	p := startAuthz(t, map[string]string{
		"OAUTH_RESOURCE":               opaqueResource,
		"OAUTH_AUTHORIZATION_SERVER":   hang.URL,
		"OAUTH_INTROSPECTION_ENDPOINT": hang.URL + "/introspect",
		"OAUTH_CLIENT_ID":              "mcp-authz",
		"OAUTH_CLIENT_SECRET":          "mcp-authz-secret",
	}, false)
	lastHeld := func() time.Duration {
		t.Helper()
		for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
			mu.Lock()
			n := len(held)
			var d time.Duration
			if n > 0 {
				d = held[n-1]
				held = held[:0]
			}
			mu.Unlock()
			if n > 0 {
				return d
			}
		}
		t.Fatal("the introspection request never ended")
		return 0
	}
	for i, tc := range []struct {
		envoyTimeout time.Duration
		min, max     time.Duration // how long the introspection may be held
	}{
		// The answer before Envoy's deadline is the bound (err == nil
		// below); the hold is checked only against the hanging server's
		// 10 s, with room for a loaded machine to notice the hang-up.
		{500 * time.Millisecond, 300 * time.Millisecond, 3 * time.Second},
		{5 * time.Second, 900 * time.Millisecond, 4 * time.Second}, // the introspection timeout, 1 s
	} {
		t.Run(fmt.Sprint("Envoy timeout ", tc.envoyTimeout), func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), tc.envoyTimeout)
			defer cancel()
			start := time.Now()
			resp, err := p.client.Check(ctx, envoyCheck("POST", "/opaque", map[string]string{"authorization": fmt.Sprintf("Bearer opaque-%d", i)}))
			took := time.Since(start)
			if err != nil {
				t.Fatalf("Check failed after %v: %v (Envoy would answer with its own timeout, not the 503)", took, err)
			}
			if codes.Code(resp.GetStatus().GetCode()) == codes.OK || resp.GetDeniedResponse().GetStatus().GetCode() != 503 {
				t.Fatalf("want 503, got %v", resp)
			}
			if d := lastHeld(); d < tc.min || d > tc.max {
				t.Fatalf("introspection held %v, want between %v and %v", d, tc.min, tc.max)
			}
		})
	}
}
