package validators

import (
	"context"
	stdjson "encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mcp-authz/mcp-authz/internal/syncbuf"

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

// fakeDNSClient resolves host (any port) to the loopback listener addr,
// so a test can serve "http://host/..." — a URL CheckOutboundURL refuses —
// without a network. It has no CheckRedirect of its own (follow all), or
// checkRedirect when given.
func fakeDNSClient(host, addr string, checkRedirect func(*http.Request, []*http.Request) error) *http.Client {
	dialer := &net.Dialer{}
	return &http.Client{
		Transport: &http.Transport{DialContext: func(ctx context.Context, network, a string) (net.Conn, error) {
			if h, _, _ := net.SplitHostPort(a); h == host {
				a = addr
			}
			return dialer.DialContext(ctx, network, a)
		}},
		CheckRedirect: checkRedirect,
	}
}

// redirectTo answers every request with a 302 to target(r).
func redirectTo(t *testing.T, target func(*http.Request) string) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, target(r), http.StatusFound)
	}))
	t.Cleanup(srv.Close)
	return srv
}

// TestJWKSAndDiscoveryRedirectsStayHTTPSOrLoopback: the validators enforce
// CheckOutboundURL on every redirect of a JWKS or discovery fetch
// themselves, whatever client they are given.
func TestJWKSAndDiscoveryRedirectsStayHTTPSOrLoopback(t *testing.T) {
	iss, err := devissuer.Start(devissuer.Config{Algorithms: []string{"RS256"}})
	if err != nil {
		t.Fatal(err)
	}
	defer iss.Close()
	issAddr := strings.TrimPrefix(iss.URL, "http://")
	follow := func(*http.Request, []*http.Request) error { return nil }

	// The discovery document for a redirecting issuer is served by another
	// loopback server, reachable as http://as.example too.
	var issuer string
	docs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, `{"issuer":%q,"jwks_uri":%q}`, issuer, iss.JWKSURL())
	}))
	defer docs.Close()
	docsAddr := strings.TrimPrefix(docs.URL, "http://")
	offLoopback := redirectTo(t, func(r *http.Request) string { return "http://as.example" + r.URL.Path })
	onLoopback := redirectTo(t, func(r *http.Request) string { return docs.URL + r.URL.Path })

	tests := []struct {
		name    string
		client  *http.Client
		target  string // where the JWKS URI redirects
		refused bool
	}{
		{"to another loopback port", fakeDNSClient("jwks.example", issAddr, nil), iss.JWKSURL(), false},
		{"to http off loopback", fakeDNSClient("jwks.example", issAddr, nil), "http://jwks.example/jwks", true},
		{"to http off loopback, client follows everything", fakeDNSClient("jwks.example", issAddr, follow), "http://jwks.example/jwks", true},
		{"to ftp", fakeDNSClient("jwks.example", issAddr, nil), "ftp://jwks.example/jwks", true},
	}
	for _, tt := range tests {
		t.Run("JWKS "+tt.name, func(t *testing.T) {
			srv := redirectTo(t, func(*http.Request) string { return tt.target })
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			ks, err := NewRemoteKeySet(ctx, KeySetConfig{Issuer: iss.URL, JWKSURI: srv.URL + "/jwks", Client: tt.client})
			if err != nil {
				t.Fatal(err)
			}
			deadline := time.Now().Add(5 * time.Second)
			for !ks.Loaded() && ks.lastError() == nil {
				if time.Now().After(deadline) {
					t.Fatal("no fetch finished")
				}
				time.Sleep(5 * time.Millisecond)
			}
			if tt.refused {
				if ks.Loaded() || !strings.Contains(fmt.Sprint(ks.lastError()), "redirect refused") {
					t.Fatalf("loaded=%v, last error %v: want the redirect refused", ks.Loaded(), ks.lastError())
				}
				return
			}
			if !ks.Loaded() {
				t.Fatalf("not loaded: %v", ks.lastError())
			}
		})
	}

	t.Run("discovery to http off loopback", func(t *testing.T) {
		issuer = offLoopback.URL
		_, err := Discover(context.Background(), fakeDNSClient("as.example", docsAddr, follow), issuer)
		if err == nil || !strings.Contains(err.Error(), "redirect refused") {
			t.Fatalf("got %v, want the redirect refused", err)
		}
	})
	t.Run("discovery to another loopback port", func(t *testing.T) {
		issuer = onLoopback.URL
		md, err := Discover(context.Background(), http.DefaultClient, issuer)
		if err != nil || md.JWKSURI != iss.JWKSURL() {
			t.Fatalf("got %+v, %v", md, err)
		}
	})
}

