package authz

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc/codes"
)

const adminResource = "https://mcp.example.com/admin"

// newForwardServer has two resources on one host, told apart by path:
// /mcp needs mcp:read (which "good" holds), /admin needs mcp:admin (which
// nobody holds), so a request routed to the wrong one shows.
func newForwardServer(t testing.TB, mutate func(*Config, *Resource)) *Server {
	t.Helper()
	s, _ := newTestServer(t, func(c *Config, r *Resource) {
		r.PathPrefixes = []string{"/mcp"}
		c.Resources = append(c.Resources, &Resource{
			URI: adminResource, PathPrefixes: []string{"/admin"}, RequiredScopes: []string{"mcp:admin"}, Validator: r.Validator,
		})
		if mutate != nil {
			mutate(c, r)
		}
	})
	return s
}

// original is the client's request that a proxy asks about.
type original struct {
	method, target string
	headers        [][2]string // in order, repeats kept
	body           string
}

// forwardRequest is how each convention's proxy asks about o.
func forwardRequest(endpoint string, o original) *http.Request {
	var r *http.Request
	switch endpoint {
	case ForwardPathNginx:
		r = httptest.NewRequest(http.MethodGet, "/nginx", nil)
		r.Header.Set("X-Original-Method", o.method)
		r.Header.Set("X-Original-URI", o.target)
	case ForwardPathForwarded:
		r = httptest.NewRequest(http.MethodGet, "/forwarded", nil)
		r.Header.Set("X-Forwarded-Method", o.method)
		r.Header.Set("X-Forwarded-Proto", "https")
		r.Header.Set("X-Forwarded-Host", "mcp.example.com")
		r.Header.Set("X-Forwarded-Uri", o.target)
	default:
		var body *strings.Reader
		if o.body != "" {
			body = strings.NewReader(o.body)
		}
		if body != nil {
			r = httptest.NewRequest(o.method, "/envoy"+o.target, body)
		} else {
			r = httptest.NewRequest(o.method, "/envoy"+o.target, nil)
		}
	}
	r.Host = "mcp.example.com"
	for _, h := range o.headers {
		r.Header.Add(h[0], h[1])
	}
	return r
}

// forwardAnswer is what a proxy received.
type forwardAnswer struct {
	status int
	header http.Header
	body   string
}

func serveForward(s *Server, r *http.Request) forwardAnswer {
	w := httptest.NewRecorder()
	s.ForwardHandler().ServeHTTP(w, r)
	return forwardAnswer{status: w.Code, header: w.Result().Header, body: w.Body.String()}
}

func (a forwardAnswer) errorCode(t *testing.T) string {
	t.Helper()
	var e errorBody
	if err := json.Unmarshal([]byte(a.body), &e); err != nil {
		t.Fatalf("body %q: %v", a.body, err)
	}
	return e.Error
}

var endpoints = []string{ForwardPathNginx, ForwardPathForwarded, ForwardPathEnvoy}

