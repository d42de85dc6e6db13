package validators

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mcp-authz/mcp-authz/internal/devissuer"
)

// countingIntrospector answers "not active" and counts its calls.
type countingIntrospector struct{ calls atomic.Int64 }

func (c *countingIntrospector) Validate(context.Context, string) (*Principal, error) {
	c.calls.Add(1)
	return nil, invalid(DescInactive, nil)
}

func (c *countingIntrospector) Fingerprint() string { return "counting" }

// TestAutoRouting: a JWT of a configured issuer is judged by the JWT
// validator alone (one with a malformed header or signature included),
// everything else is introspected.
func TestAutoRouting(t *testing.T) {
	f := newFixture(t, nil)
	intro := &countingIntrospector{}
	a := NewAuto(f.v, intro)
	now := time.Now().Unix()
	claims := func(iss, extra string) string {
		return fmt.Sprintf(`{"iss":%q,"aud":%q,"sub":"alice","iat":%d,"exp":%d%s}`, iss, testAudience, now, now+600, extra)
	}
	signWith := func(k *devissuer.Key, header, payload string) string {
		tok, err := k.SignRaw(header, payload)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	sign := func(k *devissuer.Key, payload string) string {
		return signWith(k, fmt.Sprintf(`{"alg":%q,"kid":%q}`, k.Alg, k.KID), payload)
	}
	for _, tc := range []struct {
		name       string
		token      string
		ok         bool
		desc       string
		introspect bool
	}{
		{"valid JWT of the issuer", sign(f.rsa, claims(f.iss.URL, "")), true, "", false},
		{"JWT of the issuer with a malformed header", signWith(f.rsa, `{"alg":"RS256","kid":5}`, claims(f.iss.URL, "")), false, DescMalformed, false},
		// Claims that cannot be read at all name no issuer to route by.
		{"claims with a duplicate name", sign(f.rsa, claims(f.iss.URL, `,"sub":"admin"`)), false, DescInactive, true},
		{"JWT of another issuer", sign(f.rsa, claims("https://other.example", "")), false, DescInactive, true},
		{"opaque token", "opaque-0123456789", false, DescInactive, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := intro.calls.Load()
			p, err := a.Validate(context.Background(), tc.token)
			if tc.ok {
				if err != nil || p.Subject() != "alice" {
					t.Fatalf("%v %v", p, err)
				}
			} else if e, ok := err.(*Error); !ok || e.Description != tc.desc {
				t.Fatalf("error %v, want %q", err, tc.desc)
			}
			if asked := intro.calls.Load() > before; asked != tc.introspect {
				t.Fatalf("introspection asked: %v, want %v", asked, tc.introspect)
			}
		})
	}
}
