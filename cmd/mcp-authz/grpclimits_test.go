package main

import (
	"context"
	"encoding/binary"
	"io"
	"log/slog"
	"net"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/mcp-authz/mcp-authz/config"
)

// startPlainService runs the service on loopback without TLS, as cfg (and
// the environment form's defaults) say, and returns its gRPC address.
func startPlainService(t *testing.T, mutate func(*config.Config)) string {
	t.Helper()
	cfg := &config.Config{
		GRPCAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0",
		Log: config.LogConfig{Level: "error", Format: "text"},
		Resources: []config.ResourceConfig{{
			Resource: "https://m.example/mcp", AuthorizationServers: []string{"http://127.0.0.1:1"},
		}},
	}
	if mutate != nil {
		mutate(cfg)
	}
	if err := cfg.Complete(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	svc, err := newService(ctx, cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	if err := svc.listen(); err != nil {
		cancel()
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- svc.serve(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return svc.grpcLn.Addr().String()
}

// TestGRPCLimitsAreTheDesignedOnes pins DESIGN §7's gRPC limits on the
// running listener: a CheckRequest up to 256 KiB is answered and a larger
// one refused (RESOURCE_EXHAUSTED) by default, grpc.max_recv_bytes moves
// the bound, and the server announces 1,000 concurrent streams per
// connection in its HTTP/2 SETTINGS.
func TestGRPCLimitsAreTheDesignedOnes(t *testing.T) {
	// request returns a CheckRequest whose encoding is exactly size bytes.
	request := func(t *testing.T, size int) *authv3.CheckRequest {
		req := &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{
			Http: &authv3.AttributeContext_HttpRequest{Method: "POST", Host: "m.example", Path: "/mcp"},
		}}}
		for body := size; body > 0; body-- { // the length prefixes shrink with the body
			req.Attributes.Request.Http.RawBody = make([]byte, body)
			if n := proto.Size(req); n == size {
				return req
			} else if n < size {
				break
			}
		}
		t.Fatalf("no request of %d bytes", size)
		return nil
	}
	tests := []struct {
		name     string
		maxRecv  int // grpc.max_recv_bytes; 0: the default
		size     int
		refused  bool
		announce uint32 // SETTINGS_MAX_CONCURRENT_STREAMS; 0: not checked
	}{
		{"default: 256 KiB is answered", 0, 256 << 10, false, 1000},
		{"default: 256 KiB + 1 is refused", 0, 256<<10 + 1, true, 0},
		{"grpc.max_recv_bytes: 1 MiB answers 512 KiB", 1 << 20, 512 << 10, false, 1000},
		{"grpc.max_recv_bytes: 1 MiB refuses 1 MiB + 1", 1 << 20, 1<<20 + 1, true, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addr := startPlainService(t, func(c *config.Config) { c.GRPC.MaxRecvBytes = tt.maxRecv })
			cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
				grpc.WithDefaultCallOptions(grpc.MaxCallSendMsgSize(4<<20)))
			if err != nil {
				t.Fatal(err)
			}
			defer cc.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			_, err = authv3.NewAuthorizationClient(cc).Check(ctx, request(t, tt.size))
			if refused := status.Code(err) == codes.ResourceExhausted; refused != tt.refused {
				t.Fatalf("a %d-byte CheckRequest: %v, want refused %v", tt.size, err, tt.refused)
			}
			if !tt.refused && err != nil {
				t.Fatalf("a %d-byte CheckRequest: %v", tt.size, err)
			}
			if tt.announce != 0 {
				if got := maxConcurrentStreams(t, addr); got != tt.announce {
					t.Fatalf("SETTINGS_MAX_CONCURRENT_STREAMS %d, want %d", got, tt.announce)
				}
			}
		})
	}
}

// maxConcurrentStreams opens a bare HTTP/2 connection and returns the
// SETTINGS_MAX_CONCURRENT_STREAMS of the server's first SETTINGS frame
// (RFC 9113 §6.5), 0 when it sends none.
func maxConcurrentStreams(t *testing.T, addr string) uint32 {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	// The client preface and an empty SETTINGS frame.
	if _, err := io.WriteString(c, "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00"); err != nil {
		t.Fatal(err)
	}
	for {
		var hdr [9]byte
		if _, err := io.ReadFull(c, hdr[:]); err != nil {
			t.Fatalf("reading the server's frames: %v", err)
		}
		n := int(hdr[0])<<16 | int(hdr[1])<<8 | int(hdr[2])
		payload := make([]byte, n)
		if _, err := io.ReadFull(c, payload); err != nil {
			t.Fatal(err)
		}
		const frameSettings, flagAck = 0x4, 0x1
		if hdr[3] != frameSettings || hdr[4]&flagAck != 0 {
			continue
		}
		for i := 0; i+6 <= len(payload); i += 6 {
			if binary.BigEndian.Uint16(payload[i:]) == 0x3 { // SETTINGS_MAX_CONCURRENT_STREAMS
				return binary.BigEndian.Uint32(payload[i+2:])
			}
		}
		return 0
	}
}