// TestForwardEachEndpointReadsOnlyItsFamily: the original request comes
// from the endpoint's own convention; the other families' headers, which
// another proxy would pass through from its client, change nothing.
func TestForwardEachEndpointReadsOnlyItsFamily(t *testing.T) {
	s := newForwardServer(t, nil)
	spoofAdmin := [][2]string{
		{"X-Original-Method", "GET"}, {"X-Original-URI", "/admin"},
		{"X-Forwarded-Method", "GET"}, {"X-Forwarded-Proto", "https"}, {"X-Forwarded-Host", "other.example"}, {"X-Forwarded-Uri", "/admin"},
		{"X-Original-URL", "https://mcp.example.com/admin"}, {"Forwarded", "host=other.example;proto=https"},
	}
	spoofMCP := [][2]string{
		{"X-Original-Method", "GET"}, {"X-Original-URI", "/mcp"},
		{"X-Forwarded-Method", "GET"}, {"X-Forwarded-Proto", "https"}, {"X-Forwarded-Host", "mcp.example.com"}, {"X-Forwarded-Uri", "/mcp"},
	}
	for _, ep := range endpoints {
		t.Run(ep+" to /mcp, others saying /admin", func(t *testing.T) {
			o := original{method: "GET", target: "/mcp?x=1", headers: [][2]string{{"Authorization", "Bearer good"}}}
			r := forwardRequest(ep, o)
			for _, h := range spoofAdmin {
				if r.Header.Get(h[0]) == "" {
					r.Header.Set(h[0], h[1])
				}
			}
			a := serveForward(s, r)
			if a.status != 200 || a.header.Get("X-Mcp-Auth-Resource") != testResource {
				t.Fatalf("got %d %v", a.status, a.header)
			}
		})
		t.Run(ep+" to /admin, others saying /mcp", func(t *testing.T) {
			o := original{method: "GET", target: "/admin", headers: [][2]string{{"Authorization", "Bearer good"}}}
			r := forwardRequest(ep, o)
			for _, h := range spoofMCP {
				if r.Header.Get(h[0]) == "" {
					r.Header.Set(h[0], h[1])
				}
			}
			a := serveForward(s, r)
			if a.status != 403 || !strings.Contains(a.header.Get("Www-Authenticate"), `scope="mcp:admin"`) {
				t.Fatalf("got %d %v", a.status, a.header)
			}
		})
	}
	t.Run("/nginx ignores the subrequest's own method and path", func(t *testing.T) {
		r := forwardRequest(ForwardPathNginx, original{method: "GET", target: "/admin", headers: [][2]string{{"Authorization", "Bearer good"}}})
		r.Method = http.MethodPost
		r.RequestURI = "/nginx?target=/mcp"
		if a := serveForward(s, r); a.status != 403 {
			t.Fatalf("got %d", a.status)
		}
	})
}

// TestForwardSpoofedFamiliesOnGRPC: over gRPC, routing comes from the
// request attributes only; forward-auth headers are ordinary headers.
func TestForwardSpoofedFamiliesOnGRPC(t *testing.T) {
	s := newForwardServer(t, nil)
	d := decide(t, s, envoyRequest("/mcp", map[string]string{
		"authorization": "Bearer good", "x-original-uri": "/admin", "x-original-method": "DELETE",
		"x-forwarded-uri": "/admin", "x-forwarded-host": "other.example", "x-forwarded-method": "DELETE",
	}))
	if d.grpc != codes.OK {
		t.Fatalf("got %v %v", d.grpc, d.headers)
	}
	i := slices.IndexFunc(d.ok.GetHeaders(), func(h *corev3.HeaderValueOption) bool { return h.GetHeader().GetKey() == "x-mcp-auth-resource" })
	if i < 0 || d.ok.GetHeaders()[i].GetHeader().GetValue() != testResource {
		t.Fatalf("headers %v", d.ok.GetHeaders())
	}
}

