// Package authz is the Envoy ext_authz v3 Check server: it maps a request to
// a protected resource, applies the resource's MCP policy (Origin, endpoint
// classes, per-operation scopes, session binding), asks the resource's
// validator about the credentials, and renders the decision as Envoy
// expects it, with the RFC 6750 / RFC 9728 challenge an MCP client needs.
package authz

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/mcp-authz/mcp-authz/internal/loglimit"
	"github.com/mcp-authz/mcp-authz/internal/pathnorm"
	"github.com/mcp-authz/mcp-authz/internal/tracing"
	"github.com/mcp-authz/mcp-authz/metadata"
	"github.com/mcp-authz/mcp-authz/validators"
)

// Validator turns a bearer token into a principal or a *validators.Error.
// token may be the bytes of the request being decided, which are reused
// once the Check has answered: a Validator that keeps it, or any part of
// it, beyond Validate's return, or reads it from another goroutine after
// that, must copy it (cache.Validator does).
type Validator interface {
	Validate(ctx context.Context, token string) (*validators.Principal, error)
}

// Resource is one protected MCP resource and its policy. The zero value of
// every policy field is the strict behaviour.
type Resource struct {
	// Name selects the resource from the Envoy context extension
	// "mcp_resource". Defaults to URI.
	Name string
	// URI is the RFC 9728 resource identifier, e.g. https://mcp.example.com/mcp.
	URI string
	// ScopesSupported is advertised in the metadata and, when RequiredScopes
	// is empty, in the 401 challenges.
	ScopesSupported []string
	// RequiredScopes must all be granted for any authenticated request.
	RequiredScopes []string
	// Hosts and PathPrefixes select the resource when Envoy sends no
	// context extension (Istio CUSTOM providers). Empty Hosts matches any
	// host; empty PathPrefixes matches every path.
	Hosts        []string
	PathPrefixes []string
	// APIKeys makes the resource take static API keys (X-API-Key or
	// Authorization: ApiKey) instead of bearer tokens; Validator checks them.
	APIKeys   bool
	Validator Validator

	// UnprotectedInitialize and UnprotectedMessages let a class of requests
	// through without credentials (the seed's endpoints.initialize: false
	// and endpoints.messages: false).
	UnprotectedInitialize, UnprotectedMessages bool
	LegacySSE                                  LegacySSE
	// Operations add scopes per JSON-RPC method and tool (needs the body:
	// Envoy's with_request_body).
	Operations []Operation
	// ScopeImplies declares scope hierarchies: a token with the key scope
	// holds every listed scope too (transitively).
	ScopeImplies map[string][]string
	// UnreadableBodyRouteScopes applies only the route's scopes to a POST
	// whose body cannot be read while operation rules exist; the default is
	// to refuse it with 400.
	UnreadableBodyRouteScopes bool
	// AllowedOrigins, when set, refuses requests with any other Origin.
	AllowedOrigins []string
	// SessionBinding binds each Mcp-Session-Id to the first principal that
	// uses it, for SessionTTL (zero means 24 h), renewed by its use.
	SessionBinding bool
	SessionTTL     time.Duration
}

// UnavailableMode says how a failed dependency is reported to Envoy.
type UnavailableMode int

const (
	// UnavailableHTTP denies with 503 and Retry-After.
	UnavailableHTTP UnavailableMode = iota
	// UnavailableGRPC fails the Check with gRPC UNAVAILABLE, so that Envoy's
	// failure_mode_allow and status_on_error decide.
	UnavailableGRPC
)

// SessionStore keeps the binding of MCP sessions to principals; a shared
// store makes the whole fleet agree.
type SessionStore interface {
	// Bind binds key to principal unless it is bound already, renews the
	// binding if it is bound to principal, and returns the principal key is
	// bound to.
	Bind(ctx context.Context, key [sha256.Size]byte, principal string, ttl time.Duration) string
}

// Config configures a Server.
type Config struct {
	Resources   []*Resource
	Unavailable UnavailableMode
	// RetryAfter is sent with 503 answers. Zero means 5 seconds.
	RetryAfter time.Duration
	// MaxTokenBytes rejects larger tokens before any parsing. Zero means 16 KiB.
	MaxTokenBytes int
	// IdentityHeaderPrefix names the headers forwarded upstream on allow.
	// Zero means "x-mcp-auth-".
	IdentityHeaderPrefix string
	// StripAuthorization removes the Authorization header before the request
	// reaches the upstream MCP server (MCP forbids token passthrough).
	StripAuthorization bool
	// Sessions is required when a resource binds sessions.
	Sessions SessionStore
	Logger   *slog.Logger
	// Observer, when set, is told of every decision (metrics).
	Observer Observer
	// Tracer, when set, traces every Check: a span per Check, a child of
	// the trace context Envoy forwards in the traceparent and tracestate
	// headers, and one per validation. Nil: no tracing, at the cost of a
	// nil check.
	Tracer tracing.Tracer
}

