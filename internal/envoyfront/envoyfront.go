// Package envoyfront is a test stand-in for Envoy in front of an MCP server:
// an HTTP reverse proxy that, like Envoy's HTTP ext_authz filter configured
// with a gRPC service (envoy.service.auth.v3), asks an authorization service
// about every request before it reaches the upstream. Envoy itself cannot run
// where the end-to-end tests run, so this models the parts of Envoy's
// behaviour that decide what an authorization service sees and what the
// client and the upstream get back (deploy/envoy/envoy.yaml is the
// configuration it mirrors).
//
// What it models:
//
//   - Routing: path prefixes tried in order, first match wins, matched
//     against the raw path without the query (Envoy's route `prefix`); no
//     match is 404. Per route: an upstream, ext_authz `disabled`
//     (ExtAuthzPerRoute.disabled, used for the public RFC 9728 metadata), and
//     `context_extensions` (ExtAuthzPerRoute.check_settings).
//   - What the connection manager does before the filter runs, which the
//     upstream therefore sees too: it drops the connection's own headers
//     (connection, keep-alive, proxy-connection, transfer-encoding, upgrade)
//     and adds `x-request-id` when absent, `x-forwarded-proto`, and the
//     client address to `x-forwarded-for` (use_remote_address: true).
//   - The CheckRequest (check_request_utils.cc): attributes.request.http with
//     method, path (with query, as sent), host (the authority), scheme,
//     protocol, a stream id, size (body bytes buffered) and the headers map:
//     lower-cased names, the pseudo-headers `:authority`, `:path`, `:method`,
//     `:scheme`, no `host` (HTTP/1.1's Host is `:authority`), and repeated
//     headers joined with "," in arrival order. Source and destination
//     addresses, the request time, and the route's context extensions.
//   - with_request_body: the body is buffered up to max_request_bytes and
//     sent as `body` (or `raw_body` with pack_as_bytes); the map then carries
//     `x-envoy-auth-partial-body: true|false` (whether the body was cut). A
//     client's own `x-envoy-auth-partial-body` is never passed to the check.
//     A larger body without allow_partial_message is answered 413. A request
//     without a body (Content-Length 0, GET) sends neither body nor flag.
//     The upstream always receives the whole body.
//   - The Check call over a real gRPC connection with a per-call timeout
//     (grpc_service.timeout; Envoy's default 200 ms), so the service sees a
//     deadline.
//   - Decisions: OK applies ok_response.headers with Envoy's append
//     semantics (append_action APPEND_IF_EXISTS_OR_ADD adds another value,
//     OVERWRITE_IF_EXISTS_OR_ADD sets, ADD_IF_ABSENT, OVERWRITE_IF_EXISTS; the
//     deprecated `append` bool: true appends to the existing value with ",",
//     false sets), then headers_to_remove (never a pseudo-header or Host),
//     and response_headers_to_add on the upstream's response; then proxies,
//     streaming both ways (responses are flushed as they are written, so SSE
//     works, and the request body keeps flowing once the response began).
//     A non-OK status is a denial: denied_response status (403 when unset),
//     headers and body. error_response, a gRPC error or a timeout is
//     status_on_error (503 by default here, as in deploy/envoy/envoy.yaml;
//     Envoy's own default is 403), with error_response's status, headers and
//     body when given. Fail closed: failure_mode_allow is not modelled.
//
// What it does not model: HTTP/2 to clients or upstreams, TLS and peer
// certificates, path normalization (normalize_path, merge_slashes), header
// mutation rules and validation of the service's headers, query parameter
// mutations, dynamic metadata (passed to the Observe hook only), metadata
// context, retries, timeouts of the upstream route, header-count limits,
// Content-Length of chunked requests, and bodies that are not valid UTF-8
// without pack_as_bytes (Envoy sends the bytes anyway; protobuf-go refuses to
// marshal them, so the Check fails here and the request gets status_on_error).
package envoyfront

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// PartialBodyHeader is the header Envoy adds to the CheckRequest when it
// sends a body: "true" when the body was cut at max_request_bytes.
const PartialBodyHeader = "x-envoy-auth-partial-body"