// countingHandler counts log records by message.
type countingHandler struct {
	mu     sync.Mutex
	counts map[string]int
}

func (h *countingHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h *countingHandler) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.counts[r.Message]++
	return nil
}
func (h *countingHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *countingHandler) WithGroup(string) slog.Handler      { return h }
func (h *countingHandler) count(msg string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.counts[msg]
}

// TestJWKSSkipsUnusableKeys: a JWK that fails to parse is skipped and
// logged (once per change, not once per fetch); the rest of the set is
// used. One bad key used to make the whole set unusable, and the issuer
// never ready.
func TestJWKSSkipsUnusableKeys(t *testing.T) {
	good, err := devissuer.NewKey("RS256")
	if err != nil {
		t.Fatal(err)
	}
	goodJWK, _ := stdjson.Marshal(good.JWK())
	bad := []string{
		`{"kty":"RSA","kid":"n-is-a-number","n":5,"e":"AQAB"}`,
		`"not an object"`,
		`{"kty":"EC","kid":"bad-point","crv":"P-256","x":"AAAA","y":"AAAA"}`,
		`{"kty":"RSA","kid":"dup","kid":"dup","n":"AQAB","e":"AQAB"}`,
		`{"kty":"RSA","kid":"no-modulus","e":"AQAB"}`,
	}
	var extra atomic.Value
	extra.Store("")
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, `{"keys":[%s,{"kty":"XYZ","kid":"unsupported"},%s%s]}`, strings.Join(bad, ","), goodJWK, extra.Load())
	}))
	defer srv.Close()
	logs := &countingHandler{counts: map[string]int{}}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	const issuer = "https://as.example"
	v, err := NewJWT(ctx, JWTConfig{
		Issuers:            []IssuerConfig{{Issuer: issuer, JWKSURI: srv.URL, Algorithms: []string{"RS256"}}},
		Audiences:          []string{testAudience},
		Client:             srv.Client(),
		MinRefreshInterval: time.Nanosecond,
		Logger:             slog.New(logs),
	})
	if err != nil {
		t.Fatal(err)
	}
	waitLoaded(t, v)
	claims := map[string]any{"iss": issuer, "sub": "s", "aud": testAudience, "exp": time.Now().Add(time.Hour).Unix()}
	for name, header := range map[string]map[string]any{"with kid": nil, "without kid": {"kid": nil}} {
		tok, err := good.Sign(claims, header)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := v.Validate(ctx, tok); err != nil {
			t.Errorf("token %s signed by the good key: %v", name, err)
		}
	}

	const msg = "ignoring an unusable JWKS key; the other keys are used"
	ks := v.KeySets()[issuer]
	refetch := func() {
		t.Helper()
		call, _ := ks.refresh()
		if call == nil {
			t.Fatal("refresh rate limited")
		}
		<-call.done
		if call.err != nil {
			t.Fatal(call.err)
		}
	}
	refetch()
	refetch()
	if got := logs.count(msg); got != len(bad) {
		t.Errorf("%d warnings after 3 fetches of %d bad keys, want each logged once", got, len(bad))
	}
	extra.Store(`,{"kty":"EC","kid":"another","crv":"P-256"}`)
	refetch()
	if got := logs.count(msg); got != 2*len(bad)+1 {
		t.Errorf("%d warnings after the set of bad keys changed, want %d", got, 2*len(bad)+1)
	}
}

// jwkAs is k's public JWK under kid, with "alg" set to alg ("" drops it).
func jwkAs(k *devissuer.Key, kid, alg string) map[string]any {
	m := k.JWK()
	m["kid"] = kid
	delete(m, "alg")
	if alg != "" {
		m["alg"] = alg
	}
	return m
}

