package authz

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mcp-authz/mcp-authz/internal/syncbuf"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/mcp-authz/mcp-authz/validators"
)

const (
	testResource = "https://mcp.example.com/mcp"
	testPRM      = "https://mcp.example.com/.well-known/oauth-protected-resource/mcp"
)

// fakeValidator answers from a table keyed by token and counts calls.
type fakeValidator struct {
	answers map[string]func() (*validators.Principal, error)
	calls   atomic.Int64
}

func (f *fakeValidator) Validate(_ context.Context, token string) (*validators.Principal, error) {
	f.calls.Add(1)
	if a, ok := f.answers[token]; ok {
		return a()
	}
	return nil, &validators.Error{Kind: validators.ErrInvalidToken, Description: validators.DescSignature}
}

func principal(scopes ...string) func() (*validators.Principal, error) {
	return func() (*validators.Principal, error) {
		return validators.NewPrincipal(validators.Identity{
			Subject: "user-1", ClientID: "client-1", Issuer: "https://as.example",
			Scopes: scopes, ExpiresAt: time.Unix(2000000000, 0), ClaimsJSON: `{"sub":"user-1"}`,
		}), nil
	}
}

func failing(kind error, desc string) func() (*validators.Principal, error) {
	return func() (*validators.Principal, error) {
		return nil, &validators.Error{Kind: kind, Description: desc, Err: errors.New("cause")}
	}
}

func newTestServer(t testing.TB, mutate func(*Config, *Resource)) (*Server, *fakeValidator) {
	t.Helper()
	fv := &fakeValidator{answers: map[string]func() (*validators.Principal, error){
		"good":     principal("mcp:read", "mcp:write"),
		"readonly": principal("mcp:write"),
		"noclient": func() (*validators.Principal, error) {
			return validators.NewPrincipal(validators.Identity{Subject: "s", Issuer: "i"}), nil
		},
		"expired":     failing(validators.ErrInvalidToken, validators.DescExpired),
		"quoted":      failing(validators.ErrInvalidToken, `bad "quote" \ here`),
		"down":        failing(validators.ErrUnavailable, validators.DescJWKS),
		"weird-error": func() (*validators.Principal, error) { return nil, errors.New("unexpected") },
	}}
	res := &Resource{
		URI:             testResource,
		ScopesSupported: []string{"mcp:read", "mcp:write"},
		RequiredScopes:  []string{"mcp:read"},
		Validator:       fv,
	}
	cfg := Config{Resources: []*Resource{res}, RetryAfter: 7 * time.Second, Logger: slog.New(slog.DiscardHandler)}
	if mutate != nil {
		mutate(&cfg, res)
	}
	s, err := NewServer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s, fv
}

// envoyRequest builds a CheckRequest the way Envoy's ext_authz filter does:
// lower-cased header names, pseudo-headers, path with query string.
func envoyRequest(path string, headers map[string]string) *authv3.CheckRequest {
	h := map[string]string{":authority": "mcp.example.com", ":path": path, ":method": "POST", ":scheme": "https"}
	for k, v := range headers {
		h[k] = v
	}
	return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{
		Http: &authv3.AttributeContext_HttpRequest{Method: "POST", Host: "mcp.example.com", Path: path, Scheme: "https", Headers: h},
	}}}
}

type decision struct {
	grpc    codes.Code
	http    int
	headers map[string]string
	body    string
	ok      *authv3.OkHttpResponse
	resp    *authv3.CheckResponse
}

func decide(t *testing.T, s *Server, req *authv3.CheckRequest) decision {
	t.Helper()
	resp, err := s.Check(context.Background(), req)
	if err != nil {
		return decision{grpc: status.Code(err)}
	}
	d := decision{grpc: codes.Code(resp.GetStatus().GetCode()), headers: map[string]string{}, resp: resp}
	if dr := resp.GetDeniedResponse(); dr != nil {
		d.http = int(dr.GetStatus().GetCode())
		d.body = dr.GetBody()
		for _, h := range dr.GetHeaders() {
			d.headers[h.GetHeader().GetKey()] = h.GetHeader().GetValue()
		}
	}
	d.ok = resp.GetOkResponse()
	return d
}

