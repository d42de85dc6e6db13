package validators

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/mcp-authz/mcp-authz/internal/devissuer"
)

// TestKeySetsShareOneJWKSPerIssuerAndURI: validators naming the same
// (issuer, JWKS URI) share one key set and one fetch; each validator used
// to keep its own copy, multiplying refreshes.
func TestKeySetsShareOneJWKSPerIssuerAndURI(t *testing.T) {
	tests := []struct {
		name string
		// first and second are the two validators' issuer settings, built
		// for the test issuer (URL, JWKS URL).
		first, second func(iss, jwks string) IssuerConfig
		sets          int
		jwksFetches   int64
		interval      time.Duration // the shared set's refresh interval, when one
	}{
		{
			name:        "same issuer and JWKS URI",
			first:       func(iss, jwks string) IssuerConfig { return IssuerConfig{Issuer: iss, JWKSURI: jwks} },
			second:      func(iss, jwks string) IssuerConfig { return IssuerConfig{Issuer: iss, JWKSURI: jwks} },
			sets:        1,
			jwksFetches: 1,
			interval:    15 * time.Minute,
		},
		{
			name:        "same issuer, both discovered",
			first:       func(iss, _ string) IssuerConfig { return IssuerConfig{Issuer: iss} },
			second:      func(iss, _ string) IssuerConfig { return IssuerConfig{Issuer: iss} },
			sets:        1,
			jwksFetches: 1,
			interval:    15 * time.Minute,
		},
		{
			name: "different refresh intervals: the shortest applies",
			first: func(iss, jwks string) IssuerConfig {
				return IssuerConfig{Issuer: iss, JWKSURI: jwks, JWKSCacheTTL: time.Hour}
			},
			second: func(iss, jwks string) IssuerConfig {
				return IssuerConfig{Issuer: iss, JWKSURI: jwks, JWKSCacheTTL: 10 * time.Minute}
			},
			sets:        1,
			jwksFetches: 1,
			interval:    10 * time.Minute,
		},
		{
			name: "an interval left to the default counts as 15 minutes",
			first: func(iss, jwks string) IssuerConfig {
				return IssuerConfig{Issuer: iss, JWKSURI: jwks, JWKSCacheTTL: time.Hour}
			},
			second:      func(iss, jwks string) IssuerConfig { return IssuerConfig{Issuer: iss, JWKSURI: jwks} },
			sets:        1,
			jwksFetches: 1,
			interval:    15 * time.Minute,
		},
		{
			name:        "same issuer, JWKS URI and discovery: two key sets",
			first:       func(iss, jwks string) IssuerConfig { return IssuerConfig{Issuer: iss, JWKSURI: jwks} },
			second:      func(iss, _ string) IssuerConfig { return IssuerConfig{Issuer: iss} },
			sets:        2,
			jwksFetches: 2,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			iss, err := devissuer.Start(devissuer.Config{Algorithms: []string{"ES256"}})
			if err != nil {
				t.Fatal(err)
			}
			defer iss.Close()
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			reg := NewKeySets(ctx)
			var vs []*JWT
			for i, ic := range []IssuerConfig{tt.first(iss.URL, iss.JWKSURL()), tt.second(iss.URL, iss.JWKSURL())} {
				v, err := NewJWT(ctx, JWTConfig{
					Issuers:   []IssuerConfig{ic},
					Audiences: []string{testAudience + "/" + string(rune('a'+i))},
					Client:    http.DefaultClient,
					KeySets:   reg,
				})
				if err != nil {
					t.Fatal(err)
				}
				waitLoaded(t, v)
				vs = append(vs, v)
			}
			time.Sleep(50 * time.Millisecond) // room for a fetch that should not happen
			if got := reg.Len(); got != tt.sets {
				t.Errorf("%d key sets, want %d", got, tt.sets)
			}
			if got := iss.JWKSHits(); got != tt.jwksFetches {
				t.Errorf("%d JWKS fetches, want %d", got, tt.jwksFetches)
			}
			shared := vs[0].KeySets()[iss.URL] == vs[1].KeySets()[iss.URL]
			if shared != (tt.sets == 1) {
				t.Errorf("key set shared: %v, want %v", shared, tt.sets == 1)
			}
			if tt.interval != 0 {
				if got := time.Duration(vs[0].KeySets()[iss.URL].interval.Load()); got != tt.interval {
					t.Errorf("refresh interval %v, want %v", got, tt.interval)
				}
			}
			for i, v := range vs {
				tok, _ := iss.Issue(devissuer.TokenRequest{Subject: "s", Audience: testAudience + "/" + string(rune('a'+i))})
				if _, err := v.Validate(ctx, tok); err != nil {
					t.Errorf("validator %d: %v", i, err)
				}
			}
		})
	}
}