func TestForwardMissingOrMalformedConventionHeaders(t *testing.T) {
	s := newForwardServer(t, nil)
	good := original{method: "GET", target: "/mcp", headers: [][2]string{{"Authorization", "Bearer good"}}}
	tests := []struct {
		name     string
		endpoint string
		edit     func(r *http.Request)
		desc     string // contained in error_description
	}{
		{"no X-Original-Method", ForwardPathNginx, func(r *http.Request) { r.Header.Del("X-Original-Method") }, "Missing X-Original-Method"},
		{"no X-Original-URI", ForwardPathNginx, func(r *http.Request) { r.Header.Del("X-Original-Uri") }, "Missing X-Original-URI"},
		{"empty X-Original-URI", ForwardPathNginx, func(r *http.Request) { r.Header.Set("X-Original-Uri", "") }, "Missing X-Original-URI"},
		{"two X-Original-URI", ForwardPathNginx, func(r *http.Request) { r.Header.Add("X-Original-Uri", "/admin") }, "Repeated X-Original-URI"},
		{"forwarded family on /nginx", ForwardPathNginx, func(r *http.Request) {
			r.Header.Del("X-Original-Uri")
			r.Header.Set("X-Forwarded-Uri", "/mcp")
		}, "Missing X-Original-URI"},
		{"absolute X-Original-URI", ForwardPathNginx, func(r *http.Request) { r.Header.Set("X-Original-Uri", "https://mcp.example.com/mcp") }, "target"},
		{"relative X-Original-URI", ForwardPathNginx, func(r *http.Request) { r.Header.Set("X-Original-Uri", "mcp") }, "target"},
		{"space in X-Original-URI", ForwardPathNginx, func(r *http.Request) { r.Header.Set("X-Original-Uri", "/mcp /admin") }, "target"},
		{"method with a space", ForwardPathNginx, func(r *http.Request) { r.Header.Set("X-Original-Method", "GET /admin") }, "method"},
		{"no Host", ForwardPathNginx, func(r *http.Request) { r.Host = "" }, "host"},
		{"no X-Forwarded-Method", ForwardPathForwarded, func(r *http.Request) { r.Header.Del("X-Forwarded-Method") }, "Missing X-Forwarded-Method"},
		{"no X-Forwarded-Proto", ForwardPathForwarded, func(r *http.Request) { r.Header.Del("X-Forwarded-Proto") }, "Missing X-Forwarded-Proto"},
		{"no X-Forwarded-Host", ForwardPathForwarded, func(r *http.Request) { r.Header.Del("X-Forwarded-Host") }, "Missing X-Forwarded-Host"},
		{"no X-Forwarded-Uri", ForwardPathForwarded, func(r *http.Request) { r.Header.Del("X-Forwarded-Uri") }, "Missing X-Forwarded-Uri"},
		{"original family on /forwarded", ForwardPathForwarded, func(r *http.Request) {
			r.Header.Del("X-Forwarded-Uri")
			r.Header.Set("X-Original-Uri", "/mcp")
		}, "Missing X-Forwarded-Uri"},
		{"X-Forwarded-Proto ftp", ForwardPathForwarded, func(r *http.Request) { r.Header.Set("X-Forwarded-Proto", "ftp") }, "X-Forwarded-Proto"},
		{"two X-Forwarded-Host", ForwardPathForwarded, func(r *http.Request) { r.Header.Add("X-Forwarded-Host", "b.example") }, "Repeated X-Forwarded-Host"},
		{"X-Forwarded-Host list", ForwardPathForwarded, func(r *http.Request) { r.Header.Set("X-Forwarded-Host", "a.example, b.example") }, "host"},
		{"X-Forwarded-Host with userinfo", ForwardPathForwarded, func(r *http.Request) { r.Header.Set("X-Forwarded-Host", "u@mcp.example.com") }, "host"},
		{"no Host on /envoy", ForwardPathEnvoy, func(r *http.Request) { r.Host = "" }, "host"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := forwardRequest(tc.endpoint, good)
			tc.edit(r)
			a := serveForward(s, r)
			if a.status != 400 || a.errorCode(t) != reasonInvalidRequest || !strings.Contains(a.body, tc.desc) {
				t.Fatalf("got %d %s", a.status, a.body)
			}
			if a.header.Get("X-Mcp-Auth-Subject") != "" {
				t.Fatal("identity on a refusal")
			}
		})
	}
}

func TestForwardUnknownEndpoint(t *testing.T) {
	s := newForwardServer(t, nil)
	for _, target := range []string{"/", "/envoy", "/envoyx/mcp", "/nginx/x", "/Nginx", "/forwarded/"} {
		r := httptest.NewRequest(http.MethodGet, target, nil)
		r.Header.Set("X-Original-Method", "GET")
		r.Header.Set("X-Original-URI", "/mcp")
		r.Header.Set("Authorization", "Bearer good")
		if a := serveForward(s, r); a.status != 404 {
			t.Errorf("%s: %d", target, a.status)
		}
	}
}

// TestForwardDuplicateAuthorization: two Authorization lines are two
// credentials on every endpoint, as in Envoy's raw header_map.
func TestForwardDuplicateAuthorization(t *testing.T) {
	s := newForwardServer(t, nil)
	for _, ep := range endpoints {
		for _, hs := range [][][2]string{
			{{"Authorization", "Bearer good"}, {"Authorization", "Bearer good"}},
			{{"Authorization", "Bearer good"}, {"Authorization", "Basic dTpw"}},
			{{"Authorization", "Bearer good, Bearer good"}},
		} {
			a := serveForward(s, forwardRequest(ep, original{method: "GET", target: "/mcp", headers: hs}))
			if a.status != 400 || !strings.Contains(a.header.Get("Www-Authenticate"), `error="invalid_request"`) || a.errorCode(t) != reasonInvalidRequest {
				t.Errorf("%s %v: %d %v", ep, hs, a.status, a.header)
			}
		}
	}
}