// DefaultTimeout is Envoy's default grpc_service timeout for ext_authz.
const DefaultTimeout = 200 * time.Millisecond

// Route is one entry of the route table.
type Route struct {
	// Prefix must match the beginning of the request's raw path (query
	// excluded). Routes are tried in order; the first match wins.
	Prefix string
	// Upstream is the base URL (scheme and host) requests are proxied to;
	// their path and query are kept as sent. The Host header is kept too, as
	// Envoy does without host rewriting.
	Upstream string
	// DisableAuthz skips the check (ExtAuthzPerRoute.disabled).
	DisableAuthz bool
	// ContextExtensions are sent as attributes.context_extensions.
	ContextExtensions map[string]string
}

// BodySettings is the filter's with_request_body.
type BodySettings struct {
	// MaxRequestBytes bounds the body sent to the service. Required (> 0).
	MaxRequestBytes uint32
	// AllowPartialMessage sends the first MaxRequestBytes of a larger body
	// (flagged by PartialBodyHeader) instead of answering 413.
	AllowPartialMessage bool
	// PackAsBytes sends the body as raw_body instead of body.
	PackAsBytes bool
}

// Exchange is one request's check, for the Observe hook.
type Exchange struct {
	Request  *authv3.CheckRequest
	Response *authv3.CheckResponse // nil on a gRPC error
	Err      error                 // the gRPC error, if any
	// Status is what the filter answered the client itself: the denial's or
	// the error's status, 413 for a body too large, or 0 when the request
	// went on to the upstream.
	Status int
}

// Config configures a Front. Its zero values are Envoy's defaults, except
// StatusOnError.
type Config struct {
	// Client is the gRPC client of the authorization service. Required
	// unless every route disables the check.
	Client authv3.AuthorizationClient
	// Routes is the route table, tried in order.
	Routes []Route
	// Timeout bounds each Check (grpc_service.timeout). Zero: DefaultTimeout.
	Timeout time.Duration
	// StatusOnError answers errors and timeouts of the Check. Zero: 503.
	StatusOnError int
	// WithRequestBody, when set, buffers the body and sends it with the check.
	WithRequestBody *BodySettings
	// Observe, when set, is called after each check, before the client is
	// answered. It must be safe for concurrent use.
	Observe func(Exchange)
	// ErrorLog receives proxy errors, the reverse proxy's own (a response
	// body cut while being relayed) included. Nil: discarded.
	ErrorLog func(format string, args ...any)
}

// Front is the proxy. It is an http.Handler.
type Front struct {
	cfg    Config
	routes []route
	ids    atomic.Uint64
}

type route struct {
	Route
	proxy *httputil.ReverseProxy
}

// New validates cfg and builds a Front.
func New(cfg Config) (*Front, error) {
	if cfg.Timeout == 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.StatusOnError == 0 {
		cfg.StatusOnError = http.StatusServiceUnavailable
	}
	if cfg.Timeout < 0 || cfg.StatusOnError < 200 || cfg.StatusOnError > 599 {
		return nil, fmt.Errorf("envoyfront: bad timeout %v or status_on_error %d", cfg.Timeout, cfg.StatusOnError)
	}
	if b := cfg.WithRequestBody; b != nil && b.MaxRequestBytes == 0 {
		return nil, errors.New("envoyfront: with_request_body needs max_request_bytes > 0")
	}
	f := &Front{cfg: cfg}
	for _, r := range cfg.Routes {
		if !strings.HasPrefix(r.Prefix, "/") {
			return nil, fmt.Errorf("envoyfront: route prefix %q must start with /", r.Prefix)
		}
		up, err := url.Parse(r.Upstream)
		if err != nil || (up.Scheme != "http" && up.Scheme != "https") || up.Host == "" {
			return nil, fmt.Errorf("envoyfront: route %s: bad upstream %q", r.Prefix, r.Upstream)
		}
		if !r.DisableAuthz && cfg.Client == nil {
			return nil, fmt.Errorf("envoyfront: route %s checks requests but no Client is set", r.Prefix)
		}
		f.routes = append(f.routes, route{Route: r, proxy: f.newProxy(up)})
	}
	return f, nil
}

