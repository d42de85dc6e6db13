package authz

import (
	"errors"
	"slices"
	"strings"
	"unicode/utf8"
	"unsafe"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/protobuf/encoding/protowire"
)

// checkInput is what a decision reads from a request, whichever front end
// (gRPC ext_authz, HTTP forward auth) received it.
type checkInput struct {
	hasHTTP bool
	// badHeader: a header name or value, the path or the host is not valid
	// UTF-8 (Envoy does not check; protobuf would refuse the whole message).
	badHeader bool
	method    string
	host      string
	// path is the request target with its query string.
	path string
	// Header values: with Envoy's default encoding at most one (repeated
	// headers joined by ","), with encode_raw_headers one per header line,
	// at most two kept: a second one already makes the request ambiguous.
	authorization []string
	apiKey        []string
	origin        []string
	sessionID     []string
	// preflight: Access-Control-Request-Method is present.
	preflight       bool
	contentEncoding string
	// partialBody: Envoy sent only the first max_request_bytes of the body
	// (x-envoy-auth-partial-body: true).
	partialBody bool
	body        []byte
	hasBody     bool
	// identityLike lists the client's headers whose names match the
	// identity header prefix after lower-casing and "_" -> "-", sorted; they
	// are removed before the upstream whatever the decision.
	identityLike []string
	// resource is the mcp_resource context extension, if sent.
	resource    string
	hasResource bool
	// httpFront: the request came through the HTTP forward-auth front end,
	// which renders every decision as an HTTP status (forward.go).
	httpFront bool
	// trace is the W3C trace context Envoy forwards, read only while
	// tracing is on (readOptions.traceContext); a pointer, so that the
	// struct every Check allocates does not grow.
	trace *traceHeaders
}

// traceHeaders are a request's traceparent and tracestate headers.
type traceHeaders struct{ parent, state string }

func (in *checkInput) traceHeaders() *traceHeaders {
	if in.trace == nil {
		in.trace = new(traceHeaders)
	}
	return in.trace
}

// maxIdentityLike bounds checkInput.identityLike; more such headers make the
// request suspicious enough to refuse.
const maxIdentityLike = 16

// Header names (lower-cased, as Envoy sends them) read by a decision.
const (
	hAuthorization   = "authorization"
	hAPIKey          = "x-api-key"
	hOrigin          = "origin"
	hSessionID       = "mcp-session-id"
	hPreflight       = "access-control-request-method"
	hContentEncoding = "content-encoding"
	hPartialBody     = "x-envoy-auth-partial-body"
	hTraceparent     = "traceparent"
	hTracestate      = "tracestate"
)

// readOptions says what a request reader looks for beyond the fixed names.
type readOptions struct {
	// identityPrefix is the lower-cased identity header prefix.
	identityPrefix string
	// traceContext keeps the W3C trace context headers (tracing is on).
	traceContext bool
}

// reads reports whether checkInput.header reads the lower-cased header
// name key: every front end asks this one question, so that none reads a
// header the others ignore.
func reads[T string | []byte](opts *readOptions, key T) bool {
	switch string(key) {
	case hAuthorization, hAPIKey, hOrigin, hSessionID, hPreflight, hContentEncoding, hPartialBody, ":path", ":method":
		return true
	case hTraceparent, hTracestate:
		return opts.traceContext
	}
	return matchesPrefix(key, opts.identityPrefix)
}

// severalCodings stands for a Content-Encoding sent on several lines.
const severalCodings = "(several Content-Encoding lines)"

// header records one request header. raw is true for Envoy's header_map
// (one entry per header line), false for its headers map (repeated
// headers already joined, the last map entry wins).
func (in *checkInput) header(opts *readOptions, key, value string, raw bool) {
	if hasUpper(key) {
		key = strings.ToLower(key)
	}
	var list *[]string
	switch key {
	case hAuthorization:
		list = &in.authorization
	case hAPIKey:
		list = &in.apiKey
	case hOrigin:
		list = &in.origin
	case hSessionID:
		list = &in.sessionID
	case hPreflight:
		in.preflight = true
		return
	case hContentEncoding:
		// Every line's codings count, as Envoy's join of them would; a
		// join of two lines is never "identity" alone, so a second line
		// makes the body unreadable. It is marked, not joined: a client
		// sending thousands of lines would otherwise make the join cost
		// their square.
		if raw && in.contentEncoding != "" {
			in.contentEncoding = severalCodings
		} else {
			in.contentEncoding = value
		}
		return
	case hPartialBody:
		// Sticky: a body already known truncated (forward auth reads at
		// most ForwardMaxBody) stays so whatever the header says.
		in.partialBody = in.partialBody || strings.EqualFold(strings.TrimSpace(value), "true")
		return
	case hTraceparent:
		if opts.traceContext {
			// A copy: the span keeps it, and the value may be the
			// request's own bytes (parseCheckInput).
			in.traceHeaders().parent = strings.Clone(value)
		}
		return
	case hTracestate:
		if opts.traceContext {
			in.traceHeaders().state = strings.Clone(value)
		}
		return
	case ":path":
		if in.path == "" {
			in.path = value
		}
		return
	case ":method":
		if in.method == "" {
			in.method = value
		}
		return
	default:
		// One name past the bound is enough to refuse the request (route):
		// collecting every name a client sends would cost it nothing and us
		// a quadratic search.
		if matchesPrefix(key, opts.identityPrefix) && len(in.identityLike) <= maxIdentityLike && !slices.Contains(in.identityLike, key) {
			in.identityLike = append(in.identityLike, key)
		}
		return
	}
	switch {
	case !raw:
		*list = append((*list)[:0], value)
	case len(*list) < 2:
		*list = append(*list, value)
	}
}

