package authz

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc/experimental"
	"google.golang.org/protobuf/proto"

	"github.com/mcp-authz/mcp-authz/cache"
	"github.com/mcp-authz/mcp-authz/internal/redistest"
	"github.com/mcp-authz/mcp-authz/validators"

	"github.com/redis/go-redis/v9"
)

// Red-team attacks on today's changes: claims read from the token
// (f2daad1), kept allows that keep their wire form alone (8e0e38d), the
// memo's latest key (c089c38) and requests read in place (365d723). A
// test that passes documents a defence.

// rtToken is the i'th JWT-shaped token of these tests: every payload has
// the same length, so that only its bytes tell one token's claims from
// another's.
func rtToken(i int) (token, payload, sub string) {
	sub = fmt.Sprintf("user-%06d", i)
	payload = base64.RawURLEncoding.EncodeToString([]byte(`{"sub":"` + sub + `","scope":"mcp:read"}`))
	return "eyJhbGciOiJSUzI1NiJ9." + payload + "." + strings.Repeat("s", 43), payload, sub
}

// rtValidator accepts JWT-shaped tokens and lays their principal out as
// the JWT validator does (claims in the token), checking nothing.
type rtValidator struct{}

func (rtValidator) Validate(_ context.Context, token string) (*validators.Principal, error) {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return nil, &validators.Error{Kind: validators.ErrInvalidToken, Description: validators.DescMalformed}
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	var c struct{ Sub string }
	if err == nil {
		err = json.Unmarshal(payload, &c)
	}
	if err != nil {
		return nil, &validators.Error{Kind: validators.ErrInvalidToken, Description: validators.DescMalformed}
	}
	return validators.NewPrincipal(validators.Identity{Subject: c.Sub, Issuer: "https://as.example", Scopes: []string{"mcp:read"},
		ExpiresAt: time.Now().Add(time.Hour), ClaimsInToken: len(payload), ClaimsDigest: validators.PayloadDigest(parts[1])}), nil
}

// headersOf returns the headers an allow sets, or nil for a denial.
func headersOf(resp *authv3.CheckResponse) map[string]string {
	ok := resp.GetOkResponse()
	if ok == nil {
		return nil
	}
	h := map[string]string{}
	for _, hv := range ok.GetHeaders() {
		h[hv.GetHeader().GetKey()] = hv.GetHeader().GetValue()
	}
	return h
}

// padded adds a header past gRPC's pooling threshold, so that request
// buffers come from (and go back to) the pool.
func padded(req *authv3.CheckRequest) *authv3.CheckRequest {
	req.Attributes.Request.Http.Headers["x-padding"] = strings.Repeat("p", 4096)
	return req
}

// TestRedteamClaimsBelongToTheirToken: many tokens whose payloads have
// the same length, Checked at once over gRPC (request buffers scribbled
// over as soon as they are given back) through the verdict cache, each
// several times (rendered, then kept, then shared): every allow forwards
// its own token's claims and subject, never another's, on the wire, as
// Server.Check's message and through forward auth.
func TestRedteamClaimsBelongToTheirToken(t *testing.T) {
	s := cachedServer(t, rtValidator{})
	client := serveGRPC(t, s, experimental.BufferPool(scribblingPool{}))
	const tokens = 64
	concurrently(t, 8, 200, func(g, n int) string {
		i := (g*31 + n*7) % tokens
		tok, payload, sub := rtToken(i)
		req := padded(envoyRequest("/mcp", map[string]string{"authorization": "Bearer " + tok}))
		resp, err := client.Check(context.Background(), req)
		if err != nil {
			return fmt.Sprintf("token %d: %v", i, err)
		}
		h := headersOf(resp)
		if h["x-mcp-auth-claims"] != payload || h["x-mcp-auth-subject"] != sub {
			return fmt.Sprintf("token %d over the wire: claims %q subject %q, want %q %q", i, h["x-mcp-auth-claims"], h["x-mcp-auth-subject"], payload, sub)
		}
		if n%5 == 0 {
			msg, err := s.Check(context.Background(), req)
			if h := headersOf(msg); err != nil || h["x-mcp-auth-claims"] != payload || h["x-mcp-auth-subject"] != sub {
				return fmt.Sprintf("token %d, Server.Check: %v %v", i, err, h)
			}
		}
		return ""
	})
	fh := s.ForwardHandler()
	for i := range tokens {
		tok, payload, sub := rtToken(i)
		w := httptest.NewRecorder()
		fh.ServeHTTP(w, forwardRequest(ForwardPathEnvoy, original{method: "POST", target: "/mcp",
			headers: [][2]string{{"Authorization", "Bearer " + tok}}}))
		if w.Code != 200 || w.Header().Get("X-Mcp-Auth-Claims") != payload || w.Header().Get("X-Mcp-Auth-Subject") != sub {
			t.Fatalf("forward auth, token %d: %d %v", i, w.Code, w.Header())
		}
	}
}

