package validators

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mcp-authz/mcp-authz/internal/devissuer"
)

func TestKeyRotationAcceptedWithoutRestart(t *testing.T) {
	f := newFixture(t, func(c *JWTConfig) {
		c.MinRefreshInterval = 50 * time.Millisecond
		c.RefreshWait = 5 * time.Second // a loaded test machine must not turn this into a 503
	})
	time.Sleep(60 * time.Millisecond) // a rotation comes long after the last refresh
	k, err := f.iss.Rotate("RS256")
	if err != nil {
		t.Fatal(err)
	}
	before := f.iss.JWKSHits()
	if _, err := f.v.Validate(context.Background(), f.sign(t, k, nil, nil)); err != nil {
		t.Fatalf("token signed with the rotated key: %v", err)
	}
	if got := f.iss.JWKSHits() - before; got != 1 {
		t.Errorf("JWKS fetched %d times for one rotation, want 1", got)
	}
}

func TestUnknownKIDFloodIsRateLimited(t *testing.T) {
	f := newFixture(t, func(c *JWTConfig) { c.MinRefreshInterval = time.Second })
	// Let the start-up fetch age past the refresh interval.
	time.Sleep(1100 * time.Millisecond)
	before := f.iss.JWKSHits()
	start := time.Now()
	var wg sync.WaitGroup
	var unknown atomic.Int64
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 50 {
				k, _ := devissuer.NewKey("ES256")
				_, err := f.v.Validate(context.Background(), f.sign(t, k, nil, nil))
				var verr *Error
				if errors.As(err, &verr) && verr.Description == DescUnknownKey {
					unknown.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	hits := f.iss.JWKSHits() - before
	// At most one fetch per started second of the flood.
	if limit := int64(elapsed/time.Second) + 1; hits > limit {
		t.Errorf("%d JWKS fetches during a %v flood, want <= %d", hits, elapsed, limit)
	}
	if hits < 1 {
		t.Errorf("no refresh at all for unknown kids")
	}
	if unknown.Load() != 400 {
		t.Errorf("%d of 400 forged tokens answered unknown kid", unknown.Load())
	}
}

func TestJWKSUnreachableAtStartIsUnavailableThenRecovers(t *testing.T) {
	iss, err := devissuer.Start(devissuer.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer iss.Close()
	var up atomic.Bool
	target, _ := url.Parse(iss.URL)
	proxy := httputil.NewSingleHostReverseProxy(target)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !up.Load() {
			http.Error(w, "down", http.StatusBadGateway)
			return
		}
		proxy.ServeHTTP(w, r)
	}))
	defer srv.Close()

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	v, err := NewJWT(ctx, JWTConfig{
		Issuers:   []IssuerConfig{{Issuer: iss.URL, JWKSURI: srv.URL + "/jwks"}},
		Audiences: []string{testAudience},
		Client:    srv.Client(),
	})
	if err != nil {
		t.Fatalf("start-up must not fail when the JWKS is down: %v", err)
	}
	tok, _ := iss.Issue(devissuer.TokenRequest{Subject: "s", Audience: testAudience})
	_, err = v.Validate(context.Background(), tok)
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("JWKS down: want ErrUnavailable, got %v", err)
	}
	var verr *Error
	if errors.As(err, &verr) && verr.Description != DescJWKS {
		t.Errorf("description %q", verr.Description)
	}

	up.Store(true)
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err = v.Validate(context.Background(), tok); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("never recovered: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestSlowJWKSDoesNotHoldChecks(t *testing.T) {
	iss, err := devissuer.Start(devissuer.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer iss.Close()
	release := make(chan struct{})
	var slow atomic.Bool
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if slow.Load() {
			<-release
		}
		resp, err := http.Get(iss.JWKSURL())
		if err != nil {
			http.Error(w, err.Error(), 502)
			return
		}
		defer resp.Body.Close()
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.Copy(w, resp.Body)
	}))
	defer srv.Close()
	defer close(release)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	v, err := NewJWT(ctx, JWTConfig{
		Issuers:            []IssuerConfig{{Issuer: iss.URL, JWKSURI: srv.URL}},
		Audiences:          []string{testAudience},
		Client:             srv.Client(),
		RefreshWait:        20 * time.Millisecond,
		MinRefreshInterval: 10 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	waitLoaded(t, v)
	time.Sleep(20 * time.Millisecond)
	slow.Store(true)
	k, _ := iss.Rotate("ES256")
	tok, _ := k.Sign(map[string]any{"iss": iss.URL, "sub": "s", "aud": testAudience, "exp": time.Now().Add(time.Hour).Unix()}, nil)
	_, err = v.Validate(context.Background(), tok)
	// The refresh is still blocked: the check must give up (503), not hang
	// and not call a possibly valid token invalid.
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("want ErrUnavailable while the refresh runs, got %v", err)
	}
}

