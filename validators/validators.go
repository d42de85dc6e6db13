// Package validators holds the token validation strategies of mcp-authz.
//
// A validator turns a bearer token into a Principal or into an *Error that
// carries an RFC 6750 classification. Validators never render HTTP or gRPC
// responses; the authz package does that.
package validators

import (
	"errors"
	"sync/atomic"
	"time"
)

// Principal is the identity a validated access token stands for.
// A Principal is shared between concurrent requests once cached: treat it as
// read-only.
type Principal struct {
	Subject   string
	ClientID  string
	Issuer    string
	Audience  []string
	Scopes    []string
	ExpiresAt time.Time
	// Claims is the token's claim set as unpadded base64url JSON, the form in
	// which it is forwarded upstream. For a JWT it is the payload segment.
	Claims string

	memo atomic.Pointer[memo]
}

type memo struct {
	key, value any
}

// usedOnce is the memo of a principal used once.
var usedOnce = new(memo)

// Memo returns the value that compute derives from p for key, computed
// once, from the second call on; the first call returns nil. It lets a
// consumer keep one expensive, immutable rendering of a cached principal
// (authz keeps its allow response here) without paying for it for
// principals used only once, as most in a burst of fresh tokens are. One
// key is kept; the first key wins, and other keys are computed on every
// call.
func (p *Principal) Memo(key any, compute func() any) any {
	m := p.memo.Load()
	if m == nil {
		if p.memo.CompareAndSwap(nil, usedOnce) {
			return nil
		}
		m = p.memo.Load()
	}
	if m != usedOnce && m.key == key {
		return m.value
	}
	v := compute()
	if m == usedOnce {
		p.memo.CompareAndSwap(usedOnce, &memo{key: key, value: v})
	}
	return v
}

// HasScopes reports whether p was granted every scope in want.
func (p *Principal) HasScopes(want []string) bool {
	for _, w := range want {
		found := false
		for _, s := range p.Scopes {
			if s == w {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	return true
}

// Kinds of validation failure, matched with errors.Is.
var (
	// ErrInvalidToken means the token is not acceptable: RFC 6750 invalid_token.
	ErrInvalidToken = errors.New("invalid_token")
	// ErrUnavailable means the token could not be judged because a dependency
	// (JWKS, discovery, introspection) failed. The token may be fine.
	ErrUnavailable = errors.New("validation unavailable")
)

// Error is the typed failure every validator returns.
type Error struct {
	// Kind is ErrInvalidToken or ErrUnavailable.
	Kind error
	// Description is safe to show to the client as error_description. It never
	// contains token content.
	Description string
	// Retryable marks an invalid_token verdict that may change within seconds
	// (an unknown signing key during rotation); caches must not keep it.
	Retryable bool
	// Err is the underlying cause, for logs. It never contains the token.
	Err error
}

func (e *Error) Error() string {
	if e.Err == nil {
		return e.Description
	}
	return e.Description + ": " + e.Err.Error()
}

// Unwrap exposes both the kind and the cause to errors.Is and errors.As.
func (e *Error) Unwrap() []error {
	if e.Err == nil {
		return []error{e.Kind}
	}
	return []error{e.Kind, e.Err}
}

func invalid(description string, cause error) *Error {
	return &Error{Kind: ErrInvalidToken, Description: description, Err: cause}
}

func unavailable(description string, cause error) *Error {
	return &Error{Kind: ErrUnavailable, Description: description, Err: cause}
}

// Descriptions shared with the seed implementation; clients and dashboards
// match on them, so keep the wording.
const (
	DescSignature    = "Invalid token signature"
	DescAudience     = "Token audience invalid"
	DescExpired      = "Token has expired"
	DescJWKS         = "JWKS endpoint unreachable"
	DescIntrospect   = "Token introspection failed"
	DescMalformed    = "Malformed token"
	DescIssuer       = "Token issuer invalid"
	DescAlgorithm    = "Token signing algorithm not allowed"
	DescHeader       = "Token header not allowed"
	DescType         = "Token type invalid"
	DescNotYetValid  = "Token is not yet valid"
	DescIssuedFuture = "Token issued in the future"
	DescNoExpiry     = "Token has no expiry"
	DescUnknownKey   = "Token signing key not found"
	DescTooLarge     = "Token too large"
	DescInactive     = "Token is not active"
	DescAPIKey       = "Invalid API key"
)