// TestForwardAllowRendersEveryIdentityHeader: every identity header is in
// the answer, empty when the decision has no value for it, so a recipe
// that copies it always overwrites the client's copy.
func TestForwardAllowRendersEveryIdentityHeader(t *testing.T) {
	s := newForwardServer(t, func(c *Config, r *Resource) { c.StripAuthorization, r.RequiredScopes = true, nil })
	for _, ep := range endpoints {
		t.Run(ep, func(t *testing.T) {
			a := serveForward(s, forwardRequest(ep, original{method: "GET", target: "/mcp", headers: [][2]string{
				{"Authorization", "Bearer noclient"}, {"X-Mcp-Auth-Client-Id", "spoofed"},
			}}))
			if a.status != 200 || a.body != "" || a.header.Get("Cache-Control") != "no-store" {
				t.Fatalf("got %d %q %v", a.status, a.body, a.header)
			}
			want := map[string]string{
				"X-Mcp-Auth-Subject": "s", "X-Mcp-Auth-Issuer": "i", "X-Mcp-Auth-Resource": testResource,
				"X-Mcp-Auth-Client-Id": "", "X-Mcp-Auth-Scopes": "", "X-Mcp-Auth-Claims": "", "X-Mcp-Auth-Method": "", "X-Mcp-Auth-Tool": "",
			}
			for k, v := range want {
				if got := a.header.Values(k); len(got) != 1 || got[0] != v {
					t.Errorf("%s = %q, want exactly %q", k, got, v)
				}
			}
			remove := a.header.Get("X-Envoy-Auth-Headers-To-Remove")
			if ep != ForwardPathEnvoy {
				if remove != "" {
					t.Errorf("%s sends Envoy's header: %q", ep, remove)
				}
				return
			}
			for _, n := range []string{"x-mcp-auth-client-id", "x-mcp-auth-scopes", "x-mcp-auth-claims", "x-mcp-auth-method", "x-mcp-auth-tool", "authorization"} {
				if !slices.Contains(strings.Split(remove, ","), n) {
					t.Errorf("x-envoy-auth-headers-to-remove %q lacks %s", remove, n)
				}
			}
		})
	}
}

// TestForwardUnremovableIdentityHeaders: a client header that only looks
// like an identity header (x_mcp_auth_subject, x-mcp-auth-other) is
// removed over gRPC and on /envoy; nginx and Traefik cannot be told to
// remove it, so an allow there is refused rather than letting it through.
func TestForwardUnremovableIdentityHeaders(t *testing.T) {
	s := newForwardServer(t, nil)
	for _, name := range []string{"X_mcp_auth_subject", "X-Mcp-Auth-Role", "x-MCP-auth_scopes"} {
		hs := [][2]string{{"Authorization", "Bearer good"}, {name, "admin"}}
		for _, ep := range []string{ForwardPathNginx, ForwardPathForwarded} {
			a := serveForward(s, forwardRequest(ep, original{method: "GET", target: "/mcp", headers: hs}))
			if a.status != 400 || a.header.Get("X-Mcp-Auth-Subject") != "" {
				t.Errorf("%s %s: %d %v", ep, name, a.status, a.header)
			}
			// A denial reaches no upstream: it is rendered as decided.
			a = serveForward(s, forwardRequest(ep, original{method: "GET", target: "/mcp", headers: [][2]string{{name, "admin"}}}))
			if a.status != 401 {
				t.Errorf("%s %s without a token: %d", ep, name, a.status)
			}
		}
		a := serveForward(s, forwardRequest(ForwardPathEnvoy, original{method: "GET", target: "/mcp", headers: hs}))
		lower := strings.ToLower(name)
		if a.status != 200 || !slices.Contains(strings.Split(a.header.Get("X-Envoy-Auth-Headers-To-Remove"), ","), lower) {
			t.Errorf("/envoy %s: %d %v", name, a.status, a.header)
		}
	}
}

