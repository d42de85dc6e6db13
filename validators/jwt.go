package validators

import (
	"context"
	"crypto"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"
	"unsafe"

	"github.com/MicahParks/jwkset"
	"github.com/golang-jwt/jwt/v5"

	"github.com/mcp-authz/mcp-authz/internal/tracing"
)

// DefaultAlgorithms is the signing algorithm allow-list used when none is configured.
var DefaultAlgorithms = []string{"RS256", "ES256"}

// asymmetricAlgorithms are the algorithms a JWKS-backed issuer may allow.
// HMAC is absent on purpose: with public keys it is the RFC 8725 §2.1
// key-confusion attack.
var asymmetricAlgorithms = []string{
	"RS256", "RS384", "RS512", "PS256", "PS384", "PS512",
	"ES256", "ES384", "ES512", "EdDSA",
}

// IssuerConfig is one trusted JWT issuer.
type IssuerConfig struct {
	// Issuer must equal the token's iss exactly.
	Issuer string
	// JWKSURI overrides discovery from the issuer.
	JWKSURI string
	// Algorithms is the allow-list; empty means DefaultAlgorithms.
	Algorithms []string
	// RequireATJWT enforces the RFC 9068 typ "at+jwt".
	RequireATJWT bool
	// JWKSCacheTTL is the JWKS refresh interval; zero means 15 minutes.
	JWKSCacheTTL time.Duration
	// ClientIDs, when set, accept a token without aud whose client_id is
	// listed (AWS Cognito access tokens carry no aud). A token with an aud
	// is still held to the audience.
	ClientIDs []string
	// RequireTokenUse, when set, must equal the token_use claim (Cognito:
	// "access", so ID tokens are refused).
	RequireTokenUse string
}

// JWTConfig configures a JWT validator. The zero value of every optional
// field is the strict behaviour.
type JWTConfig struct {
	Issuers []IssuerConfig
	// Audiences: the token's aud must contain one of them (one trailing-slash
	// difference tolerated). Required.
	Audiences []string
	// Leeway for exp, nbf and iat. Zero means none.
	Leeway time.Duration
	// Client fetches discovery documents and JWKS. Required. Redirects are
	// followed only to URLs that CheckOutboundURL accepts, whatever the
	// client's own CheckRedirect allows.
	Client *http.Client
	// RefreshWait and MinRefreshInterval tune unknown-kid refreshes; see KeySetConfig.
	RefreshWait        time.Duration
	MinRefreshInterval time.Duration
	// KeySets is the process's registry of JWKS caches, shared by every
	// validator naming the same issuer and JWKS URI; see KeySets. Nil
	// means a private registry: the key sets are this validator's own and
	// refresh until ctx ends or Close.
	KeySets *KeySets
	Logger  *slog.Logger
	// Tracer, when set, traces JWKS refreshes; see KeySetConfig.
	Tracer tracing.Tracer
	// Now overrides the clock, for tests.
	Now func() time.Time
}

// JWT validates JWT access tokens against the configured issuers' JWKS.
type JWT struct {
	issuers     map[string]*jwtIssuer
	audiences   []string
	leeway      time.Duration
	now         func() time.Time
	fingerprint string
	registry    *KeySets
	closeOnce   sync.Once
	// onVerify, when set (tests), is called before each signature check.
	onVerify func()
}

type jwtIssuer struct {
	cfg  IssuerConfig
	keys *RemoteKeySet
}

