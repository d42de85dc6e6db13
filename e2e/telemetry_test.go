package e2e

import (
	"bufio"
	"encoding/hex"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"

	collectortrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracev1 "go.opentelemetry.io/proto/otlp/trace/v1"
)

// otlpReceiver is a loopback OTLP/HTTP trace endpoint: it decodes every
// protobuf export and keeps the spans and the raw bodies.
type otlpReceiver struct {
	mu       sync.Mutex
	spans    []*tracev1.Span
	services []string
	bodies   [][]byte
	posts    int
}

func startOTLPReceiver(t *testing.T) (*otlpReceiver, string) {
	t.Helper()
	r := &otlpReceiver{}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/traces", func(w http.ResponseWriter, req *http.Request) {
		body, err := io.ReadAll(req.Body)
		if err != nil || req.Header.Get("Content-Type") != "application/x-protobuf" {
			http.Error(w, "bad request", http.StatusBadRequest)
			return
		}
		var msg collectortrace.ExportTraceServiceRequest
		if err := proto.Unmarshal(body, &msg); err != nil {
			http.Error(w, "not an ExportTraceServiceRequest", http.StatusBadRequest)
			return
		}
		r.mu.Lock()
		r.posts++
		r.bodies = append(r.bodies, body)
		for _, rs := range msg.GetResourceSpans() {
			for _, a := range rs.GetResource().GetAttributes() {
				if a.GetKey() == "service.name" {
					r.services = append(r.services, a.GetValue().GetStringValue())
				}
			}
			for _, ss := range rs.GetScopeSpans() {
				r.spans = append(r.spans, ss.GetSpans()...)
			}
		}
		r.mu.Unlock()
		w.Header().Set("Content-Type", "application/x-protobuf")
		out, _ := proto.Marshal(&collectortrace.ExportTraceServiceResponse{})
		_, _ = w.Write(out)
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: mux}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return r, "http://" + ln.Addr().String()
}

func (r *otlpReceiver) find(name string, match func(*tracev1.Span) bool) *tracev1.Span {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, s := range r.spans {
		if s.GetName() == name && (match == nil || match(s)) {
			return s
		}
	}
	return nil
}

func spanAttrs(s *tracev1.Span) map[string]string {
	m := map[string]string{}
	for _, a := range s.GetAttributes() {
		m[a.GetKey()] = a.GetValue().GetStringValue()
	}
	return m
}

// TestTracesExportedOverOTLP: with OTEL_EXPORTER_OTLP_ENDPOINT set, the
// real binary exports OTLP/HTTP protobuf: a Check span in the trace Envoy's
// traceparent names, under the remote parent, with resource, decision and
// reason, its validation and cache spans below it, and the JWKS refresh
// with its outbound GET. No export carries the token.
func TestTracesExportedOverOTLP(t *testing.T) {
	recv, endpoint := startOTLPReceiver(t)
	env := baseEnv()
	env["OTEL_EXPORTER_OTLP_ENDPOINT"] = endpoint
	env["OTEL_BSP_SCHEDULE_DELAY"] = "100"
	p := startAuthz(t, env, true)
	if !strings.Contains(p.logs.String(), "tracing on") {
		t.Fatalf("no tracing start-up line:\n%s", p.logs.String())
	}
	tok := token(t, "rs-client", "mcp:read", resource)
	const traceID, parentID = "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331"
	resp := p.check(t, envoyCheck("POST", "/mcp", map[string]string{
		"authorization": "Bearer " + tok,
		"traceparent":   "00-" + traceID + "-" + parentID + "-01",
	}))
	if codes.Code(resp.GetStatus().GetCode()) != codes.OK {
		t.Fatalf("check: %v", resp.GetStatus())
	}
	inTrace := func(s *tracev1.Span) bool { return hex.EncodeToString(s.GetTraceId()) == traceID }
	var check *tracev1.Span
	for deadline := time.Now().Add(10 * time.Second); check == nil; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no Check span exported in %d posts", recv.posts)
		}
		check = recv.find("Check", inTrace)
	}
	if hex.EncodeToString(check.GetParentSpanId()) != parentID || check.GetKind() != tracev1.Span_SPAN_KIND_SERVER {
		t.Fatalf("Check span: parent %x kind %v", check.GetParentSpanId(), check.GetKind())
	}
	if a := spanAttrs(check); a["mcp_authz.resource"] != resource || a["mcp_authz.decision"] != "allow" || a["mcp_authz.reason"] != "ok" {
		t.Fatalf("Check attributes %v", a)
	}
	validate := recv.find("validate", inTrace)
	if validate == nil || string(validate.GetParentSpanId()) != string(check.GetSpanId()) {
		t.Fatalf("validate span %v not under Check", validate)
	}
	for _, name := range []string{"cache.l1", "validate.miss"} {
		if s := recv.find(name, inTrace); s == nil || string(s.GetParentSpanId()) != string(validate.GetSpanId()) {
			t.Fatalf("%s span %v not under validate", name, s)
		}
	}
	refresh := recv.find("jwks.refresh", nil)
	if refresh == nil || spanAttrs(refresh)["mcp_authz.issuer"] != issuer {
		t.Fatalf("jwks.refresh span %v", refresh)
	}
	get := recv.find("HTTP GET", func(s *tracev1.Span) bool { return string(s.GetParentSpanId()) == string(refresh.GetSpanId()) })
	if get == nil || get.GetKind() != tracev1.Span_SPAN_KIND_CLIENT {
		t.Fatalf("no outbound GET under jwks.refresh")
	}
	recv.mu.Lock()
	defer recv.mu.Unlock()
	if len(recv.services) == 0 || recv.services[0] != "mcp-authz" {
		t.Fatalf("service.name %v", recv.services)
	}
	for _, b := range recv.bodies {
		if strings.Contains(string(b), tok) || strings.Contains(string(b), tok[len(tok)-24:]) {
			t.Fatal("an OTLP export carries the token")
		}
	}
}

