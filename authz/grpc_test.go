package authz

import (
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/experimental"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// serveGRPC runs s on a real gRPC server on loopback, as cmd/mcp-authz does.
func serveGRPC(t *testing.T, s *Server, opts ...grpc.ServerOption) authv3.AuthorizationClient {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer(append([]grpc.ServerOption{Codec()}, opts...)...)
	s.Register(gs)
	go func() { _ = gs.Serve(ln) }()
	t.Cleanup(gs.Stop)
	cc, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return authv3.NewAuthorizationClient(cc)
}

// TestGRPCMatchesInProcess: over the wire (fast request reader, prepared
// responses) every decision is the one Check makes in process.
func TestGRPCMatchesInProcess(t *testing.T) {
	reqs := checkRequests()
	for _, tok := range []string{"good", "readonly", "noclient", "expired", "quoted", "down", "weird-error"} {
		reqs["token "+tok] = envoyRequest("/mcp", map[string]string{"authorization": "Bearer " + tok})
	}
	var logged atomic.Int64
	interceptor := grpc.UnaryInterceptor(func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		logged.Add(1)
		return h(ctx, req)
	})
	for _, mode := range []struct {
		name string
		opts []grpc.ServerOption
	}{{"codec", nil}, {"with interceptor", []grpc.ServerOption{interceptor}}} {
		t.Run(mode.name, func(t *testing.T) {
			s, _ := newTestServer(t, nil)
			client := serveGRPC(t, s, mode.opts...)
			for name, req := range reqs {
				want, wantErr := s.Check(context.Background(), req)
				// Twice: the second answer may be a prepared response.
				for i := range 2 {
					got, err := client.Check(context.Background(), req)
					if status.Code(err) != status.Code(wantErr) {
						t.Fatalf("%s: gRPC error %v, in process %v", name, err, wantErr)
					}
					if err == nil && !proto.Equal(got, want) {
						t.Fatalf("%s (call %d):\n wire %v\n want %v", name, i, got, want)
					}
				}
			}
		})
	}
	if logged.Load() == 0 {
		t.Error("interceptor never ran")
	}
}

// TestGRPCConcurrentRequestsKeepTheirOwnBytes: a Check reads its request
// in place, in a pooled buffer that the next request reuses once the
// Check has answered. Many callers at once, each answer checked against
// the in-process one, catch an answer that still pointed into a reused
// buffer: allows that remove headers named by the request itself, and
// every other kind of decision.
func TestGRPCConcurrentRequestsKeepTheirOwnBytes(t *testing.T) {
	s, _ := newTestServer(t, nil)
	// Every buffer given back is overwritten at once, as the next request
	// would, so that a use after that shows every time, not by chance.
	client := serveGRPC(t, s, experimental.BufferPool(scribblingPool{}))
	var reqs []*authv3.CheckRequest
	for _, r := range checkRequests() {
		reqs = append(reqs, r)
	}
	for i := range 24 {
		reqs = append(reqs, envoyRequest("/mcp", map[string]string{
			"authorization":                        "Bearer good",
			fmt.Sprintf("x-mcp-auth-copy-%03d", i): "forged",
		}))
	}
	// Past gRPC's pooling threshold, so that request buffers are reused.
	for _, r := range reqs {
		switch h := r.GetAttributes().GetRequest().GetHttp(); {
		case h == nil:
		case h.HeaderMap != nil:
			h.HeaderMap.Headers = append(h.HeaderMap.Headers, &corev3.HeaderValue{Key: "x-padding", Value: strings.Repeat("p", 4096)})
		case h.Headers != nil:
			h.Headers["x-padding"] = strings.Repeat("p", 4096)
		}
	}
	want := make([]*authv3.CheckResponse, len(reqs))
	wantErr := make([]error, len(reqs))
	for i, r := range reqs {
		want[i], wantErr[i] = s.Check(context.Background(), r)
	}
	concurrently(t, 8, 300, func(g, n int) string {
		i := (g*7919 + n*104729) % len(reqs)
		got, err := client.Check(context.Background(), reqs[i])
		if status.Code(err) != status.Code(wantErr[i]) || (err == nil && !proto.Equal(got, want[i])) {
			return fmt.Sprintf("request %d: %v\n got %v\n want %v", i, err, got, want[i])
		}
		return ""
	})
}

// concurrently runs try(g, n) for every n < rounds on each of goroutines
// goroutines at once. A goroutine stops at its first failure (try's
// message); the test fails with each goroutine's first.
func concurrently(t *testing.T, goroutines, rounds int, try func(g, n int) string) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan string, goroutines)
	for g := range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := range rounds {
				if e := try(g, n); e != "" {
					errs <- e
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
}

// scribblingPool is a gRPC buffer pool that overwrites each buffer given
// back to it.
type scribblingPool struct{}

func (scribblingPool) Get(n int) *[]byte {
	b := make([]byte, n)
	return &b
}

func (scribblingPool) Put(b *[]byte) {
	for i := range *b {
		(*b)[i] = 'X'
	}
}