// TestKeySetsRelease: a key set lives while a validator retains it; a
// reload that builds the new validators before closing the old keeps an
// unchanged issuer's JWKS (no refetch); the last Close stops it.
func TestKeySetsRelease(t *testing.T) {
	iss, err := devissuer.Start(devissuer.Config{Algorithms: []string{"ES256"}})
	if err != nil {
		t.Fatal(err)
	}
	defer iss.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	reg := NewKeySets(ctx)
	newJWT := func() *JWT {
		t.Helper()
		v, err := NewJWT(ctx, JWTConfig{
			Issuers:   []IssuerConfig{{Issuer: iss.URL, JWKSURI: iss.JWKSURL()}},
			Audiences: []string{testAudience},
			Client:    http.DefaultClient,
			KeySets:   reg,
		})
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	tok, _ := iss.Issue(devissuer.TokenRequest{Subject: "s", Audience: testAudience})

	old := newJWT()
	waitLoaded(t, old)
	ks := old.KeySets()[iss.URL]

	steps := []struct {
		name  string
		do    func()
		sets  int
		alive bool
	}{
		{"reload: the new validator finds the loaded key set", func() {
			v := newJWT()
			if v.KeySets()[iss.URL] != ks || !ks.Loaded() {
				t.Fatal("the reloaded validator did not get the loaded key set")
			}
			old.Close()
			old = v
		}, 1, true},
		{"a second Close of a closed validator is a no-op", func() {}, 1, true},
		{"the last Close stops the key set", func() { old.Close(); old.Close() }, 0, false},
	}
	var closed []*JWT
	for _, st := range steps {
		st.do()
		closed = append(closed, old)
		if got := reg.Len(); got != st.sets {
			t.Fatalf("%s: %d key sets, want %d", st.name, got, st.sets)
		}
		if alive := ks.ctx.Err() == nil; alive != st.alive {
			t.Fatalf("%s: key set alive %v, want %v", st.name, alive, st.alive)
		}
		if st.alive {
			if _, err := old.Validate(ctx, tok); err != nil {
				t.Fatalf("%s: %v", st.name, err)
			}
		}
	}
	if got := iss.JWKSHits(); got != 1 {
		t.Errorf("%d JWKS fetches across the reload, want 1", got)
	}
	// After the last release, the same issuer starts afresh.
	v := newJWT()
	waitLoaded(t, v)
	if v.KeySets()[iss.URL] == ks || reg.Len() != 1 {
		t.Error("a released key set was reused")
	}
	v.Close()
}

// TestKeySetsLowerIntervalTakesEffect: a second validator asking for a
// shorter refresh interval wakes the shared key set's refresh loop.
func TestKeySetsLowerIntervalTakesEffect(t *testing.T) {
	iss, err := devissuer.Start(devissuer.Config{Algorithms: []string{"ES256"}})
	if err != nil {
		t.Fatal(err)
	}
	defer iss.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	reg := NewKeySets(ctx)
	for _, ttl := range []time.Duration{time.Hour, 100 * time.Millisecond} {
		v, err := NewJWT(ctx, JWTConfig{
			Issuers:            []IssuerConfig{{Issuer: iss.URL, JWKSURI: iss.JWKSURL(), JWKSCacheTTL: ttl}},
			Audiences:          []string{testAudience},
			Client:             http.DefaultClient,
			MinRefreshInterval: 10 * time.Millisecond,
			KeySets:            reg,
		})
		if err != nil {
			t.Fatal(err)
		}
		waitLoaded(t, v)
	}
	deadline := time.Now().Add(10 * time.Second)
	for iss.JWKSHits() < 3 {
		if time.Now().After(deadline) {
			t.Fatalf("%d JWKS fetches in 10 s with a 100 ms interval", iss.JWKSHits())
		}
		time.Sleep(20 * time.Millisecond)
	}
}
