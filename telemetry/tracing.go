package telemetry

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"

	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/mcp-authz/mcp-authz/internal/tracing"
)

// instrumentationName names the tracer (the OpenTelemetry instrumentation
// scope) of every span mcp-authz starts itself.
const instrumentationName = "github.com/mcp-authz/mcp-authz"

// Tracing is the OpenTelemetry side: a tracer provider exporting over OTLP,
// the tracing.Tracer the deciding packages use, and the instrumented
// transport for outbound calls. A nil *Tracing is tracing off: Tracer
// returns nil and Transport returns its argument.
type Tracing struct {
	provider trace.TracerProvider
	// shutdown flushes and stops the provider, when this Tracing owns it.
	shutdown func(context.Context) error
	tracer   tracer
	// Protocol is the OTLP protocol in use (grpc or http/protobuf).
	Protocol string
}

// The standard OpenTelemetry environment variables read here; the SDK and
// the OTLP exporters read the others (OTEL_EXPORTER_OTLP_HEADERS, _TIMEOUT,
// _INSECURE, _CERTIFICATE, OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES,
// OTEL_TRACES_SAMPLER, OTEL_BSP_*, ...) themselves.
const (
	envEndpoint       = "OTEL_EXPORTER_OTLP_ENDPOINT"
	envTracesEndpoint = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
	envProtocol       = "OTEL_EXPORTER_OTLP_PROTOCOL"
	envTracesProtocol = "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"
	envSDKDisabled    = "OTEL_SDK_DISABLED"
	envTracesExporter = "OTEL_TRACES_EXPORTER"
)

// TracingFromEnv starts tracing when the standard OpenTelemetry variables
// ask for it: OTEL_EXPORTER_OTLP_ENDPOINT (or _TRACES_ENDPOINT) set, and
// neither OTEL_SDK_DISABLED=true nor OTEL_TRACES_EXPORTER=none. The
// exporter is OTLP over OTEL_EXPORTER_OTLP_(TRACES_)PROTOCOL: http/protobuf
// (the specification's default) or grpc. It returns nil, nil when tracing
// is off. serviceVersion becomes service.version; service.name is
// "mcp-authz" unless OTEL_SERVICE_NAME or OTEL_RESOURCE_ATTRIBUTES say
// otherwise.
func TracingFromEnv(ctx context.Context, getenv func(string) string, serviceVersion string) (*Tracing, error) {
	if getenv(envEndpoint) == "" && getenv(envTracesEndpoint) == "" {
		return nil, nil
	}
	if strings.EqualFold(strings.TrimSpace(getenv(envSDKDisabled)), "true") {
		return nil, nil
	}
	switch exp := strings.TrimSpace(getenv(envTracesExporter)); exp {
	case "", "otlp":
	case "none":
		return nil, nil
	default:
		return nil, fmt.Errorf("%s: %q is not supported (otlp or none)", envTracesExporter, exp)
	}
	protocol, name := getenv(envTracesProtocol), envTracesProtocol
	if protocol == "" {
		protocol, name = getenv(envProtocol), envProtocol
	}
	protocol = strings.TrimSpace(protocol)
	var exporter sdktrace.SpanExporter
	var err error
	switch protocol {
	case "", "http/protobuf":
		protocol = "http/protobuf"
		exporter, err = otlptracehttp.New(ctx)
	case "grpc":
		exporter, err = otlptracegrpc.New(ctx)
	default:
		return nil, fmt.Errorf("%s: %q is not supported (http/protobuf or grpc)", name, protocol)
	}
	if err != nil {
		return nil, fmt.Errorf("OTLP trace exporter: %w", err)
	}
	res, err := resource.New(ctx,
		resource.WithAttributes(attribute.String("service.name", "mcp-authz"), attribute.String("service.version", serviceVersion)),
		resource.WithTelemetrySDK(),
		resource.WithFromEnv(), // OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES override the above
	)
	if err != nil && res == nil {
		return nil, fmt.Errorf("OTEL_RESOURCE_ATTRIBUTES: %w", err)
	}
	// The sampler is the SDK's: parent-based always-on unless
	// OTEL_TRACES_SAMPLER says otherwise, so Envoy's sampling decision
	// (the traceparent's flag) is followed.
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exporter), sdktrace.WithResource(res))
	t := NewTracing(tp)
	t.shutdown = tp.Shutdown
	t.Protocol = protocol
	return t, nil
}

// LogErrorsTo sends the OpenTelemetry SDK's own errors (a failed export,
// a full queue), which it otherwise prints to stderr as plain text, to
// logger at WARN. The SDK has one error handler per process.
func LogErrorsTo(logger *slog.Logger) {
	otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) {
		logger.Warn("opentelemetry", "error", err)
	}))
}

// NewTracing traces with provider (tests use one with a SpanRecorder); the
// caller keeps ownership of provider.
func NewTracing(provider trace.TracerProvider) *Tracing {
	return &Tracing{provider: provider, tracer: tracer{t: provider.Tracer(instrumentationName)}}
}

// Tracer returns the tracer to hand to authz, cache and validators; nil
// when t is nil (tracing off).
func (t *Tracing) Tracer() tracing.Tracer {
	if t == nil {
		return nil
	}
	return t.tracer
}

// Transport instruments an outbound transport (JWKS, discovery,
// introspection): a client span per request, a child of the context's span,
// with the W3C trace context propagated to the server. With t nil it
// returns rt unchanged.
func (t *Tracing) Transport(rt http.RoundTripper) http.RoundTripper {
	if t == nil {
		return rt
	}
	return otelhttp.NewTransport(rt, otelhttp.WithTracerProvider(t.provider),
		otelhttp.WithPropagators(propagation.TraceContext{}))
}

// Shutdown exports the spans still buffered and stops the exporter. A nil
// t, or one that does not own its provider, has nothing to do.
func (t *Tracing) Shutdown(ctx context.Context) error {
	if t == nil || t.shutdown == nil {
		return nil
	}
	return t.shutdown(ctx)
}

// tracer implements tracing.Tracer over an OpenTelemetry tracer. The spans
// go into the context as OpenTelemetry's own do, so otelhttp and any other
// instrumentation find them.
type tracer struct {
	t trace.Tracer
}

var traceContext propagation.TraceContext

func (t tracer) StartServer(ctx context.Context, name, traceparent, tracestate string) (context.Context, tracing.Span) {
	if traceparent != "" {
		ctx = traceContext.Extract(ctx, traceHeaders{traceparent, tracestate})
	}
	ctx, s := t.t.Start(ctx, name, trace.WithSpanKind(trace.SpanKindServer))
	return ctx, span{s}
}

func (t tracer) Start(ctx context.Context, name string) (context.Context, tracing.Span) {
	ctx, s := t.t.Start(ctx, name)
	return ctx, span{s}
}

// traceHeaders is the W3C trace context of a Check request, as a carrier
// for the propagator.
type traceHeaders struct{ traceparent, tracestate string }

func (h traceHeaders) Get(key string) string {
	switch key {
	case "traceparent":
		return h.traceparent
	case "tracestate":
		return h.tracestate
	}
	return ""
}
func (h traceHeaders) Set(string, string) {}
func (h traceHeaders) Keys() []string     { return []string{"traceparent", "tracestate"} }

type span struct{ s trace.Span }

func (s span) Set(key, value string) { s.s.SetAttributes(attribute.String(key, value)) }
func (s span) Fail(err error) {
	if err == nil {
		err = errors.New("failed")
	}
	s.s.SetStatus(codes.Error, err.Error())
}
func (s span) End() { s.s.End() }
