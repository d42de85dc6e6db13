package validators

import (
	"encoding/base64"
	"errors"
	"strings"
	"unsafe"

	json "github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
)

// strictB64 is the only base64 a token may use: base64url without padding, and
// with zero trailing bits (RFC 7515 §2, RFC 4648 §3.5), so each token has
// exactly one spelling. The verdict cache keys on the token's bytes; a
// second spelling of the same signed token would be a second key.
var strictB64 = base64.RawURLEncoding.Strict()

// jws is a JWS compact serialization, decoded strictly but not verified.
type jws struct {
	header jwsHeader
	claims accessClaims
	// signed is the JWS signing input: the header and payload segments.
	signed string
	// payload is the payload segment as received; claimsJSON, its decoding.
	payload    string
	claimsJSON string
	signature  []byte
}

// jwsHeader is the JOSE header as mcp-authz reads it. The members whose
// presence alone refuses a token are kept raw: a null jku is still a jku.
type jwsHeader struct {
	Alg  string         `json:"alg"`
	Kid  optString      `json:"kid"`
	Typ  optString      `json:"typ"`
	JKU  jsontext.Value `json:"jku"`
	JWK  jsontext.Value `json:"jwk"`
	X5U  jsontext.Value `json:"x5u"`
	Crit jsontext.Value `json:"crit"`
}

// forbiddenHeader names a header parameter that refuses the token, or "".
// jku, jwk and x5u are token-supplied key locations (RFC 8725 §3.10): keys
// come only from the configured issuer's JWKS, so a token carrying them is
// refused rather than silently half-trusted. crit names extensions we do
// not implement (RFC 7515 §4.1.11).
func (h *jwsHeader) forbiddenHeader() string {
	switch {
	case len(h.JKU) > 0:
		return "jku"
	case len(h.JWK) > 0:
		return "jwk"
	case len(h.X5U) > 0:
		return "x5u"
	case len(h.Crit) > 0:
		return "crit"
	}
	return ""
}

// optString is a string member that may be absent; present, it must be a
// JSON string (null included: "kid": null is malformed, not absent).
type optString struct {
	s   string
	set bool
}

func (o *optString) UnmarshalJSONFrom(d *jsontext.Decoder) error {
	if d.PeekKind() != '"' {
		return claimError("kid and typ must be JSON strings")
	}
	tok, err := d.ReadToken()
	if err != nil {
		return err
	}
	*o = optString{s: tok.String(), set: true}
	return nil
}

// parseJWS splits and decodes a JWS compact serialization. It checks
// syntax only: base64url strictness, strict JSON for header and claims,
// claim types and ranges, identity characters and scope syntax. Every
// failure is "Malformed token".
func parseJWS(token string, t *jws) *Error {
	// Only the base64url alphabet and two dots. The strict decoder below
	// refuses every other byte but CR and LF, which base64 skips even in
	// strict mode, so they are refused here.
	if strings.Count(token, ".") != 2 {
		return invalid(DescMalformed, errors.New("not a JWS compact serialization: want three segments"))
	}
	if strings.IndexByte(token, '\r') >= 0 || strings.IndexByte(token, '\n') >= 0 {
		return invalid(DescMalformed, errors.New("not a JWS compact serialization: character outside base64url"))
	}
	h, rest, _ := strings.Cut(token, ".")
	p, s, _ := strings.Cut(rest, ".")
	if h == "" || p == "" {
		return invalid(DescMalformed, errors.New("empty header or payload segment"))
	}
	var err error
	hb, err := strictB64.DecodeString(h)
	if err != nil {
		return invalid(DescMalformed, errors.New("header: not strict unpadded base64url"))
	}
	if err := json.Unmarshal(hb, &t.header); err != nil {
		return invalid(DescMalformed, jsonError("header", err))
	}
	pb, err := strictB64.DecodeString(p)
	if err != nil {
		return invalid(DescMalformed, errors.New("payload: not strict unpadded base64url"))
	}
	if err := decodeClaims(pb, &t.claims); err != nil {
		return invalid(DescMalformed, err)
	}
	if t.signature, err = strictB64.DecodeString(s); err != nil {
		return invalid(DescMalformed, errors.New("signature: not strict unpadded base64url"))
	}
	t.signed = token[:len(h)+1+len(p)]
	t.payload = p
	// pb is this parse's own and never written again: the principal may
	// keep it as its claims without a copy.
	t.claimsJSON = unsafe.String(unsafe.SliceData(pb), len(pb))
	return nil
}