// okKey carries the check's response-header mutations to ModifyResponse.
type okKey struct{}

func (f *Front) newProxy(up *url.URL) *httputil.ReverseProxy {
	return &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.Out.URL.Scheme = up.Scheme
			pr.Out.URL.Host = up.Host
			pr.Out.Host = pr.In.Host
			// Rewrite drops the forwarding headers ServeHTTP set on In
			// (they are hop-by-hop for ReverseProxy); restore them.
			for _, h := range []string{"X-Forwarded-For", "X-Forwarded-Proto", "X-Forwarded-Host"} {
				if v, ok := pr.In.Header[h]; ok {
					pr.Out.Header[h] = v
				}
			}
		},
		FlushInterval: -1, // stream: SSE and long-lived responses
		ModifyResponse: func(resp *http.Response) error {
			if ok, _ := resp.Request.Context().Value(okKey{}).(*authv3.OkHttpResponse); ok != nil {
				applyHeaders(resp.Header, ok.GetResponseHeadersToAdd())
			}
			if f.cfg.ErrorLog != nil {
				resp.Body = &tracedBody{ReadCloser: resp.Body, f: f, start: time.Now(),
					what: fmt.Sprintf("%s %s %d", resp.Request.Method, resp.Request.URL.Path, resp.StatusCode)}
			}
			return nil
		},
		// Without it the proxy's own errors, such as a response body cut
		// while being relayed, go to the process's standard logger, away
		// from the trail a failing test prints.
		ErrorLog: log.New(logWriter{f}, "", 0),
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			f.logf("envoyfront: upstream %s %s: %v", r.Method, r.URL.Path, err)
			// Envoy answers an unreachable upstream with 503.
			w.WriteHeader(http.StatusServiceUnavailable)
		},
	}
}

func (f *Front) logf(format string, args ...any) {
	if f.cfg.ErrorLog != nil {
		f.cfg.ErrorLog(format, args...)
	}
}

// logWriter hands the reverse proxy's log lines to ErrorLog.
type logWriter struct{ f *Front }

func (w logWriter) Write(p []byte) (int, error) {
	w.f.logf("envoyfront: %s", bytes.TrimSuffix(p, []byte("\n")))
	return len(p), nil
}

// proxy relays r to the route's upstream. The request body streams to the
// upstream while the response streams back, as through Envoy. Go's HTTP/1
// server instead, by default, reads what is left of the request body and
// closes it as soon as the response's header goes out (chunkWriter.writeHeader
// in net/http/server.go), while the Transport may still be sending that body:
// after the last byte it reads the body once more to check for extra bytes
// (transferWriter.writeBody in transfer.go). If the upstream answers in that
// gap, the read fails on the closed body, the Transport's writeLoop closes the
// upstream connection in the middle of the response, and the client's stream
// is cut: an MCP client waiting on a POST's SSE stream never gets its result.
// Full duplex leaves the body to the Transport.
func (f *Front) proxy(rt *route, w http.ResponseWriter, r *http.Request) {
	// Only a ResponseWriter without an HTTP/1 server behind it (a test's
	// recorder) refuses, and it has no such race either.
	_ = http.NewResponseController(w).EnableFullDuplex()
	rt.proxy.ServeHTTP(w, r)
}

func (f *Front) match(rawPath string) *route {
	for i := range f.routes {
		if strings.HasPrefix(rawPath, f.routes[i].Prefix) {
			return &f.routes[i]
		}
	}
	return nil
}

