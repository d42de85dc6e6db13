package telemetry_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"google.golang.org/grpc/codes"

	"github.com/mcp-authz/mcp-authz/authz"
	"github.com/mcp-authz/mcp-authz/cache"
	"github.com/mcp-authz/mcp-authz/internal/devissuer"
	"github.com/mcp-authz/mcp-authz/telemetry"
	"github.com/mcp-authz/mcp-authz/validators"
)

// BenchmarkCheckObserved is authz's BenchmarkCheck/cached_valid_RS256 with
// what the service adds: nothing (the baseline), the metrics Observer, and
// the Observer with tracing on (spans recorded by the SDK, exported
// nowhere).
func BenchmarkCheckObserved(b *testing.B) {
	iss, err := devissuer.Start(devissuer.Config{})
	if err != nil {
		b.Fatal(err)
	}
	defer iss.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	v, err := validators.NewJWT(ctx, validators.JWTConfig{
		Issuers:   []validators.IssuerConfig{{Issuer: iss.URL, JWKSURI: iss.JWKSURL()}},
		Audiences: []string{testResource}, Client: http.DefaultClient,
	})
	if err != nil {
		b.Fatal(err)
	}
	for _, ks := range v.KeySets() {
		for !ks.Loaded() {
			time.Sleep(time.Millisecond)
		}
	}
	tok, err := iss.Issue(devissuer.TokenRequest{Subject: "user", ClientID: "client", Audience: testResource, Scopes: []string{"mcp:read"}})
	if err != nil {
		b.Fatal(err)
	}
	tp := sdktrace.NewTracerProvider()
	defer func() { _ = tp.Shutdown(context.Background()) }()
	tr := telemetry.NewTracing(tp)
	for _, c := range []struct {
		name    string
		metrics bool
		tracing *telemetry.Tracing
	}{{"none", false, nil}, {"metrics", true, nil}, {"metrics+tracing", true, tr}} {
		b.Run(c.name, func(b *testing.B) {
			store, _ := cache.NewMemory(cache.MemoryOptions{})
			cv, _ := cache.New(v, store, cache.Options{Policy: v.Fingerprint(), Tracer: c.tracing.Tracer()})
			cfg := authz.Config{
				Resources: []*authz.Resource{{URI: testResource, RequiredScopes: []string{"mcp:read"}, Validator: cv}},
				Tracer:    c.tracing.Tracer(),
			}
			if c.metrics {
				cfg.Observer = telemetry.NewMetrics()
			}
			s, err := authz.NewServer(cfg)
			if err != nil {
				b.Fatal(err)
			}
			req := checkReq(map[string]string{"authorization": "Bearer " + tok, "traceparent": traceparent})
			if resp, err := s.Check(ctx, req); err != nil || codes.Code(resp.GetStatus().GetCode()) != codes.OK {
				b.Fatalf("precondition: %v %v", resp.GetStatus(), err)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				if _, err := s.Check(ctx, req); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
