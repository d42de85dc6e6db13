package telemetry_test

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/mcp-authz/mcp-authz/authz"
	"github.com/mcp-authz/mcp-authz/cache"
	"github.com/mcp-authz/mcp-authz/internal/devissuer"
	"github.com/mcp-authz/mcp-authz/telemetry"
	"github.com/mcp-authz/mcp-authz/validators"
)

const (
	testResource = "https://mcp.example.com/mcp"
	traceID      = "4bf92f3577b34da6a3ce929d0e0e4736"
	parentID     = "00f067aa0ba902b7"
	traceparent  = "00-" + traceID + "-" + parentID + "-01"
)

func recorder(t *testing.T) (*tracetest.SpanRecorder, *telemetry.Tracing) {
	t.Helper()
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	return rec, telemetry.NewTracing(tp)
}

func attrs(s sdktrace.ReadOnlySpan) map[string]string {
	m := map[string]string{}
	for _, kv := range s.Attributes() {
		m[string(kv.Key)] = kv.Value.Emit()
	}
	return m
}

func byName(spans []sdktrace.ReadOnlySpan) map[string]sdktrace.ReadOnlySpan {
	m := map[string]sdktrace.ReadOnlySpan{}
	for _, s := range spans {
		m[s.Name()] = s
	}
	return m
}

// stack is a JWT resource behind the verdict cache, as the service wires
// it, traced through the SDK.
func stack(t *testing.T, tr *telemetry.Tracing) (*authz.Server, *devissuer.Issuer) {
	t.Helper()
	iss, err := devissuer.Start(devissuer.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { iss.Close() })
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	client := &http.Client{Transport: tr.Transport(http.DefaultTransport)}
	v, err := validators.NewJWT(ctx, validators.JWTConfig{
		Issuers:   []validators.IssuerConfig{{Issuer: iss.URL, JWKSURI: iss.JWKSURL()}},
		Audiences: []string{testResource}, Client: client, Tracer: tr.Tracer(),
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, ks := range v.KeySets() {
		for deadline := time.Now().Add(5 * time.Second); !ks.Loaded(); time.Sleep(time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatal("JWKS not loaded")
			}
		}
	}
	mem, _ := cache.NewMemory(cache.MemoryOptions{})
	cv, err := cache.New(v, mem, cache.Options{Policy: v.Fingerprint(), Tracer: tr.Tracer()})
	if err != nil {
		t.Fatal(err)
	}
	s, err := authz.NewServer(authz.Config{
		Resources: []*authz.Resource{{URI: testResource, RequiredScopes: []string{"mcp:read"}, Validator: cv}},
		Tracer:    tr.Tracer(),
	})
	if err != nil {
		t.Fatal(err)
	}
	return s, iss
}

func checkReq(headers map[string]string) *authv3.CheckRequest {
	h := map[string]string{":path": "/mcp", ":method": "GET"}
	for k, v := range headers {
		h[k] = v
	}
	return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{
		Http: &authv3.AttributeContext_HttpRequest{Method: "GET", Host: "mcp.example.com", Path: "/mcp", Headers: h},
	}}}
}

// TestCheckTraceWithSDK: through the OpenTelemetry SDK, a Check is a server
// span in Envoy's trace (the forwarded traceparent is its parent), with
// resource, decision and reason and no token; validate, cache.l1 and
// validate.miss are its descendants; the JWKS refresh is its own trace
// with the instrumented client's request span under it.
func TestCheckTraceWithSDK(t *testing.T) {
	rec, tr := recorder(t)
	s, iss := stack(t, tr)
	tok, err := iss.Issue(devissuer.TokenRequest{Subject: "alice", Audience: testResource, Scopes: []string{"mcp:read"}})
	if err != nil {
		t.Fatal(err)
	}
	refresh := byName(rec.Ended())
	jwks, ok := refresh["jwks.refresh"]
	if !ok {
		t.Fatalf("no jwks.refresh span: %v", refresh)
	}
	var fetch sdktrace.ReadOnlySpan
	for _, sp := range rec.Ended() {
		if sp.Parent().SpanID() == jwks.SpanContext().SpanID() {
			fetch = sp
		}
	}
	if fetch == nil || fetch.SpanKind() != trace.SpanKindClient || attrs(jwks)["mcp_authz.issuer"] != iss.URL {
		t.Fatalf("jwks.refresh %v has no client span under it (%v)", attrs(jwks), fetch)
	}

	if _, err := s.Check(context.Background(), checkReq(map[string]string{"authorization": "Bearer " + tok, "traceparent": traceparent})); err != nil {
		t.Fatal(err)
	}
	spans := byName(rec.Ended())
	check := spans["Check"]
	if check == nil {
		t.Fatalf("no Check span: %v", spans)
	}
	if check.SpanKind() != trace.SpanKindServer || check.SpanContext().TraceID().String() != traceID ||
		check.Parent().SpanID().String() != parentID || !check.Parent().IsRemote() {
		t.Fatalf("Check span: kind %v, trace %v, parent %v", check.SpanKind(), check.SpanContext().TraceID(), check.Parent())
	}
	if a := attrs(check); a["mcp_authz.resource"] != testResource || a["mcp_authz.decision"] != "allow" || a["mcp_authz.reason"] != "ok" {
		t.Fatalf("Check attributes %v", a)
	}
	parentOf := func(name, parent string) {
		t.Helper()
		sp, p := spans[name], spans[parent]
		if sp == nil || p == nil || sp.Parent().SpanID() != p.SpanContext().SpanID() || sp.SpanContext().TraceID().String() != traceID {
			t.Fatalf("%s is not a child of %s: %v", name, parent, sp)
		}
	}
	parentOf("validate", "Check")
	parentOf("cache.l1", "validate")
	parentOf("validate.miss", "validate")
	if a := attrs(spans["cache.l1"]); a["mcp_authz.cache.result"] != "miss" {
		t.Fatalf("cache.l1 %v", a)
	}
	for _, sp := range rec.Ended() {
		for _, kv := range sp.Attributes() {
			if strings.Contains(kv.Value.Emit(), tok) || strings.Contains(kv.Value.Emit(), tok[len(tok)-20:]) {
				t.Fatalf("span %s attribute %s holds the token", sp.Name(), kv.Key)
			}
		}
	}

	// A second Check of the same token: an L1 hit; without traceparent, a
	// new trace.
	before := len(rec.Ended())
	if _, err := s.Check(context.Background(), checkReq(map[string]string{"authorization": "Bearer " + tok})); err != nil {
		t.Fatal(err)
	}
	spans = byName(rec.Ended()[before:])
	if a := attrs(spans["cache.l1"]); a["mcp_authz.cache.result"] != "hit" || spans["validate.miss"] != nil {
		t.Fatalf("second check: %v", spans)
	}
	if spans["Check"].Parent().IsValid() || spans["Check"].SpanContext().TraceID().String() == traceID {
		t.Fatal("a Check without traceparent joined another trace")
	}
}

