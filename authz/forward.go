package authz

import (
	"io"
	"net/http"
	"net/textproto"
	"strings"
	"unicode/utf8"

	"google.golang.org/grpc/codes"
)

// The HTTP forward-auth front end (DESIGN §9): the Check decision for
// proxies that ask an authorization service over plain HTTP. One endpoint
// per proxy convention, because each convention's headers are ones another
// proxy passes through from its client unchanged:
//
//	/nginx          nginx auth_request, ingress-nginx auth-url:
//	                X-Original-Method, X-Original-URI, Host
//	/forwarded      Traefik ForwardAuth, Caddy forward_auth:
//	                X-Forwarded-Method, -Proto, -Host, -Uri
//	/envoy/<path>   Envoy ext_authz http_service (path_prefix: /envoy),
//	                Istio envoyExtAuthzHttp: the request itself
//
// Each builds the checkInput the gRPC readers build, through the same
// checkInput.header, and asks the same Server.check.
const (
	ForwardPathNginx     = "/nginx"
	ForwardPathForwarded = "/forwarded"
	ForwardPathEnvoy     = "/envoy"
)

// ForwardMaxBody bounds the request body read on /envoy/<path> (Envoy's
// with_request_body); keep max_request_bytes at or under it. A longer body
// is judged as a truncated one (unreadable_body). Other endpoints read no
// body.
const ForwardMaxBody = 64 << 10

// HeaderForwardBody repeats a denial's JSON body on /nginx: nginx drops the
// body of an auth_request subrequest, and its error_page can send this
// header's value instead (deploy/nginx).
const HeaderForwardBody = "X-Mcp-Authz-Body"

// headerEnvoyRemove asks Envoy's HTTP ext_authz client to remove request
// headers before the upstream, like headers_to_remove over gRPC.
const headerEnvoyRemove = "X-Envoy-Auth-Headers-To-Remove"

type convention int

const (
	convNone convention = iota
	convNginx
	convForwarded
	convEnvoy
)

// forwardHandler serves the forward-auth endpoints of one Server.
type forwardHandler struct {
	s *Server
	// identity lists the identity headers as sent: canonical name and
	// lower-case name, in the order of identityHeaders.all.
	identity []identityName
	// unavailable answers an error from check (gRPC unavailable mode
	// cannot reach here, but nothing may turn an error into an allow).
	unavailable *outcome
	// unremovable refuses an allow on /nginx and /forwarded whose request
	// carries identity-like headers those proxies cannot be asked to remove.
	unremovable *outcome
}

type identityName struct{ canonical, lower string }

// ForwardHandler returns the HTTP forward-auth front end of s (DESIGN §9).
// Serve it on a listener only the proxy can reach, as the gRPC one.
func (s *Server) ForwardHandler() http.Handler {
	h := &forwardHandler{s: s}
	for _, n := range s.headers.all() {
		h.identity = append(h.identity, identityName{textproto.CanonicalMIMEHeaderKey(n), n})
	}
	un := denied(http.StatusServiceUnavailable, codes.Unavailable, "", reasonUnavailable, "Authorization server unavailable")
	un.headers = append(un.headers, kv{"retry-after", s.retryAfter})
	h.unavailable = un
	h.unremovable = denied(http.StatusBadRequest, codes.InvalidArgument, "", reasonInvalidRequest,
		"Request carries a header reserved for the forwarded identity")
	return h
}

func (h *forwardHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s := h.s
	conv, target := forwardEndpoint(r.RequestURI)
	if conv == convNone {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusNotFound)
		_, _ = io.WriteString(w, `{"error":"not_found","error_description":"forward-auth endpoints: /nginx, /forwarded, /envoy/<path>"}`)
		return
	}
	in, problem := s.forwardInput(r, conv, target)
	var o *outcome
	switch {
	case problem != "":
		o = denied(http.StatusBadRequest, codes.InvalidArgument, "", reasonInvalidRequest, problem)
		s.logDenial(r.Context(), &in, &request{}, o.reason, o.status)
	default:
		res, err := s.check(r.Context(), &in)
		if err != nil {
			o = h.unavailable // never an allow because something failed
			break
		}
		if !res.allowed() {
			o = res.outcome()
			break
		}
		fa := h.allowOf(res)
		if conv != convEnvoy && fa.unremovable {
			o = h.unremovable
			s.logDenial(r.Context(), &in, &request{}, o.reason, o.status)
			break
		}
		h.writeAllow(w, conv, fa)
		return
	}
	h.writeDenial(w, conv, o)
}

