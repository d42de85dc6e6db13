// Package authz is the Envoy ext_authz v3 Check server: it maps a request to
// a protected resource, asks that resource's validator about the bearer
// token, and renders the decision as Envoy expects it, with the RFC 6750 /
// RFC 9728 challenge an MCP client needs.
package authz

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/mcp-authz/mcp-authz/metadata"
	"github.com/mcp-authz/mcp-authz/validators"
)

// Validator turns a bearer token into a principal or a *validators.Error.
type Validator interface {
	Validate(ctx context.Context, token string) (*validators.Principal, error)
}

// Resource is one protected MCP resource and its policy.
type Resource struct {
	// Name selects the resource from the Envoy context extension
	// "mcp_resource". Defaults to URI.
	Name string
	// URI is the RFC 9728 resource identifier, e.g. https://mcp.example.com/mcp.
	URI string
	// ScopesSupported is advertised in the metadata and, when RequiredScopes
	// is empty, in the 401 challenge.
	ScopesSupported []string
	// RequiredScopes must all be granted for any request to the resource.
	RequiredScopes []string
	// Hosts and PathPrefix select the resource when Envoy sends no context
	// extension (Istio CUSTOM providers). Empty Hosts matches any host.
	Hosts      []string
	PathPrefix string
	// APIKeys makes the resource take static API keys (X-API-Key or
	// Authorization: ApiKey) instead of bearer tokens; Validator checks them.
	APIKeys   bool
	Validator Validator
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
	Logger             *slog.Logger
}

// Server implements envoy.service.auth.v3.Authorization.
type Server struct {
	authv3.UnimplementedAuthorizationServer

	resources  []*route
	byName     map[string]*route
	cfg        Config
	retryAfter string
	headers    identityHeaders
	log        *slog.Logger
}

// route is a Resource with everything about it that does not depend on the
// request rendered once.
type route struct {
	*Resource
	metadataURL  string
	challenge    string // 401 without credentials
	noCredential *prepared
	// invalid holds the 401 invalid_token responses by description: the
	// descriptions are a small fixed set, and a flood of bad tokens should
	// not render the same denial again and again.
	invalid      sync.Map // string -> *prepared
	invalidCount atomic.Int32
	// unavailableLog keeps an outage from logging once per request.
	unavailableLog logLimiter
}

// logLimiter passes one event per interval and counts the rest.
type logLimiter struct {
	next       atomic.Int64 // unix nanoseconds before which events are suppressed
	suppressed atomic.Int64
}

// unavailableLogEvery is how often an ongoing dependency failure is logged
// per resource.
const unavailableLogEvery = 10 * time.Second

// allow reports whether to log now, and how many events were suppressed
// since the last one logged.
func (l *logLimiter) allow(now time.Time) (bool, int64) {
	next := l.next.Load()
	if now.UnixNano() < next || !l.next.CompareAndSwap(next, now.Add(unavailableLogEvery).UnixNano()) {
		l.suppressed.Add(1)
		return false, 0
	}
	return true, l.suppressed.Swap(0)
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
	s := &Server{
		cfg:        cfg,
		byName:     make(map[string]*route),
		retryAfter: fmt.Sprint(int((cfg.RetryAfter + time.Second - 1) / time.Second)),
		headers:    newIdentityHeaders(strings.ToLower(cfg.IdentityHeaderPrefix)),
		log:        cfg.Logger,
	}
	for _, given := range cfg.Resources {
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
		rt := &route{Resource: &r, metadataURL: mdURL}
		rt.challenge = challenge(rt, "", "", scopeHint(&r))
		rt.noCredential = prepare(s.denied(http.StatusUnauthorized, codes.Unauthenticated, rt.challenge,
			"invalid_request", "Bearer token required"))
		if _, dup := s.byName[r.Name]; dup {
			return nil, fmt.Errorf("authz: resource name %q used twice", r.Name)
		}
		s.byName[r.Name] = rt
		s.resources = append(s.resources, rt)
	}
	return s, nil
}

// scopeHint is the scope a client should request: the required scopes, else
// everything supported.
func scopeHint(r *Resource) []string {
	if len(r.RequiredScopes) > 0 {
		return r.RequiredScopes
	}
	return r.ScopesSupported
}

// ContextExtensionResource is the Envoy context extension that names the
// protected resource of a route.
const ContextExtensionResource = "mcp_resource"

// Check decides one request. It never allows because something failed.
func (s *Server) Check(ctx context.Context, req *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	in := inputFromProto(req)
	r, err := s.check(ctx, &in)
	if err != nil {
		return nil, err
	}
	return r.message(), nil
}

// result is a decision: a response rendered for this request, or a
// prepared one shared with others.
type result struct {
	msg      *authv3.CheckResponse
	prepared *prepared
}

func (r result) message() *authv3.CheckResponse {
	if r.prepared != nil {
		return r.prepared.msg
	}
	return r.msg
}

func rendered(msg *authv3.CheckResponse) (result, error) { return result{msg: msg}, nil }

