package authz

import (
	"encoding/json"
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
)

type identityHeaders struct {
	subject, clientID, scopes, issuer, claims string
}

func newIdentityHeaders(prefix string) identityHeaders {
	return identityHeaders{
		subject:  prefix + HeaderSubject,
		clientID: prefix + HeaderClientID,
		scopes:   prefix + HeaderScopes,
		issuer:   prefix + HeaderIssuer,
		claims:   prefix + HeaderClaims,
	}
}

// challenge renders a WWW-Authenticate value (RFC 6750 §3, RFC 9728 §5.1).
// Without an error code it is the discovery challenge.
func challenge(rt *route, code, desc string, scopes []string) string {
	var c challengeBuilder
	if rt.APIKeys {
		// A static key has no metadata to discover: name the header.
		c.b.WriteString(`ApiKey header="X-API-Key"`)
		c.n = 1
		if code == "invalid_token" {
			code = "invalid_key"
		}
	} else {
		c.b.WriteString("Bearer ")
		if code == "" {
			c.param("resource_metadata", rt.metadataURL)
		}
	}
	c.param("error", code)
	c.param("error_description", desc)
	c.param("scope", strings.Join(scopes, " "))
	if !rt.APIKeys && code != "" {
		c.param("resource_metadata", rt.metadataURL)
	}
	return c.b.String()
}

// challengeBuilder writes comma-separated auth-params, skipping empty ones.
type challengeBuilder struct {
	b strings.Builder
	n int
}

func (c *challengeBuilder) param(name, value string) {
	if value == "" {
		return
	}
	if c.n > 0 {
		c.b.WriteString(", ")
	}
	c.n++
	param(&c.b, name, value)
}

// param writes name="value", dropping the characters a quoted-string would
// need to escape and any control characters.
func param(b *strings.Builder, name, value string) {
	b.WriteString(name)
	b.WriteString(`="`)
	b.WriteString(sanitize(value))
	b.WriteByte('"')
}

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
		if r == '"' || r == '\\' || r < 0x20 || r == 0x7f {
			return -1
		}
		return r
	}, s)
}

func header(key, value string) *corev3.HeaderValueOption {
	return &corev3.HeaderValueOption{
		Header: &corev3.HeaderValue{Key: key, Value: value},
		// Overwrite: a client must not be able to pre-set these.
		AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD,
	}
}

type errorBody struct {
	Error            string `json:"error"`
	ErrorDescription string `json:"error_description,omitempty"`
}

// denied renders a denial. wwwAuth may be empty.
func (s *Server) denied(httpStatus int, code codes.Code, wwwAuth, errCode, desc string) *authv3.CheckResponse {
	body, _ := json.Marshal(errorBody{Error: errCode, ErrorDescription: sanitize(desc)})
	headers := make([]*corev3.HeaderValueOption, 0, 4)
	if wwwAuth != "" {
		headers = append(headers, header("www-authenticate", wwwAuth))
	}
	headers = append(headers,
		header("content-type", "application/json"),
		header("cache-control", "no-store"),
	)
	return &authv3.CheckResponse{
		Status: &rpcstatus.Status{Code: int32(code)},
		HttpResponse: &authv3.CheckResponse_DeniedResponse{DeniedResponse: &authv3.DeniedHttpResponse{
			Status:  &typev3.HttpStatus{Code: typev3.StatusCode(httpStatus)},
			Headers: headers,
			Body:    string(body),
		}},
	}
}

// allowed renders an allow: identity headers for the upstream (overwriting
// any the client sent, and removing those with no value so a client cannot
// supply them), and the same identity as dynamic metadata for Envoy's RBAC,
// rate limiting and access logs.
func (s *Server) allowed(rt *route, p *validators.Principal) *authv3.CheckResponse {
	hn := s.headers
	scopes := strings.Join(p.Scopes, " ")
	set := make([]*corev3.HeaderValueOption, 0, 5)
	remove := make([]string, 0, 6)
	for _, h := range [...]struct{ name, value string }{
		{hn.subject, p.Subject},
		{hn.clientID, p.ClientID},
		{hn.scopes, scopes},
		{hn.issuer, p.Issuer},
		{hn.claims, p.Claims},
	} {
		if h.value == "" {
			remove = append(remove, h.name)
			continue
		}
		set = append(set, header(h.name, h.value))
	}
	if s.cfg.StripAuthorization {
		remove = append(remove, "authorization")
	}
	fields := map[string]*structpb.Value{
		"resource": structpb.NewStringValue(rt.URI),
		"sub":      structpb.NewStringValue(p.Subject),
		"iss":      structpb.NewStringValue(p.Issuer),
		"scope":    structpb.NewStringValue(scopes),
	}
	if p.ClientID != "" {
		fields["client_id"] = structpb.NewStringValue(p.ClientID)
	}
	if !p.ExpiresAt.IsZero() {
		fields["exp"] = structpb.NewNumberValue(float64(p.ExpiresAt.Unix()))
	}
	return &authv3.CheckResponse{
		Status: &rpcstatus.Status{Code: int32(codes.OK)},
		HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: &authv3.OkHttpResponse{
			Headers:         set,
			HeadersToRemove: remove,
		}},
		DynamicMetadata: &structpb.Struct{Fields: fields},
	}
}
