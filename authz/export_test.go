package authz

import "context"

// CheckWire decides as the gRPC front end does (handleCheck), for
// benchmarks: the request's wire bytes in, the response's out.
func (s *Server) CheckWire(ctx context.Context, req []byte) ([]byte, error) {
	in, err := parseCheckInput(req, &s.read)
	if err != nil {
		return nil, err
	}
	r, err := s.check(ctx, &in)
	if err != nil {
		return nil, err
	}
	if r.prepared != nil {
		return r.prepared.encoded(), nil
	}
	return r.out.wire(), nil
}