// Observer is told of every decision, for metrics. Check is called on the
// path of every request: it must be cheap and must not block.
type Observer interface {
	// Check records one decision: the resource's name (empty when no
	// resource matched), the decision (DecisionAllow, DecisionDeny or
	// DecisionUnavailable), the reason (the error code of a denial, or
	// "ok", "unprotected" for an allow: a small fixed set) and how long it
	// took.
	Check(resource, decision, reason string, d time.Duration)
}

// Decisions, as an Observer and the traces name them.
const (
	DecisionAllow = "allow"
	DecisionDeny  = "deny"
	// DecisionUnavailable: a dependency failed (503, or gRPC UNAVAILABLE
	// with unavailable.mode grpc).
	DecisionUnavailable = "unavailable"
)

// Server implements envoy.service.auth.v3.Authorization.
type Server struct {
	authv3.UnimplementedAuthorizationServer

	router     *router
	cfg        Config
	retryAfter string
	headers    identityHeaders
	read       readOptions
	log        *slog.Logger
	denials    denialLog
	// ambiguousPath and friends are denials that depend on nothing.
	noHTTP, badHeader, ambiguousPath, noResource *prepared
}

// route is a Resource with everything about it that does not depend on the
// request prepared once.
type route struct {
	*Resource
	metadataURL               string
	scopeHint                 []string
	ssePath, messagesPath     string
	origins                   *origins
	implied                   map[string][]string
	sessionTTL                time.Duration
	noCredential, unavailable *prepared
	unprotected               *prepared
	// invalid holds the 401 invalid_token responses by description: the
	// descriptions are a small fixed set, and a flood of bad tokens should
	// not render the same denial again and again.
	invalid      sync.Map // string -> *prepared
	invalidCount atomic.Int32
	// unavailableLog keeps an outage from logging once per request.
	unavailableLog loglimit.Limiter
}

// maxInvalidResponses bounds route.invalid, whatever descriptions a
// validator invents.
const maxInvalidResponses = 64