// TestForwardDenyRendering: status, challenge, JSON body, Retry-After and
// the CORS headers, as the gRPC path renders them.
func TestForwardDenyRendering(t *testing.T) {
	s := newForwardServer(t, func(_ *Config, r *Resource) { r.AllowedOrigins = []string{"https://app.example"} })
	discovery := `Bearer resource_metadata="` + testPRM + `", scope="mcp:read"`
	tests := []struct {
		name      string
		headers   [][2]string
		status    int
		www, code string
		retry     string
		cors      bool
	}{
		{"no token", nil, 401, discovery, "unauthorized", "", false},
		{"expired", [][2]string{{"Authorization", "Bearer expired"}}, 401,
			`Bearer error="invalid_token", error_description="Token has expired", resource_metadata="` + testPRM + `", scope="mcp:read"`, "invalid_token", "", false},
		{"authorization server down", [][2]string{{"Authorization", "Bearer down"}}, 503, "", "temporarily_unavailable", "7", false},
		{"no token from an allowed origin", [][2]string{{"Origin", "https://app.example"}}, 401, discovery, "unauthorized", "", true},
		{"down from an allowed origin", [][2]string{{"Origin", "https://app.example"}, {"Authorization", "Bearer down"}}, 503, "", "temporarily_unavailable", "7", true},
		{"foreign origin", [][2]string{{"Origin", "https://evil.example"}, {"Authorization", "Bearer good"}}, 403, "", "invalid_origin", "", false},
	}
	for _, ep := range endpoints {
		for _, tc := range tests {
			t.Run(ep+" "+tc.name, func(t *testing.T) {
				a := serveForward(s, forwardRequest(ep, original{method: "POST", target: "/mcp", headers: tc.headers}))
				if a.status != tc.status || a.header.Get("Www-Authenticate") != tc.www || a.errorCode(t) != tc.code ||
					a.header.Get("Retry-After") != tc.retry || a.header.Get("Content-Type") != "application/json" ||
					a.header.Get("Cache-Control") != "no-store" {
					t.Fatalf("got %d %v %s", a.status, a.header, a.body)
				}
				if tc.cors != (a.header.Get("Access-Control-Allow-Origin") == "https://app.example") ||
					tc.cors != (a.header.Get("Access-Control-Expose-Headers") != "") {
					t.Fatalf("CORS headers %v", a.header)
				}
				if a.header.Get("X-Mcp-Auth-Subject") != "" {
					t.Fatal("identity on a denial")
				}
				if got := a.header.Get(HeaderForwardBody); (ep == ForwardPathNginx) != (got == a.body) {
					t.Fatalf("%s: %q", HeaderForwardBody, got)
				}
			})
		}
	}
}

// TestForwardUnavailableInGRPCMode: unavailable.mode grpc reports a failed
// dependency to Envoy as UNAVAILABLE; over HTTP it is the 503, never an
// allow and never a bare error.
func TestForwardUnavailableInGRPCMode(t *testing.T) {
	s := newForwardServer(t, func(c *Config, _ *Resource) { c.Unavailable = UnavailableGRPC })
	if _, err := s.Check(context.Background(), envoyRequest("/mcp", map[string]string{"authorization": "Bearer down"})); err == nil {
		t.Fatal("gRPC mode: Check did not fail")
	}
	for _, ep := range endpoints {
		for _, tok := range []string{"down", "weird-error"} {
			a := serveForward(s, forwardRequest(ep, original{method: "GET", target: "/mcp", headers: [][2]string{{"Authorization", "Bearer " + tok}}}))
			if a.status != 503 || a.header.Get("Retry-After") != "7" || a.errorCode(t) != reasonUnavailable {
				t.Errorf("%s %s: %d %v %s", ep, tok, a.status, a.header, a.body)
			}
		}
	}
}