// forwardEndpoint reads the convention from the request target, and for
// /envoy the original request target after the prefix. Only origin-form
// targets name an endpoint; the query of /nginx and /forwarded (ingress
// controllers may add one to auth-url) is ignored.
func forwardEndpoint(requestURI string) (convention, string) {
	path, _, _ := strings.Cut(requestURI, "?")
	switch path {
	case ForwardPathNginx:
		return convNginx, ""
	case ForwardPathForwarded:
		return convForwarded, ""
	}
	if rest, ok := strings.CutPrefix(requestURI, ForwardPathEnvoy); ok && strings.HasPrefix(rest, "/") {
		return convEnvoy, rest
	}
	return convNone, ""
}

// The headers that carry the original request, per convention: the
// canonical key Go stores them under, and the spelling used in messages.
var (
	hOriginalMethod  = conventionName{"X-Original-Method", "X-Original-Method"}
	hOriginalURI     = conventionName{"X-Original-Uri", "X-Original-URI"}
	hForwardedMethod = conventionName{"X-Forwarded-Method", "X-Forwarded-Method"}
	hForwardedProto  = conventionName{"X-Forwarded-Proto", "X-Forwarded-Proto"}
	hForwardedHost   = conventionName{"X-Forwarded-Host", "X-Forwarded-Host"}
	hForwardedURI    = conventionName{"X-Forwarded-Uri", "X-Forwarded-Uri"}
)

type conventionName struct{ key, spelled string }

// forwardInput builds the checkInput of a forward-auth request. problem,
// when not empty, is why the request cannot be judged (400): a header of
// the convention is missing, repeated or malformed.
func (s *Server) forwardInput(r *http.Request, conv convention, target string) (in checkInput, problem string) {
	in = checkInput{hasHTTP: true, httpFront: true}
	switch conv {
	case convNginx:
		if in.method, problem = conventionHeader(r.Header, hOriginalMethod); problem != "" {
			return in, problem
		}
		if in.path, problem = conventionHeader(r.Header, hOriginalURI); problem != "" {
			return in, problem
		}
		in.host = r.Host
	case convForwarded:
		if in.method, problem = conventionHeader(r.Header, hForwardedMethod); problem != "" {
			return in, problem
		}
		var proto string
		if proto, problem = conventionHeader(r.Header, hForwardedProto); problem != "" {
			return in, problem
		}
		if !strings.EqualFold(proto, "https") && !strings.EqualFold(proto, "http") {
			return in, "X-Forwarded-Proto is neither http nor https"
		}
		if in.host, problem = conventionHeader(r.Header, hForwardedHost); problem != "" {
			return in, problem
		}
		if in.path, problem = conventionHeader(r.Header, hForwardedURI); problem != "" {
			return in, problem
		}
	case convEnvoy:
		in.method, in.host, in.path = r.Method, r.Host, target
		if problem = readForwardBody(r, &in); problem != "" {
			return in, problem
		}
	}
	switch {
	case !validMethod(in.method):
		return in, "The original request method is not an HTTP method"
	case !validHost(in.host):
		return in, "The original request host is missing or malformed"
	case !validTarget(in.path):
		return in, "The original request target is not a path with an optional query"
	case conv != convEnvoy && unresolvedTarget(in.path):
		return in, "The original request path has a dot segment, an empty segment or a '#', which the proxy passes on unresolved"
	}
	for key, values := range r.Header {
		name, ok := forwardHeaderName(key, &s.read)
		for _, v := range values {
			if !utf8.ValidString(v) {
				in.badHeader = true
			}
			if ok {
				in.header(&s.read, name, v, true) // one value per header line, as Envoy's header_map
			}
		}
		if !utf8.ValidString(key) {
			in.badHeader = true
		}
	}
	in.finish()
	return in, ""
}

