package validators

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/mcp-authz/mcp-authz/internal/devissuer"
)

func TestHMACValidate(t *testing.T) {
	secret := []byte("0123456789abcdef0123456789abcdef")
	v, err := NewHMAC(HMACConfig{Secret: secret, Issuer: "legacy", Audiences: []string{testAudience}, Leeway: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	claims := func(mut func(jwt.MapClaims)) jwt.MapClaims {
		c := jwt.MapClaims{"iss": "legacy", "sub": "svc", "aud": testAudience, "exp": now.Add(time.Hour).Unix(), "scope": "mcp:read"}
		if mut != nil {
			mut(c)
		}
		return c
	}
	sign := func(alg string, key []byte, c jwt.MapClaims, hdr map[string]any) string {
		tok := jwt.NewWithClaims(jwt.GetSigningMethod(alg), c)
		for k, val := range hdr {
			tok.Header[k] = val
		}
		s, err := tok.SignedString(key)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	rsaKey, _ := devissuer.NewKey("RS256")
	rsaTok, _ := rsaKey.Sign(claims(nil), nil)
	tests := []struct {
		name, token, want string
	}{
		{"valid HS256", sign("HS256", secret, claims(nil), nil), ""},
		{"wrong secret", sign("HS256", []byte("another-secret-another-secret-xx"), claims(nil), nil), DescSignature},
		{"HS512 not allowed", sign("HS512", secret, claims(nil), nil), DescAlgorithm},
		{"RS256 not allowed", rsaTok, DescAlgorithm},
		{"alg none", b64(map[string]any{"alg": "none"}) + "." + b64(claims(nil)) + ".", DescAlgorithm},
		{"no exp (the seed accepted it; we do not)", sign("HS256", secret, claims(func(c jwt.MapClaims) { delete(c, "exp") }), nil), DescNoExpiry},
		{"expired", sign("HS256", secret, claims(func(c jwt.MapClaims) { c["exp"] = now.Add(-time.Hour).Unix() }), nil), DescExpired},
		{"wrong issuer", sign("HS256", secret, claims(func(c jwt.MapClaims) { c["iss"] = "other" }), nil), DescIssuer},
		{"wrong audience", sign("HS256", secret, claims(func(c jwt.MapClaims) { c["aud"] = "https://other.example" }), nil), DescAudience},
		{"jku header", sign("HS256", secret, claims(nil), map[string]any{"jku": "https://evil.example"}), DescHeader},
		{"garbage", "not.a.jwt", DescMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := v.Validate(context.Background(), tt.token)
			if tt.want == "" {
				if err != nil || p.Subject() != "svc" || strings.Join(p.Scopes(), " ") != "mcp:read" {
					t.Fatalf("got %+v, %v", p, err)
				}
				return
			}
			var verr *Error
			if !errors.As(err, &verr) || verr.Description != tt.want {
				t.Fatalf("got %v, want %q", err, tt.want)
			}
		})
	}
}

func TestHMACConfig(t *testing.T) {
	if _, err := NewHMAC(HMACConfig{Secret: []byte("short")}); err == nil {
		t.Error("short secret accepted")
	}
	if _, err := NewHMAC(HMACConfig{Secret: make([]byte, 32), Algorithms: []string{"RS256"}}); err == nil {
		t.Error("RS256 accepted for a shared secret")
	}
	v, err := NewHMAC(HMACConfig{Secret: []byte("0123456789abcdef0123456789abcdef"), AllowMissingExpiry: true})
	if err != nil {
		t.Fatal(err)
	}
	tok, _ := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"sub": "x"}).SignedString([]byte("0123456789abcdef0123456789abcdef"))
	if _, err := v.Validate(context.Background(), tok); err != nil {
		t.Fatalf("AllowMissingExpiry: %v", err)
	}
	a, _ := NewHMAC(HMACConfig{Secret: []byte("0123456789abcdef0123456789abcdef")})
	b, _ := NewHMAC(HMACConfig{Secret: []byte("fedcba9876543210fedcba9876543210")})
	if a.Fingerprint() == b.Fingerprint() {
		t.Error("a new secret keeps the old verdicts")
	}
}
