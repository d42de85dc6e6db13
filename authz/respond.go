package authz

import (
	"encoding/json"
	"slices"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/mcp-authz/mcp-authz/validators"
)

// Identity header suffixes; the full names are the configured prefix plus
// these, e.g. x-mcp-auth-subject.
const (
	HeaderSubject  = "subject"
	HeaderClientID = "client-id"
	HeaderScopes   = "scopes"
	HeaderIssuer   = "issuer"
	HeaderClaims   = "claims"
	HeaderResource = "resource"
	HeaderMethod   = "method"
	HeaderTool     = "tool"
)

type identityHeaders struct {
	prefix                                                            string
	subject, clientID, scopes, issuer, claims, resource, method, tool string
}

func newIdentityHeaders(prefix string) identityHeaders {
	return identityHeaders{
		prefix:   prefix,
		subject:  prefix + HeaderSubject,
		clientID: prefix + HeaderClientID,
		scopes:   prefix + HeaderScopes,
		issuer:   prefix + HeaderIssuer,
		claims:   prefix + HeaderClaims,
		resource: prefix + HeaderResource,
		method:   prefix + HeaderMethod,
		tool:     prefix + HeaderTool,
	}
}

// all lists every identity header name.
func (h identityHeaders) all() []string {
	return []string{h.subject, h.clientID, h.scopes, h.issuer, h.claims, h.resource, h.method, h.tool}
}

// Denial reasons: the error code of each kind of answer, used in bodies,
// logs and metrics.
const (
	reasonOK                = "ok"
	reasonUnprotected       = "unprotected"
	reasonNoCredentials     = "unauthorized"
	reasonInvalidRequest    = "invalid_request"
	reasonInvalidToken      = "invalid_token"
	reasonInvalidKey        = "invalid_key"
	reasonInsufficientScope = "insufficient_scope"
	reasonInvalidOrigin     = "invalid_origin"
	reasonSessionMismatch   = "session_mismatch"
	reasonUnavailable       = "temporarily_unavailable"
	reasonNoResource        = "access_denied"
)

// kv is one header.
type kv struct{ key, value string }

// outcome is a decision, independent of the front end that renders it:
// Envoy's CheckResponse over gRPC, or an HTTP forward-auth answer.
type outcome struct {
	allow bool
	// reason labels the decision in logs and metrics.
	reason string
	// status is the HTTP status of a denial; code the gRPC code Envoy reads.
	status int
	code   codes.Code
	// headers go to the client on deny, to the upstream on allow.
	headers []kv
	// remove lists the upstream headers removed on allow.
	remove []string
	// body is the denial's JSON body.
	body string
	// meta is the allow's dynamic metadata, in the order it is written.
	meta []metaField
}

// metaField is one dynamic metadata field: a string, or a number.
type metaField struct {
	key    string
	s      string
	n      float64
	number bool
}

// message renders o as Envoy's CheckResponse.
func (o *outcome) message() *authv3.CheckResponse {
	headers := make([]*corev3.HeaderValueOption, 0, len(o.headers))
	for _, h := range o.headers {
		headers = append(headers, header(h.key, h.value))
	}
	if !o.allow {
		return &authv3.CheckResponse{
			Status: &rpcstatus.Status{Code: int32(o.code)},
			HttpResponse: &authv3.CheckResponse_DeniedResponse{DeniedResponse: &authv3.DeniedHttpResponse{
				Status:  &typev3.HttpStatus{Code: typev3.StatusCode(o.status)},
				Headers: headers,
				Body:    o.body,
			}},
		}
	}
	resp := &authv3.CheckResponse{
		Status: &rpcstatus.Status{Code: int32(codes.OK)},
		HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: &authv3.OkHttpResponse{
			Headers:         headers,
			HeadersToRemove: o.remove,
		}},
	}
	if len(o.meta) > 0 {
		fields := make(map[string]*structpb.Value, len(o.meta))
		for _, m := range o.meta {
			if m.number {
				fields[m.key] = structpb.NewNumberValue(m.n)
			} else {
				fields[m.key] = structpb.NewStringValue(m.s)
			}
		}
		resp.DynamicMetadata = &structpb.Struct{Fields: fields}
	}
	return resp
}

func header(key, value string) *corev3.HeaderValueOption {
	return &corev3.HeaderValueOption{
		Header: &corev3.HeaderValue{Key: key, Value: value},
		// Overwrite: a client must not be able to pre-set these.
		AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD,
	}
}

