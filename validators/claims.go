package validators

import (
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	json "github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
)

// Strict JSON: every object that describes a token (JWT claims, JOSE
// header, introspection response) is decoded with encoding/json/v2
// semantics (github.com/go-json-experiment/json is its mirror until Go
// 1.27 ships it as encoding/json/v2). Its defaults are the ones RFC 7519 §4
// and RFC 8259 want and encoding/json v1 lacks:
//
//   - member names match exactly: {"scope":"a","SCOPE":"a admin"} has a
//     scope of "a", and SCOPE is an unknown member;
//   - a duplicate member name, at any depth, is an error, so no two
//     parsers (ours and the upstream's) can disagree on which one counts;
//   - strings must be valid UTF-8, with no lone surrogate escapes.
//
// Errors from the decoder quote member names and bits of the input; they
// are replaced by jsonError's fixed texts, so token content never reaches
// an error or a log.

// claimError is a problem with one claim, in words that never quote the
// token.
type claimError string

func (e claimError) Error() string { return string(e) }

// jsonError turns a decoding error of what ("claims", "header", ...) into
// an error that names the problem and a position but no token content.
func jsonError(what string, err error) error {
	var syn *jsontext.SyntacticError
	if errors.As(err, &syn) {
		if errors.Is(err, jsontext.ErrDuplicateName) {
			return fmt.Errorf("%s: duplicate member name (RFC 7519 §4)", what)
		}
		return fmt.Errorf("%s: not valid JSON (syntax, UTF-8 or escapes) near byte %d", what, syn.ByteOffset)
	}
	var sem *json.SemanticError
	if errors.As(err, &sem) {
		// The pointer names one of our own fields (unknown members are
		// skipped, never decoded), possibly with array indices; a
		// syntactic error's pointer, above, could name anything.
		member := "the top-level value"
		if p := string(sem.JSONPointer); p != "" && len(p) <= 32 {
			member = "member " + p
		}
		var ce claimError
		if errors.As(err, &ce) {
			return fmt.Errorf("%s: %s: %w", what, member, ce)
		}
		return fmt.Errorf("%s: %s has the wrong JSON type", what, member)
	}
	var ce claimError
	if errors.As(err, &ce) {
		return fmt.Errorf("%s: %w", what, ce)
	}
	return fmt.Errorf("%s: undecodable", what)
}

// accessClaims is the claim set of an access token as mcp-authz reads it.
// Decode it only with decodeClaims.
type accessClaims struct {
	Issuer    string        `json:"iss"`
	Subject   string        `json:"sub"`
	Audience  audienceClaim `json:"aud"`
	ExpiresAt numericDate   `json:"exp"`
	NotBefore numericDate   `json:"nbf"`
	IssuedAt  numericDate   `json:"iat"`
	Scope     scopeClaim    `json:"scope"`
	Scp       scopeClaim    `json:"scp"`
	ClientID  string        `json:"client_id"`
	Azp       string        `json:"azp"`   // OIDC, Auth0, Azure AD v2
	Cid       string        `json:"cid"`   // Okta
	AppID     string        `json:"appid"` // Azure AD v1
	TokenUse  string        `json:"token_use"`
	// Username is not forwarded, but DESIGN §7 refuses a token whose
	// username holds a control character (Cognito access tokens carry
	// one); it is read only when it is a string.
	Username stringIfAny `json:"username"`
}

// stringIfAny is a claim checked only when it is a JSON string; any other
// value is skipped, as an unknown member would be.
type stringIfAny string

func (s *stringIfAny) UnmarshalJSONFrom(d *jsontext.Decoder) error {
	if d.PeekKind() != '"' {
		return d.SkipValue()
	}
	tok, err := d.ReadToken()
	if err != nil {
		return err
	}
	*s = stringIfAny(tok.String())
	return nil
}

// decodeClaims decodes a JWT payload strictly and checks the values that
// are forwarded as identity.
func decodeClaims(payload []byte, c *accessClaims) error {
	if err := json.Unmarshal(payload, c); err != nil {
		return jsonError("claims", err)
	}
	for _, id := range []struct{ name, value string }{
		{"iss", c.Issuer}, {"sub", c.Subject}, {"client_id", c.ClientID},
		{"azp", c.Azp}, {"cid", c.Cid}, {"appid", c.AppID}, {"username", string(c.Username)},
	} {
		if err := checkIdentity(id.name, id.value); err != nil {
			return fmt.Errorf("claims: %w", err)
		}
	}
	return nil
}

func (c *accessClaims) scopes() []string {
	if len(c.Scope) > 0 {
		return c.Scope
	}
	return c.Scp
}

// clientID is the first of client_id (RFC 9068), azp, cid and appid.
func (c *accessClaims) clientID() string {
	for _, id := range []string{c.ClientID, c.Azp, c.Cid, c.AppID} {
		if id != "" {
			return id
		}
	}
	return ""
}

// checkTimes applies exp, iat and nbf with leeway, as golang-jwt's
// Validator does (same order, same comparisons).
func checkTimes(exp, nbf, iat numericDate, now time.Time, leeway time.Duration, requireExp bool) *Error {
	if !exp.set {
		if requireExp {
			return invalid(DescNoExpiry, errors.New("exp is required"))
		}
	} else if !now.Before(exp.t.Add(leeway)) {
		return invalid(DescExpired, errors.New("exp has passed"))
	}
	if iat.set && now.Add(leeway).Before(iat.t) {
		return invalid(DescIssuedFuture, errors.New("iat is in the future"))
	}
	if nbf.set && now.Add(leeway).Before(nbf.t) {
		return invalid(DescNotYetValid, errors.New("nbf is in the future"))
	}
	return nil
}

