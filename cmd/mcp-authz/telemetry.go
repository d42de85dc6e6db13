package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"time"

	"github.com/mcp-authz/mcp-authz/cache"
	"github.com/mcp-authz/mcp-authz/config"
	"github.com/mcp-authz/mcp-authz/internal/tracing"
	"github.com/mcp-authz/mcp-authz/telemetry"
)

// observability is the process's metrics and traces. It outlives any one
// configuration: a reload builds new validators and a new authz.Server
// reporting to the same metrics and tracer.
type observability struct {
	metrics *telemetry.Metrics
	// tracing is nil while OTEL_EXPORTER_OTLP_ENDPOINT is unset.
	tracing *telemetry.Tracing
}

// newObservability builds the metrics and, when the standard OTEL_*
// variables ask for it, the OTLP trace export. The OpenTelemetry SDK reads
// those variables itself, from the process environment.
func newObservability(ctx context.Context, log *slog.Logger) (*observability, error) {
	tr, err := telemetry.TracingFromEnv(ctx, os.Getenv, version())
	if err != nil {
		return nil, fmt.Errorf("tracing: %w", err)
	}
	if tr != nil {
		telemetry.LogErrorsTo(log) // a failing export says so in the service's log
		log.Info("tracing on: exporting spans over OTLP", "protocol", tr.Protocol)
	}
	// go-redis logs on its own (dial failures, Sentinel and Cluster
	// changes): into the service's log, as JSON like the rest.
	cache.SetRedisLogger(log)
	return &observability{metrics: telemetry.NewMetrics(), tracing: tr}, nil
}

// tracer is what authz, cache and validators trace with: nil when off.
func (o *observability) tracer() tracing.Tracer { return o.tracing.Tracer() }

// instrument makes the outbound client's requests spans, when tracing.
func (o *observability) instrument(c *http.Client) *http.Client {
	c.Transport = o.tracing.Transport(c.Transport)
	return c
}

// introspection observes an introspection server's validations, labelled
// with its issuer, else its endpoint.
func (o *observability) introspection(in *config.IntrospectionConfig) func(string, time.Duration) {
	label := in.Issuer
	if label == "" {
		label = in.Endpoint
	}
	return o.metrics.Introspection(label)
}

// shutdown exports the spans still buffered.
func (o *observability) shutdown() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = o.tracing.Shutdown(ctx)
}

// strategyNames are the validation strategies as start-up logs name them.
var strategyNames = map[string]string{
	"jwt":           "JWT",
	"introspection": "token introspection",
	"auto":          "JWT and token introspection",
	"apikey":        "API key",
	"hmac":          "shared-secret JWT",
}

// logResource logs, once per resource at start-up (and reload), how its
// tokens are validated: issuers, JWKS URIs ("discovered" when found from
// the issuer) and introspection endpoints. Never a secret.
func logResource(log *slog.Logger, rc *config.ResourceConfig) {
	name, ok := strategyNames[rc.Validation]
	if !ok {
		name = rc.Validation
	}
	attrs := []any{"resource", rc.Resource}
	if rc.Name != "" && rc.Name != rc.Resource {
		attrs = append(attrs, "name", rc.Name)
	}
	attrs = append(attrs, "validation", rc.Validation)
	switch rc.Validation {
	case "jwt", "auto":
		issuers := make([]string, 0, len(rc.Issuers))
		uris := make([]string, 0, len(rc.Issuers))
		for _, ic := range rc.Issuers {
			issuers = append(issuers, ic.Issuer)
			uri := ic.JWKSURI
			if uri == "" {
				uri = "discovered"
			}
			uris = append(uris, uri)
		}
		attrs = append(attrs, "issuers", issuers, "jwks_uris", uris)
	}
	switch rc.Validation {
	case "introspection", "auto":
		var issuers, endpoints []string
		for _, in := range rc.Introspections() {
			if rc.Validation == "introspection" {
				issuers = append(issuers, in.Issuer)
			}
			ep := in.Endpoint
			if ep == "" {
				ep = "discovered"
			}
			endpoints = append(endpoints, ep)
		}
		if issuers != nil {
			attrs = append(attrs, "issuers", issuers)
		}
		attrs = append(attrs, "introspection_endpoints", endpoints)
	case "apikey", "hmac":
		if len(rc.AuthorizationServers) > 0 {
			attrs = append(attrs, "authorization_servers", rc.AuthorizationServers)
		}
	}
	log.Info("resource initialized with "+name+" validation", attrs...)
}
