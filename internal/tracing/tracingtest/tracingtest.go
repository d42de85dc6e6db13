// Package tracingtest is a recording tracing.Tracer for unit tests of the
// packages that start spans, without the OpenTelemetry SDK.
package tracingtest

import (
	"context"
	"sync"

	"github.com/mcp-authz/mcp-authz/internal/tracing"
)

// Span is a recorded span.
type Span struct {
	Name   string
	Parent *Span // nil for a root
	// Traceparent and Tracestate are what StartServer was given.
	Traceparent, Tracestate string
	Attrs                   map[string]string
	Err                     error
	Ended                   bool
}

// Recorder records every span started through it, in start order.
type Recorder struct {
	mu    sync.Mutex
	spans []*Span
}

type ctxKey struct{}

// StartServer implements tracing.Tracer.
func (r *Recorder) StartServer(ctx context.Context, name, traceparent, tracestate string) (context.Context, tracing.Span) {
	ctx, s := r.start(ctx, name)
	s.s.Traceparent, s.s.Tracestate = traceparent, tracestate
	return ctx, s
}

// Start implements tracing.Tracer.
func (r *Recorder) Start(ctx context.Context, name string) (context.Context, tracing.Span) {
	return r.start(ctx, name)
}

func (r *Recorder) start(ctx context.Context, name string) (context.Context, *span) {
	parent, _ := ctx.Value(ctxKey{}).(*Span)
	s := &Span{Name: name, Parent: parent, Attrs: map[string]string{}}
	r.mu.Lock()
	r.spans = append(r.spans, s)
	r.mu.Unlock()
	return context.WithValue(ctx, ctxKey{}, s), &span{r: r, s: s}
}

// Spans returns copies of the recorded spans.
func (r *Recorder) Spans() []Span {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]Span, len(r.spans))
	for i, s := range r.spans {
		out[i] = *s
		out[i].Attrs = make(map[string]string, len(s.Attrs))
		for k, v := range s.Attrs {
			out[i].Attrs[k] = v
		}
	}
	return out
}

// Reset forgets the recorded spans.
func (r *Recorder) Reset() {
	r.mu.Lock()
	r.spans = nil
	r.mu.Unlock()
}

type span struct {
	r *Recorder
	s *Span
}

func (s *span) Set(key, value string) {
	s.r.mu.Lock()
	s.s.Attrs[key] = value
	s.r.mu.Unlock()
}

func (s *span) Fail(err error) {
	s.r.mu.Lock()
	s.s.Err = err
	s.r.mu.Unlock()
}

func (s *span) End() {
	s.r.mu.Lock()
	s.s.Ended = true
	s.r.mu.Unlock()
}