// NewJWT builds a JWT validator and retains each issuer's key set from
// cfg.KeySets, which starts its background refresh on first use. Without a
// registry the key sets are the validator's own and refresh until ctx ends.
// Close releases them.
func NewJWT(ctx context.Context, cfg JWTConfig) (*JWT, error) {
	if len(cfg.Issuers) == 0 {
		return nil, errors.New("jwt: at least one issuer is required")
	}
	if len(cfg.Audiences) == 0 {
		return nil, errors.New("jwt: an audience is required")
	}
	if cfg.Client == nil {
		return nil, errors.New("jwt: Client is required")
	}
	if cfg.Leeway < 0 {
		return nil, errors.New("jwt: leeway must not be negative")
	}
	now := cfg.Now
	if now == nil {
		now = time.Now
	}
	v := &JWT{
		issuers:   make(map[string]*jwtIssuer, len(cfg.Issuers)),
		audiences: slices.Clone(cfg.Audiences),
		leeway:    cfg.Leeway,
		now:       now,
		registry:  cfg.KeySets,
	}
	if v.registry == nil {
		v.registry = NewKeySets(ctx)
	}
	cfg.Issuers = slices.Clone(cfg.Issuers) // defaults below must not write to the caller's slice
	// Validate every issuer before starting any key set, so a rejected
	// configuration fetches nothing.
	for i := range cfg.Issuers {
		ic := &cfg.Issuers[i]
		if ic.Issuer == "" {
			return nil, errors.New("jwt: issuer must not be empty")
		}
		if _, dup := v.issuers[ic.Issuer]; dup {
			return nil, fmt.Errorf("jwt: issuer %q configured twice", ic.Issuer)
		}
		if len(ic.Algorithms) == 0 {
			ic.Algorithms = DefaultAlgorithms
		}
		if err := CheckAlgorithms(ic.Algorithms); err != nil {
			return nil, fmt.Errorf("jwt: issuer %q: %w", ic.Issuer, err)
		}
		if ic.JWKSURI != "" {
			if err := CheckOutboundURL(ic.JWKSURI); err != nil {
				return nil, fmt.Errorf("jwt: issuer %q: jwks_uri: %w", ic.Issuer, err)
			}
		} else if err := CheckOutboundURL(ic.Issuer); err != nil {
			return nil, fmt.Errorf("jwt: issuer %q: %w", ic.Issuer, err)
		}
		v.issuers[ic.Issuer] = &jwtIssuer{cfg: *ic}
	}
	for _, ic := range cfg.Issuers {
		keys, err := v.registry.Get(KeySetConfig{
			Issuer:             ic.Issuer,
			JWKSURI:            ic.JWKSURI,
			Client:             cfg.Client,
			RefreshInterval:    ic.JWKSCacheTTL,
			MinRefreshInterval: cfg.MinRefreshInterval,
			RefreshWait:        cfg.RefreshWait,
			Logger:             cfg.Logger,
			Tracer:             cfg.Tracer,
		})
		if err != nil {
			v.Close()
			return nil, fmt.Errorf("jwt: issuer %q: %w", ic.Issuer, err)
		}
		v.issuers[ic.Issuer].keys = keys
	}
	v.fingerprint = jwtFingerprint(cfg)
	return v, nil
}

// CheckAlgorithms reports whether every name is an asymmetric JWS algorithm
// that a JWKS-backed issuer may allow.
func CheckAlgorithms(algs []string) error {
	for _, a := range algs {
		if !slices.Contains(asymmetricAlgorithms, a) {
			return fmt.Errorf("algorithm %q not allowed (choose from %s)", a, strings.Join(asymmetricAlgorithms, ", "))
		}
	}
	return nil
}

// Fingerprint identifies the validation policy, so that verdicts cached under
// one policy are never served under another.
func (v *JWT) Fingerprint() string { return v.fingerprint }

// Close releases the validator's key sets: one that no other validator
// retains stops refreshing. Validate must not be called after Close. On a
// configuration reload, build the new validators before closing the old
// ones, so an unchanged issuer keeps its loaded key set.
func (v *JWT) Close() {
	v.closeOnce.Do(func() {
		for _, iss := range v.issuers {
			if iss.keys != nil {
				v.registry.Release(iss.keys)
			}
		}
	})
}

// KeySets returns each issuer's key set, keyed by issuer, for readiness
// reporting and tests.
func (v *JWT) KeySets() map[string]*RemoteKeySet {
	m := make(map[string]*RemoteKeySet, len(v.issuers))
	for iss, i := range v.issuers {
		m[iss] = i.keys
	}
	return m
}

