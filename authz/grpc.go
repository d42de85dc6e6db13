package authz

import (
	"context"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"
)

// prepared is a CheckResponse marshalled once and sent many times: the
// response to a cached principal, or a denial that does not depend on the
// request. Marshalling the identity headers and metadata costs more than
// deciding a cached Check.
type prepared struct {
	msg  *authv3.CheckResponse
	wire []byte
}

func prepare(msg *authv3.CheckResponse) *prepared {
	wire, err := proto.Marshal(msg)
	if err != nil {
		// Every field is set by this package; a failure is a bug. Keep
		// serving through the ordinary codec rather than fail the Check.
		return &prepared{msg: msg}
	}
	return &prepared{msg: msg, wire: wire}
}

// Register registers s on gs as envoy.service.auth.v3.Authorization. With a
// server built with the ServerOption from Codec, prepared responses go on
// the wire without being marshalled again.
func (s *Server) Register(gs *grpc.Server) {
	desc := authv3.Authorization_ServiceDesc
	desc.Methods = []grpc.MethodDesc{{MethodName: "Check", Handler: s.handleCheck}}
	gs.RegisterService(&desc, s)
}

func (s *Server) handleCheck(_ any, ctx context.Context, dec func(any) error, interceptor grpc.UnaryServerInterceptor) (any, error) {
	in := new(authv3.CheckRequest)
	if err := dec(in); err != nil {
		return nil, err
	}
	if interceptor != nil {
		// Interceptors expect the generated message types.
		info := &grpc.UnaryServerInfo{Server: s, FullMethod: authv3.Authorization_Check_FullMethodName}
		return interceptor(ctx, in, info, func(ctx context.Context, req any) (any, error) {
			return s.Check(ctx, req.(*authv3.CheckRequest))
		})
	}
	r, err := s.check(ctx, in)
	if err != nil {
		return nil, err
	}
	if r.prepared != nil && r.prepared.wire != nil {
		return r.prepared, nil
	}
	return r.message(), nil
}

// Codec returns the server option that sends prepared responses as they
// are and marshals everything else with the standard protobuf codec.
func Codec() grpc.ServerOption {
	return grpc.ForceServerCodecV2(preparedCodec{encoding.GetCodecV2("proto")})
}

type preparedCodec struct{ encoding.CodecV2 }

func (c preparedCodec) Marshal(v any) (mem.BufferSlice, error) {
	if p, ok := v.(*prepared); ok {
		// SliceBuffer.Free is a no-op: gRPC never recycles the shared bytes.
		return mem.BufferSlice{mem.SliceBuffer(p.wire)}, nil
	}
	return c.CodecV2.Marshal(v)
}

func (c preparedCodec) Name() string { return "proto" }