// conventionHeader returns the one value of a required header.
func conventionHeader(h http.Header, n conventionName) (string, string) {
	switch v := h[n.key]; len(v) {
	case 0:
		return "", "Missing " + n.spelled + " header"
	case 1:
		if v[0] == "" {
			return "", "Missing " + n.spelled + " header"
		}
		return v[0], ""
	default:
		return "", "Repeated " + n.spelled + " header"
	}
}

// readForwardBody reads the body Envoy sends (with_request_body), at most
// ForwardMaxBody bytes; a longer one counts as truncated.
func readForwardBody(r *http.Request, in *checkInput) string {
	if r.Body == nil || r.ContentLength == 0 {
		return ""
	}
	b, err := io.ReadAll(io.LimitReader(r.Body, ForwardMaxBody+1))
	if err != nil {
		return "Request body could not be read"
	}
	if len(b) > ForwardMaxBody {
		b = b[:ForwardMaxBody]
		in.partialBody = true
	}
	if len(b) > 0 {
		in.body, in.hasBody = b, true
	}
	return ""
}

// canonicalReads maps the canonical spelling Go gives a header name to
// the lower-case one checkInput.header reads it under, for the fixed names
// of reads: they are matched without allocating.
var canonicalReads = func() map[string]string {
	m := map[string]string{}
	for _, n := range []string{hAuthorization, hAPIKey, hOrigin, hSessionID, hPreflight, hContentEncoding, hPartialBody, hTraceparent, hTracestate} {
		m[textproto.CanonicalMIMEHeaderKey(n)] = n
	}
	return m
}()

// forwardHeaderName returns the lower-case name under which checkInput.header
// reads a request header, and whether it reads it at all (reads). Go hands
// header names in canonical form.
func forwardHeaderName(key string, opts *readOptions) (string, bool) {
	if lower, ok := canonicalReads[key]; ok {
		return lower, reads(opts, lower)
	}
	if matchesPrefix(key, opts.identityPrefix) {
		return strings.ToLower(key), true
	}
	return "", false
}

// validMethod: an RFC 9110 method token, as Envoy would have accepted it.
func validMethod(m string) bool {
	if m == "" || len(m) > 32 {
		return false
	}
	for i := 0; i < len(m); i++ {
		if !tchar(m[i]) {
			return false
		}
	}
	return true
}

func tchar(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}

// validHost: a host with an optional port, without anything that would let
// it name another authority (userinfo, a path, a list of hosts).
func validHost(h string) bool {
	if h == "" || len(h) > 255 {
		return false
	}
	for i := 0; i < len(h); i++ {
		if c := h[i]; c <= ' ' || c >= 0x7f || strings.IndexByte(`/?#@,\"`, c) >= 0 {
			return false
		}
	}
	return true
}

// validTarget: an origin-form request target (RFC 9112 §3.2.1), path and
// optional query, in visible ASCII. What the path means is then decided by
// pathnorm.Normalize, exactly as for a gRPC Check.
func validTarget(t string) bool {
	if len(t) == 0 || t[0] != '/' {
		return false
	}
	for i := 0; i < len(t); i++ {
		if c := t[i]; c <= ' ' || c >= 0x7f {
			return false
		}
	}
	return true
}

