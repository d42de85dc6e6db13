package authz

import (
	"context"
	"sync"
	"sync/atomic"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/status"
)

// prepared is a CheckResponse that is sent many times: the response to a
// cached principal, or a denial that does not depend on the request. It
// goes on the wire as encoded once; encoding the identity headers and
// metadata costs more than deciding a cached Check.
type prepared struct {
	// out is the outcome, or nil once dropped: an allow kept with a
	// cached principal keeps its wire form alone, and render makes the
	// outcome again for the rare uses that need all of it (see keep).
	out    *outcome
	render func() *outcome
	// allow and reason are what every decision reads of the outcome.
	allow    bool
	reason   string
	wireOnce sync.Once
	wire     []byte
	msgOnce  sync.Once
	msg      *authv3.CheckResponse
	// forward is the allow as the forward-auth front end sends it, built
	// on its first use there (forward.go).
	forward atomic.Pointer[forwardAllow]
}

func prepare(o *outcome) *prepared { return &prepared{out: o, allow: o.allow, reason: o.reason} }

// outcome returns the outcome, rendered again when it was dropped.
func (p *prepared) outcome() *outcome {
	if p.out != nil {
		return p.out
	}
	return p.render()
}

// encoded returns the wire form, encoded once.
func (p *prepared) encoded() []byte {
	p.wireOnce.Do(func() { p.wire = p.outcome().wire() })
	return p.wire
}

// message returns the response as a generated message (Server.Check, and
// gRPC interceptors), built on first use.
func (p *prepared) message() *authv3.CheckResponse {
	p.msgOnce.Do(func() { p.msg = p.outcome().message() })
	return p.msg
}

// Register registers s on gs as envoy.service.auth.v3.Authorization. gs must
// be built with the ServerOption from Codec: requests are read straight from
// the wire and prepared responses go out without being marshalled again.
func (s *Server) Register(gs *grpc.Server) { NewHandle(s).Register(gs) }

// Handle serves Check with whichever Server is current, so that a reloaded
// configuration takes effect without restarting the gRPC server. A Check
// finishes on the Server it started with.
type Handle struct {
	authv3.UnimplementedAuthorizationServer
	cur atomic.Pointer[Server]
}

// Check implements authv3.AuthorizationServer with the current Server.
func (h *Handle) Check(ctx context.Context, req *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	return h.cur.Load().Check(ctx, req)
}

// NewHandle returns a Handle serving s.
func NewHandle(s *Server) *Handle {
	h := new(Handle)
	h.cur.Store(s)
	return h
}

// Server returns the current Server.
func (h *Handle) Server() *Server { return h.cur.Load() }

// Swap makes s current and returns the Server it replaces.
func (h *Handle) Swap(s *Server) *Server { return h.cur.Swap(s) }

// Register registers h on gs as envoy.service.auth.v3.Authorization; see
// Server.Register.
func (h *Handle) Register(gs *grpc.Server) {
	desc := authv3.Authorization_ServiceDesc
	desc.Methods = []grpc.MethodDesc{{MethodName: "Check", Handler: func(_ any, ctx context.Context, dec func(any) error, in grpc.UnaryServerInterceptor) (any, error) {
		return h.cur.Load().handleCheck(ctx, dec, in)
	}}}
	gs.RegisterService(&desc, h)
}

func (s *Server) handleCheck(ctx context.Context, dec func(any) error, interceptor grpc.UnaryServerInterceptor) (any, error) {
	if interceptor != nil {
		// Interceptors expect the generated message types.
		req := new(authv3.CheckRequest)
		if err := dec(req); err != nil {
			return nil, err
		}
		info := &grpc.UnaryServerInfo{Server: s, FullMethod: authv3.Authorization_Check_FullMethodName}
		return interceptor(ctx, req, info, func(ctx context.Context, req any) (any, error) {
			return s.Check(ctx, req.(*authv3.CheckRequest))
		})
	}
	var w wireRequest
	if err := dec(&w); err != nil {
		return nil, err
	}
	// The input's strings are the request's own bytes, not copies: the
	// buffer goes back to its pool only once nothing of this Check can
	// use them any more (see parseCheckInput).
	defer w.buf.Free()
	in, err := parseCheckInput(w.buf.ReadOnlyData(), &s.read)
	if err != nil {
		s.observeMalformed()
		return nil, status.Error(codes.InvalidArgument, "malformed CheckRequest")
	}
	r, err := s.check(ctx, &in)
	if err != nil {
		return nil, err
	}
	if r.prepared != nil {
		return r.prepared, nil
	}
	// Rendered for this request alone (a token seen once, say), perhaps
	// with some of its strings (an Origin, header names): encoded now,
	// while they are still the request's.
	return encodeRendered(r.out), nil
}

// renderedResponse is a response encoded for one request, in a pooled
// buffer that gRPC frees once it is sent.
type renderedResponse struct{ b mem.Buffer }

func encodeRendered(o *outcome) renderedResponse {
	pool := mem.DefaultBufferPool()
	buf := pool.Get(o.wireSize())
	*buf = o.appendWire((*buf)[:0])
	return renderedResponse{mem.NewBuffer(buf, pool)}
}

// Codec returns the server option that hands Check requests to the Server
// as wire bytes (read by parseCheckInput), sends Check responses as this
// package encodes them (wire.go), and handles every other message with the
// standard protobuf codec.
func Codec() grpc.ServerOption {
	return grpc.ForceServerCodecV2(preparedCodec{encoding.GetCodecV2("proto")})
}

type preparedCodec struct{ encoding.CodecV2 }

func (c preparedCodec) Marshal(v any) (mem.BufferSlice, error) {
	switch v := v.(type) {
	case *prepared:
		// SliceBuffer.Free is a no-op: gRPC never recycles the shared bytes.
		return mem.BufferSlice{mem.SliceBuffer(v.encoded())}, nil
	case renderedResponse:
		return mem.BufferSlice{v.b}, nil
	}
	return c.CodecV2.Marshal(v)
}

// wireRequest is a Check request as received: it is parsed by the Server
// that handles it, which knows what to look for (its identity header
// prefix may change with a configuration reload).
type wireRequest struct{ buf mem.Buffer }

func (c preparedCodec) Unmarshal(data mem.BufferSlice, v any) error {
	w, ok := v.(*wireRequest)
	if !ok {
		return c.CodecV2.Unmarshal(data, v)
	}
	w.buf = data.MaterializeToBuffer(mem.DefaultBufferPool())
	return nil
}

func (c preparedCodec) Name() string { return "proto" }
