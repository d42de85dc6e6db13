package authz

import (
	"errors"
	"strings"
	"unicode/utf8"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/protobuf/encoding/protowire"
)

// checkInput is what a decision reads from a CheckRequest.
type checkInput struct {
	hasHTTP bool
	host    string
	// path is the request target with its query string.
	path string
	// authorization holds the Authorization values: with Envoy's default
	// encoding at most one (repeated headers joined by ","), with
	// encode_raw_headers one per header line, at most two kept: a second
	// one already makes the request ambiguous.
	authorization []string
	// apiKey holds the X-API-Key values, kept the same way.
	apiKey []string
	// resource is the mcp_resource context extension, if sent.
	resource    string
	hasResource bool
}

func inputFromProto(req *authv3.CheckRequest) checkInput {
	attrs := req.GetAttributes()
	h := attrs.GetRequest().GetHttp()
	in := checkInput{hasHTTP: h != nil, host: h.GetHost(), path: h.GetPath()}
	in.resource, in.hasResource = attrs.GetContextExtensions()[ContextExtensionResource]
	if in.path == "" {
		in.path = h.GetHeaders()[":path"]
	}
	if hm := h.GetHeaderMap(); len(hm.GetHeaders()) > 0 {
		for _, hv := range hm.GetHeaders() {
			v := hv.GetValue()
			if raw := hv.GetRawValue(); len(raw) > 0 {
				v = string(raw)
			}
			switch {
			case strings.EqualFold(hv.GetKey(), "authorization"):
				in.authorization = appendAuthorization(in.authorization, v)
			case strings.EqualFold(hv.GetKey(), apiKeyHeader):
				in.apiKey = appendAuthorization(in.apiKey, v)
			}
		}
		return in
	}
	if v, ok := h.GetHeaders()["authorization"]; ok {
		in.authorization = []string{v}
	}
	if v, ok := h.GetHeaders()[apiKeyHeader]; ok {
		in.apiKey = []string{v}
	}
	return in
}

// apiKeyHeader carries API keys (lower-cased, as Envoy sends names).
const apiKeyHeader = "x-api-key"

func appendAuthorization(list []string, v string) []string {
	if len(list) >= 2 {
		return list
	}
	return append(list, v)
}

// Field numbers of envoy.service.auth.v3 messages read by parseCheckInput.
const (
	fCheckRequestAttributes = 1  // CheckRequest.attributes
	fAttrRequest            = 4  // AttributeContext.request
	fAttrContextExtensions  = 10 // AttributeContext.context_extensions
	fRequestHTTP            = 2  // AttributeContext.Request.http
	fHTTPHeaders            = 3  // HttpRequest.headers
	fHTTPPath               = 4  // HttpRequest.path
	fHTTPHost               = 5  // HttpRequest.host
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
// was a fifth of the server's CPU under load, and a decision needs five
// fields. It follows protobuf's merge rules (a repeated singular field
// merges, the last scalar and map entry win) and validates the UTF-8 of
// every string it keeps; TestParseCheckInputMatchesProto and
// FuzzParseCheckInput hold it to proto.Unmarshal's reading.
func parseCheckInput(b []byte) (checkInput, error) {
	var p inputParser
	if err := p.walk(b, p.checkRequest); err != nil {
		return checkInput{}, err
	}
	in := p.in
	if in.path == "" {
		in.path = p.pathHeader
	}
	switch {
	case p.rawHeaders:
		in.authorization, in.apiKey = p.rawAuthorization, p.rawAPIKey
	default:
		if p.hasAuthHeader {
			in.authorization = []string{p.authHeader}
		}
		if p.hasAPIKeyHeader {
			in.apiKey = []string{p.apiKeyHeader}
		}
	}
	return in, nil
}

type inputParser struct {
	in               checkInput
	pathHeader       string
	authHeader       string
	hasAuthHeader    bool
	apiKeyHeader     string
	hasAPIKeyHeader  bool
	rawHeaders       bool // header_map had entries: the headers map is ignored
	rawAuthorization []string
	rawAPIKey        []string
}

// walk calls field for every field of the message b.
func (p *inputParser) walk(b []byte, field func(num protowire.Number, typ protowire.Type, v []byte) error) error {
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
		if err := field(num, typ, v); err != nil {
			return err
		}
	}
	return nil
}

func (p *inputParser) checkRequest(num protowire.Number, _ protowire.Type, v []byte) error {
	if num == fCheckRequestAttributes {
		return p.walk(v, p.attributes)
	}
	return nil
}

func (p *inputParser) attributes(num protowire.Number, _ protowire.Type, v []byte) error {
	switch num {
	case fAttrRequest:
		return p.walk(v, p.request)
	case fAttrContextExtensions:
		key, value, err := mapEntry(v)
		if err != nil {
			return err
		}
		if string(key) == ContextExtensionResource {
			p.in.resource, p.in.hasResource = string(value), true
		}
	}
	return nil
}

func (p *inputParser) request(num protowire.Number, _ protowire.Type, v []byte) error {
	if num == fRequestHTTP {
		p.in.hasHTTP = true
		return p.walk(v, p.http)
	}
	return nil
}

func (p *inputParser) http(num protowire.Number, _ protowire.Type, v []byte) error {
	switch num {
	case fHTTPHeaders:
		key, value, err := mapEntry(v)
		if err != nil {
			return err
		}
		switch string(key) {
		case "authorization":
			p.authHeader, p.hasAuthHeader = string(value), true
		case ":path":
			p.pathHeader = string(value)
		case apiKeyHeader:
			p.apiKeyHeader, p.hasAPIKeyHeader = string(value), true
		}
	case fHTTPPath:
		if !utf8.Valid(v) {
			return errMalformed
		}
		p.in.path = string(v)
	case fHTTPHost:
		if !utf8.Valid(v) {
			return errMalformed
		}
		p.in.host = string(v)
	case fHTTPHeaderMap:
		return p.walk(v, p.headerMap)
	}
	return nil
}

func (p *inputParser) headerMap(num protowire.Number, _ protowire.Type, v []byte) error {
	if num != fHeaderMapHeaders {
		return nil
	}
	p.rawHeaders = true
	var key, value, raw []byte
	err := p.walk(v, func(num protowire.Number, _ protowire.Type, v []byte) error {
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
	if !utf8.Valid(key) || !utf8.Valid(value) {
		return errMalformed
	}
	if len(raw) > 0 {
		value = raw
	}
	switch {
	case strings.EqualFold(string(key), "authorization"):
		p.rawAuthorization = appendAuthorization(p.rawAuthorization, string(value))
	case strings.EqualFold(string(key), apiKeyHeader):
		p.rawAPIKey = appendAuthorization(p.rawAPIKey, string(value))
	}
	return nil
}

// mapEntry reads a map<string, string> entry; absent parts are "".
func mapEntry(b []byte) (key, value []byte, err error) {
	var p inputParser
	err = p.walk(b, func(num protowire.Number, _ protowire.Type, v []byte) error {
		switch num {
		case fMapKey:
			key = v
		case fMapValue:
			value = v
		}
		return nil
	})
	if err == nil && (!utf8.Valid(key) || !utf8.Valid(value)) {
		err = errMalformed
	}
	return key, value, err
}