// TestKidlessTokenTriesAtMostFourFittingKeys: a token without kid is
// checked only against keys whose type fits its alg (RSA for RS*/PS*, EC
// on the right curve for ES*, OKP Ed25519 for EdDSA, and a JWK "alg", when
// present, equal to the token's), at most the first four in JWKS order.
// Every key of the set was tried before: with a 4,800-key JWKS one forged
// token cost 400 ms of CPU.
func TestKidlessTokenTriesAtMostFourFittingKeys(t *testing.T) {
	keys := map[string]*devissuer.Key{}
	for _, name := range []string{"RS256", "RS256 filler", "ES256", "ES384", "EdDSA"} {
		k, err := devissuer.NewKey(strings.Fields(name)[0])
		if err != nil {
			t.Fatal(err)
		}
		keys[name] = k
	}
	good, filler := keys["RS256"], keys["RS256 filler"]
	fillers := func(n int, prefix string) []map[string]any {
		var set []map[string]any
		for i := range n {
			set = append(set, jwkAs(filler, fmt.Sprintf("%s-%d", prefix, i), ""))
		}
		return set
	}
	// Keys that fit no RS256 token, ahead of the RSA keys.
	unfit := []map[string]any{
		jwkAs(keys["ES384"], "ec384", ""), jwkAs(keys["EdDSA"], "okp", ""), jwkAs(good, "good-as-rs512", "RS512"), jwkAs(good, "good-as-ps256", "PS256"),
	}
	cat := func(parts ...[]map[string]any) []map[string]any {
		var all []map[string]any
		for _, p := range parts {
			all = append(all, p...)
		}
		return all
	}
	one := func(m map[string]any) []map[string]any { return []map[string]any{m} }

	tests := []struct {
		name     string
		set      []map[string]any
		signer   *devissuer.Key
		want     string // description, "" = valid
		verifies int64
	}{
		{"good key is the 4th fitting key", cat(unfit, fillers(3, "f"), one(jwkAs(good, "good", "RS256")), fillers(100, "g")), good, "", 4},
		{"good key is the 5th fitting key", cat(unfit, fillers(4, "f"), one(jwkAs(good, "good", "")), fillers(100, "g")), good, DescSignature, 4},
		{"2,000 fitting keys, the signer's first", cat(unfit, fillers(2000, "f")), filler, "", 1},
		{"2,000 fitting keys, none the signer's", cat(unfit, fillers(2000, "f")), good, DescSignature, 4},
		{"JWK alg other than the token's is not tried", cat(one(jwkAs(good, "good-as-rs384", "RS384")), fillers(3, "f"), one(jwkAs(good, "good", ""))), good, "", 4},
		{"ES256 token, only P-384 and RSA keys", cat(unfit, fillers(10, "f")), keys["ES256"], DescUnknownKey, 0},
		{"ES384 token, P-256 keys first", cat(fillers(3, "f"), []map[string]any{jwkAs(keys["ES256"], "p256-a", ""), jwkAs(keys["ES256"], "p256-b", ""), jwkAs(keys["ES384"], "p384", "")}), keys["ES384"], "", 1},
		{"EdDSA token, RSA and EC keys first", cat(fillers(5, "f"), one(jwkAs(keys["ES256"], "p256", "")), one(jwkAs(keys["EdDSA"], "okp", "EdDSA"))), keys["EdDSA"], "", 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body, _ := stdjson.Marshal(map[string]any{"keys": tt.set})
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write(body) }))
			defer srv.Close()
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			const issuer = "https://as.example"
			v, err := NewJWT(ctx, JWTConfig{
				Issuers:   []IssuerConfig{{Issuer: issuer, JWKSURI: srv.URL, Algorithms: []string{"RS256", "ES256", "ES384", "EdDSA"}}},
				Audiences: []string{testAudience},
				Client:    srv.Client(),
			})
			if err != nil {
				t.Fatal(err)
			}
			waitLoaded(t, v)
			var verifies atomic.Int64
			v.onVerify = func() { verifies.Add(1) }
			tok, err := tt.signer.Sign(map[string]any{"iss": issuer, "sub": "s", "aud": testAudience, "exp": time.Now().Add(time.Hour).Unix()}, map[string]any{"kid": nil})
			if err != nil {
				t.Fatal(err)
			}
			_, err = v.Validate(ctx, tok)
			if tt.want == "" {
				if err != nil {
					t.Fatalf("want valid, got %v", err)
				}
			} else {
				var verr *Error
				if !errors.As(err, &verr) || verr.Description != tt.want {
					t.Fatalf("got %v, want %q", err, tt.want)
				}
			}
			if got := verifies.Load(); got != tt.verifies {
				t.Fatalf("%d signature checks, want %d", got, tt.verifies)
			}
		})
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

type syncBuffer = syncbuf.Buffer
