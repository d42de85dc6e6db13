package envoyfront

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// fakeAuthz is a Check server on loopback that records requests and answers
// with decide.
type fakeAuthz struct {
	authv3.UnimplementedAuthorizationServer
	mu     sync.Mutex
	seen   []*authv3.CheckRequest
	decide func(context.Context, *authv3.CheckRequest) (*authv3.CheckResponse, error)
}

func (f *fakeAuthz) Check(ctx context.Context, r *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	f.mu.Lock()
	f.seen = append(f.seen, r)
	f.mu.Unlock()
	return f.decide(ctx, r)
}

func (f *fakeAuthz) requests() []*authv3.CheckRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]*authv3.CheckRequest(nil), f.seen...)
}

func allow(ok *authv3.OkHttpResponse) func(context.Context, *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	return func(context.Context, *authv3.CheckRequest) (*authv3.CheckResponse, error) {
		return &authv3.CheckResponse{
			Status:       &rpcstatus.Status{Code: int32(codes.OK)},
			HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: ok},
		}, nil
	}
}

// seenUpstream is what the upstream received.
type seenUpstream struct {
	header http.Header
	host   string
	uri    string
	body   string
}

type stand struct {
	authz    *fakeAuthz
	front    *httptest.Server
	mu       sync.Mutex
	upstream []seenUpstream
	exchange []Exchange
}

func (s *stand) lastUpstream(t *testing.T) seenUpstream {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.upstream) == 0 {
		t.Fatal("nothing reached the upstream")
	}
	return s.upstream[len(s.upstream)-1]
}

func (s *stand) upstreamCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.upstream)
}

// newStand starts the fake service, an upstream that records what it gets
// (answering with x-upstream: yes) and a Front with routes /open (no check)
// and / (checked, context extension mcp_resource=tools).
func newStand(t *testing.T, decide func(context.Context, *authv3.CheckRequest) (*authv3.CheckResponse, error), mod func(*Config)) *stand {
	t.Helper()
	s := &stand{authz: &fakeAuthz{decide: decide}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	authv3.RegisterAuthorizationServer(gs, s.authz)
	go func() { _ = gs.Serve(ln) }()
	t.Cleanup(gs.Stop)
	conn, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })

	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		s.mu.Lock()
		s.upstream = append(s.upstream, seenUpstream{header: r.Header.Clone(), host: r.Host, uri: r.RequestURI, body: string(b)})
		s.mu.Unlock()
		w.Header().Set("X-Upstream", "yes")
		_, _ = io.WriteString(w, "upstream")
	}))
	t.Cleanup(up.Close)

	cfg := Config{
		Client:  authv3.NewAuthorizationClient(conn),
		Timeout: 5 * time.Second, // generous: the machine may be loaded
		Routes: []Route{
			{Prefix: "/open", Upstream: up.URL, DisableAuthz: true},
			{Prefix: "/", Upstream: up.URL, ContextExtensions: map[string]string{"mcp_resource": "tools"}},
		},
		Observe: func(ex Exchange) { s.mu.Lock(); s.exchange = append(s.exchange, ex); s.mu.Unlock() },
	}
	if mod != nil {
		mod(&cfg)
	}
	f, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	s.front = httptest.NewServer(f)
	t.Cleanup(s.front.Close)
	return s
}

func do(t *testing.T, req *http.Request) (*http.Response, string) {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(b)
}

func newRequest(t *testing.T, method, url string, body io.Reader) *http.Request {
	t.Helper()
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	return req
}