// ServeHTTP routes, checks and proxies one request.
func (f *Front) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rawPath, _, _ := strings.Cut(r.RequestURI, "?")
	rt := f.match(rawPath)
	if rt == nil {
		http.NotFound(w, r)
		return
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	// What the connection manager does before any filter: drop the
	// connection's own headers, add its request id and forwarding headers.
	for _, h := range []string{"Connection", "Keep-Alive", "Proxy-Connection", "Transfer-Encoding", "Upgrade"} {
		r.Header.Del(h)
	}
	if r.Header.Get("X-Request-Id") == "" {
		r.Header.Set("X-Request-Id", newRequestID())
	}
	r.Header.Set("X-Forwarded-Proto", scheme)
	if ip, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		if prior := r.Header.Values("X-Forwarded-For"); len(prior) > 0 {
			ip = strings.Join(prior, ", ") + ", " + ip
		}
		r.Header.Set("X-Forwarded-For", ip)
	}
	if rt.DisableAuthz {
		f.proxy(rt, w, r)
		return
	}

	var body []byte
	var partial, hasBody bool
	if b := f.cfg.WithRequestBody; b != nil && r.Body != nil && r.Body != http.NoBody && r.ContentLength != 0 {
		buf, err := io.ReadAll(io.LimitReader(r.Body, int64(b.MaxRequestBytes)+1))
		if err != nil {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		// The upstream gets every byte: what was read, then the rest.
		r.Body = struct {
			io.Reader
			io.Closer
		}{io.MultiReader(bytes.NewReader(buf), r.Body), r.Body}
		if len(buf) > int(b.MaxRequestBytes) {
			if !b.AllowPartialMessage {
				f.observe(Exchange{Status: http.StatusRequestEntityTooLarge})
				w.WriteHeader(http.StatusRequestEntityTooLarge)
				return
			}
			partial = true
			buf = buf[:b.MaxRequestBytes]
		}
		body, hasBody = buf, len(buf) > 0
	}

	req := f.checkRequest(r, rt, scheme, body, hasBody, partial)
	ctx, cancel := context.WithTimeout(r.Context(), f.cfg.Timeout)
	resp, err := f.cfg.Client.Check(ctx, req)
	cancel()

	ex := Exchange{Request: req, Response: resp, Err: err}
	switch {
	case err != nil:
		ex.Status = f.cfg.StatusOnError
		f.observe(ex)
		w.WriteHeader(ex.Status)
		return
	case resp.GetErrorResponse() != nil:
		e := resp.GetErrorResponse()
		ex.Status = int(e.GetStatus().GetCode())
		if ex.Status == 0 {
			ex.Status = f.cfg.StatusOnError
		}
		f.observe(ex)
		applyHeaders(w.Header(), e.GetHeaders())
		w.WriteHeader(ex.Status)
		_, _ = io.WriteString(w, e.GetBody())
		return
	case codes.Code(resp.GetStatus().GetCode()) != codes.OK:
		d := resp.GetDeniedResponse()
		ex.Status = int(d.GetStatus().GetCode())
		if ex.Status == 0 {
			ex.Status = http.StatusForbidden
		}
		f.observe(ex)
		applyHeaders(w.Header(), d.GetHeaders())
		w.WriteHeader(ex.Status)
		_, _ = io.WriteString(w, d.GetBody())
		return
	}
	f.observe(ex)
	ok := resp.GetOkResponse()
	applyHeaders(r.Header, ok.GetHeaders())
	for _, name := range ok.GetHeadersToRemove() {
		if !protectedHeader(name) {
			r.Header.Del(name)
		}
	}
	f.proxy(rt, w, r.WithContext(context.WithValue(r.Context(), okKey{}, ok)))
}

func (f *Front) observe(ex Exchange) {
	if f.cfg.Observe != nil {
		f.cfg.Observe(ex)
	}
}