func TestDecisionTable(t *testing.T) {
	s, _ := newTestServer(t, nil)
	discovery := `Bearer resource_metadata="` + testPRM + `", scope="mcp:read"`
	tests := []struct {
		name    string
		path    string
		headers map[string]string
		grpc    codes.Code
		http    int
		www     string // exact WWW-Authenticate; "-" means absent
		errCode string
	}{
		{"no Authorization header", "/mcp", nil, codes.Unauthenticated, 401, discovery, "unauthorized"},
		{"Basic scheme", "/mcp", map[string]string{"authorization": "Basic dXNlcjpwYXNz"}, codes.Unauthenticated, 401, discovery, "unauthorized"},
		{"Digest with auth-params", "/mcp", map[string]string{"authorization": `Digest username="u", realm="r"`}, codes.Unauthenticated, 401, discovery, "unauthorized"},
		{"Bearerfoo is not the Bearer scheme", "/mcp", map[string]string{"authorization": "Bearerfoo"}, codes.Unauthenticated, 401, discovery, "unauthorized"},
		{"token only in the query string", "/mcp?access_token=good", nil, codes.Unauthenticated, 401, discovery, "unauthorized"},
		{"percent-encoded query token name", "/mcp?access%5Ftoken=good", nil, codes.Unauthenticated, 401, discovery, "unauthorized"},
		{"token= only in the query string", "/mcp?token=good", nil, codes.Unauthenticated, 401, discovery, "unauthorized"},
		{"token= and header token", "/mcp?token=good", map[string]string{"authorization": "Bearer good"}, codes.InvalidArgument, 400,
			`Bearer error="invalid_request", error_description="Token in both the Authorization header and the query string", resource_metadata="` + testPRM + `"`, "invalid_request"},
		{"legacy sessionId is not a token", "/mcp?sessionId=abc", map[string]string{"authorization": "Bearer good"}, codes.OK, 0, "-", ""},
		{"query and header token", "/mcp?x=1&access_token=good", map[string]string{"authorization": "Bearer good"}, codes.InvalidArgument, 400,
			`Bearer error="invalid_request", error_description="Token in both the Authorization header and the query string", resource_metadata="` + testPRM + `"`, "invalid_request"},
		{"two Authorization headers joined by Envoy", "/mcp", map[string]string{"authorization": "Bearer good,Bearer good"}, codes.InvalidArgument, 400,
			`Bearer error="invalid_request", error_description="Multiple Authorization headers", resource_metadata="` + testPRM + `"`, "invalid_request"},
		{"Basic and Bearer joined", "/mcp", map[string]string{"authorization": "Basic abc, Bearer good"}, codes.InvalidArgument, 400,
			`Bearer error="invalid_request", error_description="Multiple Authorization headers", resource_metadata="` + testPRM + `"`, "invalid_request"},
		// Two non-Bearer headers are two headers too (DESIGN §2: "two or more Authorization headers" → 400),
		// told from one header's comma-separated auth-params by what follows each comma.
		{"two Basic headers joined by Envoy", "/mcp", map[string]string{"authorization": "Basic YQ==,Basic Yg=="}, codes.InvalidArgument, 400,
			`Bearer error="invalid_request", error_description="Multiple Authorization headers", resource_metadata="` + testPRM + `"`, "invalid_request"},
		{"Digest and Basic joined", "/mcp", map[string]string{"authorization": `Digest username="u", realm="r", Basic YQ==`}, codes.InvalidArgument, 400,
			`Bearer error="invalid_request", error_description="Multiple Authorization headers", resource_metadata="` + testPRM + `"`, "invalid_request"},
		{"Digest with a comma in a quoted value", "/mcp", map[string]string{"authorization": `Digest username="u", realm="a, b c", nonce="n"`}, codes.Unauthenticated, 401, discovery, "unauthorized"},
		{"Digest with an empty list element", "/mcp", map[string]string{"authorization": `Digest username="u", , realm=r`}, codes.Unauthenticated, 401, discovery, "unauthorized"},
		{"Bearer inside a quoted value is no header", "/mcp", map[string]string{"authorization": `Digest realm="x, Bearer good"`}, codes.Unauthenticated, 401, discovery, "unauthorized"},
		{"an escaped quote keeps the string open", "/mcp", map[string]string{"authorization": `Digest realm="a\", Basic YQ==", nonce=n`}, codes.Unauthenticated, 401, discovery, "unauthorized"},
		{"Bearer without token", "/mcp", map[string]string{"authorization": "Bearer"}, codes.InvalidArgument, 400,
			`Bearer error="invalid_request", error_description="Bearer token missing", resource_metadata="` + testPRM + `"`, "invalid_request"},
		{"Bearer with spaces only", "/mcp", map[string]string{"authorization": "Bearer    "}, codes.InvalidArgument, 400,
			`Bearer error="invalid_request", error_description="Bearer token missing", resource_metadata="` + testPRM + `"`, "invalid_request"},
		{"Bearer with two tokens", "/mcp", map[string]string{"authorization": "Bearer good extra"}, codes.InvalidArgument, 400,
			`Bearer error="invalid_request", error_description="Malformed Bearer token", resource_metadata="` + testPRM + `"`, "invalid_request"},
		{"Bearer with non-token68 characters", "/mcp", map[string]string{"authorization": "Bearer go\"od"}, codes.InvalidArgument, 400,
			`Bearer error="invalid_request", error_description="Malformed Bearer token", resource_metadata="` + testPRM + `"`, "invalid_request"},
		{"padding in the middle", "/mcp", map[string]string{"authorization": "Bearer ab=cd"}, codes.InvalidArgument, 400,
			`Bearer error="invalid_request", error_description="Malformed Bearer token", resource_metadata="` + testPRM + `"`, "invalid_request"},
		{"lower-case scheme", "/mcp", map[string]string{"authorization": "bearer good"}, codes.OK, 0, "-", ""},
		{"upper-case scheme", "/mcp", map[string]string{"authorization": "BEARER good"}, codes.OK, 0, "-", ""},
		{"several spaces after the scheme", "/mcp", map[string]string{"authorization": "Bearer   good"}, codes.OK, 0, "-", ""},
		{"query without access_token", "/mcp?cursor=abc", map[string]string{"authorization": "Bearer good"}, codes.OK, 0, "-", ""},
		{"invalid token", "/mcp", map[string]string{"authorization": "Bearer expired"}, codes.Unauthenticated, 401,
			`Bearer error="invalid_token", error_description="Token has expired", resource_metadata="` + testPRM + `", scope="mcp:read"`, "invalid_token"},
		{"unknown token", "/mcp", map[string]string{"authorization": "Bearer nope"}, codes.Unauthenticated, 401,
			`Bearer error="invalid_token", error_description="Invalid token signature", resource_metadata="` + testPRM + `", scope="mcp:read"`, "invalid_token"},
		{"description with quote and backslash", "/mcp", map[string]string{"authorization": "Bearer quoted"}, codes.Unauthenticated, 401,
			`Bearer error="invalid_token", error_description="bad quote  here", resource_metadata="` + testPRM + `", scope="mcp:read"`, "invalid_token"},
		{"token too large", "/mcp", map[string]string{"authorization": "Bearer " + strings.Repeat("a", 100<<10)}, codes.Unauthenticated, 401,
			`Bearer error="invalid_token", error_description="Token too large", resource_metadata="` + testPRM + `", scope="mcp:read"`, "invalid_token"},
		{"insufficient scope", "/mcp", map[string]string{"authorization": "Bearer readonly"}, codes.PermissionDenied, 403,
			`Bearer error="insufficient_scope", scope="mcp:read", resource_metadata="` + testPRM + `"`, "insufficient_scope"},
		{"authorization server down", "/mcp", map[string]string{"authorization": "Bearer down"}, codes.Unavailable, 503, "-", "temporarily_unavailable"},
		{"unexpected validator error fails closed", "/mcp", map[string]string{"authorization": "Bearer weird-error"}, codes.Unavailable, 503, "-", "temporarily_unavailable"},
		// DESIGN §7: an encoded "/", "\" or NUL, or a ";" parameter, is a 400 before any path-based decision.
		{"encoded slash in the path", "/mcp/a%2Fb", map[string]string{"authorization": "Bearer good"}, codes.InvalidArgument, 400, "-", "invalid_request"},
		{"encoded backslash in the path", "/mcp/a%5cb", map[string]string{"authorization": "Bearer good"}, codes.InvalidArgument, 400, "-", "invalid_request"},
		{"encoded NUL in the path", "/mcp/a%00", map[string]string{"authorization": "Bearer good"}, codes.InvalidArgument, 400, "-", "invalid_request"},
		{"path parameter", "/mcp;x=1", map[string]string{"authorization": "Bearer good"}, codes.InvalidArgument, 400, "-", "invalid_request"},
		{"dot segments are resolved before routing", "/other/../mcp/./x?access_token=no", nil, codes.Unauthenticated, 401, discovery, "unauthorized"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := decide(t, s, envoyRequest(tt.path, tt.headers))
			if d.grpc != tt.grpc || d.http != tt.http {
				t.Fatalf("got gRPC %v HTTP %d, want %v %d", d.grpc, d.http, tt.grpc, tt.http)
			}
			if tt.grpc == codes.OK {
				if d.ok == nil {
					t.Fatal("allowed without ok_response")
				}
				return
			}
			www, has := d.headers["www-authenticate"]
			if tt.www == "-" {
				if has {
					t.Errorf("unexpected WWW-Authenticate %q", www)
				}
			} else if www != tt.www {
				t.Errorf("WWW-Authenticate\n got %s\nwant %s", www, tt.www)
			}
			if d.headers["content-type"] != "application/json" {
				t.Errorf("content-type %q", d.headers["content-type"])
			}
			var body struct {
				Error            string `json:"error"`
				ErrorDescription string `json:"error_description"`
			}
			if err := json.Unmarshal([]byte(d.body), &body); err != nil || body.Error != tt.errCode {
				t.Errorf("body %q (%v), want error %q", d.body, err, tt.errCode)
			}
			if tt.http == 503 && d.headers["retry-after"] != "7" {
				t.Errorf("retry-after %q", d.headers["retry-after"])
			}
		})
	}
}

