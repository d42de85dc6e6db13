package authz_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/golang-jwt/jwt/v5"
	"github.com/redis/go-redis/v9"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"

	"github.com/mcp-authz/mcp-authz/authz"
	"github.com/mcp-authz/mcp-authz/cache"
	"github.com/mcp-authz/mcp-authz/internal/devissuer"
	"github.com/mcp-authz/mcp-authz/internal/redistest"
	"github.com/mcp-authz/mcp-authz/validators"
)

const benchResource = "https://mcp.example.com/mcp"

type benchEnv struct {
	iss    *devissuer.Issuer
	jwt    *validators.JWT
	cached *authz.Server
	direct *authz.Server
}

func setup(b *testing.B) *benchEnv {
	b.Helper()
	iss, err := devissuer.Start(devissuer.Config{Algorithms: []string{"RS256", "ES256"}})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { iss.Close() })
	ctx, cancel := context.WithCancel(context.Background())
	b.Cleanup(cancel)
	v, err := validators.NewJWT(ctx, validators.JWTConfig{
		Issuers:   []validators.IssuerConfig{{Issuer: iss.URL, JWKSURI: iss.JWKSURL()}},
		Audiences: []string{benchResource},
		Leeway:    time.Minute,
		Client:    http.DefaultClient,
	})
	if err != nil {
		b.Fatal(err)
	}
	for _, ks := range v.KeySets() {
		for !ks.Loaded() {
			time.Sleep(time.Millisecond)
		}
	}
	store, _ := cache.NewMemory(cache.MemoryOptions{})
	cv, _ := cache.New(v, store, cache.Options{Policy: v.Fingerprint()})
	server := func(val authz.Validator) *authz.Server {
		s, err := authz.NewServer(authz.Config{Resources: []*authz.Resource{{
			URI: benchResource, RequiredScopes: []string{"mcp:read"}, Validator: val,
		}}})
		if err != nil {
			b.Fatal(err)
		}
		return s
	}
	return &benchEnv{iss: iss, jwt: v, cached: server(cv), direct: server(v)}
}

func (e *benchEnv) token(b *testing.B, alg string) string {
	tok, err := e.iss.Issue(devissuer.TokenRequest{Subject: "user", ClientID: "client", Audience: benchResource, Scopes: []string{"mcp:read"}, Alg: alg})
	if err != nil {
		b.Fatal(err)
	}
	return tok
}

func checkRequest(authorization string) *authv3.CheckRequest {
	h := map[string]string{
		":authority": "mcp.example.com", ":path": "/mcp", ":method": "POST", ":scheme": "https",
		"content-type": "application/json", "accept": "application/json, text/event-stream",
		"mcp-protocol-version": "2025-06-18", "user-agent": "bench", "x-request-id": "0a1b2c3d",
	}
	if authorization != "" {
		h["authorization"] = authorization
	}
	return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{
		Http: &authv3.AttributeContext_HttpRequest{Method: "POST", Host: "mcp.example.com", Path: "/mcp", Scheme: "https", Headers: h},
	}}}
}