// The challenges of DESIGN §2, parameter order included. Scope hints follow
// one rule: the route's required scopes, else everything supported.

func (rt *route) challengeDiscovery() string {
	if rt.APIKeys {
		return apiKeyChallenge("", "", rt.scopeHint)
	}
	var c challengeBuilder
	c.scheme("Bearer")
	c.param("resource_metadata", rt.metadataURL)
	c.param("scope", strings.Join(rt.scopeHint, " "))
	return c.String()
}

func (rt *route) challengeInvalidRequest(desc string) string {
	if rt.APIKeys {
		return apiKeyChallenge(reasonInvalidRequest, desc, nil)
	}
	var c challengeBuilder
	c.scheme("Bearer")
	c.param("error", reasonInvalidRequest)
	c.param("error_description", desc)
	c.param("resource_metadata", rt.metadataURL)
	return c.String()
}

func (rt *route) challengeInvalidToken(desc string) string {
	if rt.APIKeys {
		return apiKeyChallenge(reasonInvalidKey, desc, rt.scopeHint)
	}
	var c challengeBuilder
	c.scheme("Bearer")
	c.param("error", reasonInvalidToken)
	c.param("error_description", desc)
	c.param("resource_metadata", rt.metadataURL)
	c.param("scope", strings.Join(rt.scopeHint, " "))
	return c.String()
}

func (rt *route) challengeInsufficientScope(needed []string) string {
	if rt.APIKeys {
		return apiKeyChallenge(reasonInsufficientScope, "", needed)
	}
	var c challengeBuilder
	c.scheme("Bearer")
	c.param("error", reasonInsufficientScope)
	c.param("scope", strings.Join(needed, " "))
	c.param("resource_metadata", rt.metadataURL)
	return c.String()
}

// apiKeyChallenge: a static key has no metadata to discover, so the
// challenge names the header instead.
func apiKeyChallenge(code, desc string, scopes []string) string {
	var c challengeBuilder
	c.b.WriteString(`ApiKey header="X-API-Key"`)
	c.n = 1
	c.param("error", code)
	c.param("error_description", desc)
	c.param("scope", strings.Join(scopes, " "))
	return c.String()
}

// challengeBuilder writes a scheme and comma-separated auth-params,
// skipping empty ones.
type challengeBuilder struct {
	b strings.Builder
	n int
}

func (c *challengeBuilder) scheme(s string) { c.b.WriteString(s + " ") }

func (c *challengeBuilder) param(name, value string) {
	if value == "" {
		return
	}
	if c.n > 0 {
		c.b.WriteString(", ")
	}
	c.n++
	c.b.WriteString(name)
	c.b.WriteString(`="`)
	c.b.WriteString(sanitize(value))
	c.b.WriteByte('"')
}

func (c *challengeBuilder) String() string { return c.b.String() }

// sanitize drops the characters a quoted-string would need to escape and
// every control character.
func sanitize(s string) string {
	clean := true
	for i := 0; i < len(s); i++ {
		if c := s[i]; c == '"' || c == '\\' || c < 0x20 || c == 0x7f {
			clean = false
			break
		}
	}
	if clean {
		return s
	}
	return strings.Map(func(r rune) rune {
		if r == '"' || r == '\\' || r < 0x20 || r == 0x7f || (r >= 0x80 && r <= 0x9f) {
			return -1
		}
		return r
	}, s)
}

type errorBody struct {
	Error            string `json:"error"`
	ErrorDescription string `json:"error_description,omitempty"`
}

// denied builds a denial. wwwAuth may be empty; errCode is the body's
// error, which is the challenge's code (or unauthorized without one).
func denied(httpStatus int, code codes.Code, wwwAuth, errCode, desc string) *outcome {
	body, _ := json.Marshal(errorBody{Error: errCode, ErrorDescription: sanitize(desc)})
	o := &outcome{reason: errCode, status: httpStatus, code: code, body: string(body)}
	o.headers = make([]kv, 0, 4)
	if wwwAuth != "" {
		o.headers = append(o.headers, kv{"www-authenticate", wwwAuth})
	}
	o.headers = append(o.headers, kv{"content-type", "application/json"}, kv{"cache-control", "no-store"})
	return o
}