func TestTokenTooLargeSkipsValidation(t *testing.T) {
	s, fv := newTestServer(t, nil)
	decide(t, s, envoyRequest("/mcp", map[string]string{"authorization": "Bearer " + strings.Repeat("a", 100<<10)}))
	if fv.calls.Load() != 0 {
		t.Fatal("oversized token reached the validator")
	}
}

func TestRawHeaderMapDuplicates(t *testing.T) {
	s, _ := newTestServer(t, nil)
	req := envoyRequest("/mcp", nil)
	h := req.Attributes.Request.Http
	h.Headers = nil
	h.HeaderMap = &corev3.HeaderMap{Headers: []*corev3.HeaderValue{
		{Key: ":path", RawValue: []byte("/mcp")},
		{Key: "authorization", RawValue: []byte("Bearer good")},
		{Key: "authorization", RawValue: []byte("Bearer good")},
	}}
	if d := decide(t, s, req); d.http != 400 {
		t.Fatalf("two raw Authorization headers: HTTP %d", d.http)
	}
	h.HeaderMap.Headers = h.HeaderMap.Headers[:2]
	if d := decide(t, s, req); d.grpc != codes.OK {
		t.Fatalf("one raw Authorization header: %v %d", d.grpc, d.http)
	}
}

func TestUnavailableAsGRPCError(t *testing.T) {
	s, _ := newTestServer(t, func(c *Config, _ *Resource) { c.Unavailable = UnavailableGRPC })
	_, err := s.Check(context.Background(), envoyRequest("/mcp", map[string]string{"authorization": "Bearer down"}))
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("want gRPC UNAVAILABLE, got %v", err)
	}
	if strings.Contains(err.Error(), "down") {
		t.Fatalf("error echoes the token: %v", err)
	}
}