// checkRequest builds the CheckRequest as check_request_utils.cc does.
func (f *Front) checkRequest(r *http.Request, rt *route, scheme string, body []byte, hasBody, partial bool) *authv3.CheckRequest {
	headers := map[string]string{}
	add := func(name, value string) {
		if prior, ok := headers[name]; ok {
			headers[name] = prior + "," + value
			return
		}
		headers[name] = value
	}
	add(":authority", r.Host)
	add(":path", r.RequestURI)
	add(":method", r.Method)
	add(":scheme", scheme)
	for name, values := range r.Header {
		name = strings.ToLower(name)
		if name == PartialBodyHeader || name == "host" {
			continue
		}
		for _, v := range values {
			add(name, v)
		}
	}
	if r.ContentLength > 0 {
		headers["content-length"] = strconv.FormatInt(r.ContentLength, 10)
	}
	hr := &authv3.AttributeContext_HttpRequest{
		Id:       strconv.FormatUint(f.ids.Add(1), 10),
		Method:   r.Method,
		Headers:  headers,
		Path:     r.RequestURI,
		Host:     r.Host,
		Scheme:   scheme,
		Protocol: r.Proto,
		Size:     int64(len(body)),
	}
	if hasBody {
		if f.cfg.WithRequestBody.PackAsBytes {
			hr.RawBody = body
		} else {
			hr.Body = string(body)
		}
		headers[PartialBodyHeader] = strconv.FormatBool(partial)
	}
	attrs := &authv3.AttributeContext{
		Source:            &authv3.AttributeContext_Peer{Address: socketAddress(r.RemoteAddr)},
		Request:           &authv3.AttributeContext_Request{Time: timestamppb.Now(), Http: hr},
		ContextExtensions: rt.ContextExtensions,
	}
	if la, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr); ok {
		attrs.Destination = &authv3.AttributeContext_Peer{Address: socketAddress(la.String())}
	}
	return &authv3.CheckRequest{Attributes: attrs}
}

func socketAddress(hostport string) *corev3.Address {
	host, port, err := net.SplitHostPort(hostport)
	if err != nil {
		return nil
	}
	p, _ := strconv.ParseUint(port, 10, 32)
	return &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
		Address: host, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: uint32(p)},
	}}}
}

// protectedHeader reports whether Envoy refuses to let the authorization
// service change or remove a header: the pseudo-headers and Host.
func protectedHeader(name string) bool {
	return strings.HasPrefix(name, ":") || strings.EqualFold(name, "host")
}

// applyHeaders applies HeaderValueOptions to h with Envoy's semantics.
func applyHeaders(h http.Header, opts []*corev3.HeaderValueOption) {
	for _, o := range opts {
		key, value := o.GetHeader().GetKey(), o.GetHeader().GetValue()
		if value == "" && len(o.GetHeader().GetRawValue()) > 0 {
			value = string(o.GetHeader().GetRawValue())
		}
		if key == "" || protectedHeader(key) {
			continue
		}
		if o.GetAppend() != nil { // the deprecated bool wins when set
			if !o.GetAppend().GetValue() {
				h.Set(key, value)
			} else if prior := h.Values(key); len(prior) > 0 {
				h.Set(key, strings.Join(prior, ",")+","+value)
			} else {
				h.Set(key, value)
			}
			continue
		}
		switch o.GetAppendAction() {
		case corev3.HeaderValueOption_APPEND_IF_EXISTS_OR_ADD:
			h.Add(key, value)
		case corev3.HeaderValueOption_ADD_IF_ABSENT:
			if len(h.Values(key)) == 0 {
				h.Add(key, value)
			}
		case corev3.HeaderValueOption_OVERWRITE_IF_EXISTS:
			if len(h.Values(key)) > 0 {
				h.Set(key, value)
			}
		default: // OVERWRITE_IF_EXISTS_OR_ADD, and Envoy's fallback for unknown actions
			h.Set(key, value)
		}
	}
}

func newRequestID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40 // a version 4 UUID, as Envoy generates
	b[8] = b[8]&0x3f | 0x80
	s := hex.EncodeToString(b[:])
	return s[0:8] + "-" + s[8:12] + "-" + s[12:16] + "-" + s[16:20] + "-" + s[20:]
}

// tracedBody logs, when the proxy is done with an upstream response, how
// much of it was relayed and whether it ended: the trail a test prints
// when a client waited for an answer that never came.
type tracedBody struct {
	io.ReadCloser
	f     *Front
	what  string
	start time.Time
	n     int64
	eof   bool
}

func (b *tracedBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.n += int64(n)
	if err == io.EOF {
		b.eof = true
	}
	return n, err
}

func (b *tracedBody) Close() error {
	b.f.logf("envoyfront: upstream %s: %d bytes relayed in %v, ended: %v", b.what, b.n, time.Since(b.start).Round(time.Millisecond), b.eof)
	return b.ReadCloser.Close()
}
