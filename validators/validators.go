// Package validators holds the token validation strategies of mcp-authz.
//
// A validator turns a bearer token into a Principal or into an *Error that
// carries an RFC 6750 classification. Validators never render HTTP or gRPC
// responses; the authz package does that.
package validators

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"strings"
	"sync/atomic"
	"time"
	"unsafe"
)

// Principal is the identity a validated access token stands for.
// A Principal is shared between concurrent requests once cached: it is
// immutable (its memo aside).
//
// It is laid out for the verdict cache, which may hold millions. A JWT's
// claims are not kept at all: they are the token's payload segment, and
// every Check that finds the principal again holds that token, since
// verdicts are found by the token's SHA-256 (see Claims). Other claims
// (an introspection reply) are kept once, as JSON, and the identity
// values are substrings of them wherever the JSON spells them without
// escapes; values that are not follow the claims in the same string. A
// principal is then two allocations: this struct and that string, which
// holds no pointers for the garbage collector to follow.
type Principal struct {
	// data is the claims JSON (data[:claims]) unless inToken, followed
	// by the identity values that are not substrings of it.
	data string
	// claims is the length of the claims JSON.
	claims uint32
	// inToken: the claims are the token's payload segment, not in data;
	// digest is PayloadDigest of that segment.
	inToken                 bool
	digest                  uint64
	sub, client, iss, scope span
	exp                     int64 // Unix milliseconds; 0 means none

	memo atomic.Pointer[Kept]
}

// span is a substring of Principal.data.
type span struct{ off, n uint32 }

// Identity is what a validator knows of a principal; NewPrincipal lays it
// out.
type Identity struct {
	Subject  string
	ClientID string
	Issuer   string
	Scopes   []string
	// ExpiresAt is the token's exp; zero means none (an API key).
	ExpiresAt time.Time
	// ClaimsJSON is the token's claim set as JSON, forwarded upstream as
	// its unpadded base64url encoding (for a JWT, exactly the payload
	// segment). Empty for credentials without claims.
	ClaimsJSON string
	// ClaimsInToken, when positive, says that the claims are the payload
	// segment of the token itself (a JWT), ClaimsInToken bytes of JSON
	// once decoded. The principal then keeps neither ClaimsJSON nor
	// anything pointing into it, and Claims reads the segment from the
	// token it is given.
	ClaimsInToken int
	// ClaimsDigest is PayloadDigest of the token's payload segment, with
	// ClaimsInToken: Claims gives the claims of that token only.
	ClaimsDigest uint64
}

// PayloadDigest is the digest of a JWT's payload segment by which a
// principal that keeps no claims (Identity.ClaimsInToken) knows its token:
// the first 8 bytes of its SHA-256.
func PayloadDigest(segment string) uint64 {
	sum := sha256.Sum256(unsafe.Slice(unsafe.StringData(segment), len(segment)))
	return binary.BigEndian.Uint64(sum[:8])
}

// NewPrincipal returns the principal of id. ClaimsJSON is kept as given,
// not copied: it must not change afterwards.
func NewPrincipal(id Identity) *Principal {
	claims := id.ClaimsJSON
	p := &Principal{claims: uint32(len(claims))}
	if id.ClaimsInToken > 0 {
		claims = ""
		p.claims, p.inToken, p.digest = uint32(id.ClaimsInToken), true, id.ClaimsDigest
	}
	if !id.ExpiresAt.IsZero() {
		p.exp = id.ExpiresAt.UnixMilli()
		if p.exp == 0 {
			p.exp = -1 // the epoch itself, long past, is not "none"
		}
	}
	scope := ""
	switch len(id.Scopes) {
	case 0:
	case 1:
		scope = id.Scopes[0]
	}
	// Lay out what the kept claims do not hold after them; with no such
	// value (the usual case for kept claims) the claims string is used as
	// it is.
	var extra []byte
	find := func(v string) (span, bool) {
		if v == "" {
			return span{}, true
		}
		if i := strings.Index(claims, v); i >= 0 {
			return span{uint32(i), uint32(len(v))}, true
		}
		if i := strings.Index(string(extra), v); i >= 0 {
			return span{uint32(len(claims) + i), uint32(len(v))}, true
		}
		return span{}, false
	}
	place := func(v string) span {
		if sp, ok := find(v); ok {
			return sp
		}
		if extra == nil {
			// Room for every value: the string made of extra is extra's
			// own array, allocated once.
			room := len(id.Subject) + len(id.ClientID) + len(id.Issuer) + len(id.Scopes)
			for _, sc := range id.Scopes {
				room += len(sc)
			}
			extra = make([]byte, 0, room)
		}
		sp := span{uint32(len(claims) + len(extra)), uint32(len(v))}
		extra = append(extra, v...)
		return sp
	}
	p.sub, p.client, p.iss = place(id.Subject), place(id.ClientID), place(id.Issuer)
	if len(id.Scopes) > 1 {
		if sp, ok := findJoined(claims, id.Scopes); ok {
			p.scope = sp
		} else {
			p.scope = place(strings.Join(id.Scopes, " "))
		}
	} else {
		p.scope = place(scope)
	}
	switch {
	case extra == nil:
		p.data = claims
	case claims == "":
		p.data = unsafe.String(unsafe.SliceData(extra), len(extra)) // extra is not written again
	default:
		p.data = claims + string(extra)
	}
	return p
}

