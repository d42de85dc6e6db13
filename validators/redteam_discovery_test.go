package validators

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Red-team attacks on the background discovery of the introspection
// endpoint (5d4fd7a). A test that passes documents a defence.

// TestRedteamDiscoveredEndpointRefused: a discovery document naming an
// endpoint this service may not call (plain http off loopback, a relative
// URL, credentials in the URL), or no endpoint, or written for another
// issuer, is refused: the validator is not ready and Checks get 503, never
// a call to that URL; and it never replaces an endpoint that worked (here,
// a reload's seed).
func TestRedteamDiscoveredEndpointRefused(t *testing.T) {
	for _, tc := range []struct {
		name string
		doc  func(issuer string) string
	}{
		{"plain http on a public host", func(iss string) string {
			return fmt.Sprintf(`{"issuer":%q,"introspection_endpoint":"http://as.example/introspect"}`, iss)
		}},
		{"relative URL", func(iss string) string {
			return fmt.Sprintf(`{"issuer":%q,"introspection_endpoint":"/introspect"}`, iss)
		}},
		{"credentials in the URL", func(iss string) string {
			return fmt.Sprintf(`{"issuer":%q,"introspection_endpoint":"https://u:p@as.example/introspect"}`, iss)
		}},
		{"no endpoint", func(iss string) string { return fmt.Sprintf(`{"issuer":%q}`, iss) }},
		{"another issuer", func(iss string) string {
			return fmt.Sprintf(`{"issuer":%q,"introspection_endpoint":%q}`, iss+"/other", iss+"/evil")
		}},
		{"issuer with a trailing slash", func(iss string) string {
			return fmt.Sprintf(`{"issuer":%q,"introspection_endpoint":%q}`, iss+"/", iss+"/evil")
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			as := &fakeAS{answers: map[string]string{"good": fmt.Sprintf(`{"active":true,"aud":"%s"}`, testAudience)}}
			var evil atomic.Int64
			var srv *httptest.Server
			mux := http.NewServeMux()
			mux.HandleFunc("/.well-known/", func(w http.ResponseWriter, r *http.Request) {
				fmt.Fprint(w, tc.doc(srv.URL))
			})
			mux.Handle("/introspect", as)
			mux.HandleFunc("/evil", func(w http.ResponseWriter, r *http.Request) {
				evil.Add(1)
				fmt.Fprint(w, `{"active":true}`)
			})
			srv = httptest.NewServer(mux)
			t.Cleanup(srv.Close)
			cfg := IntrospectionConfig{Issuer: srv.URL, ClientID: "a", ClientSecret: "b",
				Audiences: []string{testAudience}, Client: srv.Client()}

			v, err := NewIntrospection(context.Background(), cfg)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(v.Close)
			if _, err := v.Validate(context.Background(), "good"); !errors.Is(err, ErrUnavailable) {
				t.Fatalf("Check against a refused document: %v, want unavailable", err)
			}
			if v.Ready() {
				t.Fatal("ready on a refused document")
			}

			cfg.SeedEndpoint = srv.URL + "/introspect"
			seeded, err := NewIntrospection(context.Background(), cfg)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(seeded.Close)
			eventually(t, "the seeded validator's first discovery", func() bool {
				select {
				case <-seeded.disc.first:
					return true
				default:
					return false
				}
			})
			for range 3 {
				if _, err := seeded.Validate(context.Background(), "good"); err != nil {
					t.Fatalf("seeded validator after a refused document: %v", err)
				}
			}
			if e, _ := seeded.DiscoveredEndpoint(); e != cfg.SeedEndpoint {
				t.Fatalf("endpoint %q after a refused document, want the seed", e)
			}
			if n := evil.Load(); n != 0 {
				t.Fatalf("%d calls to the endpoint of a refused document", n)
			}
		})
	}
}

// TestRedteamFailingIntrospectionPokesAtMostOncePerSecond: with the
// endpoint known, a flood of Checks whose introspection fails (here the
// authorization server answers 500; a client can provoke a 4xx with a
// token the server will not take) asks for a rediscovery each, and costs
// the authorization server about one discovery a second, not one per
// Check.
func TestRedteamFailingIntrospectionPokesAtMostOncePerSecond(t *testing.T) {
	d := newDiscoveringAS(t)
	v := d.validator(t, "")
	eventually(t, "discovered", v.Ready)
	d.as.status = http.StatusInternalServerError
	before := d.discovered.Load()
	var checks atomic.Int64
	var wg sync.WaitGroup
	stop := time.Now().Add(2500 * time.Millisecond)
	for range 20 {
		wg.Go(func() {
			for time.Now().Before(stop) {
				if _, err := v.Validate(context.Background(), "good"); !errors.Is(err, ErrUnavailable) {
					t.Errorf("introspection answering 500: %v", err)
					return
				}
				checks.Add(1)
			}
		})
	}
	wg.Wait()
	// One document per attempt (OIDC discovery answers): at most one a
	// second, and one more for an attempt that was starting as the flood
	// began.
	if n := d.discovered.Load() - before; n > 4 {
		t.Fatalf("%d discovery documents for %d failed Checks in 2.5 s", n, checks.Load())
	}
	t.Logf("%d failed Checks, %d discovery documents", checks.Load(), d.discovered.Load()-before)
}

// TestRedteamHangingDiscovery: an authorization server whose discovery
// never answers holds neither a Check past its deadline nor Close.
func TestRedteamHangingDiscovery(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(release) })
	v, err := NewIntrospection(context.Background(), IntrospectionConfig{Issuer: srv.URL, ClientID: "a", ClientSecret: "b",
		Audiences: []string{testAudience}, Client: srv.Client()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	if _, err := v.Validate(ctx, "good"); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Check while discovery hangs: %v, want unavailable", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("Check held %v past its 200 ms deadline", d)
	}
	start = time.Now()
	v.Close()
	if d := time.Since(start); d > time.Second {
		t.Fatalf("Close took %v with a discovery hanging", d)
	}
}