// TestMetricsAndStartupLogFromTheBinary: the binary serves /metrics on its
// side server, and announces the resource at start.
func TestMetricsAndStartupLogFromTheBinary(t *testing.T) {
	p := startAuthz(t, baseEnv(), true)
	tok := token(t, "rs-client", "mcp:read", resource)
	p.check(t, envoyCheck("POST", "/mcp", map[string]string{"authorization": "Bearer " + tok}))
	p.check(t, envoyCheck("POST", "/mcp", nil))
	resp, err := http.Get("http://" + p.httpAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{
		`mcp_authz_checks_total{decision="allow",reason="ok",resource="` + resource + `"} 1`,
		`mcp_authz_checks_total{decision="deny",reason="unauthorized",resource="` + resource + `"} 1`,
		`mcp_authz_jwks_refreshes_total{issuer="` + issuer + `",result="success"}`,
		`mcp_authz_check_duration_seconds_bucket{le="0.001"}`,
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("no %q in /metrics", want)
		}
	}
	logs := p.logs.String()
	var line string
	sc := bufio.NewScanner(strings.NewReader(logs))
	for sc.Scan() {
		if strings.Contains(sc.Text(), "resource initialized with JWT validation") {
			line = sc.Text()
		}
	}
	if !strings.Contains(line, `"issuers":["`+issuer+`"]`) || !strings.Contains(line, `"jwks_uris":["discovered"]`) ||
		!strings.Contains(line, `"level":"INFO"`) {
		t.Fatalf("start-up line %q in:\n%s", line, logs)
	}
}

// TestDevWritesTheLogFile: `mcp-authz dev` honours the seed's
// MCP_ENABLE_FILE_LOGGING and MCP_LOG_DIRECTORY.
func TestDevWritesTheLogFile(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "logs")
	dev := exec.Command(binary, "dev", "--grpc-addr", freeAddr(t), "--http-addr", freeAddr(t))
	dev.Env = []string{"PATH=" + os.Getenv("PATH"), "MCP_ENABLE_FILE_LOGGING=true", "MCP_LOG_DIRECTORY=" + dir}
	out, err := dev.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := dev.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = dev.Process.Signal(syscall.SIGTERM); _ = dev.Wait() }()
	ready := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 64<<10), 64<<10)
		for sc.Scan() {
			if strings.Contains(sc.Text(), "export TOKEN=") {
				close(ready)
				break
			}
		}
		_, _ = io.Copy(io.Discard, out)
	}()
	select {
	case <-ready:
	case <-time.After(15 * time.Second):
		t.Fatal("mcp-authz dev printed no token")
	}
	// The token is printed just before the serving line is logged.
	var b []byte
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		b, err = os.ReadFile(filepath.Join(dir, "mcp-authz.log"))
		if err == nil && strings.Contains(string(b), "resource initialized with JWT validation") && strings.Contains(string(b), "mcp-authz serving") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("log file (%v):\n%s", err, b)
		}
	}
}