// Validate checks token and returns its principal, or an *Error.
func (v *JWT) Validate(ctx context.Context, token string) (*Principal, error) {
	var t jws
	if err := parseJWS(token, &t); err != nil {
		return nil, err
	}
	return v.validateJWS(ctx, &t)
}

// validateJWS judges a token parseJWS has read.
func (v *JWT) validateJWS(ctx context.Context, t *jws) (*Principal, error) {
	c := &t.claims
	iss, ok := v.issuers[c.Issuer]
	if !ok {
		// Unknown issuers are refused before any key lookup, so a forged iss
		// cannot make us fetch anything.
		return nil, invalid(DescIssuer, errors.New("iss is not a configured issuer"))
	}
	alg := t.header.Alg
	if !slices.Contains(iss.cfg.Algorithms, alg) {
		return nil, invalid(DescAlgorithm, fmt.Errorf("alg not in the allow-list %v", iss.cfg.Algorithms))
	}
	if h := t.header.forbiddenHeader(); h != "" {
		return nil, invalid(DescHeader, fmt.Errorf("header parameter %q is not accepted", h))
	}
	if iss.cfg.RequireATJWT {
		typ := t.header.Typ.s
		if !strings.EqualFold(typ, "at+jwt") && !strings.EqualFold(typ, "application/at+jwt") {
			return nil, invalid(DescType, errors.New(`expected typ "at+jwt" (RFC 9068)`))
		}
	}

	// Claims before the signature: they are cheap, and the signature check
	// may need a key fetch.
	if err := checkTimes(c.ExpiresAt, c.NotBefore, c.IssuedAt, v.now(), v.leeway, true); err != nil {
		return nil, err
	}
	if iss.cfg.RequireTokenUse != "" && c.TokenUse != iss.cfg.RequireTokenUse {
		return nil, invalid(DescType, fmt.Errorf("expected token_use %q", iss.cfg.RequireTokenUse))
	}
	switch {
	case len(c.Audience) == 0 && len(iss.cfg.ClientIDs) > 0:
		if !slices.Contains(iss.cfg.ClientIDs, c.ClientID) {
			return nil, invalid(DescAudience, errors.New("no aud, and client_id is not an accepted client"))
		}
	case !audienceMatches(c.Audience, v.audiences):
		return nil, invalid(DescAudience, fmt.Errorf("expected audience %q", v.audiences))
	}

	// alg is in the allow-list, so golang-jwt knows it.
	method := jwt.GetSigningMethod(alg)
	if !t.header.Kid.set {
		if err := v.verifyKidless(iss.keys, method, t); err != nil {
			return nil, err
		}
		return c.principal(t), nil
	}
	key, err := iss.keys.keyByKID(ctx, t.header.Kid.s, alg)
	if err != nil {
		switch {
		case errors.Is(err, errKeySetUnavailable):
			return nil, unavailable(DescJWKS, err)
		case errors.Is(err, jwkset.ErrKeyNotFound):
			e := invalid(DescUnknownKey, errors.New("kid not in the issuer's JWKS"))
			e.Retryable = true
			return nil, e
		default:
			return nil, invalid(DescSignature, err)
		}
	}
	if v.onVerify != nil {
		v.onVerify()
	}
	if err := verify(method, t.signed, t.signature, key); err != nil {
		return nil, invalid(DescSignature, err)
	}
	return c.principal(t), nil
}

// verifyKidless checks the signature of a token without kid against the
// few keys that fit its alg (RemoteKeySet.kidlessKeys), never the whole set.
func (v *JWT) verifyKidless(keys *RemoteKeySet, method jwt.SigningMethod, t *jws) *Error {
	if !keys.Loaded() {
		return unavailable(DescJWKS, errKeySetUnavailable)
	}
	candidates := keys.kidlessKeys(method.Alg())
	if len(candidates) == 0 {
		return invalid(DescUnknownKey, errors.New("no kid, and the issuer's JWKS has no key for this alg"))
	}
	for _, k := range candidates {
		if v.onVerify != nil {
			v.onVerify()
		}
		if verify(method, t.signed, t.signature, k) == nil {
			return nil
		}
	}
	return invalid(DescSignature, fmt.Errorf("no kid, and none of the first %d keys fitting alg verifies", len(candidates)))
}