func runCheck(b *testing.B, s *authz.Server, req *authv3.CheckRequest, want codes.Code) {
	b.Helper()
	ctx := context.Background()
	if resp, err := s.Check(ctx, req); err != nil || codes.Code(resp.GetStatus().GetCode()) != want {
		b.Fatalf("precondition: %v %v", resp.GetStatus(), err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, err := s.Check(ctx, req); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkCheck measures Check in-process, without gRPC.
func BenchmarkCheck(b *testing.B) {
	e := setup(b)
	b.Run("cached_valid_RS256", func(b *testing.B) {
		runCheck(b, e.cached, checkRequest("Bearer "+e.token(b, "RS256")), codes.OK)
	})
	b.Run("uncached_RS256", func(b *testing.B) {
		runCheck(b, e.direct, checkRequest("Bearer "+e.token(b, "RS256")), codes.OK)
	})
	b.Run("cold_RS256", func(b *testing.B) { benchCold(b, e) })
	b.Run("uncached_ES256", func(b *testing.B) {
		runCheck(b, e.direct, checkRequest("Bearer "+e.token(b, "ES256")), codes.OK)
	})
	b.Run("denied_no_token", func(b *testing.B) {
		runCheck(b, e.cached, checkRequest(""), codes.Unauthenticated)
	})
	b.Run("denied_cached_invalid", func(b *testing.B) {
		tok := e.token(b, "RS256")
		runCheck(b, e.cached, checkRequest("Bearer "+tok[:len(tok)-4]+"AAAA"), codes.Unauthenticated)
	})
}

// coldPool is the number of distinct tokens cold Checks cycle through;
// each cycle runs against a fresh policy fingerprint, so that every Check
// sees a token its cache has never seen.
const coldPool = 2048

// benchCold is a Check of a valid RS256 token never seen before, through
// the caching validator with an in-process store, as a service runs it
// (the request and the response as wire bytes, as the gRPC front end reads
// and writes them; the deadline Envoy sends): the token's hash, the miss,
// the validation, storing the verdict and rendering the allow.
func benchCold(b *testing.B, e *benchEnv) {
	toks := make([]string, coldPool)
	var wg sync.WaitGroup
	for w := range runtime.GOMAXPROCS(0) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < len(toks); i += runtime.GOMAXPROCS(0) {
				toks[i] = e.token(b, "RS256")
			}
		}()
	}
	wg.Wait()
	reqs := make([][]byte, len(toks))
	for i, t := range toks {
		reqs[i], _ = proto.Marshal(checkRequest("Bearer " + t))
	}
	store, _ := cache.NewMemory(cache.MemoryOptions{})
	var cur switchable
	cycle := 0
	next := func() {
		cycle++
		cv, _ := cache.New(e.jwt, store, cache.Options{Policy: fmt.Sprintf("%s-%d", e.jwt.Fingerprint(), cycle)})
		cur.v.Store(cv)
	}
	next()
	s, err := authz.NewServer(authz.Config{Resources: []*authz.Resource{{
		URI: benchResource, RequiredScopes: []string{"mcp:read"}, Validator: &cur,
	}}})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if i == len(reqs) {
			i = 0
			next()
		}
		dctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
		wire, err := s.CheckWire(dctx, reqs[i])
		cancel()
		// An allow: an empty status (code OK), then ok_response.
		if err != nil || len(wire) < 3 || wire[0] != 0x0a || wire[1] != 0 || wire[2] != 0x1a {
			b.Fatalf("not an allow: %v %x", err, wire[:min(len(wire), 16)])
		}
		i++
	}
}

// switchable is the validator a cold benchmark points its server at.
type switchable struct {
	v atomic.Pointer[cache.Validator]
}

func (s *switchable) Validate(ctx context.Context, token string) (*validators.Principal, error) {
	return s.v.Load().Validate(ctx, token)
}