// TestUnavailableCheckSpanIsAnError: a dependency failure marks the Check
// span failed.
func TestUnavailableCheckSpanIsAnError(t *testing.T) {
	rec, tr := recorder(t)
	down := validatorFunc(func(context.Context, string) (*validators.Principal, error) {
		return nil, &validators.Error{Kind: validators.ErrUnavailable, Description: validators.DescJWKS, Err: errors.New("dial refused")}
	})
	s, err := authz.NewServer(authz.Config{Resources: []*authz.Resource{{URI: testResource, Validator: down}}, Tracer: tr.Tracer()})
	if err != nil {
		t.Fatal(err)
	}
	_, _ = s.Check(context.Background(), checkReq(map[string]string{"authorization": "Bearer x"}))
	spans := byName(rec.Ended())
	if c := spans["Check"]; c == nil || c.Status().Code != codes.Error || attrs(c)["mcp_authz.decision"] != "unavailable" {
		t.Fatalf("Check span %v", c)
	}
	if v := spans["validate"]; v == nil || v.Status().Code != codes.Error || attrs(v)["mcp_authz.result"] != "unavailable" {
		t.Fatalf("validate span %v", v)
	}
}

type validatorFunc func(context.Context, string) (*validators.Principal, error)

func (f validatorFunc) Validate(ctx context.Context, tok string) (*validators.Principal, error) {
	return f(ctx, tok)
}

// TestTracingFromEnv: tracing is on only when an OTLP endpoint is set, the
// protocol follows OTEL_EXPORTER_OTLP_(TRACES_)PROTOCOL (http/protobuf by
// default), and a value the SDK cannot honour is an error naming the
// variable.
func TestTracingFromEnv(t *testing.T) {
	for _, tc := range []struct {
		name     string
		env      map[string]string
		on       bool
		protocol string
		err      string
	}{
		{"unset", nil, false, "", ""},
		{"endpoint", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}, true, "http/protobuf", ""},
		{"traces endpoint", map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:4318/v1/traces"}, true, "http/protobuf", ""},
		{"grpc", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4317", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, true, "grpc", ""},
		{"traces protocol wins", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4317", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "grpc"}, true, "grpc", ""},
		{"disabled", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318", "OTEL_SDK_DISABLED": "true"}, false, "", ""},
		{"exporter none", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318", "OTEL_TRACES_EXPORTER": "none"}, false, "", ""},
		{"json", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"}, false, "", "OTEL_EXPORTER_OTLP_PROTOCOL"},
		{"zipkin", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318", "OTEL_TRACES_EXPORTER": "zipkin"}, false, "", "OTEL_TRACES_EXPORTER"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v) // the exporters read the environment themselves
			}
			tr, err := telemetry.TracingFromEnv(context.Background(), func(k string) string { return tc.env[k] }, "test")
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err %v, want one naming %s", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if (tr != nil) != tc.on || (tr.Tracer() != nil) != tc.on {
				t.Fatalf("on = %v, want %v", tr != nil, tc.on)
			}
			if tr != nil {
				if tr.Protocol != tc.protocol {
					t.Fatalf("protocol %q, want %q", tr.Protocol, tc.protocol)
				}
				ctx, cancel := context.WithTimeout(context.Background(), time.Second)
				defer cancel()
				_ = tr.Shutdown(ctx)
			}
		})
	}
	var off *telemetry.Tracing
	if off.Tracer() != nil || off.Transport(http.DefaultTransport) != http.DefaultTransport || off.Shutdown(context.Background()) != nil {
		t.Fatal("a nil Tracing is not off")
	}
}

// TestSDKErrorsGoToTheLog: an export that fails is logged as a WARN record
// of the service's log, not as a plain line on stderr.
func TestSDKErrorsGoToTheLog(t *testing.T) {
	var buf strings.Builder
	var mu sync.Mutex
	telemetry.LogErrorsTo(slog.New(slog.NewJSONHandler(writerFunc(func(p []byte) (int, error) {
		mu.Lock()
		defer mu.Unlock()
		return buf.Write(p)
	}), nil)))
	t.Cleanup(func() { telemetry.LogErrorsTo(slog.New(slog.DiscardHandler)) })
	otel.Handle(errors.New("traces export: connection refused"))
	mu.Lock()
	defer mu.Unlock()
	if !strings.Contains(buf.String(), `"level":"WARN","msg":"opentelemetry","error":"traces export: connection refused"`) {
		t.Fatalf("log: %s", buf.String())
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }
