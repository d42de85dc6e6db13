package validators

import (
	"context"
	"encoding/base64"
	"errors"
	"strings"
	"testing"
	"unicode/utf8"

	json "github.com/go-json-experiment/json"
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
	for _, s := range strictSeeds {
		f.Add(signRaw(f, fx.rsa, fx.rawHeader(s.header), fx.rawClaims(s.claims, s.drop...)))
	}
	f.Add(valid + "=")
	f.Add(valid[:len(valid)-1] + "\n" + valid[len(valid)-1:])
	f.Fuzz(func(t *testing.T, token string) {
		p, err := fx.v.Validate(context.Background(), token)
		if err == nil {
			if p == nil || p.Issuer() != fx.iss.URL {
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

// strictSeeds are claim and header variants from the strict-parsing
// tables, as fuzz seeds.
var strictSeeds = []strictCase{
	{claims: `"SCOPE":"mcp:admin"`},
	{claims: `"scope":"mcp:admin"`},
	{claims: `"ext":{"a":1,"a":2}`},
	{drop: []string{"exp"}, claims: `"exp":1e19`},
	{claims: `"nbf":-1`},
	{drop: []string{"scope"}, claims: `"scope":"x\u2003mcp:read"`},
	{drop: []string{"scope"}, claims: `"scp":["a b",""]`},
	{drop: []string{"sub"}, claims: `"sub":"a\u0085b"`},
	{drop: []string{"sub"}, claims: `"sub":"\ud800"`},
	{header: `"alg":"none"`},
	{header: `"jku":null`},
}

// FuzzParseJWS: whatever parseJWS accepts is the one canonical spelling of
// its bytes, and its claims obey the strict rules.
func FuzzParseJWS(f *testing.F) {
	enc := base64.RawURLEncoding.EncodeToString
	for _, s := range []string{
		enc([]byte(`{"alg":"RS256","kid":"k"}`)) + "." + enc([]byte(`{"iss":"i","sub":"s","scope":"a b","exp":1}`)) + ".c2ln",
		enc([]byte(`{"alg":"RS256"}`)) + "." + enc([]byte(`{"scp":["a","b"],"aud":["x"],"iat":1.5,"nbf":null}`)) + ".",
		enc([]byte(`{"alg":"RS256","alg":"none"}`)) + "." + enc([]byte(`{}`)) + ".c2ln",
		enc([]byte(`{"alg":"RS256"}`)) + "." + enc([]byte(`{"exp":1e19}`)) + ".c2lu",
		"a.b.c", "..", "e30.e30.", "e30=.e30.",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, token string) {
		var j jws
		if err := parseJWS(token, &j); err != nil {
			if err.Description != DescMalformed || err.Kind != ErrInvalidToken {
				t.Fatalf("parse failure judged %q (%v)", err.Description, err.Kind)
			}
			if len(token) > 16 && strings.Contains(err.Error(), token) {
				t.Fatalf("error echoes the token: %v", err)
			}
			return
		}
		segs := strings.Split(token, ".")
		for _, seg := range segs {
			b, err := base64.RawURLEncoding.DecodeString(seg)
			if err != nil || enc(b) != seg {
				t.Fatalf("accepted a non-canonical segment %q", seg)
			}
		}
		if j.signed != segs[0]+"."+segs[1] || j.payload != segs[1] {
			t.Fatalf("signing input or payload mislaid")
		}
		checkClaimsInvariants(t, &j.claims)
	})
}

// FuzzDecodeClaims: whatever decodeClaims accepts is unambiguous (a strict
// generic decoding sees the same iss, sub and client_id) and obeys the
// identity, scope and NumericDate rules.
func FuzzDecodeClaims(f *testing.F) {
	for _, s := range []string{
		`{"iss":"i","sub":"s","aud":"a","exp":1700000000,"scope":"a b"}`,
		`{"iss":"i","ISS":"j","sub":"s","Sub":"t"}`,
		`{"scope":"a","scope":"b"}`,
		`{"scp":["a","b c"]}`, `{"scp":"a  b "}`, `{"exp":1e19}`, `{"exp":-1}`, `{"exp":"1"}`,
		`{"nbf":253402300799.9}`, `{"sub":"\u0000"}`, `{"sub":"\ud800\udc00"}`, `{"aud":["a",null]}`,
		`{"x":{"y":[{"z":1,"z":2}]}}`, `[]`, `null`, `{"client_id":"c","azp":"\u0085"}`, `{"username":"\u0085"}`, `{"username":7}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, payload []byte) {
		var c accessClaims
		if err := decodeClaims(payload, &c); err != nil {
			if len(payload) > 16 && strings.Contains(err.Error(), string(payload)) {
				t.Fatalf("error echoes the payload: %v", err)
			}
			return
		}
		var generic map[string]any
		if err := json.Unmarshal(payload, &generic); err != nil {
			t.Fatalf("decodeClaims accepted what strict generic decoding refuses: %v", err)
		}
		for name, got := range map[string]string{"iss": c.Issuer, "sub": c.Subject, "client_id": c.ClientID} {
			if want, _ := generic[name].(string); want != got {
				t.Fatalf("%s: typed %q, generic %q", name, got, want)
			}
		}
		checkClaimsInvariants(t, &c)
	})
}

func checkClaimsInvariants(t *testing.T, c *accessClaims) {
	t.Helper()
	for _, id := range []string{c.Issuer, c.Subject, c.ClientID, c.Azp, c.Cid, c.AppID, string(c.Username)} {
		if !utf8.ValidString(id) || strings.ContainsFunc(id, func(r rune) bool { return r < 0x20 || (r >= 0x7f && r <= 0x9f) }) {
			t.Fatalf("identity %q holds a control character or invalid UTF-8", id)
		}
	}
	for _, s := range append(append([]string(nil), c.Scope...), c.Scp...) {
		if !IsScopeToken(s) {
			t.Fatalf("scope %q is not a scope-token", s)
		}
	}
	for _, d := range []numericDate{c.ExpiresAt, c.NotBefore, c.IssuedAt} {
		if d.set && (d.t.Unix() < 0 || d.t.Unix() > maxNumericDate) {
			t.Fatalf("NumericDate %v out of range", d.t)
		}
	}
}