func TestAllowedResponse(t *testing.T) {
	s, _ := newTestServer(t, func(c *Config, _ *Resource) { c.StripAuthorization = true })
	req := envoyRequest("/mcp", map[string]string{
		"authorization":        "Bearer good",
		"x-mcp-auth-subject":   "admin", // a client trying to pre-set identity
		"x-mcp-auth-client-id": "evil",
	})
	d := decide(t, s, req)
	if d.grpc != codes.OK || d.ok == nil {
		t.Fatalf("not allowed: %v", d.grpc)
	}
	got := map[string]*corev3.HeaderValueOption{}
	for _, h := range d.ok.GetHeaders() {
		got[h.GetHeader().GetKey()] = h
	}
	want := map[string]string{
		"x-mcp-auth-subject":   "user-1",
		"x-mcp-auth-client-id": "client-1",
		"x-mcp-auth-scopes":    "mcp:read mcp:write",
		"x-mcp-auth-issuer":    "https://as.example",
		"x-mcp-auth-claims":    "eyJzdWIiOiJ1c2VyLTEifQ",
		"x-mcp-auth-resource":  testResource,
	}
	for k, v := range want {
		h, ok := got[k]
		if !ok || h.GetHeader().GetValue() != v {
			t.Errorf("header %s = %v, want %q", k, h, v)
			continue
		}
		if h.GetAppendAction() != corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD {
			t.Errorf("header %s does not overwrite", k)
		}
	}
	if rm := strings.Join(d.ok.GetHeadersToRemove(), ","); rm != "x-mcp-auth-method,x-mcp-auth-tool,authorization" {
		t.Errorf("headers_to_remove = %v", rm)
	}
	md := d.resp.GetDynamicMetadata().GetFields()
	if md["sub"].GetStringValue() != "user-1" || md["client_id"].GetStringValue() != "client-1" ||
		md["scope"].GetStringValue() != "mcp:read mcp:write" || md["resource"].GetStringValue() != testResource ||
		md["exp"].GetNumberValue() != 2000000000 || md["iss"].GetStringValue() != "https://as.example" ||
		md["claims"].GetStringValue() != "eyJzdWIiOiJ1c2VyLTEifQ" {
		t.Errorf("dynamic metadata = %v", md)
	}
}

