package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net/url"
	"sort"
	"strings"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
)

type headerFlags []string

func (h *headerFlags) String() string     { return strings.Join(*h, ", ") }
func (h *headerFlags) Set(v string) error { *h = append(*h, v); return nil }

// checkCmd sends one CheckRequest shaped the way Envoy's ext_authz filter
// builds it, and prints the decision. Exit status: 0 allowed, 1 denied,
// 2 error.
func checkCmd(args []string, stdout, stderr io.Writer) int {
	c := command{name: "check", usage: "mcp-authz check [flags] URL",
		about: "Sends one CheckRequest for URL to a running mcp-authz, shaped the way Envoy's ext_authz " +
			"filter builds it (lower-cased headers, :authority, :path, :method, :scheme; repeated headers " +
			"joined with commas), and prints the decision, the HTTP status and the headers the client or " +
			"the upstream would get. Flags may come before or after URL, as with curl. Exit status: 0 " +
			"allowed, 1 denied, 2 error (a bad argument, the service unreachable or failing the call, " +
			"which Envoy would answer with its failure_mode_allow / status_on_error)."}
	fs := c.flagSet()
	addr := fs.String("addr", "127.0.0.1:9191", "gRPC `address` of mcp-authz")
	method := fs.String("X", "", "HTTP `method` (default GET, or POST with -d)")
	body := fs.String("d", "", "request `body` (Envoy's with_request_body)")
	timeout := fs.Duration("timeout", 5*time.Second, "deadline for the Check call (Envoy's ext_authz timeout)")
	var headers, exts headerFlags
	fs.Var(&headers, "H", "request header `'Name: value'` (repeatable)")
	fs.Var(&exts, "context-extension", "Envoy context extension `key=value` (repeatable), e.g. mcp_resource=tools")
	positional, code, done := c.parse(fs, args, 1, stdout, stderr)
	if done {
		return code
	}
	if len(positional) != 1 {
		fmt.Fprintln(stderr, "mcp-authz check: the URL to check is missing (usage: mcp-authz check [flags] URL; mcp-authz check --help)")
		return 2
	}
	req, err := buildCheckRequest(positional[0], *method, *body, headers, exts)
	if err != nil {
		fmt.Fprintf(stderr, "mcp-authz check: %v\n", err)
		return 2
	}
	conn, err := grpc.NewClient(*addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		fmt.Fprintf(stderr, "mcp-authz check: %v\n", err)
		return 2
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	resp, err := authv3.NewAuthorizationClient(conn).Check(ctx, req)
	if err != nil {
		st, _ := status.FromError(err)
		fmt.Fprintf(stdout, "decision: ERROR (gRPC %s: %s)\n", st.Code(), st.Message())
		fmt.Fprintln(stdout, "Envoy applies failure_mode_allow / status_on_error to this answer.")
		return 2
	}
	return printDecision(stdout, resp)
}

func buildCheckRequest(rawURL, method, body string, headers, exts []string) (*authv3.CheckRequest, error) {
	u, err := url.Parse(rawURL)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return nil, fmt.Errorf("%q is not an absolute http(s) URL", rawURL)
	}
	if method == "" {
		method = "GET"
		if body != "" {
			method = "POST"
		}
	}
	path := u.EscapedPath()
	if path == "" {
		path = "/"
	}
	if u.RawQuery != "" {
		path += "?" + u.RawQuery
	}
	// Envoy lower-cases names and joins repeated headers with ",".
	hm := map[string]string{
		":authority": u.Host,
		":path":      path,
		":method":    strings.ToUpper(method),
		":scheme":    u.Scheme,
	}
	for _, h := range headers {
		name, value, ok := strings.Cut(h, ":")
		if !ok || strings.TrimSpace(name) == "" {
			return nil, fmt.Errorf("header %q is not 'Name: value'", h)
		}
		name = strings.ToLower(strings.TrimSpace(name))
		value = strings.TrimSpace(value)
		if prev, dup := hm[name]; dup {
			value = prev + "," + value
		}
		hm[name] = value
	}
	ext := map[string]string{}
	for _, e := range exts {
		k, v, ok := strings.Cut(e, "=")
		if !ok {
			return nil, fmt.Errorf("context extension %q is not key=value", e)
		}
		ext[k] = v
	}
	id := make([]byte, 8)
	_, _ = rand.Read(id)
	return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			Id:       hex.EncodeToString(id),
			Method:   strings.ToUpper(method),
			Headers:  hm,
			Path:     path,
			Host:     u.Host,
			Scheme:   u.Scheme,
			Protocol: "HTTP/1.1",
			Size:     int64(len(body)),
			Body:     body,
		}},
		ContextExtensions: ext,
	}}, nil
}

func printDecision(w io.Writer, resp *authv3.CheckResponse) int {
	code := codes.Code(resp.GetStatus().GetCode())
	if code == codes.OK {
		fmt.Fprintln(w, "decision: ALLOWED")
		ok := resp.GetOkResponse()
		for _, h := range ok.GetHeaders() {
			fmt.Fprintf(w, "upstream header: %s: %s\n", h.GetHeader().GetKey(), h.GetHeader().GetValue())
		}
		removed := append([]string(nil), ok.GetHeadersToRemove()...)
		sort.Strings(removed)
		for _, h := range removed {
			fmt.Fprintf(w, "upstream header removed: %s\n", h)
		}
		if md := resp.GetDynamicMetadata(); md != nil {
			b, _ := protojson.Marshal(md)
			fmt.Fprintf(w, "dynamic metadata: %s\n", b)
		}
		return 0
	}
	d := resp.GetDeniedResponse()
	fmt.Fprintf(w, "decision: DENIED (gRPC %s)\n", code)
	if d == nil {
		return 1
	}
	httpStatus := int(d.GetStatus().GetCode())
	if httpStatus == 0 {
		httpStatus = 403 // Envoy's default for a denial without status
	}
	fmt.Fprintf(w, "status: %d\n", httpStatus)
	for _, h := range d.GetHeaders() {
		fmt.Fprintf(w, "%s: %s\n", h.GetHeader().GetKey(), h.GetHeader().GetValue())
	}
	if d.GetBody() != "" {
		fmt.Fprintf(w, "body: %s\n", d.GetBody())
	}
	return 1
}
