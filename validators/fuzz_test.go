package validators

import (
	"context"
	"errors"
	"strings"
	"testing"
)

func FuzzJWTValidate(f *testing.F) {
	fx := newFixture(f, nil)
	valid, err := fx.rsa.Sign(fx.claims(), nil)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(valid)
	f.Add(strings.Replace(valid, ".", "..", 1))
	f.Add("eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.")
	f.Add("a.b.c")
	f.Add("....")
	f.Add(`eyJhbGciOiJSUzI1NiIsImtpZCI6W119.e30.c2ln`) // kid as an array
	f.Fuzz(func(t *testing.T, token string) {
		p, err := fx.v.Validate(context.Background(), token)
		if err == nil {
			if p == nil || p.Issuer != fx.iss.URL {
				t.Fatalf("nil error with principal %+v", p)
			}
			return
		}
		var verr *Error
		if !errors.As(err, &verr) {
			t.Fatalf("untyped error %T: %v", err, err)
		}
		if !errors.Is(err, ErrInvalidToken) {
			t.Fatalf("garbage judged %v, want invalid_token", verr.Kind)
		}
		if len(token) > 16 && strings.Contains(err.Error(), token) {
			t.Fatalf("error echoes the token: %v", err)
		}
	})
}