// withCORS returns a copy of a denial that a browser on origin may read:
// an MCP client in a page needs WWW-Authenticate to start its OAuth flow.
func (o *outcome) withCORS(origin string) *outcome {
	c := *o
	c.headers = append(append(make([]kv, 0, len(o.headers)+3), o.headers...),
		kv{"access-control-allow-origin", origin},
		kv{"vary", "Origin"},
		kv{"access-control-expose-headers", "WWW-Authenticate, Mcp-Session-Id"},
	)
	return &c
}

// withRemovals returns a copy of an allow that also removes names, except
// those it sets: Envoy applies headers_to_remove after the headers it sets,
// and an overwritten header needs no removal.
func (o *outcome) withRemovals(names []string) *outcome {
	c := *o
	c.remove = append(make([]string, 0, len(o.remove)+len(names)), o.remove...)
	for _, n := range names {
		if !slices.ContainsFunc(o.headers, func(h kv) bool { return h.key == n }) && !slices.Contains(c.remove, n) {
			c.remove = append(c.remove, n)
		}
	}
	return &c
}

// opKey names the JSON-RPC operation an allow response was rendered for.
type opKey struct{ method, tool string }

// allowed renders an allow: identity headers for the upstream (overwriting
// any the client sent, and removing those with no value so a client cannot
// supply them), and the same identity as dynamic metadata for Envoy's RBAC,
// rate limiting and access logs.
func (s *Server) allowed(rt *route, p *validators.Principal, claims string, op opKey) *outcome {
	hn := s.headers
	scopes := p.ScopeString()
	sub, client, iss := p.Subject(), p.ClientID(), p.Issuer()
	o := &outcome{allow: true, reason: reasonOK, code: codes.OK}
	o.headers = make([]kv, 0, 8)
	o.remove = make([]string, 0, 4)
	for _, h := range [...]kv{
		{hn.subject, headerValue(sub)},
		{hn.clientID, headerValue(client)},
		{hn.scopes, headerValue(scopes)},
		{hn.issuer, headerValue(iss)},
		{hn.claims, claims},
		{hn.resource, headerValue(rt.URI)},
		{hn.method, headerValue(op.method)},
		{hn.tool, headerValue(op.tool)},
	} {
		if h.value == "" {
			o.remove = append(o.remove, h.key)
			continue
		}
		o.headers = append(o.headers, h)
	}
	if s.cfg.StripAuthorization {
		o.remove = append(o.remove, hAuthorization)
	}
	o.meta = make([]metaField, 0, 8)
	o.meta = append(o.meta, metaField{key: "resource", s: rt.URI}, metaField{key: "sub", s: sub},
		metaField{key: "iss", s: iss}, metaField{key: "scope", s: scopes})
	if client != "" {
		o.meta = append(o.meta, metaField{key: "client_id", s: client})
	}
	if claims != "" {
		// The same as the claims header (DESIGN §2: the identity headers,
		// and the same as dynamic metadata), for access logs and filters
		// that decode it.
		o.meta = append(o.meta, metaField{key: "claims", s: claims})
	}
	if exp := p.ExpiresAt(); !exp.IsZero() {
		o.meta = append(o.meta, metaField{key: "exp", n: float64(exp.Unix()), number: true})
	}
	if op.method != "" {
		o.meta = append(o.meta, metaField{key: "method", s: op.method})
	}
	if op.tool != "" {
		o.meta = append(o.meta, metaField{key: "tool", s: op.tool})
	}
	return o
}

// unauthenticated renders the pass of a request that needs no credentials
// (an unprotected class, a CORS preflight): no identity reaches the
// upstream, and any copy the client sent is removed.
func (s *Server) unauthenticated(reason string) *outcome {
	o := &outcome{allow: true, reason: reason, code: codes.OK, remove: s.headers.all()}
	if s.cfg.StripAuthorization {
		o.remove = append(o.remove, hAuthorization)
	}
	return o
}

// headerValue makes an identity value safe for an HTTP header: control
// characters, "%" and non-ASCII bytes are percent-encoded (UTF-8, RFC
// 3986), so a value can neither break the header nor pass for another.
// Validators already refuse tokens whose identity holds control
// characters; this is the second line.
func headerValue(s string) string {
	clean := true
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f || c == '%' {
			clean = false
			break
		}
	}
	if clean {
		return s
	}
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	b.Grow(len(s) + 16)
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f || c == '%' {
			b.WriteByte('%')
			b.WriteByte(hex[c>>4])
			b.WriteByte(hex[c&15])
		} else {
			b.WriteByte(c)
		}
	}
	return b.String()
}