// TestForwardBody: /envoy reads the body Envoy sends (operation rules
// apply); /nginx and /forwarded never do, so with operation rules their
// POSTs follow unreadable_body.
func TestForwardBody(t *testing.T) {
	s := newForwardServer(t, func(_ *Config, r *Resource) {
		r.Operations = []Operation{{Method: "tools/call", Name: "delete_*", Scopes: []string{"mcp:admin"}}}
	})
	call := func(name string) string {
		return `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"` + name + `"}}`
	}
	auth := [][2]string{{"Authorization", "Bearer good"}, {"Content-Type", "application/json"}}
	tests := []struct {
		name, endpoint, body string
		status               int
		want                 string
	}{
		{"envoy: allowed tool", ForwardPathEnvoy, call("search"), 200, ""},
		{"envoy: tool needing more", ForwardPathEnvoy, call("delete_all"), 403, `scope="mcp:read mcp:admin"`},
		{"envoy: no body", ForwardPathEnvoy, "", 400, "not a readable JSON-RPC message"},
		{"envoy: body past the limit counts as truncated", ForwardPathEnvoy,
			`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"search","pad":"` + strings.Repeat("x", ForwardMaxBody) + `"}}`, 400, "not a readable"},
		{"nginx: a body is never read", ForwardPathNginx, call("search"), 400, "not a readable"},
		{"forwarded: a body is never read", ForwardPathForwarded, call("search"), 400, "not a readable"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := forwardRequest(tc.endpoint, original{method: "POST", target: "/mcp", headers: auth, body: tc.body})
			if tc.endpoint != ForwardPathEnvoy && tc.body != "" {
				r.Body = http.NoBody
				r = httptest.NewRequest(http.MethodPost, r.RequestURI, strings.NewReader(tc.body))
				for k, v := range forwardRequest(tc.endpoint, original{method: "POST", target: "/mcp", headers: auth}).Header {
					r.Header[k] = v
				}
				r.Host = "mcp.example.com"
			}
			a := serveForward(s, r)
			if a.status != tc.status || !strings.Contains(a.header.Get("Www-Authenticate")+a.body, tc.want) {
				t.Fatalf("got %d %v %s", a.status, a.header, a.body)
			}
			if tc.status == 200 && a.header.Get("X-Mcp-Auth-Tool") != "search" {
				t.Fatalf("tool header %q", a.header.Get("X-Mcp-Auth-Tool"))
			}
		})
	}
	t.Run("envoy: partial-body header", func(t *testing.T) {
		r := forwardRequest(ForwardPathEnvoy, original{method: "POST", target: "/mcp", body: call("search"),
			headers: append(auth, [2]string{"X-Envoy-Auth-Partial-Body", "true"})})
		if a := serveForward(s, r); a.status != 400 {
			t.Fatalf("got %d", a.status)
		}
	})
}

func TestForwardNonUTF8Header(t *testing.T) {
	s := newForwardServer(t, nil)
	for _, ep := range endpoints {
		a := serveForward(s, forwardRequest(ep, original{method: "GET", target: "/mcp", headers: [][2]string{
			{"Authorization", "Bearer good"}, {"X-Note", "caf\xe9"},
		}}))
		if a.status != 400 || !strings.Contains(a.body, "UTF-8") {
			t.Errorf("%s: %d %s", ep, a.status, a.body)
		}
	}
}

// checkFromOriginal is the CheckRequest Envoy would send over gRPC for o,
// with encode_raw_headers (one entry per header line).
func checkFromOriginal(o original) *authv3.CheckRequest {
	hm := []*corev3.HeaderValue{
		{Key: ":authority", RawValue: []byte("mcp.example.com")}, {Key: ":path", RawValue: []byte(o.target)},
		{Key: ":method", RawValue: []byte(o.method)}, {Key: ":scheme", RawValue: []byte("https")},
	}
	for _, h := range o.headers {
		hm = append(hm, &corev3.HeaderValue{Key: strings.ToLower(h[0]), RawValue: []byte(h[1])})
	}
	req := &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{
		Http: &authv3.AttributeContext_HttpRequest{Method: o.method, Host: "mcp.example.com", Path: o.target, Scheme: "https",
			HeaderMap: &corev3.HeaderMap{Headers: hm}},
	}}}
	if o.body != "" {
		req.Attributes.Request.Http.RawBody = []byte(o.body)
	}
	return req
}