// findJoined finds the scopes joined by single spaces in s.
func findJoined(s string, scopes []string) (span, bool) {
	n := len(scopes) - 1
	for _, sc := range scopes {
		n += len(sc)
	}
	for off := 0; ; {
		i := strings.Index(s[off:], scopes[0])
		if i < 0 || off+i+n > len(s) {
			return span{}, false
		}
		start := off + i
		j := start + len(scopes[0])
		ok := true
		for _, sc := range scopes[1:] {
			if s[j] != ' ' || !strings.HasPrefix(s[j+1:], sc) {
				ok = false
				break
			}
			j += 1 + len(sc)
		}
		if ok {
			return span{uint32(start), uint32(n)}, true
		}
		off = start + 1
	}
}

func (p *Principal) str(s span) string { return p.data[s.off : s.off+s.n] }

// Subject is the token's sub (or an introspection response's username).
func (p *Principal) Subject() string { return p.str(p.sub) }

// ClientID is the client the token was issued to.
func (p *Principal) ClientID() string { return p.str(p.client) }

// Issuer is the token's issuer.
func (p *Principal) Issuer() string { return p.str(p.iss) }

// ScopeString is the granted scopes joined by single spaces, as forwarded
// upstream.
func (p *Principal) ScopeString() string { return p.str(p.scope) }

// Scopes returns the granted scopes, in a new slice.
func (p *Principal) Scopes() []string {
	if p.scope.n == 0 {
		return nil
	}
	return strings.Split(p.ScopeString(), " ")
}

// EachScope calls yield with each granted scope until it returns false;
// unlike Scopes, it allocates nothing.
func (p *Principal) EachScope(yield func(string) bool) {
	s := p.ScopeString()
	for s != "" {
		sc, rest, _ := strings.Cut(s, " ")
		if !yield(sc) {
			return
		}
		s = rest
	}
}

// HasScope reports whether p was granted scope.
func (p *Principal) HasScope(scope string) bool {
	found := false
	p.EachScope(func(s string) bool { found = s == scope; return !found })
	return found
}

// HasScopes reports whether p was granted every scope in want.
func (p *Principal) HasScopes(want []string) bool {
	for _, w := range want {
		if !p.HasScope(w) {
			return false
		}
	}
	return true
}

// ExpiresAt is the token's exp, or the zero time when it has none.
func (p *Principal) ExpiresAt() time.Time {
	if p.exp == 0 {
		return time.Time{}
	}
	return time.UnixMilli(p.exp)
}

// ClaimsJSON is the token's claim set as JSON, when the principal keeps
// it: empty when the claims are in the token (see ClaimsSize).
func (p *Principal) ClaimsJSON() string {
	if p.inToken {
		return ""
	}
	return p.data[:p.claims]
}

// ClaimsSize is the length of the claim set as JSON, and whether the
// principal reads it from the token (Identity.ClaimsInToken).
func (p *Principal) ClaimsSize() (n int, inToken bool) { return int(p.claims), p.inToken }

// ClaimsDigest is PayloadDigest of the token's payload segment, for a
// principal that reads its claims from the token.
func (p *Principal) ClaimsDigest() uint64 { return p.digest }

// Claims is the token's claim set as unpadded base64url JSON, the form in
// which it is forwarded upstream (for a JWT, its payload segment). token
// is the token p was found by: a principal whose claims are in the token
// reads them from it, and returns "" when token is not that token (its
// payload segment has another length or digest), so that another token's
// claims are never forwarded, whatever a caller passes. The result is a
// new string either way, never a part of token, so that keeping it does
// not keep the request that carried the token.
func (p *Principal) Claims(token string) string {
	if !p.inToken {
		return base64.RawURLEncoding.EncodeToString(unsafe.Slice(unsafe.StringData(p.data), p.claims))
	}
	_, rest, _ := strings.Cut(token, ".")
	seg, _, _ := strings.Cut(rest, ".")
	if len(seg) != base64.RawURLEncoding.EncodedLen(int(p.claims)) || p.digest == 0 || PayloadDigest(seg) != p.digest {
		return ""
	}
	return strings.Clone(seg)
}

// Size is the memory p holds: the struct and its string, before the
// allocator rounds them up.
func (p *Principal) Size() (structBytes, dataBytes int) {
	return int(unsafe.Sizeof(*p)), len(p.data)
}

// Kept heads a value that a consumer keeps with a principal (see Memo):
// it names the value's owner. A consumer embeds it as the first field of
// its value and finds the value from the *Kept that Memo returns. The
// owner and the value are then one object, one pointer from the
// principal: at a million cached verdicts in use, each pointer a hit
// follows is a cache and TLB miss (BenchmarkScale in authz).
type Kept struct{ owner any }

// usedOnce is the memo of a principal used once.
var usedOnce = new(Kept)

// Memo returns the value that compute makes for owner from p, made once,
// from the second call on; the first call returns nil. It lets a consumer
// keep one expensive, immutable rendering of a cached principal (authz
// keeps its allow responses here, owned by its Server) without paying
// for it for principals used only once, as most in a burst of fresh
// tokens are. One value is kept: a call with another owner makes its
// value and keeps it in place of the old one, since a new owner usually
// means the old one is gone (a reloaded configuration's Server replaces
// the old one, and cached principals outlive it).
//
// compute returns a new value's Kept, which Memo fills in; the caller
// recovers its value from the returned pointer, which is always one that
// compute returned for owner. An owner therefore names one consumer's
// values: it must be something no other consumer holds (authz uses its
// *Server), since each consumer takes the Kept for the head of its own
// type.
func (p *Principal) Memo(owner any, compute func() *Kept) *Kept {
	m := p.memo.Load()
	if m == nil {
		if p.memo.CompareAndSwap(nil, usedOnce) {
			return nil
		}
		m = p.memo.Load()
	}
	if m != usedOnce && m.owner == owner {
		return m
	}
	v := compute()
	v.owner = owner
	p.memo.CompareAndSwap(m, v)
	return v
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