// NewServer validates cfg and prepares the per-resource responses.
func NewServer(cfg Config) (*Server, error) {
	if len(cfg.Resources) == 0 {
		return nil, errors.New("authz: no resources")
	}
	if cfg.RetryAfter <= 0 {
		cfg.RetryAfter = 5 * time.Second
	}
	if cfg.MaxTokenBytes <= 0 {
		cfg.MaxTokenBytes = 16 << 10
	}
	if cfg.IdentityHeaderPrefix == "" {
		cfg.IdentityHeaderPrefix = "x-mcp-auth-"
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	prefix := asciiLower(cfg.IdentityHeaderPrefix)
	s := &Server{
		cfg:        cfg,
		router:     newRouter(),
		retryAfter: fmt.Sprint(int((cfg.RetryAfter + time.Second - 1) / time.Second)),
		headers:    newIdentityHeaders(prefix),
		read:       readOptions{identityPrefix: prefix, traceContext: cfg.Tracer != nil},
		log:        cfg.Logger,
	}
	s.noHTTP = prepare(denied(http.StatusBadRequest, codes.InvalidArgument, "", reasonInvalidRequest, "No HTTP request attributes"))
	s.badHeader = prepare(denied(http.StatusBadRequest, codes.InvalidArgument, "", reasonInvalidRequest, "Request header is not valid UTF-8"))
	s.ambiguousPath = prepare(denied(http.StatusBadRequest, codes.InvalidArgument, "", reasonInvalidRequest, "Ambiguous request path"))
	s.noResource = prepare(denied(http.StatusForbidden, codes.PermissionDenied, "", reasonNoResource, "No protected resource matches this request"))
	for _, given := range cfg.Resources {
		rt, err := s.newRoute(given)
		if err != nil {
			return nil, err
		}
		if err := s.router.add(rt); err != nil {
			return nil, fmt.Errorf("authz: %w", err)
		}
	}
	return s, nil
}

func (s *Server) newRoute(given *Resource) (*route, error) {
	r := *given // defaults below must not write to the caller's value
	if r.Validator == nil {
		return nil, fmt.Errorf("authz: resource %q has no validator", r.URI)
	}
	mdURL, err := metadata.WellKnownURL(r.URI)
	if err != nil {
		return nil, fmt.Errorf("authz: resource: %w", err)
	}
	if r.Name == "" {
		r.Name = r.URI
	}
	if s.cfg.Tracer != nil {
		r.Validator = tracedValidator{Validator: r.Validator, tracer: s.cfg.Tracer}
	}
	rt := &route{Resource: &r, metadataURL: mdURL, implied: scopeClosure(r.ScopeImplies), sessionTTL: r.SessionTTL}
	rt.unavailableLog.Every = unavailableLogEvery
	rt.scopeHint = r.RequiredScopes
	if len(rt.scopeHint) == 0 {
		rt.scopeHint = r.ScopesSupported
	}
	if rt.sessionTTL <= 0 {
		rt.sessionTTL = 24 * time.Hour
	}
	if r.SessionBinding && s.cfg.Sessions == nil {
		return nil, fmt.Errorf("authz: resource %q binds sessions but no session store is configured", r.Name)
	}
	for _, p := range []struct {
		dst *string
		v   string
		def string
	}{{&rt.ssePath, r.LegacySSE.SSEPath, "/sse"}, {&rt.messagesPath, r.LegacySSE.MessagesPath, "/messages"}} {
		v := p.v
		if v == "" {
			v = p.def
		}
		if *p.dst, err = pathnorm.Normalize(v); err != nil {
			return nil, fmt.Errorf("authz: resource %q: legacy SSE path %q: %w", r.Name, v, err)
		}
	}
	if rt.origins, err = newOrigins(r.AllowedOrigins); err != nil {
		return nil, fmt.Errorf("authz: resource %q: %w", r.Name, err)
	}
	rt.noCredential = prepare(denied(http.StatusUnauthorized, codes.Unauthenticated, rt.challengeDiscovery(),
		reasonNoCredentials, credentialsRequired(&r)))
	un := denied(http.StatusServiceUnavailable, codes.Unavailable, "", reasonUnavailable, "Authorization server unavailable")
	un.headers = append(un.headers, kv{"retry-after", s.retryAfter})
	rt.unavailable = prepare(un)
	rt.unprotected = prepare(s.unauthenticated(reasonUnprotected))
	return rt, nil
}

func credentialsRequired(r *Resource) string {
	if r.APIKeys {
		return "API key required"
	}
	return "Bearer token required"
}

// asciiLower lowers the ASCII letters of s, as case-insensitive routers of
// percent-encoded paths compare them.
func asciiLower(s string) string {
	if !hasUpper(s) {
		return s
	}
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}

// Check decides one request. It never allows because something failed.
func (s *Server) Check(ctx context.Context, req *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	in := inputFromProto(req, &s.read)
	r, err := s.check(ctx, &in)
	if err != nil {
		return nil, err
	}
	return r.message(), nil
}

// result is a decision: an outcome rendered for this request, or a
// prepared one shared with others.
type result struct {
	out      *outcome
	prepared *prepared
}

// outcome is the whole outcome; for an allow kept with a cached
// principal it is rendered again, so a Check reads verdict instead.
func (r result) outcome() *outcome {
	if r.prepared != nil {
		return r.prepared.outcome()
	}
	return r.out
}

// verdict is what every decision reads of its outcome.
func (r result) verdict() (allow bool, reason string) {
	if r.prepared != nil {
		return r.prepared.allow, r.prepared.reason
	}
	return r.out.allow, r.out.reason
}

func (r result) message() *authv3.CheckResponse {
	if r.prepared != nil {
		return r.prepared.message()
	}
	return r.out.message()
}

func rendered(o *outcome) result { return result{out: o} }
func shared(p *prepared) result  { return result{prepared: p} }
func (r result) allowed() bool   { allow, _ := r.verdict(); return allow }
func (r result) withCORS(origin string) result {
	return rendered(r.outcome().withCORS(origin))
}

// request is the state of one decision as it goes through the checks. The
// input is passed beside it, not held: escape analysis does not tell a
// struct's fields apart, and the route, which outlives the request, would
// take the input to the heap with it.
type request struct {
	rt     *route
	path   string
	origin string // an allowed Origin, echoed in CORS headers of denials
	token  string
}

var msgPool = sync.Pool{New: func() any { s := make([]jsonrpcMessage, 0, 4); return &s }}

// check runs the checks in the order of DESIGN §6: Origin, class,
// credentials, token, scopes, session.
func (s *Server) check(ctx context.Context, in *checkInput) (result, error) {
	var start time.Time
	if s.cfg.Observer != nil {
		start = time.Now()
	}
	var span tracing.Span
	if s.cfg.Tracer != nil {
		var tc traceHeaders
		if in.trace != nil {
			tc = *in.trace
		}
		ctx, span = s.cfg.Tracer.StartServer(ctx, "Check", tc.parent, tc.state)
	}
	var req request
	r, err := s.route(ctx, in, &req)
	allow, reason := false, reasonUnavailable
	if err == nil {
		allow, reason = r.verdict()
		if !allow {
			o := r.outcome()
			s.logDenial(ctx, in, &req, o.reason, o.status)
		}
	} else {
		// gRPC UNAVAILABLE: Envoy answers the client as its
		// status_on_error says; no HTTP status of ours to log.
		s.logDenial(ctx, in, &req, reasonUnavailable, 0)
	}
	if s.cfg.Observer != nil || span != nil {
		s.observe(&req, allow, reason, err, start, span)
	}
	return r, err
}

// observe reports a decision to the Observer and the Check's span; a
// Check that failed with err (gRPC UNAVAILABLE) has reason
// reasonUnavailable.
func (s *Server) observe(req *request, allow bool, reason string, err error, start time.Time, span tracing.Span) {
	resource := ""
	if req.rt != nil {
		resource = req.rt.Name
	}
	decision := DecisionUnavailable
	switch {
	case allow:
		decision = DecisionAllow
	case reason != reasonUnavailable:
		decision = DecisionDeny
	}
	if s.cfg.Observer != nil {
		s.cfg.Observer.Check(resource, decision, reason, time.Since(start))
	}
	if span != nil {
		if resource != "" {
			span.Set(tracing.AttrResource, resource)
		}
		span.Set(tracing.AttrDecision, decision)
		span.Set(tracing.AttrReason, reason)
		if decision == DecisionUnavailable {
			if err == nil {
				err = errors.New("authorization server unavailable")
			}
			span.Fail(err)
		}
		span.End()
	}
}

// route finds the request's resource and decides; the answers that need no
// resource come first.
func (s *Server) route(ctx context.Context, in *checkInput, req *request) (result, error) {
	if !in.hasHTTP {
		return shared(s.noHTTP), nil
	}
	if in.badHeader {
		return shared(s.badHeader), nil
	}
	if len(in.identityLike) > maxIdentityLike {
		return rendered(denied(http.StatusBadRequest, codes.InvalidArgument, "", reasonInvalidRequest, "Too many identity headers")), nil
	}
	path, err := pathnorm.Normalize(pathOnly(in.path))
	if err != nil {
		return shared(s.ambiguousPath), nil
	}
	req.path = path
	rt, ambiguous := s.router.find(in, path)
	switch {
	case ambiguous:
		return shared(s.ambiguousPath), nil
	case rt == nil:
		return shared(s.noResource), nil
	}
	req.rt = rt
	r, err := s.decide(ctx, in, req)
	if err != nil {
		return r, err
	}
	allow, _ := r.verdict()
	switch {
	case !allow && req.origin != "":
		r = r.withCORS(req.origin)
	case allow && len(in.identityLike) > 0:
		r = rendered(r.outcome().withRemovals(in.identityLike))
	}
	return r, nil
}

func (s *Server) decide(ctx context.Context, in *checkInput, req *request) (result, error) {
	rt := req.rt
	// Origin first, for every class: a page on a foreign origin gets
	// nothing, not even a challenge.
	if rt.origins != nil && len(in.origin) > 0 {
		if len(in.origin) > 1 || !rt.origins.allows(in.origin[0]) {
			return rendered(denied(http.StatusForbidden, codes.PermissionDenied, "", reasonInvalidOrigin, "Origin not allowed")), nil
		}
		req.origin = in.origin[0]
	}
	if in.method == http.MethodOptions && in.preflight {
		return shared(rt.unprotected), nil // a CORS preflight carries no credentials
	}

	// The body's messages are locals, not request fields: storing the pooled
	// slice from a field would make the whole request escape to the heap.
	var state bodyState
	var msgs []jsonrpcMessage
	if in.method == http.MethodPost {
		ms := msgPool.Get().(*[]jsonrpcMessage)
		defer func() { *ms = msgs[:0]; msgPool.Put(ms) }()
		state, msgs = readBody(in, *ms)
	}
	if !rt.protects(rt.classify(in, req.path, state, msgs)) {
		return shared(rt.unprotected), nil
	}

	var cred credentials
	if rt.APIKeys {
		cred = extractAPIKey(in)
	} else {
		cred = extractCredentials(in)
	}
	switch cred.kind {
	case credNone:
		return shared(rt.noCredential), nil
	case credInvalid:
		return rendered(denied(http.StatusBadRequest, codes.InvalidArgument,
			rt.challengeInvalidRequest(cred.reason), reasonInvalidRequest, cred.reason)), nil
	}
	req.token = cred.token
	if len(cred.token) > s.cfg.MaxTokenBytes {
		return shared(s.invalidToken(rt, validators.DescTooLarge)), nil
	}
	p, err := rt.Validator.Validate(ctx, cred.token)
	if err != nil {
		return s.validationFailed(ctx, rt, err, in.httpFront)
	}

	needed := rt.RequiredScopes
	switch state {
	case bodyDuplicate:
		return s.invalidRequest(rt, "Duplicate member names in the JSON-RPC message"), nil
	case bodyOK:
		needed = rt.neededScopes(msgs)
	case bodyUnreadable, bodyAbsent:
		// A truncated, compressed or non-JSON-RPC body is refused rules or
		// none: what the MCP server will read cannot be known (DESIGN §6).
		// An absent one only when operation rules need it: Envoy sends no
		// body unless configured to (with_request_body), and nginx and
		// Traefik never do.
		if !rt.UnreadableBodyRouteScopes && (state == bodyUnreadable || len(rt.Operations) > 0) {
			return s.invalidRequest(rt, "Request body is not a readable JSON-RPC message"), nil
		}
	}
	if !rt.granted(p, needed) {
		return rendered(denied(http.StatusForbidden, codes.PermissionDenied,
			rt.challengeInsufficientScope(needed), reasonInsufficientScope, "Insufficient scope")), nil
	}

	if rt.SessionBinding {
		if r, bad := s.bindSession(ctx, in, req, p); bad {
			return r, nil
		}
	}
	var op opKey
	if state == bodyOK {
		op.method, op.tool = operation(msgs)
	}
	if s.log.Enabled(ctx, slog.LevelDebug) {
		s.log.DebugContext(ctx, "allow", "resource", rt.Name, "sub", p.Subject(), "scope", p.ScopeString(), "method", op.method)
	}
	return s.allowResponse(rt, p, cred.token, op), nil
}

func (s *Server) invalidRequest(rt *route, desc string) result {
	return rendered(denied(http.StatusBadRequest, codes.InvalidArgument, rt.challengeInvalidRequest(desc), reasonInvalidRequest, desc))
}

// validationFailed answers a validation that failed. httpFront: the front
// end has no gRPC status to report UNAVAILABLE with, so the answer is the
// 503 whatever the unavailable mode.
func (s *Server) validationFailed(ctx context.Context, rt *route, err error, httpFront bool) (result, error) {
	var verr *validators.Error
	if errors.As(err, &verr) && errors.Is(verr.Kind, validators.ErrInvalidToken) {
		s.log.DebugContext(ctx, "deny: invalid token", "resource", rt.Name, "reason", verr.Description, "cause", verr.Err)
		return shared(s.invalidToken(rt, verr.Description)), nil
	}
	// Unavailable, or an error no validator should return: either way the
	// token may be fine, so never 401, and never allow.
	desc := "Authorization server unavailable"
	if verr != nil {
		desc = verr.Description
	}
	if ok, suppressed := rt.unavailableLog.Allow(time.Now()); ok {
		s.log.WarnContext(ctx, "cannot validate token: answering unavailable", "resource", rt.Name, "error", err,
			"suppressed_since_last", suppressed)
	}
	if s.cfg.Unavailable == UnavailableGRPC && !httpFront {
		return result{}, status.Error(codes.Unavailable, desc)
	}
	if desc == "Authorization server unavailable" {
		return shared(rt.unavailable), nil
	}
	o := denied(http.StatusServiceUnavailable, codes.Unavailable, "", reasonUnavailable, desc)
	o.headers = append(o.headers, kv{"retry-after", s.retryAfter})
	return rendered(o), nil
}

func (s *Server) invalidToken(rt *route, desc string) *prepared {
	if r, ok := rt.invalid.Load(desc); ok {
		return r.(*prepared)
	}
	code := reasonInvalidToken
	if rt.APIKeys {
		code = reasonInvalidKey
	}
	r := prepare(denied(http.StatusUnauthorized, codes.Unauthenticated, rt.challengeInvalidToken(desc), code, desc))
	if rt.invalidCount.Add(1) <= maxInvalidResponses {
		rt.invalid.Store(desc, r)
	}
	return r
}