func (s *Server) check(ctx context.Context, in *checkInput) (result, error) {
	if !in.hasHTTP {
		return rendered(s.denied(http.StatusBadRequest, codes.InvalidArgument, "", "invalid_request", "No HTTP request attributes"))
	}
	rt := s.route(in)
	if rt == nil {
		s.log.DebugContext(ctx, "deny: no protected resource matches", "host", in.host, "path", pathOnly(in.path))
		return rendered(s.denied(http.StatusForbidden, codes.PermissionDenied, "", "access_denied", "No protected resource matches this request"))
	}

	var cred credentials
	if rt.APIKeys {
		cred = extractAPIKey(in)
	} else {
		cred = extractCredentials(in)
	}
	switch cred.kind {
	case credNone:
		return result{prepared: rt.noCredential}, nil
	case credInvalid:
		return rendered(s.denied(http.StatusBadRequest, codes.InvalidArgument,
			challenge(rt, "invalid_request", cred.reason, nil), "invalid_request", cred.reason))
	}
	if len(cred.token) > s.cfg.MaxTokenBytes {
		return result{prepared: s.invalidToken(rt, validators.DescTooLarge)}, nil
	}

	p, err := rt.Validator.Validate(ctx, cred.token)
	if err != nil {
		return s.validationFailed(ctx, rt, err)
	}
	if !p.HasScopes(rt.RequiredScopes) {
		return rendered(s.denied(http.StatusForbidden, codes.PermissionDenied,
			challenge(rt, "insufficient_scope", "", rt.RequiredScopes),
			"insufficient_scope", "Insufficient scope"))
	}
	// Rendering headers and metadata is most of the cost of a cached Check;
	// a cached principal is the same pointer on every hit, so the response
	// is rendered once per principal and shared read-only (gRPC marshals it
	// concurrently, which protobuf allows).
	resp := p.Memo(rt, func() any { return prepare(s.allowed(rt, p)) })
	return result{prepared: resp.(*prepared)}, nil
}

func (s *Server) validationFailed(ctx context.Context, rt *route, err error) (result, error) {
	var verr *validators.Error
	if errors.As(err, &verr) && errors.Is(verr.Kind, validators.ErrInvalidToken) {
		s.log.DebugContext(ctx, "deny: invalid token", "resource", rt.Name, "reason", verr.Description, "cause", verr.Err)
		return result{prepared: s.invalidToken(rt, verr.Description)}, nil
	}
	// Unavailable, or an error no validator should return: either way the
	// token may be fine, so never 401, and never allow.
	desc := "Authorization server unavailable"
	if verr != nil {
		desc = verr.Description
	}
	if ok, suppressed := rt.unavailableLog.allow(time.Now()); ok {
		s.log.WarnContext(ctx, "cannot validate token: answering unavailable", "resource", rt.Name, "error", err,
			"suppressed_since_last", suppressed)
	}
	if s.cfg.Unavailable == UnavailableGRPC {
		return result{}, status.Error(codes.Unavailable, desc)
	}
	resp := s.denied(http.StatusServiceUnavailable, codes.Unavailable, "", "temporarily_unavailable", desc)
	resp.GetDeniedResponse().Headers = append(resp.GetDeniedResponse().Headers, header("retry-after", s.retryAfter))
	return rendered(resp)
}

func (s *Server) invalidToken(rt *route, desc string) *prepared {
	if r, ok := rt.invalid.Load(desc); ok {
		return r.(*prepared)
	}
	r := prepare(s.denied(http.StatusUnauthorized, codes.Unauthenticated,
		challenge(rt, "invalid_token", desc, nil), "invalid_token", desc))
	if rt.invalidCount.Add(1) <= maxInvalidResponses {
		rt.invalid.Store(desc, r)
	}
	return r
}

// route picks the resource a request belongs to: by context extension when
// Envoy sends one, else by host and longest path prefix.
func (s *Server) route(in *checkInput) *route {
	if in.hasResource {
		return s.byName[in.resource] // an unknown name matches nothing: fail closed
	}
	host := hostOnly(in.host)
	path := pathOnly(in.path)
	var best *route
	for _, rt := range s.resources {
		if len(rt.Hosts) > 0 && !slices.ContainsFunc(rt.Hosts, func(x string) bool { return strings.EqualFold(x, host) }) {
			continue
		}
		if !pathHasPrefix(path, rt.PathPrefix) {
			continue
		}
		if best == nil || len(rt.PathPrefix) > len(best.PathPrefix) {
			best = rt
		}
	}
	return best
}

// pathHasPrefix matches whole path segments: /mcp matches /mcp and /mcp/x,
// not /mcpx.
func pathHasPrefix(path, prefix string) bool {
	prefix = strings.TrimSuffix(prefix, "/")
	if prefix == "" {
		return true
	}
	return path == prefix || strings.HasPrefix(path, prefix) && path[len(prefix)] == '/'
}

func hostOnly(hostport string) string {
	if i := strings.LastIndexByte(hostport, ':'); i >= 0 && !strings.Contains(hostport[i:], "]") {
		return hostport[:i]
	}
	return hostport
}

func pathOnly(target string) string {
	if i := strings.IndexAny(target, "?#"); i >= 0 {
		return target[:i]
	}
	return target
}