func TestCheckRequestLikeEnvoy(t *testing.T) {
	s := newStand(t, allow(&authv3.OkHttpResponse{}), nil)
	req := newRequest(t, "POST", s.front.URL+"/mcp/x?a=1&b=%2F", strings.NewReader(`{"x":1}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header["X-Multi"] = []string{"one", "two"}
	req.Header.Add("Accept", "application/json")
	req.Header.Add("Accept", "text/event-stream")
	req.Header.Set("X-Envoy-Auth-Partial-Body", "false") // a client's copy never reaches the check
	req.Header.Set("Connection", "keep-alive")
	req.Header.Set("X-Forwarded-For", "203.0.113.9")
	if resp, body := do(t, req); resp.StatusCode != 200 || body != "upstream" {
		t.Fatalf("got %d %q", resp.StatusCode, body)
	}
	reqs := s.authz.requests()
	if len(reqs) != 1 {
		t.Fatalf("%d checks", len(reqs))
	}
	hr := reqs[0].GetAttributes().GetRequest().GetHttp()
	host := strings.TrimPrefix(s.front.URL, "http://")
	for name, want := range map[string]string{
		":authority":        host,
		":path":             "/mcp/x?a=1&b=%2F",
		":method":           "POST",
		":scheme":           "http",
		"content-type":      "application/json",
		"content-length":    "7",
		"x-multi":           "one,two",
		"accept":            "application/json,text/event-stream",
		"x-forwarded-proto": "http",
		"x-forwarded-for":   "203.0.113.9, 127.0.0.1",
	} {
		if got := hr.GetHeaders()[name]; got != want {
			t.Errorf("header %s = %q, want %q", name, got, want)
		}
	}
	for _, absent := range []string{"host", "Host", "X-Multi", PartialBodyHeader, "connection"} {
		if v, ok := hr.GetHeaders()[absent]; ok {
			t.Errorf("header %s present: %q", absent, v)
		}
	}
	if len(hr.GetHeaders()["x-request-id"]) != 36 {
		t.Errorf("x-request-id %q", hr.GetHeaders()["x-request-id"])
	}
	if hr.GetMethod() != "POST" || hr.GetPath() != "/mcp/x?a=1&b=%2F" || hr.GetHost() != host || hr.GetScheme() != "http" || hr.GetProtocol() != "HTTP/1.1" || hr.GetId() == "" {
		t.Errorf("http attributes %v", hr)
	}
	if hr.GetBody() != "" || hr.GetRawBody() != nil || hr.GetSize() != 0 {
		t.Errorf("body sent without with_request_body: %q %d", hr.GetBody(), hr.GetSize())
	}
	attrs := reqs[0].GetAttributes()
	if attrs.GetContextExtensions()["mcp_resource"] != "tools" {
		t.Errorf("context extensions %v", attrs.GetContextExtensions())
	}
	if attrs.GetSource().GetAddress().GetSocketAddress().GetAddress() != "127.0.0.1" || attrs.GetDestination().GetAddress().GetSocketAddress().GetPortValue() == 0 || attrs.GetRequest().GetTime() == nil {
		t.Errorf("peers/time %v", attrs)
	}
	up := s.lastUpstream(t)
	if up.host != host || up.uri != "/mcp/x?a=1&b=%2F" || up.body != `{"x":1}` {
		t.Errorf("upstream got host %q uri %q body %q", up.host, up.uri, up.body)
	}
	if up.header.Get("X-Request-Id") != hr.GetHeaders()["x-request-id"] || up.header.Get("X-Forwarded-For") != "203.0.113.9, 127.0.0.1" {
		t.Errorf("upstream headers %v", up.header)
	}
}

func TestDisabledRouteIsNotChecked(t *testing.T) {
	s := newStand(t, func(context.Context, *authv3.CheckRequest) (*authv3.CheckResponse, error) {
		t.Error("checked a disabled route")
		return nil, status.Error(codes.Internal, "no")
	}, nil)
	if resp, body := do(t, newRequest(t, "GET", s.front.URL+"/open/doc", nil)); resp.StatusCode != 200 || body != "upstream" {
		t.Fatalf("got %d %q", resp.StatusCode, body)
	}
}

func TestNoRouteIs404(t *testing.T) {
	s := newStand(t, allow(&authv3.OkHttpResponse{}), func(c *Config) { c.Routes = c.Routes[:1] })
	if resp, _ := do(t, newRequest(t, "GET", s.front.URL+"/mcp", nil)); resp.StatusCode != 404 {
		t.Fatalf("got %d", resp.StatusCode)
	}
}

func TestRequestBody(t *testing.T) {
	for _, tc := range []struct {
		name        string
		method      string
		body        string
		settings    BodySettings
		wantStatus  int
		wantBody    string // sent to the check
		wantPartial string // "" = header absent
		wantChecks  int
	}{
		{"whole", "POST", `{"id":1}`, BodySettings{MaxRequestBytes: 64}, 200, `{"id":1}`, "false", 1},
		{"exactly max", "POST", "12345678", BodySettings{MaxRequestBytes: 8}, 200, "12345678", "false", 1},
		{"cut, partial allowed", "POST", "123456789", BodySettings{MaxRequestBytes: 8, AllowPartialMessage: true}, 200, "12345678", "true", 1},
		{"too large", "POST", "123456789", BodySettings{MaxRequestBytes: 8}, 413, "", "", 0},
		{"as bytes", "POST", "\xff\xfe", BodySettings{MaxRequestBytes: 8, PackAsBytes: true}, 200, "\xff\xfe", "false", 1},
		{"no body", "GET", "", BodySettings{MaxRequestBytes: 8}, 200, "", "", 1},
		{"empty POST", "POST", "", BodySettings{MaxRequestBytes: 8}, 200, "", "", 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			settings := tc.settings
			s := newStand(t, allow(&authv3.OkHttpResponse{}), func(c *Config) { c.WithRequestBody = &settings })
			var body io.Reader
			if tc.body != "" {
				body = strings.NewReader(tc.body)
			}
			resp, _ := do(t, newRequest(t, tc.method, s.front.URL+"/mcp", body))
			if resp.StatusCode != tc.wantStatus {
				t.Fatalf("status %d", resp.StatusCode)
			}
			reqs := s.authz.requests()
			if len(reqs) != tc.wantChecks {
				t.Fatalf("%d checks", len(reqs))
			}
			if tc.wantChecks == 0 {
				if s.upstreamCount() != 0 {
					t.Fatal("reached the upstream")
				}
				return
			}
			hr := reqs[0].GetAttributes().GetRequest().GetHttp()
			got := hr.GetBody()
			if settings.PackAsBytes {
				got = string(hr.GetRawBody())
				if hr.GetBody() != "" {
					t.Error("body and raw_body both set")
				}
			}
			if got != tc.wantBody || hr.GetSize() != int64(len(tc.wantBody)) {
				t.Errorf("check body %q size %d", got, hr.GetSize())
			}
			partial, has := hr.GetHeaders()[PartialBodyHeader]
			if (tc.wantPartial == "") == has || partial != tc.wantPartial {
				t.Errorf("partial header %q (present %v)", partial, has)
			}
			if up := s.lastUpstream(t); up.body != tc.body {
				t.Errorf("upstream body %q, want the whole %q", up.body, tc.body)
			}
		})
	}
}

// TestRequestBodyStreamsWhileResponding: the request body keeps flowing to
// the upstream after the upstream's response has begun, as through Envoy.
// Go's HTTP/1 server would otherwise read and close the rest of the body as
// the response's header goes out, racing the proxy's Transport, which still
// reads it after the last byte: that cut the SSE stream of an MCP SDK POST
// (e2e TestMCPSDKStepUp, 2 in 30 full-suite runs). Here the client sends the
// rest of its body only once it has the response's header, which the front
// then can only deliver in full duplex.
func TestRequestBodyStreamsWhileResponding(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// The upstream's own server needs the same, to read after answering.
		if err := http.NewResponseController(w).EnableFullDuplex(); err != nil {
			t.Error(err)
		}
		w.WriteHeader(http.StatusOK)
		w.(http.Flusher).Flush()
		n, err := io.Copy(io.Discard, r.Body)
		fmt.Fprintf(w, "upstream got %d bytes, error %v", n, err)
	}))
	defer up.Close()
	s := newStand(t, allow(&authv3.OkHttpResponse{}), func(c *Config) {
		c.Routes = []Route{
			{Prefix: "/open", Upstream: up.URL, DisableAuthz: true},
			{Prefix: "/", Upstream: up.URL},
		}
		c.WithRequestBody = &BodySettings{MaxRequestBytes: 8192, AllowPartialMessage: true}
	})
	const half = 10000 // more than MaxRequestBytes: the check reads only part
	for _, path := range []string{"/mcp", "/open/mcp"} {
		t.Run(path, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			pr, pw := io.Pipe()
			defer pr.Close()
			answered := make(chan struct{})
			go func() {
				_, _ = pw.Write([]byte(strings.Repeat("a", half)))
				select {
				case <-answered:
					_, _ = pw.Write([]byte(strings.Repeat("b", half)))
					pw.Close()
				case <-ctx.Done():
					pw.CloseWithError(ctx.Err())
				}
			}()
			req, err := http.NewRequestWithContext(ctx, "POST", s.front.URL+path, pr)
			if err != nil {
				t.Fatal(err)
			}
			req.ContentLength = 2 * half
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatalf("no response while the body was still coming: %v", err)
			}
			defer resp.Body.Close()
			close(answered)
			b, err := io.ReadAll(resp.Body)
			if want := fmt.Sprintf("upstream got %d bytes, error <nil>", 2*half); err != nil || string(b) != want {
				t.Fatalf("response %q (%v), want %q", b, err, want)
			}
		})
	}
}

// TestProxyErrorsReachErrorLog: a response cut while being relayed is logged
// through ErrorLog, where the e2e tests look, not on the standard logger.
func TestProxyErrorsReachErrorLog(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		_, _ = io.WriteString(w, "data: first\n\n")
		w.(http.Flusher).Flush()
		panic(http.ErrAbortHandler) // the connection goes, mid-stream
	}))
	defer up.Close()
	var mu sync.Mutex
	var logged []string
	s := newStand(t, allow(&authv3.OkHttpResponse{}), func(c *Config) {
		c.Routes = []Route{{Prefix: "/", Upstream: up.URL}}
		c.ErrorLog = func(format string, args ...any) {
			mu.Lock()
			logged = append(logged, fmt.Sprintf(format, args...))
			mu.Unlock()
		}
	})
	resp, err := http.Get(s.front.URL + "/mcp")
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	mu.Lock()
	defer mu.Unlock()
	if !slices.ContainsFunc(logged, func(l string) bool { return strings.Contains(l, "ReverseProxy read error during body copy") }) {
		t.Fatalf("ErrorLog got %q", logged)
	}
}

func TestDenied(t *testing.T) {
	s := newStand(t, func(context.Context, *authv3.CheckRequest) (*authv3.CheckResponse, error) {
		return &authv3.CheckResponse{
			Status: &rpcstatus.Status{Code: int32(codes.Unauthenticated)},
			HttpResponse: &authv3.CheckResponse_DeniedResponse{DeniedResponse: &authv3.DeniedHttpResponse{
				Status: &typev3.HttpStatus{Code: typev3.StatusCode_Unauthorized},
				Headers: []*corev3.HeaderValueOption{
					{Header: &corev3.HeaderValue{Key: "www-authenticate", Value: `Bearer resource_metadata="x"`}, AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD},
					{Header: &corev3.HeaderValue{Key: "content-type", Value: "application/json"}},
				},
				Body: `{"error":"unauthorized"}`,
			}},
		}, nil
	}, nil)
	resp, body := do(t, newRequest(t, "POST", s.front.URL+"/mcp", strings.NewReader("{}")))
	if resp.StatusCode != 401 || resp.Header.Get("WWW-Authenticate") != `Bearer resource_metadata="x"` ||
		resp.Header.Get("Content-Type") != "application/json" || body != `{"error":"unauthorized"}` {
		t.Fatalf("got %d %v %q", resp.StatusCode, resp.Header, body)
	}
	if s.upstreamCount() != 0 {
		t.Fatal("a denied request reached the upstream")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.exchange) != 1 || s.exchange[0].Status != 401 || s.exchange[0].Response == nil {
		t.Fatalf("observed %v", s.exchange)
	}
}

func TestDeniedWithoutHTTPResponseIs403(t *testing.T) {
	s := newStand(t, func(context.Context, *authv3.CheckRequest) (*authv3.CheckResponse, error) {
		return &authv3.CheckResponse{Status: &rpcstatus.Status{Code: int32(codes.PermissionDenied)}}, nil
	}, nil)
	if resp, _ := do(t, newRequest(t, "GET", s.front.URL+"/mcp", nil)); resp.StatusCode != 403 {
		t.Fatalf("got %d", resp.StatusCode)
	}
}

func TestErrorsFailClosed(t *testing.T) {
	for _, tc := range []struct {
		name          string
		decide        func(context.Context, *authv3.CheckRequest) (*authv3.CheckResponse, error)
		statusOnError int
		want          int
		wantBody      string
	}{
		{"grpc UNAVAILABLE", func(context.Context, *authv3.CheckRequest) (*authv3.CheckResponse, error) {
			return nil, status.Error(codes.Unavailable, "down")
		}, 0, 503, ""},
		{"grpc error, configured status", func(context.Context, *authv3.CheckRequest) (*authv3.CheckResponse, error) {
			return nil, status.Error(codes.Internal, "bug")
		}, 403, 403, ""},
		{"timeout", func(ctx context.Context, _ *authv3.CheckRequest) (*authv3.CheckResponse, error) {
			<-ctx.Done() // the deadline reached the service
			return nil, ctx.Err()
		}, 0, 503, ""},
		{"error_response without status", func(context.Context, *authv3.CheckRequest) (*authv3.CheckResponse, error) {
			return &authv3.CheckResponse{
				Status:       &rpcstatus.Status{Code: int32(codes.Unavailable)},
				HttpResponse: &authv3.CheckResponse_ErrorResponse{ErrorResponse: &authv3.DeniedHttpResponse{Body: "later"}},
			}, nil
		}, 0, 503, "later"},
		{"error_response with status", func(context.Context, *authv3.CheckRequest) (*authv3.CheckResponse, error) {
			return &authv3.CheckResponse{
				Status:       &rpcstatus.Status{Code: int32(codes.Unavailable)},
				HttpResponse: &authv3.CheckResponse_ErrorResponse{ErrorResponse: &authv3.DeniedHttpResponse{Status: &typev3.HttpStatus{Code: typev3.StatusCode_BadGateway}}},
			}, nil
		}, 0, 502, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newStand(t, tc.decide, func(c *Config) {
				c.StatusOnError = tc.statusOnError
				if tc.name == "timeout" {
					c.Timeout = 50 * time.Millisecond
				}
			})
			resp, body := do(t, newRequest(t, "GET", s.front.URL+"/mcp", nil))
			if resp.StatusCode != tc.want || body != tc.wantBody {
				t.Fatalf("got %d %q", resp.StatusCode, body)
			}
			if s.upstreamCount() != 0 {
				t.Fatal("reached the upstream")
			}
		})
	}
}

func TestOKHeaderMutations(t *testing.T) {
	hv := func(k, v string, action corev3.HeaderValueOption_HeaderAppendAction) *corev3.HeaderValueOption {
		return &corev3.HeaderValueOption{Header: &corev3.HeaderValue{Key: k, Value: v}, AppendAction: action}
	}
	legacy := func(k, v string, appendValue bool) *corev3.HeaderValueOption {
		return &corev3.HeaderValueOption{Header: &corev3.HeaderValue{Key: k, Value: v}, Append: wrapperspb.Bool(appendValue)}
	}
	s := newStand(t, allow(&authv3.OkHttpResponse{
		Headers: []*corev3.HeaderValueOption{
			hv("x-mcp-auth-subject", "alice", corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD),
			hv("x-add", "server", corev3.HeaderValueOption_APPEND_IF_EXISTS_OR_ADD),
			hv("x-if-absent", "server", corev3.HeaderValueOption_ADD_IF_ABSENT),
			hv("x-if-absent-new", "server", corev3.HeaderValueOption_ADD_IF_ABSENT),
			hv("x-if-exists", "server", corev3.HeaderValueOption_OVERWRITE_IF_EXISTS),
			hv("x-if-exists-new", "server", corev3.HeaderValueOption_OVERWRITE_IF_EXISTS),
			legacy("x-legacy-append", "server", true),
			legacy("x-legacy-set", "server", false),
			hv(":path", "/evil", corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD),
			hv("host", "evil.example", corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD),
		},
		HeadersToRemove:      []string{"authorization", "x-mcp-auth-client-id", "host", ":authority"},
		ResponseHeadersToAdd: []*corev3.HeaderValueOption{hv("x-from-authz", "1", corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD)},
	}), nil)
	req := newRequest(t, "GET", s.front.URL+"/mcp", nil)
	for k, v := range map[string]string{
		"Authorization": "Bearer secret", "X-Mcp-Auth-Subject": "spoofed", "X-Mcp-Auth-Client-Id": "spoofed",
		"X-Add": "client", "X-If-Absent": "client", "X-If-Exists": "client",
		"X-Legacy-Append": "client", "X-Legacy-Set": "client",
	} {
		req.Header.Set(k, v)
	}
	resp, _ := do(t, req)
	if resp.StatusCode != 200 || resp.Header.Get("X-From-Authz") != "1" || resp.Header.Get("X-Upstream") != "yes" {
		t.Fatalf("got %d %v", resp.StatusCode, resp.Header)
	}
	up := s.lastUpstream(t)
	for name, want := range map[string][]string{
		"Authorization":        nil,
		"X-Mcp-Auth-Client-Id": nil,
		"X-Mcp-Auth-Subject":   {"alice"},
		"X-Add":                {"client", "server"},
		"X-If-Absent":          {"client"},
		"X-If-Absent-New":      {"server"},
		"X-If-Exists":          {"server"},
		"X-If-Exists-New":      nil,
		"X-Legacy-Append":      {"client,server"},
		"X-Legacy-Set":         {"server"},
	} {
		if got := up.header.Values(name); strings.Join(got, "|") != strings.Join(want, "|") {
			t.Errorf("upstream %s = %q, want %q", name, got, want)
		}
	}
	if up.uri != "/mcp" || up.host != strings.TrimPrefix(s.front.URL, "http://") {
		t.Errorf("pseudo-header or host changed: %q %q", up.uri, up.host)
	}
}

func TestStreamsSSE(t *testing.T) {
	release := make(chan struct{})
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		_, _ = io.WriteString(w, "data: first\n\n")
		w.(http.Flusher).Flush()
		select {
		case <-release:
		case <-r.Context().Done():
		}
		_, _ = io.WriteString(w, "data: second\n\n")
	}))
	defer up.Close()
	s := newStand(t, allow(&authv3.OkHttpResponse{}), func(c *Config) { c.Routes = []Route{{Prefix: "/", Upstream: up.URL}} })
	resp, err := http.Get(s.front.URL + "/mcp")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	rd := bufio.NewReader(resp.Body)
	// The first event arrives while the upstream is still writing.
	line, err := rd.ReadString('\n')
	if err != nil || line != "data: first\n" {
		t.Fatalf("first event %q %v", line, err)
	}
	close(release)
	rest, _ := io.ReadAll(rd)
	if !strings.Contains(string(rest), "data: second") {
		t.Fatalf("rest %q", rest)
	}
}

func TestNewValidates(t *testing.T) {
	for name, cfg := range map[string]Config{
		"prefix":   {Routes: []Route{{Prefix: "mcp", Upstream: "http://127.0.0.1:1", DisableAuthz: true}}},
		"upstream": {Routes: []Route{{Prefix: "/", Upstream: "127.0.0.1:1", DisableAuthz: true}}},
		"client":   {Routes: []Route{{Prefix: "/", Upstream: "http://127.0.0.1:1"}}},
		"max body": {WithRequestBody: &BodySettings{}},
		"status":   {StatusOnError: 42},
	} {
		if _, err := New(cfg); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
