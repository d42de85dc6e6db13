package authz

import (
	"context"
	"net"
	"sync/atomic"
	"testing"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
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
