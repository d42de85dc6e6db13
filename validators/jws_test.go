package validators

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"strings"
	"testing"

	"github.com/golang-jwt/jwt/v5"

	"github.com/mcp-authz/mcp-authz/internal/devissuer"
)

const b64url = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"

// nonCanonical respells the last character of seg with a trailing bit
// set: base64.RawURLEncoding decodes it to the same bytes, a strict
// decoder refuses it. seg's length must not be a multiple of 4.
func nonCanonical(t *testing.T, seg string) string {
	t.Helper()
	if len(seg)%4 == 0 {
		t.Fatalf("segment of length %d has no trailing bits", len(seg))
	}
	i := strings.IndexByte(b64url, seg[len(seg)-1])
	if i&1 != 0 {
		t.Fatalf("segment %q is not canonical to begin with", seg)
	}
	return seg[:len(seg)-1] + string(b64url[i|1])
}

// segmentsWithTrailingBits returns a header and payload whose base64url
// segments carry trailing bits (length 2 mod 4), padding the JSON with
// spaces.
func segmentsWithTrailingBits(header, payload string) (string, string) {
	pad := func(js string) string {
		for len(base64.RawURLEncoding.EncodeToString([]byte(js)))%4 != 2 {
			js += " "
		}
		return js
	}
	return pad(header), pad(payload)
}

// TestJWTStrictBase64: each token has exactly one spelling. Lenient
// base64url decoding accepted 16 spellings of one RS256 token (the last
// signature character carries 4 unused bits), ignored CR and LF, and each
// spelling was a new verdict cache key.
func TestJWTStrictBase64(t *testing.T) {
	f := newFixture(t, nil)
	h, p := segmentsWithTrailingBits(f.rawHeader(""), f.rawClaims(""))
	tok := signRaw(t, f.rsa, h, p)
	parts := strings.Split(tok, ".")
	if len(parts[2])%4 == 0 {
		t.Fatal("an RS256 signature segment should carry trailing bits")
	}
	join := func(h, p, s string) string { return h + "." + p + "." + s }

	t.Run("one spelling of the signature", func(t *testing.T) {
		accepted := 0
		last := parts[2][len(parts[2])-1]
		for i := 0; i < len(b64url); i++ {
			spelling := join(parts[0], parts[1], parts[2][:len(parts[2])-1]+string(b64url[i]))
			if _, err := f.v.Validate(context.Background(), spelling); err == nil {
				accepted++
				if b64url[i] != last {
					t.Errorf("a respelled signature was accepted")
				}
			}
		}
		if accepted != 1 {
			t.Fatalf("%d spellings accepted, want 1", accepted)
		}
	})

	tests := []struct {
		name, token string
	}{
		{"signature with trailing bits set", join(parts[0], parts[1], nonCanonical(t, parts[2]))},
		{"payload with trailing bits set", join(parts[0], nonCanonical(t, parts[1]), parts[2])},
		{"header with trailing bits set", join(nonCanonical(t, parts[0]), parts[1], parts[2])},
		{"padded signature", join(parts[0], parts[1], parts[2]+"==")},
		{"padded header", join(parts[0]+"==", parts[1], parts[2])},
		{"LF inside the signature", join(parts[0], parts[1], parts[2][:10]+"\n"+parts[2][10:])},
		{"CRLF inside the payload", join(parts[0], parts[1][:10]+"\r\n"+parts[1][10:], parts[2])},
		{"standard alphabet", strings.NewReplacer("-", "+", "_", "/").Replace(tok)},
		{"space", " " + tok},
		{"empty header", join("", parts[1], parts[2])},
		{"empty payload", join(parts[0], "", parts[2])},
		{"four segments", tok + ".x"},
	}
	if _, err := f.v.Validate(context.Background(), tok); err != nil {
		t.Fatalf("the canonical token: %v", err)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := f.v.Validate(context.Background(), tt.token)
			var verr *Error
			if !errors.As(err, &verr) || verr.Description != DescMalformed || !errors.Is(err, ErrInvalidToken) {
				t.Fatalf("got %v, want %q", err, DescMalformed)
			}
		})
	}
}

