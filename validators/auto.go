package validators

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"strings"

	json "github.com/go-json-experiment/json"
)

// Auto validates JWTs from a configured issuer locally and introspects
// everything else: many authorization servers issue both kinds.
type Auto struct {
	jwt           *JWT
	introspection introspector
	fingerprint   string
}

// introspector is an *Introspection or a *FirstActive.
type introspector interface {
	Validate(ctx context.Context, token string) (*Principal, error)
	Fingerprint() string
}

// NewAuto combines a JWT validator and introspection.
func NewAuto(jwt *JWT, introspection introspector) *Auto {
	h := sha256.Sum256([]byte("auto\x00" + jwt.Fingerprint() + "\x00" + introspection.Fingerprint()))
	return &Auto{jwt: jwt, introspection: introspection, fingerprint: hex.EncodeToString(h[:16])}
}

// Fingerprint identifies the combined policy for the verdict cache.
func (a *Auto) Fingerprint() string { return a.fingerprint }

// Close releases the JWT validator's key sets (JWT.Close).
func (a *Auto) Close() { a.jwt.Close() }

// Validate routes token by its shape and unverified issuer. A JWT is read
// once: the parse that routes it is the one the JWT validator judges.
func (a *Auto) Validate(ctx context.Context, token string) (*Principal, error) {
	var t jws
	perr := parseJWS(token, &t)
	if perr == nil {
		if _, known := a.jwt.issuers[t.claims.Issuer]; known {
			return a.jwt.validateJWS(ctx, &t)
		}
		return a.introspection.Validate(ctx, token)
	}
	// Malformed as a JWT, yet naming a configured JWT issuer: the JWT
	// validator's verdict, not the introspection endpoint's.
	if iss, ok := peekIssuer(token); ok {
		if _, known := a.jwt.issuers[iss]; known {
			return nil, perr
		}
	}
	return a.introspection.Validate(ctx, token)
}

// peekIssuer returns the unverified iss of a JWS compact token. It only
// routes: a token naming a configured JWT issuer is judged entirely by the
// JWT validator. It reads iss as that validator will (strict base64url,
// exact member names, no duplicates), so one token cannot be routed by one
// reading of iss and judged by another.
func peekIssuer(token string) (string, bool) {
	first := strings.IndexByte(token, '.')
	last := strings.LastIndexByte(token, '.')
	if first <= 0 || last == first || strings.Count(token, ".") != 2 {
		return "", false
	}
	payload, err := strictB64.DecodeString(token[first+1 : last])
	if err != nil {
		return "", false
	}
	var c struct {
		Issuer string `json:"iss"`
	}
	if json.Unmarshal(payload, &c) != nil {
		return "", false
	}
	return c.Issuer, c.Issuer != ""
}
