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

// discoveringAS is an authorization server whose discovery document can be
// turned off (503) and whose introspection endpoint is a fakeAS.
type discoveringAS struct {
	srv        *httptest.Server
	as         *fakeAS
	down       atomic.Bool
	discovered atomic.Int64 // discovery documents requested
}

func newDiscoveringAS(t *testing.T) *discoveringAS {
	d := &discoveringAS{as: &fakeAS{answers: map[string]string{"good": fmt.Sprintf(`{"active":true,"aud":"%s"}`, testAudience)}}}
	mux := http.NewServeMux()
	mux.HandleFunc("/.well-known/", func(w http.ResponseWriter, r *http.Request) {
		d.discovered.Add(1)
		if d.down.Load() {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintf(w, `{"issuer":%q,"introspection_endpoint":%q}`, d.srv.URL, d.srv.URL+"/introspect")
	})
	mux.Handle("/introspect", d.as)
	d.srv = httptest.NewServer(mux)
	t.Cleanup(d.srv.Close)
	return d
}

func (d *discoveringAS) validator(t *testing.T, seed string) *Introspection {
	t.Helper()
	v, err := NewIntrospection(context.Background(), IntrospectionConfig{Issuer: d.srv.URL, SeedEndpoint: seed, ClientID: "a", ClientSecret: "b",
		Audiences: []string{testAudience}, Client: d.srv.Client()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(v.Close)
	return v
}

// eventually polls cond for up to 10 s.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for end := time.Now().Add(10 * time.Second); !cond(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatalf("%s: not after 10 s", what)
		}
	}
}

// TestIntrospectionDiscoversAtStart: the endpoint is discovered before any
// Check needs it, so the first Check pays only for its introspection.
func TestIntrospectionDiscoversAtStart(t *testing.T) {
	d := newDiscoveringAS(t)
	v := d.validator(t, "")
	eventually(t, "discovered", v.Ready)
	if n := d.as.calls.Load(); n != 0 {
		t.Fatalf("%d introspections before any Check", n)
	}
	before := d.discovered.Load()
	if _, err := v.Validate(context.Background(), "good"); err != nil {
		t.Fatal(err)
	}
	if n := d.discovered.Load(); n != before {
		t.Fatalf("the Check discovered again (%d documents, %d before)", n, before)
	}
}

// TestIntrospectionDiscoveryFlood: while discovery fails, a flood of
// Checks gets 503 (not invalid_token) and costs the authorization server
// about one discovery a second, not one per Check; once it answers again,
// Checks pass within about a second.
func TestIntrospectionDiscoveryFlood(t *testing.T) {
	d := newDiscoveringAS(t)
	d.down.Store(true)
	v := d.validator(t, "")
	var checks atomic.Int64
	var wrong atomic.Value
	var wg sync.WaitGroup
	stop := time.Now().Add(2500 * time.Millisecond)
	for range 20 {
		wg.Go(func() {
			for time.Now().Before(stop) {
				ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
				_, err := v.Validate(ctx, "good")
				cancel()
				checks.Add(1)
				if !errors.Is(err, ErrUnavailable) {
					wrong.Store(fmt.Sprint(err))
				}
			}
		})
	}
	wg.Wait()
	if w := wrong.Load(); w != nil {
		t.Fatalf("a Check during the outage got %v, want unavailable", w)
	}
	// Two documents per attempt (OIDC, then RFC 8414): the first attempt,
	// then at most one a second.
	if n := d.discovered.Load(); n > 2*5 {
		t.Fatalf("%d discovery documents for %d Checks in 2.5 s", n, checks.Load())
	}
	t.Logf("%d Checks, %d discovery documents requested, %d introspections", checks.Load(), d.discovered.Load(), d.as.calls.Load())

	d.down.Store(false)
	back := time.Now()
	eventually(t, "Checks pass again", func() bool {
		_, err := v.Validate(context.Background(), "good")
		return err == nil
	})
	t.Logf("passing again %v after discovery answered", time.Since(back).Round(time.Millisecond))
}

// TestIntrospectionKeepsEndpointWhenCallFails: a failed introspection asks
// for a discovery but keeps the endpoint, so an authorization server whose
// discovery is down still introspects.
func TestIntrospectionKeepsEndpointWhenCallFails(t *testing.T) {
	d := newDiscoveringAS(t)
	v := d.validator(t, "")
	eventually(t, "discovered", v.Ready)
	d.down.Store(true)
	d.as.status = http.StatusInternalServerError
	if _, err := v.Validate(context.Background(), "good"); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("introspection answering 500: %v", err)
	}
	d.as.status = 0
	// Let the rediscovery the failure asked for fail.
	eventually(t, "rediscovery attempted", func() bool { return d.discovered.Load() >= 3 })
	if _, err := v.Validate(context.Background(), "good"); err != nil {
		t.Fatalf("after a failed rediscovery: %v", err)
	}
}

// TestIntrospectionSeedEndpoint: a reload's validator starts from the
// endpoint its predecessor discovered, while discovering again.
func TestIntrospectionSeedEndpoint(t *testing.T) {
	d := newDiscoveringAS(t)
	d.down.Store(true)
	v := d.validator(t, d.srv.URL+"/introspect")
	if !v.Ready() {
		t.Fatal("not ready with a seed")
	}
	if _, err := v.Validate(context.Background(), "good"); err != nil {
		t.Fatal(err)
	}
	if _, err := NewIntrospection(context.Background(), IntrospectionConfig{Issuer: d.srv.URL, SeedEndpoint: "http://as.example/introspect",
		ClientID: "a", ClientSecret: "b", Audiences: []string{testAudience}, Client: d.srv.Client()}); err == nil {
		t.Fatal("accepted a plain-http seed on a public host")
	}
}

// TestIntrospectionCloseStopsDiscovery: Close ends the background
// discovery; the validator keeps the endpoint it found.
func TestIntrospectionCloseStopsDiscovery(t *testing.T) {
	d := newDiscoveringAS(t)
	v := d.validator(t, "")
	eventually(t, "discovered", v.Ready)
	v.Close()
	n := v.disc.attempts.Load()
	d.down.Store(true)
	d.as.status = http.StatusInternalServerError
	_, _ = v.Validate(context.Background(), "good") // pokes a discovery that no longer runs
	d.as.status = 0
	time.Sleep(1500 * time.Millisecond)
	if m := v.disc.attempts.Load(); m != n {
		t.Fatalf("%d discovery attempts after Close", m-n)
	}
	if _, err := v.Validate(context.Background(), "good"); err != nil {
		t.Fatal(err)
	}
}

// TestIntrospectionDiscoveryStopsWithItsContext: the service's end stops
// the background discovery, as it does the JWKS refresh, even for a
// validator nobody closes (the generation serving at shutdown).
func TestIntrospectionDiscoveryStopsWithItsContext(t *testing.T) {
	d := newDiscoveringAS(t)
	d.down.Store(true)
	ctx, cancel := context.WithCancel(context.Background())
	v, err := NewIntrospection(ctx, IntrospectionConfig{Issuer: d.srv.URL, ClientID: "a", ClientSecret: "b",
		Audiences: []string{testAudience}, Client: d.srv.Client()})
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, "a first attempt", func() bool { return v.disc.attempts.Load() > 0 })
	cancel()
	<-v.disc.done
	n := d.discovered.Load()
	_, _ = v.Validate(context.Background(), "good") // pokes
	time.Sleep(1500 * time.Millisecond)
	if m := d.discovered.Load(); m != n {
		t.Fatalf("%d discovery documents after the context ended", m-n)
	}
}