// checkIdentity refuses a value that would be forwarded as identity and
// holds a C0 or C1 control character or DEL (U+0000–U+001F, U+007F–U+009F),
// or is not valid UTF-8. Header injection and log forging start there.
func checkIdentity(name, v string) error {
	for _, r := range v {
		if r < 0x20 || (r >= 0x7f && r <= 0x9f) {
			return claimError(name + " holds a control character")
		}
	}
	if !utf8.ValidString(v) {
		return claimError(name + " is not valid UTF-8")
	}
	return nil
}

// maxNumericDate is 9999-12-31T23:59:59Z. A NumericDate beyond it is
// refused: it is well inside int64 seconds, so nothing computed from it
// (exp plus leeway, a cache TTL) can overflow, and no real token lives
// that long.
const maxNumericDate = 253402300799

// numericDate is an RFC 7519 NumericDate: a JSON number of seconds since
// the epoch, fractions allowed, in [0, maxNumericDate]. null is the same
// as absent. A string, a value out of range (1e19 would wrap into the
// past as int64), or a negative one (no token predates 1970) is an error.
type numericDate struct {
	t   time.Time
	set bool
}

func (n *numericDate) UnmarshalJSONFrom(d *jsontext.Decoder) error {
	tok, err := d.ReadToken()
	if err != nil {
		return err
	}
	switch tok.Kind() {
	case 'n':
		*n = numericDate{}
		return nil
	case '0':
	default:
		return claimError("a NumericDate must be a JSON number")
	}
	f, err := tok.Float()
	if err != nil || !(f >= 0 && f <= maxNumericDate) { // also false for NaN
		return claimError(fmt.Sprintf("a NumericDate must be within [0, %d]", maxNumericDate))
	}
	sec := int64(f)
	*n = numericDate{t: time.Unix(sec, int64((f-float64(sec))*1e9)), set: true}
	return nil
}

// readStringOrList reads a claim that may be null, a string or, when
// lists, an array of strings. kind says which it was ('n', '"' or '[');
// anything else is the claim error shapeErr.
func readStringOrList(d *jsontext.Decoder, lists bool, shapeErr string) (s string, list []string, kind jsontext.Kind, err error) {
	switch kind = d.PeekKind(); {
	case kind == 'n':
		_, err = d.ReadToken()
		return "", nil, kind, err
	case kind == '"':
		tok, err := d.ReadToken()
		if err != nil {
			return "", nil, kind, err
		}
		return tok.String(), nil, kind, nil
	case kind == '[' && lists:
		if err := json.UnmarshalDecode(d, &list); err != nil {
			var sem *json.SemanticError
			if errors.As(err, &sem) {
				return "", nil, kind, claimError(shapeErr)
			}
			return "", nil, kind, err
		}
		return "", list, kind, nil
	default:
		return "", nil, kind, claimError(shapeErr)
	}
}

// audienceClaim is aud: a string or an array of strings.
type audienceClaim []string

func (a *audienceClaim) UnmarshalJSONFrom(d *jsontext.Decoder) error {
	s, list, kind, err := readStringOrList(d, true, "aud must be a string or an array of strings")
	switch {
	case err != nil:
		return err
	case kind == '"':
		*a = audienceClaim{s}
	default:
		*a = list
	}
	return nil
}

// scopeClaim is scope or scp: a string of space-separated scope tokens
// (RFC 6749 §3.3, RFC 9068, Azure AD scp) or an array of scope tokens
// (Okta scp). Every scope must be a scope-token; see parseScopes.
type scopeClaim []string

func (c *scopeClaim) UnmarshalJSONFrom(d *jsontext.Decoder) error {
	s, list, kind, err := readStringOrList(d, true, "scope must be a string or an array of strings")
	if err != nil {
		return err
	}
	if kind == '"' {
		*c, err = parseScopes(s)
		return err
	}
	for _, sc := range list {
		if !IsScopeToken(sc) {
			return claimError("a scope array element is not an RFC 6749 scope-token")
		}
	}
	*c = list
	return nil
}

// parseScopes splits an RFC 6749 §3.3 scope string on U+0020 only, so no
// other kind of space (U+2003, tab, ...) can turn "x\u2003mcp:read" into
// a grant of mcp:read. Every part must be a scope-token. Runs of spaces,
// and leading or trailing ones, are tolerated and yield no scope: the
// grammar asks for single spaces, but an empty part grants nothing, and
// refusing it would only break sloppy authorization servers.
func parseScopes(s string) ([]string, error) {
	if s == "" {
		return nil, nil
	}
	scopes := make([]string, 0, strings.Count(s, " ")+1)
	for part := range strings.SplitSeq(s, " ") {
		if part == "" {
			continue
		}
		if !IsScopeToken(part) {
			return nil, claimError("scope holds a part that is not an RFC 6749 scope-token")
		}
		scopes = append(scopes, part)
	}
	return scopes, nil
}

// IsScopeToken reports whether s matches RFC 6749 §3.3
// scope-token = 1*( %x21 / %x23-5B / %x5D-7E ): printable ASCII except
// space, '"' and '\'.
func IsScopeToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x21 || c > 0x7e || c == '"' || c == '\\' {
			return false
		}
	}
	return true
}