func TestAllowedRemovesIdentityHeadersWithoutValue(t *testing.T) {
	s, _ := newTestServer(t, func(_ *Config, r *Resource) { r.RequiredScopes = nil })
	d := decide(t, s, envoyRequest("/mcp", map[string]string{"authorization": "Bearer noclient", "x-mcp-auth-client-id": "evil"}))
	if d.grpc != codes.OK {
		t.Fatalf("not allowed: %v", d.grpc)
	}
	removed := strings.Join(d.ok.GetHeadersToRemove(), ",")
	for _, h := range []string{"x-mcp-auth-client-id", "x-mcp-auth-scopes", "x-mcp-auth-claims"} {
		if !strings.Contains(removed, h) {
			t.Errorf("%s not removed (removed: %s)", h, removed)
		}
	}
	if strings.Contains(removed, "authorization") {
		t.Error("authorization removed without StripAuthorization")
	}
}

// TestChallengeScopeHint: the 401 challenges, without a token and with
// an invalid one, hint the route's required scopes, else scopes_supported,
// and omit scope when neither is set (DESIGN §2, first and fourth rows).
func TestChallengeScopeHint(t *testing.T) {
	const invalid = `Bearer error="invalid_token", error_description="Token has expired", resource_metadata="` + testPRM + `"`
	tests := []struct {
		name               string
		required, supports []string
		want, wantInvalid  string
	}{
		{"required scopes", []string{"a", "b"}, []string{"a", "b", "c"}, `Bearer resource_metadata="` + testPRM + `", scope="a b"`, invalid + `, scope="a b"`},
		{"supported scopes", nil, []string{"a", "c"}, `Bearer resource_metadata="` + testPRM + `", scope="a c"`, invalid + `, scope="a c"`},
		{"no scopes", nil, nil, `Bearer resource_metadata="` + testPRM + `"`, invalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, _ := newTestServer(t, func(_ *Config, r *Resource) { r.RequiredScopes, r.ScopesSupported = tt.required, tt.supports })
			if got := decide(t, s, envoyRequest("/mcp", nil)).headers["www-authenticate"]; got != tt.want {
				t.Errorf("no token: got %s", got)
			}
			if got := decide(t, s, envoyRequest("/mcp", map[string]string{"authorization": "Bearer expired"})).headers["www-authenticate"]; got != tt.wantInvalid {
				t.Errorf("invalid token: got %s", got)
			}
		})
	}
}

func TestRouting(t *testing.T) {
	a := &fakeValidator{answers: map[string]func() (*validators.Principal, error){"tok": principal("x")}}
	b := &fakeValidator{answers: map[string]func() (*validators.Principal, error){"tok": principal("x")}}
	s, err := NewServer(Config{Resources: []*Resource{
		{Name: "a", URI: "https://a.example/mcp", Hosts: []string{"a.example"}, PathPrefixes: []string{"/mcp"}, Validator: a},
		{Name: "b", URI: "https://b.example/tools/mcp", PathPrefixes: []string{"/tools"}, Validator: b},
	}})
	if err != nil {
		t.Fatal(err)
	}
	req := func(host, path string, ext map[string]string) *authv3.CheckRequest {
		r := envoyRequest(path, map[string]string{"authorization": "Bearer tok"})
		r.Attributes.Request.Http.Host = host
		r.Attributes.ContextExtensions = ext
		return r
	}
	tests := []struct {
		name string
		req  *authv3.CheckRequest
		want *fakeValidator // nil: denied without a match
	}{
		{"host and prefix", req("a.example:443", "/mcp/x?y=1", nil), a},
		{"prefix on any host", req("other", "/tools/mcp", nil), b},
		{"prefix matches whole segments", req("a.example", "/mcpx", nil), nil},
		{"no match", req("other", "/", nil), nil},
		{"context extension wins", req("a.example", "/mcp", map[string]string{"mcp_resource": "b"}), b},
		{"unknown context extension", req("a.example", "/mcp", map[string]string{"mcp_resource": "zzz"}), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ca, cb := a.calls.Load(), b.calls.Load()
			d := decide(t, s, tt.req)
			switch tt.want {
			case nil:
				if d.http != 403 || a.calls.Load() != ca || b.calls.Load() != cb {
					t.Errorf("want 403 without validation, got %v %d", d.grpc, d.http)
				}
			default:
				if d.grpc != codes.OK || tt.want.calls.Load() == map[*fakeValidator]int64{a: ca, b: cb}[tt.want] {
					t.Errorf("wrong resource: %v", d.grpc)
				}
			}
		})
	}
}