// finish applies what holds after every field is read.
func (in *checkInput) finish() {
	slices.Sort(in.identityLike)
}

func hasUpper[T string | []byte](s T) bool {
	for i := 0; i < len(s); i++ {
		if 'A' <= s[i] && s[i] <= 'Z' {
			return true
		}
	}
	return false
}

// matchesPrefix reports whether the header name key starts with the
// lower-case prefix once upper case is folded and "_" is read as "-" (a
// proxy may pass x_mcp_auth_subject through, and an upstream framework may
// read it as x-mcp-auth-subject).
func matchesPrefix[T string | []byte](key T, prefix string) bool {
	if prefix == "" || len(key) < len(prefix) {
		return false
	}
	for i := 0; i < len(prefix); i++ {
		c := key[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c == '_' {
			c = '-'
		}
		if c != prefix[i] {
			return false
		}
	}
	return true
}

// inputFromProto reads a decoded CheckRequest (the in-process Check, and
// gRPC servers with interceptors).
func inputFromProto(req *authv3.CheckRequest, opts *readOptions) checkInput {
	attrs := req.GetAttributes()
	h := attrs.GetRequest().GetHttp()
	in := checkInput{hasHTTP: h != nil, method: h.GetMethod(), host: h.GetHost(), path: h.GetPath()}
	in.resource, in.hasResource = attrs.GetContextExtensions()[ContextExtensionResource]
	if raw := h.GetRawBody(); len(raw) > 0 {
		in.body, in.hasBody = raw, true
	} else if b := h.GetBody(); b != "" {
		in.body, in.hasBody = []byte(b), true
	}
	if hm := h.GetHeaderMap(); len(hm.GetHeaders()) > 0 {
		for _, hv := range hm.GetHeaders() {
			v := hv.GetValue()
			if raw := hv.GetRawValue(); len(raw) > 0 {
				v = string(raw)
				if !utf8.Valid(raw) {
					in.badHeader = true
				}
			}
			in.header(opts, hv.GetKey(), v, true)
		}
	} else {
		for k, v := range h.GetHeaders() {
			in.header(opts, k, v, false)
		}
	}
	in.finish()
	return in
}

// Field numbers of envoy.service.auth.v3 messages read by parseCheckInput.
const (
	fCheckRequestAttributes = 1  // CheckRequest.attributes
	fAttrRequest            = 4  // AttributeContext.request
	fAttrContextExtensions  = 10 // AttributeContext.context_extensions
	fRequestHTTP            = 2  // AttributeContext.Request.http
	fHTTPMethod             = 2  // HttpRequest.method
	fHTTPHeaders            = 3  // HttpRequest.headers
	fHTTPPath               = 4  // HttpRequest.path
	fHTTPHost               = 5  // HttpRequest.host
	fHTTPBody               = 11 // HttpRequest.body
	fHTTPRawBody            = 12 // HttpRequest.raw_body
	fHTTPHeaderMap          = 13 // HttpRequest.header_map
	fHeaderMapHeaders       = 1  // HeaderMap.headers
	fHeaderValueKey         = 1  // HeaderValue.key
	fHeaderValueValue       = 2  // HeaderValue.value
	fHeaderValueRawValue    = 3  // HeaderValue.raw_value
	fMapKey, fMapValue      = 1, 2
)

var errMalformed = errors.New("malformed CheckRequest")

// parseCheckInput reads a marshalled CheckRequest straight from the wire,
// without building the full message: decoding every header into a Go map
// was a fifth of the server's CPU under load, and a decision needs a few
// fields. The input's strings and body are b's own bytes, not copies (the
// copy of the token alone was most of the bytes a cached Check
// allocated): b must stay unchanged until the Check has answered, and
// whatever outlives it is copied where it is kept (the token by the
// verdict cache on a miss, the trace context here, the claims by the
// allow kept with a principal; a rendered answer is encoded before b is
// released). It follows protobuf's merge rules (a repeated singular field
// merges, the last scalar and map entry win). Where protobuf would refuse
// the whole message for invalid UTF-8 in a string, it marks the input
// badHeader instead, so that the client gets 400 rather than Envoy an
// INTERNAL error; TestParseCheckInputMatchesProto and FuzzParseCheckInput
// hold it to proto.Unmarshal's reading of everything protobuf accepts.
func parseCheckInput(b []byte, opts *readOptions) (checkInput, error) {
	p := inputParser{opts: opts}
	if err := p.walk(b, p.checkRequest); err != nil {
		return checkInput{}, err
	}
	in := p.in
	if p.rawBody != nil {
		in.body, in.hasBody = p.rawBody, true
	} else if len(p.body) > 0 {
		in.body, in.hasBody = p.body, true
	}
	var src []rawHeader
	raw := p.rawHeaders
	if raw {
		src = p.headerMap
	} else {
		src = p.headers
	}
	for _, h := range src {
		in.header(opts, h.key, h.value, raw)
	}
	in.finish()
	return in, nil
}

type rawHeader struct{ key, value string }

// alias is b as a string without a copy (see parseCheckInput).
func alias(b []byte) string { return unsafe.String(unsafe.SliceData(b), len(b)) }

type inputParser struct {
	opts    *readOptions
	in      checkInput
	body    []byte
	rawBody []byte
	// headers and headerMap keep the headers worth reading, in wire order;
	// which of them counts is known only at the end (a header_map with
	// entries replaces the headers map).
	headers    []rawHeader
	headerMap  []rawHeader
	rawHeaders bool
}

// walk calls field for every length-delimited field of the message b.
func (p *inputParser) walk(b []byte, field func(num protowire.Number, v []byte) error) error {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return errMalformed
		}
		b = b[n:]
		var v []byte
		if typ == protowire.BytesType {
			v, n = protowire.ConsumeBytes(b)
		} else {
			n = protowire.ConsumeFieldValue(num, typ, b)
		}
		if n < 0 {
			return errMalformed
		}
		b = b[n:]
		if typ != protowire.BytesType {
			continue // no field read here is a scalar of another wire type
		}
		if err := field(num, v); err != nil {
			return err
		}
	}
	return nil
}