// sameDecision compares a forward-auth answer with the gRPC decision for
// the same original request: status, challenge, body, Retry-After, CORS,
// and on allow every identity header.
func sameDecision(t *testing.T, s *Server, ep string, o original) {
	t.Helper()
	d := decide(t, s, checkFromOriginal(o))
	a := serveForward(s, forwardRequest(ep, o))
	if d.grpc == codes.OK {
		if a.status != 200 {
			t.Fatalf("%s %+v: gRPC allows, forward %d %s", ep, o, a.status, a.body)
		}
		set := map[string]string{}
		for _, h := range d.ok.GetHeaders() {
			set[h.GetHeader().GetKey()] = h.GetHeader().GetValue()
		}
		for _, n := range s.headers.all() {
			if a.header.Get(n) != set[n] {
				t.Fatalf("%s %+v: %s = %q, gRPC %q", ep, o, n, a.header.Get(n), set[n])
			}
		}
		return
	}
	if d.http == 0 { // an error: only UNAVAILABLE may be one
		if a.status != 503 {
			t.Fatalf("%s %+v: gRPC error %v, forward %d", ep, o, d.grpc, a.status)
		}
		return
	}
	if a.status != d.http || a.body != d.body {
		t.Fatalf("%s %+v: forward %d %s, gRPC %d %s", ep, o, a.status, a.body, d.http, d.body)
	}
	for _, k := range []string{"www-authenticate", "retry-after", "content-type", "cache-control", "access-control-allow-origin", "vary", "access-control-expose-headers"} {
		if a.header.Get(k) != d.headers[k] {
			t.Fatalf("%s %+v: %s forward %q, gRPC %q", ep, o, k, a.header.Get(k), d.headers[k])
		}
	}
}

// TestForwardMatchesCheck: one decision, two front ends.
func TestForwardMatchesCheck(t *testing.T) {
	s := newForwardServer(t, func(_ *Config, r *Resource) {
		r.AllowedOrigins = []string{"https://app.example"}
		r.Operations = []Operation{{Method: "tools/call", Scopes: []string{"mcp:write"}}}
		r.UnreadableBodyRouteScopes = true
	})
	var cases []original
	for _, tok := range []string{"", "Bearer good", "Bearer readonly", "Bearer noclient", "Bearer expired", "Bearer quoted", "Bearer down",
		"Bearer weird-error", "bearer good", "Bearer", "Bearer a b", "Basic dTpw", "Bearer good,Bearer good"} {
		for _, target := range []string{"/mcp", "/mcp/", "/mcp?access_token=x", "/admin", "/other", "/mcp/../admin", "/mcp%2fx", "/MCP", "/mcp;x"} {
			var hs [][2]string
			if tok != "" {
				hs = append(hs, [2]string{"Authorization", tok})
			}
			cases = append(cases, original{method: "GET", target: target, headers: hs})
		}
	}
	for _, extra := range [][][2]string{
		{{"Origin", "https://app.example"}},
		{{"Origin", "https://evil.example"}},
		{{"Origin", "https://app.example"}, {"Access-Control-Request-Method", "POST"}},
		{{"Mcp-Session-Id", "s1"}},
		{{"X-Mcp-Auth-Subject", "spoofed"}},
		{{"Authorization", "Bearer good"}, {"Authorization", "Bearer good"}},
	} {
		cases = append(cases, original{method: "OPTIONS", target: "/mcp", headers: extra},
			original{method: "GET", target: "/mcp", headers: append([][2]string{{"Authorization", "Bearer good"}}, extra...)})
	}
	for _, ep := range endpoints {
		for _, o := range cases {
			if ep != ForwardPathEnvoy && unresolvedTarget(o.target) {
				refusedTarget(t, s, ep, o) // the proxy passes it on unresolved
				continue
			}
			sameDecision(t, s, ep, o)
		}
	}
	// With a body, only /envoy sees what gRPC sees.
	for _, body := range []string{
		`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x"}}`,
		`{"jsonrpc":"2.0","id":1,"method":"tools/list"}`,
		`{"jsonrpc":"2.0","id":1,"method":"a","method":"b"}`,
		`not json`,
	} {
		for _, tok := range []string{"Bearer good", "Bearer readonly"} {
			sameDecision(t, s, ForwardPathEnvoy, original{method: "POST", target: "/mcp", body: body, headers: [][2]string{{"Authorization", tok}}})
		}
	}
}