// unresolvedTarget reports whether the target has a path that
// pathnorm.Normalize would judge other than as sent, by resolving a dot
// segment ("." or "..", "%2e" in either case included) or merging an empty
// segment ("//"), or a raw '#' (not part of a request target; Normalize
// ends the path there). nginx, Caddy, Traefik and ingress-nginx pass the
// target on to the MCP server as the client sent it, and a server that
// does not resolve it the same way (Express, or one that reads "//mcp" as
// an authority, as WHATWG URL parsing does) would serve "/admin/../mcp" as
// /admin after mcp-authz judged /mcp. On /nginx and /forwarded such a
// target is refused (400); Envoy normalizes before it asks (/envoy).
func unresolvedTarget(t string) bool {
	if strings.IndexByte(t, '#') >= 0 {
		return true
	}
	p, _, _ := strings.Cut(t, "?")
	start := 1 // p[0] is '/' (validTarget)
	for i := 1; i <= len(p); i++ {
		if i < len(p) && p[i] != '/' {
			continue
		}
		seg := p[start:i]
		if (seg == "" && i < len(p)) || dotSegment(seg) {
			return true
		}
		start = i + 1
	}
	return false
}

// dotSegment: "." or "..", each dot possibly written "%2e" or "%2E".
func dotSegment(seg string) bool {
	dots := 0
	for i := 0; i < len(seg); dots++ {
		switch {
		case dots == 2:
			return false
		case seg[i] == '.':
			i++
		case len(seg)-i >= 3 && seg[i] == '%' && seg[i+1] == '2' && (seg[i+2] == 'e' || seg[i+2] == 'E'):
			i += 3
		default:
			return false
		}
	}
	return dots > 0
}

// hasUnremovable reports whether an allow removes a header other than the
// identity headers it sets (each sent, empty or not, so a recipe's copy
// overwrites the client's) and Authorization (stripped by the recipe):
// nginx and Traefik cannot be told to remove an arbitrary header.
func (h *forwardHandler) hasUnremovable(o *outcome) bool {
	for _, name := range o.remove {
		if name == hAuthorization {
			continue
		}
		known := false
		for _, id := range h.identity {
			if id.lower == name {
				known = true
				break
			}
		}
		if !known {
			return true
		}
	}
	return false
}

// forwardAllow is an allow as sent: the value of each identity header
// (parallel to forwardHandler.identity; header values are never modified
// once handed to net/http, so they can be shared), and the removals for
// Envoy.
type forwardAllow struct {
	values [][]string
	remove []string
	// unremovable: the allow removes headers that /nginx and /forwarded
	// cannot have removed (see hasUnremovable).
	unremovable bool
}

// allowOf is the allow res as sent; a shared allow (a cached principal)
// is rendered once.
func (h *forwardHandler) allowOf(res result) *forwardAllow {
	p := res.prepared
	if p == nil {
		return h.renderAllow(res.out)
	}
	if fa := p.forward.Load(); fa != nil {
		return fa
	}
	fa := h.renderAllow(p.outcome())
	p.forward.Store(fa)
	return fa
}

var noStore = []string{"no-store"}

func (h *forwardHandler) renderAllow(o *outcome) *forwardAllow {
	fa := &forwardAllow{values: make([][]string, len(h.identity)), unremovable: h.hasUnremovable(o)}
	for i, id := range h.identity {
		v := ""
		for _, kv := range o.headers {
			if kv.key == id.lower {
				v = kv.value
				break
			}
		}
		fa.values[i] = []string{v}
	}
	if len(o.remove) > 0 {
		fa.remove = []string{strings.Join(o.remove, ",")}
	}
	return fa
}

func (h *forwardHandler) writeAllow(w http.ResponseWriter, conv convention, fa *forwardAllow) {
	hdr := w.Header()
	for i, id := range h.identity {
		hdr[id.canonical] = fa.values[i]
	}
	if conv == convEnvoy && fa.remove != nil {
		hdr[headerEnvoyRemove] = fa.remove
	}
	hdr["Cache-Control"] = noStore
	w.WriteHeader(http.StatusOK)
}

func (h *forwardHandler) writeDenial(w http.ResponseWriter, conv convention, o *outcome) {
	hdr := w.Header()
	for _, kv := range o.headers {
		hdr.Add(kv.key, kv.value)
	}
	if conv == convNginx {
		hdr[HeaderForwardBody] = []string{o.body}
	}
	w.WriteHeader(o.status)
	_, _ = io.WriteString(w, o.body)
}
