package authz

import (
	"context"
	"errors"

	"github.com/mcp-authz/mcp-authz/internal/tracing"
	"github.com/mcp-authz/mcp-authz/validators"
)

// tracedValidator puts a span around a resource's validation (the verdict
// cache's lookups and, on a miss, the validation itself). Routes get it
// only while tracing is on.
type tracedValidator struct {
	Validator
	tracer tracing.Tracer
}

// Results of a validation, as the span names them.
const (
	validationValid       = "valid"
	validationInvalid     = "invalid"
	validationUnavailable = "unavailable"
)

func (v tracedValidator) Validate(ctx context.Context, token string) (*validators.Principal, error) {
	ctx, span := v.tracer.Start(ctx, "validate")
	defer span.End()
	p, err := v.Validator.Validate(ctx, token)
	var verr *validators.Error
	switch {
	case err == nil:
		span.Set(tracing.AttrResult, validationValid)
	case errors.As(err, &verr) && errors.Is(verr.Kind, validators.ErrInvalidToken):
		// The description is one of a fixed set and names no token content.
		span.Set(tracing.AttrResult, validationInvalid)
		span.Set("mcp_authz.error_description", verr.Description)
	default:
		span.Set(tracing.AttrResult, validationUnavailable)
		span.Fail(err)
	}
	return p, err
}

// observeMalformed counts a CheckRequest that could not be read: Envoy gets
// INVALID_ARGUMENT, which its status_on_error turns into a denial.
func (s *Server) observeMalformed() {
	if s.cfg.Observer != nil {
		s.cfg.Observer.Check("", DecisionDeny, reasonInvalidRequest, 0)
	}
}