// FuzzForwardTarget holds the forward-auth reading of the original request
// (X-Original-URI / X-Forwarded-Uri / the /envoy path, and the method) to
// the gRPC one: a target it accepts gets exactly the Check decision, one it
// refuses gets 400 and never an allow.
func FuzzForwardTarget(f *testing.F) {
	for _, seed := range [][3]string{
		{"GET", "/mcp", "Bearer good"}, {"POST", "/mcp?x=1&access_token=y", "Bearer good"}, {"GET", "/admin", "Bearer good"},
		{"GET", "/mcp/../admin", "Bearer good"}, {"GET", "//mcp", "Bearer good"}, {"GET", "/mcp%2F..%2Fadmin", "Bearer good"},
		{"GET", "http://mcp.example.com/mcp", "Bearer good"}, {"GET", "mcp", ""}, {"GET", "/mcp#frag", "Bearer good"},
		{"DELETE", "/mcp;x=1", "Bearer good"}, {"GET /admin", "/mcp", "Bearer good"}, {"get", "/%6Dcp", "bearer good"},
		{"GET", "/mcp\t", "Bearer good"}, {"GET", "/m\xc3\xa9", "Bearer good"}, {"OPTIONS", "*", ""}, {"GET", "/mcp?", "Bearer down"},
	} {
		f.Add(seed[0], seed[1], seed[2])
	}
	s := newForwardServer(f, nil)
	f.Fuzz(func(t *testing.T, method, target, authorization string) {
		if !headerSafe(method) || !headerSafe(target) || !headerSafe(authorization) {
			t.Skip("not a value an HTTP server would hand over")
		}
		var hs [][2]string
		if authorization != "" {
			hs = append(hs, [2]string{"Authorization", authorization})
		}
		o := original{method: method, target: target, headers: hs}
		for _, ep := range []string{ForwardPathNginx, ForwardPathForwarded} {
			if !validTarget(target) || !validMethod(method) || unresolvedTarget(target) {
				refusedTarget(t, s, ep, o)
				continue
			}
			sameDecision(t, s, ep, o)
		}
	})
}

// refusedTarget: a refused original request gets 400 invalid_request,
// never an allow.
func refusedTarget(t *testing.T, s *Server, ep string, o original) {
	t.Helper()
	a := serveForward(s, forwardRequest(ep, o))
	if a.status != 400 || a.header.Get("X-Mcp-Auth-Subject") != "" || !strings.Contains(a.body, `"invalid_request"`) {
		t.Fatalf("%s refused target %q method %q: %d %s", ep, o.target, o.method, a.status, a.body)
	}
}

// TestForwardUnresolvedTarget: nginx and Caddy pass the target on as the
// client sent it, so a target whose path mcp-authz would judge only after
// resolving dot segments or merging slashes is refused on /nginx and
// /forwarded (an upstream that does not resolve it would serve
// "/admin/../mcp" as /admin), and judged as over gRPC on /envoy (Envoy
// normalizes first).
func TestForwardUnresolvedTarget(t *testing.T) {
	s := newForwardServer(t, nil)
	for target, unresolved := range map[string]bool{
		"/mcp": false, "/": false, "/mcp/": false, "/mcp?x=/../a//b": false, "/mcp.": false, "/mcp/...": false,
		"/mcp/.x": false, "/mcp/%2e%2e%2e": false, "/mcp/%2ex": false, "/mcp?x": false,
		"//mcp": true, "/mcp//x": true, "/./mcp": true, "/admin/../mcp": true, "/mcp/..": true, "/mcp/.": true,
		"/admin/%2e%2E/mcp": true, "/.%2e/mcp": true, "/mcp#x": true, "/mcp?a#b": true, "/mcp/./": true, "/.?x": true,
	} {
		if got := unresolvedTarget(target); got != unresolved {
			t.Errorf("unresolvedTarget(%q) = %v", target, got)
		}
		o := original{method: "GET", target: target, headers: [][2]string{{"Authorization", "Bearer good"}}}
		for _, ep := range endpoints {
			if unresolved && ep != ForwardPathEnvoy {
				refusedTarget(t, s, ep, o)
			}
		}
	}
}

// headerSafe: what net/http accepts in a header value (and so in a request
// line's parts that proxies copy into one).
func headerSafe(v string) bool {
	for i := 0; i < len(v); i++ {
		if c := v[i]; (c < 0x20 && c != '\t') || c == 0x7f {
			return false
		}
	}
	return true
}
