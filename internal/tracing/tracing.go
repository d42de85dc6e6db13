// Package tracing is the seam between the packages that decide (authz,
// cache, validators) and the OpenTelemetry SDK, which only the telemetry
// package imports. Those packages hold a Tracer in their configuration and
// start spans through it; nil means tracing is off, and then a Check pays a
// nil check and nothing else.
//
// The spans travel in the context as OpenTelemetry spans do (the telemetry
// implementation stores them there), so an instrumented HTTP client used
// with that context makes its spans children of the current one.
package tracing

import "context"

// Tracer starts spans.
type Tracer interface {
	// StartServer starts the span of a request received from a peer: a
	// child of the span that W3C trace context headers name (traceparent,
	// tracestate: as the peer sent them, empty when absent), else the root
	// of a new trace. It returns ctx carrying the span.
	StartServer(ctx context.Context, name, traceparent, tracestate string) (context.Context, Span)
	// Start starts an internal span, a child of ctx's span if it has one,
	// and returns ctx carrying it.
	Start(ctx context.Context, name string) (context.Context, Span)
}

// Span is a started span. Its attribute values must never be a token, a
// secret, or anything a client could use to replay one.
type Span interface {
	// Set sets a string attribute.
	Set(key, value string)
	// Fail marks the span as failed, with err's message as the status
	// description.
	Fail(err error)
	// End ends the span.
	End()
}

// Attribute keys shared by the packages that start spans.
const (
	AttrResource    = "mcp_authz.resource"
	AttrDecision    = "mcp_authz.decision"
	AttrReason      = "mcp_authz.reason"
	AttrCacheResult = "mcp_authz.cache.result"
	AttrResult      = "mcp_authz.result"
	AttrIssuer      = "mcp_authz.issuer"
)