// BenchmarkGolangJWT is the baseline: golang-jwt's own parse and verify of
// the same tokens with the key in hand and the same claim checks.
func BenchmarkGolangJWT(b *testing.B) {
	e := setup(b)
	for _, alg := range []string{"RS256", "ES256"} {
		b.Run(alg, func(b *testing.B) {
			tok := e.token(b, alg)
			k, _ := e.iss.KeyFor(alg)
			pub := k.Signer.Public()
			p := jwt.NewParser(jwt.WithValidMethods([]string{alg}), jwt.WithAudience(benchResource),
				jwt.WithIssuer(e.iss.URL), jwt.WithExpirationRequired(), jwt.WithLeeway(time.Minute))
			keyfunc := func(*jwt.Token) (any, error) { return pub, nil }
			b.ReportAllocs()
			for b.Loop() {
				if _, err := p.Parse(tok, keyfunc); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkValidate isolates mcp-authz's JWT validation from response rendering.
func BenchmarkValidate(b *testing.B) {
	e := setup(b)
	for _, alg := range []string{"RS256", "ES256"} {
		b.Run(alg, func(b *testing.B) {
			tok := e.token(b, alg)
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				if _, err := e.jwt.Validate(ctx, tok); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkCheckIntrospectionCached is a Check whose opaque token's
// introspection verdict is in the in-process cache.
func BenchmarkCheckIntrospectionCached(b *testing.B) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, `{"active":true,"scope":"mcp:read","client_id":"c1","sub":"u1","aud":%q,"exp":%d}`, benchResource, time.Now().Add(time.Hour).Unix())
	}))
	b.Cleanup(srv.Close)
	iv, err := validators.NewIntrospection(context.Background(), validators.IntrospectionConfig{Endpoint: srv.URL, ClientID: "rs", ClientSecret: "s",
		Audiences: []string{benchResource}, Client: srv.Client(), Timeout: time.Second})
	if err != nil {
		b.Fatal(err)
	}
	store, _ := cache.NewMemory(cache.MemoryOptions{})
	cv, _ := cache.New(iv, store, cache.Options{Policy: iv.Fingerprint()})
	s, err := authz.NewServer(authz.Config{Resources: []*authz.Resource{{URI: benchResource, RequiredScopes: []string{"mcp:read"}, Validator: cv}}})
	if err != nil {
		b.Fatal(err)
	}
	runCheck(b, s, checkRequest("Bearer 7YI_CVttVPAmTS87t6ixdurt_P_dsACW2ucW7X1bcyu"), codes.OK)
}

// forwardRequest is checkRequest as each forward-auth convention sends it.
func forwardRequest(endpoint, authorization string) *http.Request {
	var r *http.Request
	switch endpoint {
	case authz.ForwardPathNginx:
		r = httptest.NewRequest(http.MethodGet, "/nginx", nil)
		r.Header.Set("X-Original-Method", "POST")
		r.Header.Set("X-Original-URI", "/mcp")
	case authz.ForwardPathForwarded:
		r = httptest.NewRequest(http.MethodGet, "/forwarded", nil)
		r.Header.Set("X-Forwarded-Method", "POST")
		r.Header.Set("X-Forwarded-Proto", "https")
		r.Header.Set("X-Forwarded-Host", "mcp.example.com")
		r.Header.Set("X-Forwarded-Uri", "/mcp")
	default:
		r = httptest.NewRequest(http.MethodPost, "/envoy/mcp", nil)
	}
	r.Host = "mcp.example.com"
	for k, v := range map[string]string{
		"Content-Type": "application/json", "Accept": "application/json, text/event-stream",
		"Mcp-Protocol-Version": "2025-06-18", "User-Agent": "bench", "X-Request-Id": "0a1b2c3d",
	} {
		r.Header.Set(k, v)
	}
	if authorization != "" {
		r.Header.Set("Authorization", authorization)
	}
	return r
}

// BenchmarkForward is the HTTP forward-auth front end on the same cached
// decision as BenchmarkCheck/cached_valid_RS256: request reading, the
// decision and the rendered answer, into an httptest.ResponseRecorder
// (whose own allocations are counted too), without the network.
func BenchmarkForward(b *testing.B) {
	e := setup(b)
	tok := e.token(b, "RS256")
	h := e.cached.ForwardHandler()
	for _, ep := range []string{authz.ForwardPathNginx, authz.ForwardPathForwarded, authz.ForwardPathEnvoy} {
		b.Run("cached_valid_RS256"+ep, func(b *testing.B) {
			r := forwardRequest(ep, "Bearer "+tok)
			w := httptest.NewRecorder()
			if h.ServeHTTP(w, r); w.Code != http.StatusOK {
				b.Fatalf("precondition: %d %s", w.Code, w.Body)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				h.ServeHTTP(httptest.NewRecorder(), r)
			}
		})
	}
	// The recorder alone, receiving the same nine headers: what of the
	// above is httptest's, not mcp-authz's.
	b.Run("baseline_recorder_only", func(b *testing.B) {
		names := []string{"X-Mcp-Auth-Subject", "X-Mcp-Auth-Client-Id", "X-Mcp-Auth-Scopes", "X-Mcp-Auth-Issuer",
			"X-Mcp-Auth-Claims", "X-Mcp-Auth-Resource", "X-Mcp-Auth-Method", "X-Mcp-Auth-Tool", "Cache-Control"}
		v := []string{"x"}
		b.ReportAllocs()
		for b.Loop() {
			w := httptest.NewRecorder()
			for _, n := range names {
				w.Header()[n] = v
			}
			w.WriteHeader(http.StatusOK)
		}
	})
	b.Run("denied_no_token/nginx", func(b *testing.B) {
		r := forwardRequest(authz.ForwardPathNginx, "")
		b.ReportAllocs()
		for b.Loop() {
			h.ServeHTTP(httptest.NewRecorder(), r)
		}
	})
}

// BenchmarkCheckRedisTier: a Check whose verdict is in L1; one whose
// verdict is only in Redis (another replica validated the token, or this
// one's L1 copy expired), which reads it in one round trip (the tier's
// acquire script), checks its MAC, decodes it, keeps it in L1 and renders
// the allow; and one round trip alone with go-redis (a GET of the
// verdict), against a loopback redis-server. Reports p50 and p99 besides
// the mean.
func BenchmarkCheckRedisTier(b *testing.B) {
	e := setup(b)
	srv := redistest.Start(b)
	client := redis.NewUniversalClient(&redis.UniversalOptions{Addrs: []string{srv.Addr}, ContextTimeoutEnabled: true, MaxRetries: -1})
	b.Cleanup(func() { client.Close() })
	l2, err := cache.NewRedis(cache.RedisOptions{Client: client, Timeout: time.Second, Secrets: [][]byte{[]byte("0123456789abcdef0123456789abcdef")}})
	if err != nil {
		b.Fatal(err)
	}
	l1, _ := cache.NewMemory(cache.MemoryOptions{})
	cv, _ := cache.New(e.jwt, &cache.Tiered{L1: l1, L2: l2}, cache.Options{Policy: e.jwt.Fingerprint()})
	s, err := authz.NewServer(authz.Config{Resources: []*authz.Resource{{URI: benchResource, RequiredScopes: []string{"mcp:read"}, Validator: cv}}})
	if err != nil {
		b.Fatal(err)
	}
	tok := e.token(b, "RS256")
	req := checkRequest("Bearer " + tok)
	ctx := context.Background()
	if resp, err := s.Check(ctx, req); err != nil || codes.Code(resp.GetStatus().GetCode()) != codes.OK {
		b.Fatalf("precondition: %v %v", resp.GetStatus(), err)
	}
	sum := cache.HashToken(tok)
	for !l2Has(ctx, client, sum) { // the verdict is written in the background
		time.Sleep(time.Millisecond)
	}
	timed := func(b *testing.B, before func(), op func() error) {
		lat := make([]time.Duration, 0, 1<<16)
		b.ReportAllocs()
		for b.Loop() {
			before()
			t0 := time.Now()
			if err := op(); err != nil {
				b.Fatal(err)
			}
			lat = append(lat, time.Since(t0))
		}
		slices.Sort(lat)
		b.ReportMetric(float64(lat[len(lat)/2].Nanoseconds())/1e3, "p50-µs")
		b.ReportMetric(float64(lat[len(lat)*99/100].Nanoseconds())/1e3, "p99-µs")
	}
	check := func() error {
		// With the deadline Envoy sends (200 ms by default).
		ctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
		defer cancel()
		resp, err := s.Check(ctx, req)
		if err == nil && codes.Code(resp.GetStatus().GetCode()) != codes.OK {
			err = fmt.Errorf("denied: %v", resp.GetStatus())
		}
		return err
	}
	b.Run("l1_hit", func(b *testing.B) { timed(b, func() {}, check) })
	b.Run("redis_hit", func(b *testing.B) {
		timed(b, func() { l1.InvalidateToken(sum) }, check)
		if l2.Stats().Hits == 0 {
			b.Fatal("not served from Redis")
		}
	})
	b.Run("redis_round_trip", func(b *testing.B) {
		key := "mcp-authz:v3:" + e.jwt.Fingerprint() + ":" + hex.EncodeToString(sum[:])
		timed(b, func() {}, func() error { return client.Get(ctx, key).Err() })
	})
}

// l2Has reports whether Redis holds a verdict for the token with digest sum.
func l2Has(ctx context.Context, c redis.UniversalClient, sum [32]byte) bool {
	keys, _ := c.Keys(ctx, "mcp-authz:v3:*:"+hex.EncodeToString(sum[:])).Result()
	return len(keys) > 0
}

// The scale benchmarks' tokens: a JWT's shape and size (an RS256
// signature's length), with typical claims whose sub holds the token's
// number in 24 hex digits. The claims before those digits are a whole
// number of base64 groups, so the digits' encoding is a fixed part of the
// token that stubID writes alone: a benchmark can turn one request into
// another's in place. Nothing verifies these tokens.
var (
	stubHead = "eyJhbGciOiJSUzI1NiIsInR5cCI6ImF0K2p3dCIsImtpZCI6ImsxIn0." +
		base64.RawURLEncoding.EncodeToString([]byte(stubAligned(`{"iss":"https://tenant.us.auth0.com/","sub":"auth0|`)))
	stubTail = base64.RawURLEncoding.EncodeToString([]byte(`","aud":"`+benchResource+`","iat":1764600000,"exp":4102444800,`+
		`"scope":"mcp:read mcp:write","client_id":"my-client-id-0123456789","jti":"0f4e7a9c2b1d8e6f3a5c7b9d1e2f4a6c"}`)) +
		"." + strings.Repeat("c", 342)
)

// stubAligned pads the JSON object opening s with spaces after its brace
// to a multiple of 3 bytes.
func stubAligned(s string) string {
	return "{" + strings.Repeat(" ", (3-len(s)%3)%3) + s[1:]
}

// stubIDLen is the length of stubID's encoding in the token.
const stubIDLen = 32

// stubID writes the encoding of token number i's 24 hex digits to dst.
func stubID(dst []byte, i int) {
	var hex [24]byte
	for k := len(hex) - 1; k >= 0; k-- {
		hex[k] = "0123456789abcdef"[i&15]
		i >>= 4
	}
	base64.RawURLEncoding.Encode(dst[:stubIDLen], hex[:])
}

// stubToken is the i'th token of the scale benchmarks.
func stubToken(i int) string {
	var id [stubIDLen]byte
	stubID(id[:], i)
	return stubHead + string(id[:]) + stubTail
}

// stubServer is a Server for one resource whose verdicts come from
// stubValidator through an in-process cache of maxBytes (0: the default).
func stubServer(tb testing.TB, maxBytes uint64) (*authz.Server, *cache.Memory, *cache.Validator) {
	tb.Helper()
	store, _ := cache.NewMemory(cache.MemoryOptions{MaxBytes: maxBytes})
	cv, _ := cache.New(stubValidator{}, store, cache.Options{Policy: "p"})
	s, err := authz.NewServer(authz.Config{Resources: []*authz.Resource{{URI: benchResource, RequiredScopes: []string{"mcp:read"}, Validator: cv}}})
	if err != nil {
		tb.Fatal(err)
	}
	return s, store, cv
}

// stubValidator accepts any stubToken as a principal laid out as the JWT
// validator lays it out (its claims are the token's payload segment),
// without checking anything: the scale benchmarks fill caches with it.
type stubValidator struct{}

func (stubValidator) Validate(_ context.Context, token string) (*validators.Principal, error) {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return nil, &validators.Error{Kind: validators.ErrInvalidToken, Description: "not a stub token"}
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	var c struct{ Sub string }
	if err == nil {
		err = json.Unmarshal(payload, &c)
	}
	if err != nil {
		return nil, &validators.Error{Kind: validators.ErrInvalidToken, Description: "not a stub token", Err: err}
	}
	return validators.NewPrincipal(validators.Identity{Subject: c.Sub, ClientID: "my-client-id-0123456789",
		Issuer: "https://tenant.us.auth0.com/", Scopes: []string{"mcp:read", "mcp:write"},
		ExpiresAt: time.Unix(4102444800, 0), ClaimsInToken: len(payload), ClaimsDigest: validators.PayloadDigest(parts[1])}), nil
}

// latencies runs op for b.N iterations and reports p50 and p99.
func latencies(b *testing.B, op func(i int)) {
	lat := make([]time.Duration, 0, 1<<16)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		t0 := time.Now()
		op(i)
		lat = append(lat, time.Since(t0))
		i++
	}
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Nanoseconds())/1e3, "p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Nanoseconds())/1e3, "p99-µs")
}

// BenchmarkScale: the cost of a Check as the configuration and the cache
// grow. resources=N: N protected resources, the request's found by the
// Envoy context extension or by host and path prefix (the last one
// configured); the verdict is an L1 hit. issuers=N: N trusted issuers,
// an uncached RS256 validation (the validator picks the token's issuer
// by its iss). l1=N/in-use=M: N cached verdicts of typical size (JWTs'),
// each in use (its allow kept), and Checks of tokens picked at random
// among M of them spread over the cache: a thousand, or all; or
// in-use=1000-packed: the thousand cached first, whose objects (principal,
// kept allow) lie together in memory, as they do in a cache that grows,
// while a full cache's evictions scatter the next ones' over the heap.
func BenchmarkScale(b *testing.B) {
	e := setup(b)
	tok := e.token(b, "RS256")
	for _, n := range []int{1, 10, 100, 1000} {
		store, _ := cache.NewMemory(cache.MemoryOptions{})
		cv, _ := cache.New(e.jwt, store, cache.Options{Policy: e.jwt.Fingerprint()})
		var res []*authz.Resource
		for i := range n {
			res = append(res, &authz.Resource{Name: fmt.Sprint("r", i), URI: fmt.Sprintf("https://mcp.example.com/r%d/mcp", i),
				Hosts: []string{"mcp.example.com"}, PathPrefixes: []string{fmt.Sprintf("/r%d", i)},
				RequiredScopes: []string{"mcp:read"}, Validator: cv})
		}
		s, err := authz.NewServer(authz.Config{Resources: res})
		if err != nil {
			b.Fatal(err)
		}
		byHost := checkRequest("Bearer " + tok)
		byHost.Attributes.Request.Http.Path = fmt.Sprintf("/r%d/mcp", n-1)
		byHost.Attributes.Request.Http.Headers[":path"] = byHost.Attributes.Request.Http.Path
		byName := checkRequest("Bearer " + tok)
		byName.Attributes.ContextExtensions = map[string]string{authz.ContextExtensionResource: fmt.Sprint("r", n-1)}
		for _, v := range []struct {
			name string
			req  *authv3.CheckRequest
		}{{"extension", byName}, {"host_prefix", byHost}} {
			b.Run(fmt.Sprintf("resources=%d/by=%s", n, v.name), func(b *testing.B) {
				ctx := context.Background()
				if resp, err := s.Check(ctx, v.req); err != nil || codes.Code(resp.GetStatus().GetCode()) != codes.OK {
					b.Fatalf("precondition: %v %v", resp.GetStatus(), err)
				}
				latencies(b, func(int) { _, _ = s.Check(ctx, v.req) })
			})
		}
	}

	for _, n := range []int{1, 20} {
		b.Run(fmt.Sprintf("issuers=%d", n), func(b *testing.B) {
			issuers := []validators.IssuerConfig{{Issuer: e.iss.URL, JWKSURI: e.iss.JWKSURL()}}
			for i := 1; i < n; i++ {
				issuers = append(issuers, validators.IssuerConfig{Issuer: fmt.Sprintf("https://issuer-%d.example.com", i), JWKSURI: e.iss.JWKSURL()})
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			v, err := validators.NewJWT(ctx, validators.JWTConfig{Issuers: issuers, Audiences: []string{benchResource},
				Leeway: time.Minute, Client: http.DefaultClient})
			if err != nil {
				b.Fatal(err)
			}
			for _, ks := range v.KeySets() {
				for !ks.Loaded() {
					time.Sleep(time.Millisecond)
				}
			}
			s, err := authz.NewServer(authz.Config{Resources: []*authz.Resource{{URI: benchResource, RequiredScopes: []string{"mcp:read"}, Validator: v}}})
			if err != nil {
				b.Fatal(err)
			}
			req := checkRequest("Bearer " + tok)
			latencies(b, func(int) {
				if resp, err := s.Check(ctx, req); err != nil || codes.Code(resp.GetStatus().GetCode()) != codes.OK {
					b.Fatalf("%v %v", resp.GetStatus(), err)
				}
			})
		})
	}

	for _, n := range []int{1_000, 10_000, 100_000, 1_000_000} {
		s, store, cv := stubServer(b, 1<<40)
		ctx := context.Background()
		// One request, turned into token i's by rewriting the token's
		// number in place (the same cost for every i and every n).
		req, _ := proto.Marshal(checkRequest("Bearer " + stubToken(0)))
		var id [stubIDLen]byte
		stubID(id[:], 0)
		at := bytes.Index(req, id[:])
		check := func(i int) []byte {
			stubID(req[at:], i)
			resp, err := s.CheckWire(ctx, req)
			if err != nil {
				b.Fatal(err)
			}
			return resp
		}
		// Every verdict cached and used twice, so that every allow is
		// rendered and kept: what is measured is the lookup.
		for range 2 {
			for i := range n {
				check(i)
			}
		}
		var resp authv3.CheckResponse
		if err := proto.Unmarshal(check(n-1), &resp); err != nil || codes.Code(resp.GetStatus().GetCode()) != codes.OK {
			b.Fatalf("not an allow: %v %v", resp.GetStatus(), err)
		}
		if st := cv.Stats(); st.Misses != int64(n) {
			b.Fatalf("%d misses for %d tokens", st.Misses, n)
		}
		// In use: a thousand tokens spread over the cache, each Check one
		// of them at random; or every cached token, each Check any of them.
		for k, inUse := range []int{1_000, n, 1_000} {
			name, stride := fmt.Sprint(inUse), n/inUse
			switch {
			case k > 0 && n == 1_000:
				continue // the same as in-use=1000
			case k == 1:
				name = "all"
			case k == 2:
				name, stride = "1000-packed", 1
			}
			// The filling's garbage is collected first, not by the
			// Checks measured.
			runtime.GC()
			b.Run(fmt.Sprintf("l1=%d/in-use=%s", n, name), func(b *testing.B) {
				x := uint64(1)
				latencies(b, func(int) {
					x = x*6364136223846793005 + 1442695040888963407
					i := int(x>>33) % inUse * stride
					check(i)
				})
			})
		}
		if st := cv.Stats(); st.Misses != int64(n) {
			b.Fatalf("Checks missed the cache: %+v", st)
		}
		runtime.KeepAlive(store)
	}
}

// BenchmarkMemoryPerAllow reports the heap that the allow response kept
// with a principal in use (from its second Check on) adds to its cached
// verdict (BenchmarkMemoryPerEntry in cache), as the gRPC front end keeps
// it: its wire bytes and the bookkeeping around them, which the cache's
// weigher estimates (allowWeight) from the verdict's first hit on.
func BenchmarkMemoryPerAllow(b *testing.B) {
	const n = 20_000
	for b.Loop() {
		s, _, _ := stubServer(b, 1<<40)
		ctx := context.Background()
		reqs := make([][]byte, n)
		for i := range reqs {
			reqs[i], _ = proto.Marshal(checkRequest("Bearer " + stubToken(i)))
			if _, err := s.CheckWire(ctx, reqs[i]); err != nil { // cached; the allow rendered once and dropped
				b.Fatal(err)
			}
		}
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		for _, r := range reqs {
			_, _ = s.CheckWire(ctx, r) // rendered again, and kept
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/n, "bytes/allow")
		runtime.KeepAlive(s)
		runtime.KeepAlive(reqs)
	}
}