func (p *inputParser) checkRequest(num protowire.Number, v []byte) error {
	if num == fCheckRequestAttributes {
		return p.walk(v, p.attributes)
	}
	return nil
}

func (p *inputParser) attributes(num protowire.Number, v []byte) error {
	switch num {
	case fAttrRequest:
		return p.walk(v, p.request)
	case fAttrContextExtensions:
		key, value, err := mapEntry(v)
		if err != nil {
			return err
		}
		if !utf8.Valid(key) || !utf8.Valid(value) {
			p.in.badHeader = true
		}
		if string(key) == ContextExtensionResource {
			p.in.resource, p.in.hasResource = alias(value), true
		}
	}
	return nil
}

func (p *inputParser) request(num protowire.Number, v []byte) error {
	if num == fRequestHTTP {
		p.in.hasHTTP = true
		return p.walk(v, p.http)
	}
	return nil
}

// interesting reports whether a header is worth keeping for header().
func (p *inputParser) interesting(key []byte) bool {
	return hasUpper(key) || reads(p.opts, key) // header() lower-cases and decides
}

func (p *inputParser) valid(b ...[]byte) {
	for _, s := range b {
		if !utf8.Valid(s) {
			p.in.badHeader = true
		}
	}
}

func (p *inputParser) http(num protowire.Number, v []byte) error {
	switch num {
	case fHTTPMethod:
		p.valid(v)
		p.in.method = alias(v)
	case fHTTPHeaders:
		key, value, err := mapEntry(v)
		if err != nil {
			return err
		}
		p.valid(key, value)
		if p.interesting(key) {
			p.headers = append(p.headers, rawHeader{alias(key), alias(value)})
		}
	case fHTTPPath:
		p.valid(v)
		p.in.path = alias(v)
	case fHTTPHost:
		p.valid(v)
		p.in.host = alias(v)
	case fHTTPBody:
		// Not checked as UTF-8: a body that is not is unreadable JSON, not a
		// malformed request.
		p.body = v
	case fHTTPRawBody:
		p.rawBody = v
		if len(v) == 0 {
			p.rawBody = nil // proto3: empty is absent
		}
	case fHTTPHeaderMap:
		return p.walk(v, p.headerMapField)
	}
	return nil
}

func (p *inputParser) headerMapField(num protowire.Number, v []byte) error {
	if num != fHeaderMapHeaders {
		return nil
	}
	p.rawHeaders = true
	var key, value, raw []byte
	err := p.walk(v, func(num protowire.Number, v []byte) error {
		switch num {
		case fHeaderValueKey:
			key = v
		case fHeaderValueValue:
			value = v
		case fHeaderValueRawValue:
			raw = v
		}
		return nil
	})
	if err != nil {
		return err
	}
	p.valid(key, value)
	if len(raw) > 0 {
		value = raw
		p.valid(raw)
	}
	if p.interesting(key) {
		p.headerMap = append(p.headerMap, rawHeader{alias(key), alias(value)})
	}
	return nil
}

// mapEntry reads a map<string, string> entry; absent parts are "".
func mapEntry(b []byte) (key, value []byte, err error) {
	var p inputParser
	err = p.walk(b, func(num protowire.Number, v []byte) error {
		switch num {
		case fMapKey:
			key = v
		case fMapValue:
			value = v
		}
		return nil
	})
	return key, value, err
}