func TestHMACStrictParsing(t *testing.T) {
	secret := []byte("0123456789abcdef0123456789abcdef")
	v, err := NewHMAC(HMACConfig{Secret: secret, Audiences: []string{testAudience}})
	if err != nil {
		t.Fatal(err)
	}
	sign := func(header, payload string) string {
		signing := base64.RawURLEncoding.EncodeToString([]byte(header)) + "." + base64.RawURLEncoding.EncodeToString([]byte(payload))
		mac := hmac.New(sha256.New, secret)
		mac.Write([]byte(signing))
		return signing + "." + base64.RawURLEncoding.EncodeToString(mac.Sum(nil))
	}
	valid := `{"sub":"svc","aud":"` + testAudience + `","exp":253402300799,"scope":"mcp:read"}`
	tests := []struct{ name, token, want string }{
		{"valid", sign(`{"alg":"HS256"}`, valid), ""},
		{"SCOPE does not override scope", sign(`{"alg":"HS256"}`, strings.TrimSuffix(valid, "}")+`,"SCOPE":"mcp:admin"}`), ""},
		{"duplicate scope", sign(`{"alg":"HS256"}`, strings.TrimSuffix(valid, "}")+`,"scope":"mcp:admin"}`), DescMalformed},
		{"duplicate alg", sign(`{"alg":"HS256","alg":"HS256"}`, valid), DescMalformed},
		{"sub with a control character", sign(`{"alg":"HS256"}`, strings.Replace(valid, `"svc"`, `"s\u0000vc"`, 1)), DescMalformed},
		{"exp 1e19", sign(`{"alg":"HS256"}`, strings.Replace(valid, "253402300799", "1e19", 1)), DescMalformed},
		{"scope with em space", sign(`{"alg":"HS256"}`, strings.Replace(valid, `"mcp:read"`, `"x\u2003mcp:read"`, 1)), DescMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := v.Validate(context.Background(), tt.token)
			if tt.want == "" {
				if err != nil || strings.Join(p.Scopes(), " ") != "mcp:read" {
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

// TestVerifyAgreesWithGolangJWT: the direct RSA path of verify answers as
// golang-jwt's own Verify does.
func TestVerifyAgreesWithGolangJWT(t *testing.T) {
	keys := map[string]*devissuer.Key{}
	for _, alg := range []string{"RS256", "RS384", "RS512", "ES256"} {
		k, err := devissuer.NewKey(alg)
		if err != nil {
			t.Fatal(err)
		}
		keys[alg] = k
	}
	other, _ := devissuer.NewKey("RS256")
	for _, alg := range []string{"RS256", "RS384", "RS512"} {
		tok, err := keys[alg].SignRaw(`{"alg":"`+alg+`"}`, `{"sub":"x"}`)
		if err != nil {
			t.Fatal(err)
		}
		i := strings.LastIndexByte(tok, '.')
		signed := tok[:i]
		sig, _ := base64.RawURLEncoding.DecodeString(tok[i+1:])
		bad := append([]byte(nil), sig...)
		bad[len(bad)/2] ^= 1
		method := jwt.GetSigningMethod(alg)
		for name, c := range map[string]struct {
			signed string
			sig    []byte
			key    any
		}{
			"valid":          {signed, sig, keys[alg].Signer.Public()},
			"tampered":       {signed, bad, keys[alg].Signer.Public()},
			"other input":    {signed + "x", sig, keys[alg].Signer.Public()},
			"other key":      {signed, sig, other.Signer.Public()},
			"EC key":         {signed, sig, keys["ES256"].Signer.Public()},
			"short sig":      {signed, sig[:10], keys[alg].Signer.Public()},
			"empty sig":      {signed, nil, keys[alg].Signer.Public()},
			"nil key":        {signed, sig, nil},
			"private key":    {signed, sig, keys[alg].Signer},
			"wrong hash alg": {signed, sig, keys[alg].Signer.Public()},
		} {
			m := method
			if name == "wrong hash alg" {
				m = jwt.GetSigningMethod(map[string]string{"RS256": "RS384", "RS384": "RS512", "RS512": "RS256"}[alg])
			}
			got, want := verify(m, c.signed, c.sig, c.key), m.Verify(c.signed, c.sig, c.key)
			if (got == nil) != (want == nil) {
				t.Errorf("%s %s: verify %v, golang-jwt %v", alg, name, got, want)
			}
		}
	}
}