func TestNoHTTPAttributes(t *testing.T) {
	s, _ := newTestServer(t, nil)
	if d := decide(t, s, &authv3.CheckRequest{}); d.http != 400 {
		t.Fatalf("empty CheckRequest: %v %d", d.grpc, d.http)
	}
}

func TestAPIKeyResource(t *testing.T) {
	s, fv := newTestServer(t, func(_ *Config, r *Resource) { r.APIKeys = true })
	tests := []struct {
		name    string
		path    string
		headers map[string]string
		http    int
		www     string
	}{
		{"no key", "/mcp", nil, 401, `ApiKey header="X-API-Key", scope="mcp:read"`},
		{"bearer token is not a key", "/mcp", map[string]string{"authorization": "Bearer good"}, 401, `ApiKey header="X-API-Key", scope="mcp:read"`},
		{"key in the query string only", "/mcp?api_key=good", nil, 401, `ApiKey header="X-API-Key", scope="mcp:read"`},
		{"X-API-Key", "/mcp", map[string]string{"x-api-key": "good"}, 0, ""},
		{"Authorization: ApiKey", "/mcp", map[string]string{"authorization": "apikey good"}, 0, ""},
		{"unknown key", "/mcp", map[string]string{"x-api-key": "nope"}, 401, `ApiKey header="X-API-Key", error="invalid_key", error_description="Invalid token signature", scope="mcp:read"`},
		{"both places", "/mcp", map[string]string{"x-api-key": "good", "authorization": "ApiKey good"}, 400, `ApiKey header="X-API-Key", error="invalid_request", error_description="API key in both X-API-Key and Authorization"`},
		{"two X-API-Key headers joined", "/mcp", map[string]string{"x-api-key": "good,good"}, 400, `ApiKey header="X-API-Key", error="invalid_request", error_description="Malformed API key"`},
		{"missing scope", "/mcp", map[string]string{"x-api-key": "readonly"}, 403, `ApiKey header="X-API-Key", error="insufficient_scope", scope="mcp:read"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := decide(t, s, envoyRequest(tt.path, tt.headers))
			if d.http != tt.http || d.headers["www-authenticate"] != tt.www {
				t.Fatalf("got %d %q", d.http, d.headers["www-authenticate"])
			}
			if tt.http == 0 {
				return
			}
			// The body's error is the challenge's code, unauthorized without one.
			want := "unauthorized"
			if m := regexp.MustCompile(`error="([^"]+)"`).FindStringSubmatch(tt.www); m != nil {
				want = m[1]
			}
			if !strings.Contains(d.body, `"error":"`+want+`"`) || strings.Contains(d.body, "Bearer") {
				t.Fatalf("body %s, want error %q", d.body, want)
			}
		})
	}
	if fv.calls.Load() == 0 {
		t.Fatal("validator never called")
	}
}

func TestUnavailableIsLoggedOncePerInterval(t *testing.T) {
	var buf syncBuffer
	s, _ := newTestServer(t, func(c *Config, _ *Resource) {
		c.Logger = slog.New(slog.NewTextHandler(&buf, nil))
	})
	for range 100 {
		decide(t, s, envoyRequest("/mcp", map[string]string{"authorization": "Bearer down"}))
	}
	if n := strings.Count(buf.String(), "cannot validate token"); n != 1 {
		t.Fatalf("an outage logged %d lines for 100 checks, want 1:\n%s", n, buf.String())
	}
	if strings.Contains(buf.String(), "Bearer down") || strings.Contains(buf.String(), `"down"`) {
		t.Fatal("the token reached the log")
	}
}

type syncBuffer = syncbuf.Buffer

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }
