package validators

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/golang-jwt/jwt/v5"
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

// forbiddenHeaders are token-supplied key locations (RFC 8725 §3.10). Keys
// come only from the configured issuer's JWKS, so a token carrying them is
// refused rather than silently half-trusted.
var forbiddenHeaders = []string{"jku", "jwk", "x5u", "crit"}

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
	// Client fetches discovery documents and JWKS. Required.
	Client *http.Client
	// RefreshWait and MinRefreshInterval tune unknown-kid refreshes; see KeySetConfig.
	RefreshWait        time.Duration
	MinRefreshInterval time.Duration
	Logger             *slog.Logger
	// Now overrides the clock, for tests.
	Now func() time.Time
}

// JWT validates JWT access tokens against the configured issuers' JWKS.
type JWT struct {
	issuers     map[string]*jwtIssuer
	audiences   []string
	fingerprint string
	parser      *jwt.Parser
}

type jwtIssuer struct {
	cfg       IssuerConfig
	keys      *RemoteKeySet
	validator *jwt.Validator
}

// NewJWT builds a JWT validator and starts each issuer's background JWKS
// refresh, which ends with ctx.
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
		parser:    jwt.NewParser(),
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
		keys, err := NewRemoteKeySet(ctx, KeySetConfig{
			Issuer:             ic.Issuer,
			JWKSURI:            ic.JWKSURI,
			Client:             cfg.Client,
			RefreshInterval:    ic.JWKSCacheTTL,
			MinRefreshInterval: cfg.MinRefreshInterval,
			RefreshWait:        cfg.RefreshWait,
			Logger:             cfg.Logger,
		})
		if err != nil {
			return nil, fmt.Errorf("jwt: issuer %q: %w", ic.Issuer, err)
		}
		iss := v.issuers[ic.Issuer]
		iss.keys = keys
		iss.validator = jwt.NewValidator(
			jwt.WithLeeway(cfg.Leeway),
			jwt.WithExpirationRequired(),
			jwt.WithIssuedAt(),
			jwt.WithTimeFunc(now),
		)
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
	var c accessClaims
	tok, parts, err := v.parser.ParseUnverified(token, &c)
	if err != nil {
		if errors.Is(err, jwt.ErrTokenUnverifiable) {
			return nil, invalid(DescAlgorithm, err)
		}
		return nil, invalid(DescMalformed, err)
	}
	iss, ok := v.issuers[c.Issuer]
	if !ok {
		// Unknown issuers are refused before any key lookup, so a forged iss
		// cannot make us fetch anything.
		return nil, invalid(DescIssuer, errors.New("iss is not a configured issuer"))
	}
	alg := tok.Method.Alg()
	if !slices.Contains(iss.cfg.Algorithms, alg) {
		return nil, invalid(DescAlgorithm, fmt.Errorf("alg %q not in the allow-list %v", alg, iss.cfg.Algorithms))
	}
	for _, h := range forbiddenHeaders {
		if _, present := tok.Header[h]; present {
			return nil, invalid(DescHeader, fmt.Errorf("header parameter %q is not accepted", h))
		}
	}
	if iss.cfg.RequireATJWT {
		typ, _ := tok.Header["typ"].(string)
		if !strings.EqualFold(typ, "at+jwt") && !strings.EqualFold(typ, "application/at+jwt") {
			return nil, invalid(DescType, errors.New(`expected typ "at+jwt" (RFC 9068)`))
		}
	}

	// Claims before the signature: they are cheap, and the signature check
	// may need a key fetch.
	if err := iss.validator.Validate(&c); err != nil {
		return nil, claimsError(err)
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

	if _, hasKID := tok.Header["kid"]; !hasKID && !iss.keys.Loaded() {
		return nil, unavailable(DescJWKS, errKeySetUnavailable)
	}
	key, err := iss.keys.KeyfuncCtx(ctx)(tok)
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
	signed := token[:len(parts[0])+1+len(parts[1])]
	if err := verify(tok.Method, signed, tok.Signature, key); err != nil {
		return nil, invalid(DescSignature, err)
	}

	return c.principal(parts[1]), nil
}

// principal is the identity of a verified token whose payload segment is
// payload.
func (c *accessClaims) principal(payload string) *Principal {
	p := &Principal{
		Subject:  c.Subject,
		ClientID: c.clientID(),
		Issuer:   c.Issuer,
		Audience: c.Audience,
		Scopes:   c.scopes(),
		// A clone, so the cached principal does not pin the whole token.
		Claims: strings.Clone(payload),
	}
	if c.ExpiresAt != nil {
		p.ExpiresAt = c.ExpiresAt.Time
	}
	return p
}

// verify checks sig with key, or with any key of a set (tokens without kid).
func verify(m jwt.SigningMethod, signed string, sig []byte, key any) error {
	set, ok := key.(jwt.VerificationKeySet)
	if !ok {
		return m.Verify(signed, sig, key)
	}
	err := jwt.ErrTokenSignatureInvalid
	for _, k := range set.Keys {
		if err = m.Verify(signed, sig, k); err == nil {
			return nil
		}
	}
	return err
}

func claimsError(err error) *Error {
	switch {
	case errors.Is(err, jwt.ErrTokenRequiredClaimMissing):
		return invalid(DescNoExpiry, err)
	case errors.Is(err, jwt.ErrTokenExpired):
		return invalid(DescExpired, err)
	case errors.Is(err, jwt.ErrTokenNotValidYet):
		return invalid(DescNotYetValid, err)
	case errors.Is(err, jwt.ErrTokenUsedBeforeIssued):
		return invalid(DescIssuedFuture, err)
	default:
		return invalid(DescMalformed, err)
	}
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

// accessClaims is the claim set of an access token as mcp-authz reads it.
type accessClaims struct {
	jwt.RegisteredClaims
	Scope    scopeClaim `json:"scope"`
	Scp      scopeClaim `json:"scp"`
	ClientID string     `json:"client_id"`
	Azp      string     `json:"azp"`   // OIDC, Auth0, Azure AD v2
	Cid      string     `json:"cid"`   // Okta
	AppID    string     `json:"appid"` // Azure AD v1
	TokenUse string     `json:"token_use"`
}

func (c *accessClaims) scopes() []string {
	if len(c.Scope) > 0 {
		return c.Scope
	}
	return c.Scp
}

func (c *accessClaims) clientID() string {
	for _, id := range []string{c.ClientID, c.Azp, c.Cid, c.AppID} {
		if id != "" {
			return id
		}
	}
	return ""
}

// scopeClaim accepts a space-separated string (RFC 9068 scope, Azure AD scp)
// or an array of strings (Okta scp).
type scopeClaim []string

func (s *scopeClaim) UnmarshalJSON(b []byte) error {
	if len(b) > 0 && b[0] == '"' {
		var str string
		if err := json.Unmarshal(b, &str); err != nil {
			return err
		}
		*s = splitScopes(str)
		return nil
	}
	if string(b) == "null" {
		*s = nil
		return nil
	}
	var list []string
	if err := json.Unmarshal(b, &list); err != nil {
		return fmt.Errorf("scope claim must be a string or an array of strings")
	}
	*s = list
	return nil
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
