package validators

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/mcp-authz/mcp-authz/internal/devissuer"
	"github.com/mcp-authz/mcp-authz/internal/tracing"
	"github.com/mcp-authz/mcp-authz/internal/tracing/tracingtest"
)

// TestIntrospectionObserve: every validation is reported with its result
// (active, inactive, invalid, error) and a duration.
func TestIntrospectionObserve(t *testing.T) {
	var mu sync.Mutex
	got := map[string]int{}
	v, as := newIntrospectionFixture(t, func(c *IntrospectionConfig) {
		c.Observe = func(result string, d time.Duration) {
			if d <= 0 {
				t.Errorf("duration %v", d)
			}
			mu.Lock()
			got[result]++
			mu.Unlock()
		}
	})
	for _, tok := range []string{"good", "inactive", "unknown", "wrong-aud", "expired", "not-json"} {
		_, _ = v.Validate(context.Background(), tok)
	}
	as.status = http.StatusInternalServerError
	_, _ = v.Validate(context.Background(), "good")
	want := map[string]int{IntrospectionActive: 1, IntrospectionInactive: 2, IntrospectionInvalid: 2, IntrospectionError: 2}
	mu.Lock()
	defer mu.Unlock()
	for k, n := range want {
		if got[k] != n {
			t.Fatalf("observed %v, want %v", got, want)
		}
	}
}

// TestKeySetStatsAndRefreshSpan: the registry reports each key set's
// finished refreshes, successful and failed, and each refresh is a
// jwks.refresh span naming the issuer, failed when the fetch failed.
func TestKeySetStatsAndRefreshSpan(t *testing.T) {
	iss, err := devissuer.Start(devissuer.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer iss.Close()
	down := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "down", http.StatusInternalServerError)
	}))
	defer down.Close()
	rec := &tracingtest.Recorder{}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	reg := NewKeySets(ctx)
	good, err := reg.Get(KeySetConfig{Issuer: iss.URL, JWKSURI: iss.JWKSURL(), Client: http.DefaultClient, Tracer: rec})
	if err != nil {
		t.Fatal(err)
	}
	bad, err := reg.Get(KeySetConfig{Issuer: "https://down.example", JWKSURI: down.URL + "/jwks", Client: http.DefaultClient, Tracer: rec})
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for good.Stats().Succeeded == 0 || bad.Stats().Failed == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("good %+v, bad %+v", good.Stats(), bad.Stats())
		}
		time.Sleep(10 * time.Millisecond)
	}
	stats := map[string]KeySetStats{}
	for _, s := range reg.Stats() {
		stats[s.Issuer] = s
	}
	if s := stats[iss.URL]; s.Succeeded != 1 || s.Failed != 0 || !s.Loaded || s.JWKSURI != iss.JWKSURL() {
		t.Fatalf("good: %+v", s)
	}
	if s := stats["https://down.example"]; s.Succeeded != 0 || s.Failed < 1 || s.Loaded {
		t.Fatalf("bad: %+v", s)
	}
	spans := map[string]tracingtest.Span{}
	for _, s := range rec.Spans() {
		if s.Name != "jwks.refresh" || s.Parent != nil {
			t.Fatalf("span %+v", s)
		}
		spans[s.Attrs[tracing.AttrIssuer]] = s
	}
	if s := spans[iss.URL]; !s.Ended || s.Err != nil {
		t.Fatalf("good refresh span %+v", s)
	}
	if s := spans["https://down.example"]; !s.Ended || s.Err == nil {
		t.Fatalf("failed refresh span %+v", s)
	}
}
