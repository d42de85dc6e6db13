package validators

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// hmacAlgorithms are the algorithms a shared-secret issuer may allow.
var hmacAlgorithms = []string{"HS256", "HS384", "HS512"}

// minHMACSecret is the shortest accepted secret: RFC 7518 §3.2 wants a key
// at least as long as the hash output; 32 bytes covers HS256.
const minHMACSecret = 32

// HMACConfig configures the legacy shared-secret JWT validator.
type HMACConfig struct {
	// Secret is the shared key, at least 32 bytes.
	Secret []byte
	// Algorithms is the allow-list; empty means HS256.
	Algorithms []string
	// Issuer, when set, must equal iss.
	Issuer string
	// Audiences, when set, must contain the token's aud.
	Audiences []string
	// AllowMissingExpiry accepts tokens without exp. The seed accepted
	// them silently; here it is an explicit, loudly named choice.
	AllowMissingExpiry bool
	Leeway             time.Duration
	Now                func() time.Time
}

// HMAC validates shared-secret (HS256/384/512) JWTs, for services migrating
// from the seed's JWTAuthProvider.
type HMAC struct {
	cfg         HMACConfig
	fingerprint string
}

// NewHMAC checks cfg and returns the validator.
func NewHMAC(cfg HMACConfig) (*HMAC, error) {
	if len(cfg.Secret) < minHMACSecret {
		return nil, fmt.Errorf("hmac: the secret must be at least %d bytes", minHMACSecret)
	}
	if len(cfg.Algorithms) == 0 {
		cfg.Algorithms = []string{"HS256"}
	}
	for _, a := range cfg.Algorithms {
		if !slices.Contains(hmacAlgorithms, a) {
			return nil, fmt.Errorf("hmac: algorithm %q not allowed (choose from %s)", a, strings.Join(hmacAlgorithms, ", "))
		}
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	h := sha256.New()
	// The fingerprint covers the secret's hash: a new secret must not
	// reuse verdicts made with the old one.
	secretSum := sha256.Sum256(cfg.Secret)
	aud := slices.Clone(cfg.Audiences)
	slices.Sort(aud)
	fmt.Fprintf(h, "hmac\x00%x\x00%s\x00%s\x00%s\x00%t\x00%d", secretSum, strings.Join(cfg.Algorithms, ","), cfg.Issuer,
		strings.Join(aud, " "), cfg.AllowMissingExpiry, cfg.Leeway)
	return &HMAC{cfg: cfg, fingerprint: hex.EncodeToString(h.Sum(nil)[:16])}, nil
}

// Fingerprint identifies the validation policy for the verdict cache.
func (v *HMAC) Fingerprint() string { return v.fingerprint }

// Validate verifies the MAC and the claims. Parsing is as strict as for
// JWKS-signed tokens (parseJWS).
func (v *HMAC) Validate(_ context.Context, token string) (*Principal, error) {
	var t jws
	if err := parseJWS(token, &t); err != nil {
		return nil, err
	}
	if !slices.Contains(v.cfg.Algorithms, t.header.Alg) {
		return nil, invalid(DescAlgorithm, fmt.Errorf("alg not in the allow-list %v", v.cfg.Algorithms))
	}
	if h := t.header.forbiddenHeader(); h != "" {
		return nil, invalid(DescHeader, fmt.Errorf("header parameter %q is not accepted", h))
	}
	if err := jwt.GetSigningMethod(t.header.Alg).Verify(t.signed, t.signature, v.cfg.Secret); err != nil {
		return nil, invalid(DescSignature, err)
	}
	c := &t.claims
	if err := checkTimes(c.ExpiresAt, c.NotBefore, c.IssuedAt, v.cfg.Now(), v.cfg.Leeway, !v.cfg.AllowMissingExpiry); err != nil {
		return nil, err
	}
	if v.cfg.Issuer != "" && c.Issuer != v.cfg.Issuer {
		return nil, invalid(DescIssuer, fmt.Errorf("expected issuer %q", v.cfg.Issuer))
	}
	if len(v.cfg.Audiences) > 0 && !audienceMatches(c.Audience, v.cfg.Audiences) {
		return nil, invalid(DescAudience, fmt.Errorf("expected audience %q", v.cfg.Audiences))
	}
	return c.principal(&t), nil
}