// verify checks a JWS signature with key. RS256, RS384 and RS512, the
// algorithms most issuers sign with, go to crypto/rsa directly with the
// signing input hashed in place, where golang-jwt copies it and allocates
// a hash state per call; the others go through golang-jwt.
func verify(method jwt.SigningMethod, signed string, sig []byte, key any) error {
	var h crypto.Hash
	switch method.Alg() {
	case "RS256":
		h = crypto.SHA256
	case "RS384":
		h = crypto.SHA384
	case "RS512":
		h = crypto.SHA512
	default:
		return method.Verify(signed, sig, key)
	}
	pub, ok := key.(*rsa.PublicKey)
	if !ok {
		return jwt.ErrInvalidKeyType
	}
	in := unsafe.Slice(unsafe.StringData(signed), len(signed))
	var sum [sha512.Size]byte
	var digest []byte
	switch h {
	case crypto.SHA256:
		s := sha256.Sum256(in)
		digest = append(sum[:0], s[:]...)
	case crypto.SHA384:
		s := sha512.Sum384(in)
		digest = append(sum[:0], s[:]...)
	default:
		s := sha512.Sum512(in)
		digest = append(sum[:0], s[:]...)
	}
	if err := rsa.VerifyPKCS1v15(pub, h, digest, sig); err != nil {
		return errors.Join(jwt.ErrSignatureInvalid, err)
	}
	return nil
}

// principal is the identity of a verified token whose decoded payload is
// claimsJSON (which the principal keeps: not the token, which it would pin
// whole).
func (c *accessClaims) principal(t *jws) *Principal {
	id := Identity{
		Subject:       c.Subject,
		ClientID:      c.clientID(),
		Issuer:        c.Issuer,
		Scopes:        c.scopes(),
		ClaimsInToken: len(t.claimsJSON),
		ClaimsDigest:  PayloadDigest(t.payload),
	}
	if c.ExpiresAt.set {
		id.ExpiresAt = c.ExpiresAt.t
	}
	return NewPrincipal(id)
}

// audienceMatches reports whether any token audience equals a configured one,
// allowing exactly one trailing-slash difference and never a prefix.
func audienceMatches(tokenAud, want []string) bool {
	for _, a := range tokenAud {
		for _, w := range want {
			if a == w || a+"/" == w || a == w+"/" {
				return true
			}
		}
	}
	return false
}

func jwtFingerprint(cfg JWTConfig) string {
	h := sha256.New()
	fmt.Fprintf(h, "jwt\x00leeway=%d\x00", cfg.Leeway)
	aud := slices.Clone(cfg.Audiences)
	slices.Sort(aud)
	for _, a := range aud {
		fmt.Fprintf(h, "aud=%s\x00", a)
	}
	iss := slices.Clone(cfg.Issuers)
	slices.SortFunc(iss, func(a, b IssuerConfig) int { return strings.Compare(a.Issuer, b.Issuer) })
	for _, i := range iss {
		algs := slices.Clone(i.Algorithms)
		if len(algs) == 0 {
			algs = DefaultAlgorithms
		}
		slices.Sort(algs)
		clients := slices.Clone(i.ClientIDs)
		slices.Sort(clients)
		fmt.Fprintf(h, "iss=%s\x00jwks=%s\x00algs=%s\x00atjwt=%t\x00clients=%s\x00use=%s\x00", i.Issuer, i.JWKSURI,
			strings.Join(algs, ","), i.RequireATJWT, strings.Join(clients, ","), i.RequireTokenUse)
	}
	return hex.EncodeToString(h.Sum(nil)[:16])
}