func TestDiscovery(t *testing.T) {
	iss, err := devissuer.Start(devissuer.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer iss.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	v, err := NewJWT(ctx, JWTConfig{
		Issuers:   []IssuerConfig{{Issuer: iss.URL}},
		Audiences: []string{testAudience},
		Client:    http.DefaultClient,
	})
	if err != nil {
		t.Fatal(err)
	}
	waitLoaded(t, v)
	tok, _ := iss.Issue(devissuer.TokenRequest{Subject: "s", Audience: testAudience})
	if _, err := v.Validate(context.Background(), tok); err != nil {
		t.Fatalf("discovered JWKS: %v", err)
	}

	md, err := Discover(ctx, http.DefaultClient, iss.URL)
	if err != nil || md.JWKSURI != iss.JWKSURL() {
		t.Fatalf("Discover = %+v, %v", md, err)
	}
	if _, err := Discover(ctx, http.DefaultClient, iss.URL+"/other"); err == nil {
		t.Fatal("discovery accepted a document for another issuer")
	}
}

func TestDiscoveryURLs(t *testing.T) {
	tests := []struct{ issuer, oidc, rfc8414 string }{
		{"https://as.example", "https://as.example/.well-known/openid-configuration", "https://as.example/.well-known/oauth-authorization-server"},
		{"https://tenant.auth0.com/", "https://tenant.auth0.com/.well-known/openid-configuration", "https://tenant.auth0.com/.well-known/oauth-authorization-server"},
		{"https://as.example/oauth2/default", "https://as.example/oauth2/default/.well-known/openid-configuration", "https://as.example/.well-known/oauth-authorization-server/oauth2/default"},
	}
	for _, tt := range tests {
		got, err := DiscoveryURLs(tt.issuer)
		if err != nil || got[0] != tt.oidc || got[1] != tt.rfc8414 {
			t.Errorf("DiscoveryURLs(%q) = %v, %v", tt.issuer, got, err)
		}
	}
}

func TestCheckOutboundURL(t *testing.T) {
	tests := []struct {
		url string
		ok  bool
	}{
		{"https://as.example/jwks", true},
		{"http://127.0.0.1:8080/jwks", true},
		{"http://127.5.0.1/jwks", true},
		{"http://localhost/jwks", true},
		{"http://[::1]:9000/jwks", true},
		{"http://as.example/jwks", false},
		{"http://10.0.0.1/jwks", false},
		{"ftp://as.example/jwks", false},
		{"https://user:pass@as.example/jwks", false},
		{"https:///jwks", false},
		{"not a url", false},
	}
	for _, tt := range tests {
		if err := CheckOutboundURL(tt.url); (err == nil) != tt.ok {
			t.Errorf("CheckOutboundURL(%q) = %v, want ok=%v", tt.url, err, tt.ok)
		}
	}
}

// TestKeySetStopIsNotAFailure: a fetch that is in flight when the service
// stops (a port in use ends start-up) is not logged as a JWKS failure.
func TestKeySetStopIsNotAFailure(t *testing.T) {
	arrived := make(chan struct{}, 1)
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case arrived <- struct{}{}:
		default:
		}
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}))
	defer srv.Close()
	defer close(release)
	var logs syncBuffer
	ctx, cancel := context.WithCancel(context.Background())
	ks, err := NewRemoteKeySet(ctx, KeySetConfig{
		JWKSURI: srv.URL + "/jwks", Client: srv.Client(),
		Logger: slog.New(slog.NewTextHandler(&logs, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-arrived:
	case <-time.After(5 * time.Second):
		t.Fatal("no fetch")
	}
	cancel()
	// The fetch ends with the context; give the refresh time to report.
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		ks.mu.Lock()
		done := ks.inflight == nil && ks.lastErr != nil
		ks.mu.Unlock()
		if done {
			break
		}
	}
	time.Sleep(20 * time.Millisecond)
	if s := logs.String(); strings.Contains(s, "JWKS refresh failed") {
		t.Fatalf("a stop was logged as a failure: %s", s)
	}
}

// syncBuffer is a bytes.Buffer safe for a logger and a test to share.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