// TestRedteamClaimsFromTheFleet: replicas share verdicts through Redis,
// where a JWT's verdict holds no claims (claims_in_token): a replica that
// finds another's verdict forwards the claims of the token in its own
// request, for many tokens of one payload length at once.
func TestRedteamClaimsFromTheFleet(t *testing.T) {
	srv := redistest.Start(t)
	newReplica := func() *Server {
		client := redis.NewUniversalClient(&redis.UniversalOptions{Addrs: []string{srv.Addr}, MaxRetries: -1, ContextTimeoutEnabled: true})
		t.Cleanup(func() { client.Close() })
		r, err := cache.NewRedis(cache.RedisOptions{Client: client, Secrets: [][]byte{[]byte("0123456789abcdef0123456789abcdef")}})
		if err != nil {
			t.Fatal(err)
		}
		l1, _ := cache.NewMemory(cache.MemoryOptions{})
		cv, _ := cache.New(rtValidator{}, &cache.Tiered{L1: l1, L2: r}, cache.Options{Policy: "p"})
		s, err := NewServer(Config{Resources: []*Resource{{URI: testResource, RequiredScopes: []string{"mcp:read"}, Validator: cv}},
			Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	a, b := newReplica(), newReplica()
	const tokens = 32
	check := func(s *Server, i int) string {
		tok, payload, sub := rtToken(i)
		wire, _ := proto.Marshal(envoyRequest("/mcp", map[string]string{"authorization": "Bearer " + tok}))
		in, err := parseCheckInput(wire, &s.read)
		if err != nil {
			return err.Error()
		}
		r, err := s.check(context.Background(), &in)
		if err != nil {
			return err.Error()
		}
		var resp authv3.CheckResponse
		if r.prepared != nil {
			err = proto.Unmarshal(r.prepared.encoded(), &resp)
		} else {
			err = proto.Unmarshal(r.out.wire(), &resp)
		}
		for i := range wire {
			wire[i] = 'X' // the request buffer goes back to its pool
		}
		h := headersOf(&resp)
		if err != nil || h["x-mcp-auth-claims"] != payload || h["x-mcp-auth-subject"] != sub {
			return fmt.Sprintf("claims %q subject %q, want %q %q (%v)", h["x-mcp-auth-claims"], h["x-mcp-auth-subject"], payload, sub, err)
		}
		return ""
	}
	for i := range tokens {
		if e := check(a, i); e != "" {
			t.Fatalf("replica a, token %d: %s", i, e)
		}
	}
	time.Sleep(50 * time.Millisecond) // the background write-backs
	concurrently(t, tokens, 3, func(i, _ int) string {
		if e := check(b, i); e != "" {
			return fmt.Sprintf("replica b, token %d: %s", i, e)
		}
		return ""
	})
}

// oddClaims answers every token with a principal whose claims are said
// to be in the token, whatever its shape: a validator (or a verdict) that
// disagrees with the token about its payload's length.
type oddClaims struct{ n int }

func (o oddClaims) Validate(context.Context, string) (*validators.Principal, error) {
	return validators.NewPrincipal(validators.Identity{Subject: "odd", Issuer: "i", Scopes: []string{"mcp:read"}, ClaimsInToken: o.n}), nil
}

// TestRedteamKeptAllowWithoutClaims: when the token's payload segment
// cannot be the claims (no segment, another length), the allow forwards
// no claims (the header is removed) and does so alike rendered and kept,
// as a message and through forward auth; nothing panics on aliasing
// claims that are empty.
func TestRedteamKeptAllowWithoutClaims(t *testing.T) {
	for _, tt := range []struct {
		name, token string
		n           int
	}{
		{"no dots", "opaque-token", 10},
		{"empty payload", "a..b", 10},
		{"payload of another length", "a.bbbb.c", 10},
		{"one-byte claims, no payload", "x", 1},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s := cachedServer(t, oddClaims{tt.n})
			req := envoyRequest("/mcp", map[string]string{"authorization": "Bearer " + tt.token})
			wire, _ := proto.Marshal(req)
			var first []byte
			for i := range 4 {
				got, err := s.CheckWire(context.Background(), wire)
				if err != nil {
					t.Fatal(err)
				}
				if i == 0 {
					first = got
				} else if string(got) != string(first) {
					t.Fatalf("Check %d answered otherwise than the first", i+1)
				}
			}
			var want authv3.CheckResponse
			if err := proto.Unmarshal(first, &want); err != nil {
				t.Fatal(err)
			}
			if _, ok := headersOf(&want)["x-mcp-auth-claims"]; ok || !strings.Contains(strings.Join(want.GetOkResponse().GetHeadersToRemove(), ","), "x-mcp-auth-claims") {
				t.Fatalf("claims forwarded, or not removed: %v", want.GetOkResponse())
			}
			if msg, err := s.Check(context.Background(), req); err != nil || !proto.Equal(msg, &want) {
				t.Fatalf("message of the kept allow differs: %v %v", err, msg)
			}
			w := httptest.NewRecorder()
			s.ForwardHandler().ServeHTTP(w, forwardRequest(ForwardPathEnvoy, original{method: "POST", target: "/mcp",
				headers: [][2]string{{"Authorization", "Bearer " + tt.token}}}))
			if w.Code != 200 || w.Header().Get("X-Mcp-Auth-Claims") != "" || w.Header().Get("X-Mcp-Auth-Subject") != "odd" {
				t.Fatalf("forward auth: %d %v", w.Code, w.Header())
			}
		})
	}
}

// TestRedteamKeptAllowPerOperation: the allows kept per JSON-RPC
// operation, past the bound on how many are kept, each answer as
// rendered for their own operation; tool names are the body's bytes,
// which go back to the pool (the opKey of a kept allow must not alias
// them, or the sync.Map's keys would change under it).
func TestRedteamKeptAllowPerOperation(t *testing.T) {
	s := cachedServer(t, rtValidator{})
	tok, _, _ := rtToken(1)
	call := func(tool string) []byte {
		body := `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"` + tool + `"}}`
		req := envoyRequest("/mcp", map[string]string{"authorization": "Bearer " + tok, "mcp-session-id": "s1"})
		req.Attributes.Request.Http.Body = body
		wire, _ := proto.Marshal(req)
		got, err := s.CheckWire(context.Background(), wire)
		if err != nil {
			t.Fatal(err)
		}
		got = append([]byte(nil), got...)
		for i := range wire {
			wire[i] = 'X'
		}
		return got
	}
	first := map[string][]byte{}
	for round := range 3 {
		for i := range maxOpResponses + 8 {
			tool := fmt.Sprintf("tool-%03d", i)
			got := call(tool)
			var resp authv3.CheckResponse
			if err := proto.Unmarshal(got, &resp); err != nil {
				t.Fatal(err)
			}
			if h := headersOf(&resp); h["x-mcp-auth-tool"] != tool {
				t.Fatalf("round %d: %s answered for tool %q", round, tool, h["x-mcp-auth-tool"])
			}
			if round == 0 {
				first[tool] = got
			} else if string(got) != string(first[tool]) {
				t.Fatalf("round %d: %s answered otherwise than first", round, tool)
			}
		}
	}
}

// TestRedteamTwoRoutesShareAPrincipal: two resources with one validation
// policy share cached verdicts, so one principal is used on both routes.
// Checked at once, alternately, each route's answer is its own (its
// resource, its rendering), whatever the memo holds at the time.
func TestRedteamTwoRoutesShareAPrincipal(t *testing.T) {
	s := twoRouteServer(t)
	tok, _, _ := rtToken(7)
	reqs := map[string]*authv3.CheckRequest{
		"/mcp":   envoyRequest("/mcp", map[string]string{"authorization": "Bearer " + tok}),
		"/admin": envoyRequest("/admin", map[string]string{"authorization": "Bearer " + tok}),
	}
	want := map[string][]byte{}
	for path, req := range reqs {
		wire, _ := proto.Marshal(req)
		got, err := s.CheckWire(context.Background(), wire)
		if err != nil {
			t.Fatal(err)
		}
		want[path] = append([]byte(nil), got...)
	}
	concurrently(t, 8, 300, func(g, n int) string {
		path := "/mcp"
		if (g+n)%2 == 1 {
			path = "/admin"
		}
		wire, _ := proto.Marshal(reqs[path])
		if got, err := s.CheckWire(context.Background(), wire); err != nil || string(got) != string(want[path]) {
			return fmt.Sprintf("%s answered otherwise than first (%v)", path, err)
		}
		return ""
	})
}

// cachedServer is a Server for one resource whose verdicts come from v
// through an in-process cache.
func cachedServer(t *testing.T, v cache.Inner) *Server {
	t.Helper()
	store, _ := cache.NewMemory(cache.MemoryOptions{})
	cv, _ := cache.New(v, store, cache.Options{Policy: "p"})
	s, err := NewServer(Config{Resources: []*Resource{{URI: testResource, RequiredScopes: []string{"mcp:read"}, Validator: cv}},
		Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func twoRouteServer(t *testing.T) *Server {
	t.Helper()
	store, _ := cache.NewMemory(cache.MemoryOptions{})
	cv, _ := cache.New(rtValidator{}, store, cache.Options{Policy: "p"})
	s, err := NewServer(Config{Resources: []*Resource{
		{URI: testResource, PathPrefixes: []string{"/mcp"}, RequiredScopes: []string{"mcp:read"}, Validator: cv},
		{URI: "https://mcp.example.com/admin", PathPrefixes: []string{"/admin"}, RequiredScopes: []string{"mcp:read"}, Validator: cv},
	}, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestRedteamTwoRoutesKeepTheirAllows: a client alternating between two
// routes that share its principal (one policy) should still get the
// allow kept for each route, as it does on one route: otherwise every
// Check renders and encodes a new allow set, which the memo exists to
// avoid, and a client with one token can make every Check of its own pay
// for a rendering by alternating.
func TestRedteamTwoRoutesKeepTheirAllows(t *testing.T) {
	s := twoRouteServer(t)
	tok, _, _ := rtToken(8)
	ctx := context.Background()
	kept := func(path string) *prepared {
		t.Helper()
		req := envoyRequest(path, map[string]string{"authorization": "Bearer " + tok})
		in := inputFromProto(req, &s.read)
		r, err := s.check(ctx, &in)
		if err != nil || !r.allowed() {
			t.Fatalf("%s not allowed: %v", path, err)
		}
		return r.prepared
	}
	for range 2 {
		kept("/mcp")
		kept("/admin")
	}
	a, b := kept("/mcp"), kept("/admin")
	for i := range 3 {
		if a2, b2 := kept("/mcp"), kept("/admin"); a2 == nil || b2 == nil || a2 != a || b2 != b {
			t.Fatalf("alternation %d: the allows of a principal used on two routes are rendered on every Check (kept /mcp %v, /admin %v)",
				i, a2 == a, b2 == b)
		}
	}
}

// retainingHandler keeps every record, as a handler that batches or
// exports asynchronously does (slog allows it: a Record's strings are
// immutable, so Clone shares them).
type retainingHandler struct {
	mu      sync.Mutex
	records []slog.Record
}

func (h *retainingHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h *retainingHandler) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.records = append(h.records, r.Clone())
	return nil
}
func (h *retainingHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *retainingHandler) WithGroup(string) slog.Handler      { return h }

// TestRedteamLoggedRequestStringsOutliveTheBuffer: a denial is logged
// with strings of the request (the host and path of a request no
// resource matches). Read in place, they are the request buffer's bytes;
// a Logger whose handler keeps records (batching, asynchronous export)
// then holds, and later writes, whatever the next request put in that
// buffer: another client's path, or a token.
func TestRedteamLoggedRequestStringsOutliveTheBuffer(t *testing.T) {
	h := &retainingHandler{}
	s, _ := newTestServer(t, func(c *Config, r *Resource) {
		r.Hosts = []string{"mcp.example.com"}
		c.Logger = slog.New(h)
	})
	client := serveGRPC(t, s, experimental.BufferPool(scribblingPool{}))
	req := padded(envoyRequest("/nowhere/at/all", map[string]string{"authorization": "Bearer good"}))
	req.Attributes.Request.Http.Host = "elsewhere.example"
	req.Attributes.Request.Http.Headers[":authority"] = "elsewhere.example"
	resp, err := client.Check(context.Background(), req)
	if err != nil || resp.GetDeniedResponse() == nil {
		t.Fatalf("want a denial: %v %v", err, resp)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.records) == 0 {
		t.Fatal("the denial was not logged")
	}
	got := map[string]string{}
	h.records[0].Attrs(func(a slog.Attr) bool { got[a.Key] = a.Value.String(); return true })
	if got["host"] != "elsewhere.example" || got["path"] != "/nowhere/at/all" {
		t.Fatalf("the logged request changed after the Check: host %q path %q", got["host"], got["path"])
	}
}
