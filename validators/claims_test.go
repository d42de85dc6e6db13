package validators

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/mcp-authz/mcp-authz/internal/devissuer"
)

// signRaw signs header and payload, given as raw JSON text, with k: the
// only way to put duplicate or odd member names into a token.
func signRaw(t testing.TB, k *devissuer.Key, header, payload string) string {
	t.Helper()
	signing := base64.RawURLEncoding.EncodeToString([]byte(header)) + "." + base64.RawURLEncoding.EncodeToString([]byte(payload))
	sig, err := jwt.GetSigningMethod(k.Alg).Sign(signing, k.Signer)
	if err != nil {
		t.Fatal(err)
	}
	return signing + "." + base64.RawURLEncoding.EncodeToString(sig)
}

// rawClaims is the fixture's valid claim set as JSON text, with extra
// members (raw JSON, each `"name":value`) appended and the members named
// in drop left out.
func (f *fixture) rawClaims(extra string, drop ...string) string {
	now := time.Now()
	members := []struct{ name, value string }{
		{"iss", fmt.Sprintf("%q", f.iss.URL)},
		{"sub", `"user-1"`},
		{"aud", fmt.Sprintf("%q", testAudience)},
		{"client_id", `"client-1"`},
		{"scope", `"mcp:read mcp:write"`},
		{"iat", fmt.Sprint(now.Unix())},
		{"exp", fmt.Sprint(now.Add(time.Hour).Unix())},
	}
	var parts []string
	for _, m := range members {
		dropped := false
		for _, d := range drop {
			dropped = dropped || d == m.name
		}
		if !dropped {
			parts = append(parts, fmt.Sprintf("%q:%s", m.name, m.value))
		}
	}
	if extra != "" {
		parts = append(parts, extra)
	}
	return "{" + strings.Join(parts, ",") + "}"
}

func (f *fixture) rawHeader(extra string) string {
	h := fmt.Sprintf(`{"alg":"RS256","kid":%q,"typ":"at+jwt"`, f.rsa.KID)
	if extra != "" {
		h += "," + extra
	}
	return h + "}"
}

// newIntrospectionFor is an introspection validator for issuer
// https://as.example asking as.
func newIntrospectionFor(t *testing.T, as *fakeAS) *Introspection {
	t.Helper()
	srv := httptest.NewServer(as)
	t.Cleanup(srv.Close)
	v, err := NewIntrospection(context.Background(), IntrospectionConfig{Endpoint: srv.URL, Issuer: "https://as.example", ClientID: "rs", ClientSecret: "s",
		Audiences: []string{testAudience}, Leeway: time.Minute, Client: srv.Client(), Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// strictCase is one token for the strict-parsing tables: want is the error
// description, "" for valid; scopes, when set, is the granted scope list
// of a valid token.
type strictCase struct {
	name   string
	header string // extra header members, or the whole header when it starts with "{"
	claims string // extra claim members
	drop   []string
	want   string
	scopes string
}

func runStrictCases(t *testing.T, f *fixture, tests []strictCase) {
	t.Helper()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			header := tt.header
			if !strings.HasPrefix(header, "{") {
				header = f.rawHeader(header)
			}
			tok := signRaw(t, f.rsa, header, f.rawClaims(tt.claims, tt.drop...))
			p, err := f.v.Validate(context.Background(), tok)
			if tt.want == "" {
				if err != nil {
					t.Fatalf("want valid, got %v", err)
				}
				if tt.scopes != "" {
					if got := strings.Join(p.Scopes(), " "); got != tt.scopes {
						t.Fatalf("scopes %q, want %q", got, tt.scopes)
					}
				}
				return
			}
			var verr *Error
			if !errors.As(err, &verr) || !errors.Is(err, ErrInvalidToken) || verr.Description != tt.want {
				t.Fatalf("got %v, want invalid_token %q", err, tt.want)
			}
			if strings.Contains(err.Error(), "SECRET") {
				t.Fatalf("the error quotes token content: %v", err)
			}
		})
	}
}

// TestJWTClaimNamesAreCaseSensitiveAndUnique: encoding/json v1 matched
// claim names case-insensitively, letting the last spelling win, so
// {"scope":"read","SCOPE":"read admin"} granted admin. RFC 7519 §4: names
// are case-sensitive, and a duplicate name makes the token invalid.
func TestJWTClaimNamesAreCaseSensitiveAndUnique(t *testing.T) {
	f := newFixture(t, nil)
	runStrictCases(t, f, []strictCase{
		{name: "SCOPE does not override scope", claims: `"SCOPE":"mcp:read mcp:write mcp:admin"`, scopes: "mcp:read mcp:write"},
		{name: "Scope does not override scope", drop: []string{"scope"}, claims: `"Scope":"mcp:admin"`, scopes: ""},
		{name: "AUD is not aud", drop: []string{"aud"}, claims: `"AUD":"` + testAudience + `"`, want: DescAudience},
		{name: "AUD does not override aud", drop: []string{"aud"}, claims: `"aud":"https://other.example","AUD":"` + testAudience + `"`, want: DescAudience},
		{name: "EXP is not exp", drop: []string{"exp"}, claims: fmt.Sprintf(`"EXP":%d`, time.Now().Add(time.Hour).Unix()), want: DescNoExpiry},
		{name: "Iss is not iss", drop: []string{"iss"}, claims: `"Iss":"` + f.iss.URL + `"`, want: DescIssuer},
		{name: "Sub and Client_ID are ignored", claims: `"SUB":"admin","Client_ID":"admin"`},
		{name: "duplicate scope", claims: `"scope":"mcp:admin"`, want: DescMalformed},
		{name: "duplicate aud", claims: `"aud":"https://other.example"`, want: DescMalformed},
		{name: "duplicate exp", claims: `"exp":1`, want: DescMalformed},
		{name: "duplicate sub", claims: `"sub":"admin"`, want: DescMalformed},
		{name: "duplicate unknown claim", claims: `"SECRETx":1,"SECRETx":2`, want: DescMalformed},
		{name: "duplicate inside a nested object", claims: `"ext":{"SECRET":1,"SECRET":2}`, want: DescMalformed},
		{name: "duplicate via an escape", claims: `"\u0073cope":"mcp:admin"`, want: DescMalformed},
		{name: "header: duplicate alg", header: `"alg":"none"`, want: DescMalformed},
		{name: "header: duplicate kid", header: `"kid":"other"`, want: DescMalformed},
		{name: "header: ALG is not alg", header: `"ALG":"none"`},
		{name: "header: JKU is not jku", header: `"JKU":"https://attacker.example"`},
		{name: "header: null jku still refused", header: `"jku":null`, want: DescHeader},
		{name: "header: kid null", header: `{"alg":"RS256","kid":null}`, want: DescMalformed},
		{name: "header: kid a number", header: `{"alg":"RS256","kid":7}`, want: DescMalformed},
		{name: "header: typ a number", header: `{"alg":"RS256","typ":7}`, want: DescMalformed},
		{name: "header: alg a number", header: `{"alg":256}`, want: DescMalformed},
	})
}

// TestJWTScopeSyntax: scopes split on U+0020 only, and every scope is an
// RFC 6749 §3.3 scope-token (%x21 / %x23-5B / %x5D-7E). strings.Fields
// split on any Unicode space, so "x\u2003mcp:read" granted mcp:read.
func TestJWTScopeSyntax(t *testing.T) {
	f := newFixture(t, nil)
	runStrictCases(t, f, []strictCase{
		{name: "em space does not separate", drop: []string{"scope"}, claims: `"scope":"x\u2003mcp:read"`, want: DescMalformed},
		{name: "no-break space", drop: []string{"scope"}, claims: `"scope":"x\u00a0mcp:read"`, want: DescMalformed},
		{name: "tab", drop: []string{"scope"}, claims: `"scope":"x\tmcp:read"`, want: DescMalformed},
		{name: "newline", drop: []string{"scope"}, claims: `"scope":"x\nmcp:read"`, want: DescMalformed},
		{name: "double quote", drop: []string{"scope"}, claims: `"scope":"mcp:read a\"b"`, want: DescMalformed},
		{name: "backslash", drop: []string{"scope"}, claims: `"scope":"mcp:read a\\b"`, want: DescMalformed},
		{name: "non-ASCII", drop: []string{"scope"}, claims: `"scope":"mcp:read caf\u00e9"`, want: DescMalformed},
		{name: "DEL", drop: []string{"scope"}, claims: `"scope":"mcp:read a\u007f"`, want: DescMalformed},
		{name: "scp string (Azure) with em space", drop: []string{"scope"}, claims: `"scp":"x\u2003mcp:read"`, want: DescMalformed},
		{name: "scp element with a space", drop: []string{"scope"}, claims: `"scp":["mcp:read","a b"]`, want: DescMalformed},
		{name: "scp element empty", drop: []string{"scope"}, claims: `"scp":["mcp:read",""]`, want: DescMalformed},
		{name: "scp element em space", drop: []string{"scope"}, claims: `"scp":["x\u2003mcp:read"]`, want: DescMalformed},
		{name: "scp element not a string", drop: []string{"scope"}, claims: `"scp":["mcp:read",7]`, want: DescMalformed},
		{name: "bad scp next to a good scope", claims: `"scp":["a b"]`, want: DescMalformed},
		{name: "repeated, leading and trailing spaces are tolerated", drop: []string{"scope"}, claims: `"scope":"  mcp:read   mcp:write "`, scopes: "mcp:read mcp:write"},
		{name: "empty scope", drop: []string{"scope"}, claims: `"scope":""`, scopes: ""},
		{name: "every scope-token character", drop: []string{"scope"}, claims: `"scope":"!#$%&'()*+,-./09:;<=>?@AZ[]^_` + "`" + `az{|}~"`, scopes: "!#$%&'()*+,-./09:;<=>?@AZ[]^_`az{|}~"},
		{name: "scp array", drop: []string{"scope"}, claims: `"scp":["mcp:read","mcp:write"]`, scopes: "mcp:read mcp:write"},
	})
}

// TestJWTNumericDates: exp, nbf and iat are JSON numbers within [0,
// 9999-12-31]. golang-jwt turned 1e19 into a time in the past (int64
// overflow): an nbf or iat of 1e19 passed, an exp of 1e19 read "expired".
func TestJWTNumericDates(t *testing.T) {
	f := newFixture(t, nil)
	exp := time.Now().Add(time.Hour).Unix()
	runStrictCases(t, f, []strictCase{
		{name: "exp 1e19", drop: []string{"exp"}, claims: `"exp":1e19`, want: DescMalformed},
		{name: "exp 2^63", drop: []string{"exp"}, claims: `"exp":9223372036854775808`, want: DescMalformed},
		{name: "exp past year 9999", drop: []string{"exp"}, claims: `"exp":253402300800`, want: DescMalformed},
		{name: "exp 1e400 (infinite as float64)", drop: []string{"exp"}, claims: `"exp":1e400`, want: DescMalformed},
		{name: "exp negative", drop: []string{"exp"}, claims: `"exp":-1`, want: DescMalformed},
		{name: "exp as a string", drop: []string{"exp"}, claims: fmt.Sprintf(`"exp":"%d"`, exp), want: DescMalformed},
		{name: "exp as a bool", drop: []string{"exp"}, claims: `"exp":true`, want: DescMalformed},
		{name: "exp as an array", drop: []string{"exp"}, claims: fmt.Sprintf(`"exp":[%d]`, exp), want: DescMalformed},
		{name: "exp null is absent", drop: []string{"exp"}, claims: `"exp":null`, want: DescNoExpiry},
		{name: "nbf 1e19", claims: `"nbf":1e19`, want: DescMalformed},
		{name: "nbf negative", claims: `"nbf":-5`, want: DescMalformed},
		{name: "nbf NaN as a string", claims: `"nbf":"NaN"`, want: DescMalformed},
		{name: "iat 1e19", drop: []string{"iat"}, claims: `"iat":1e19`, want: DescMalformed},
		{name: "iat negative", drop: []string{"iat"}, claims: `"iat":-1e19`, want: DescMalformed},
		{name: "exp with a fraction", drop: []string{"exp"}, claims: fmt.Sprintf(`"exp":%d.25`, exp)},
		{name: "exp in year 9999", drop: []string{"exp"}, claims: `"exp":253402300799`},
		{name: "nbf zero", claims: `"nbf":0`},
	})
}

// TestJWTIdentityControlCharacters: sub, iss and every claim that can
// become the client id (client_id, azp, cid, appid) are forwarded as
// identity; a C0/C1 control character, DEL or invalid UTF-8 in them
// refuses the token.
func TestJWTIdentityControlCharacters(t *testing.T) {
	f := newFixture(t, nil)
	var tests []strictCase
	for _, claim := range []string{"sub", "client_id", "azp", "cid", "appid", "username"} {
		for name, v := range map[string]string{
			"NUL": `\u0000`, "LF": `\n`, "CR": `\r`, "ESC": `\u001b`, "US": `\u001f`,
			"DEL": `\u007f`, "NEL (C1)": `\u0085`, "APC (C1)": `\u009f`, "raw byte 0x01": "\x01",
		} {
			tests = append(tests, strictCase{name: claim + " " + name, drop: []string{claim}, claims: fmt.Sprintf(`%q:"a%sb"`, claim, v), want: DescMalformed})
		}
		tests = append(tests,
			strictCase{name: claim + " invalid UTF-8", drop: []string{claim}, claims: fmt.Sprintf(`%q:"a`+"\xff"+`b"`, claim), want: DescMalformed},
			strictCase{name: claim + " lone surrogate", drop: []string{claim}, claims: fmt.Sprintf(`%q:"a\ud800b"`, claim), want: DescMalformed},
			strictCase{name: claim + " non-ASCII is fine", drop: []string{claim}, claims: fmt.Sprintf(`%q:"Jos\u00e9\u00a0\u00a0x"`, claim)},
		)
	}
	tests = append(tests, strictCase{name: "iss with a control character", drop: []string{"iss"}, claims: fmt.Sprintf(`"iss":"%s\u0000"`, f.iss.URL), want: DescMalformed})
	// username is not forwarded for a JWT: it is checked when it is a
	// string, and otherwise left alone like any claim mcp-authz does not read.
	tests = append(tests, strictCase{name: "username that is not a string is not read", claims: `"username":{"x":1}`})
	runStrictCases(t, f, tests)
}

// TestIntrospectionStrict is the introspection side of the rules above.
// Everything here is invalid_token (401), not "unavailable": see
// ParseIntrospection for why.
func TestIntrospectionStrict(t *testing.T) {
	exp := time.Now().Add(time.Hour).Unix()
	base := fmt.Sprintf(`"aud":%q,"exp":%d,"sub":"u1","client_id":"c1","iss":"https://as.example"`, testAudience, exp)
	tests := []struct {
		name, body string
		want       string // description; "" = valid
		scopes     string
	}{
		{"Active does not override active", `{"active":false,"Active":true,` + base + `}`, DescInactive, ""},
		{"ACTIVE alone is no active", `{"ACTIVE":true,` + base + `}`, DescIntrospect, ""},
		{"duplicate active, false then true", `{"active":false,"active":true,` + base + `}`, DescMalformed, ""},
		{"duplicate active, true twice", `{"active":true,"active":true,` + base + `}`, DescMalformed, ""},
		{"duplicate scope", `{"active":true,"scope":"mcp:read","scope":"mcp:admin",` + base + `}`, DescMalformed, ""},
		{"duplicate nested", `{"active":true,"ext":{"SECRET":1,"SECRET":2},` + base + `}`, DescMalformed, ""},
		{"SCOPE does not override scope", `{"active":true,"scope":"mcp:read","SCOPE":"mcp:admin",` + base + `}`, "", "mcp:read"},
		{"scope with em space", `{"active":true,"scope":"x\u2003mcp:read",` + base + `}`, DescMalformed, ""},
		{"scope with a tab", `{"active":true,"scope":"x\tmcp:read",` + base + `}`, DescMalformed, ""},
		{"scope with extra spaces", `{"active":true,"scope":" mcp:read  mcp:write ",` + base + `}`, "", "mcp:read mcp:write"},
		{"exp 1e19", fmt.Sprintf(`{"active":true,"aud":%q,"exp":1e19}`, testAudience), DescMalformed, ""},
		{"exp negative", fmt.Sprintf(`{"active":true,"aud":%q,"exp":-1}`, testAudience), DescMalformed, ""},
		{"exp as a string", fmt.Sprintf(`{"active":true,"aud":%q,"exp":"%d"}`, testAudience, exp), DescMalformed, ""},
		{"nbf negative", `{"active":true,"nbf":-1,` + base + `}`, DescMalformed, ""},
		{"iat 1e19", `{"active":true,"iat":1e19,` + base + `}`, DescMalformed, ""},
		{"iat as a string", `{"active":true,"iat":"x",` + base + `}`, DescMalformed, ""},
		{"username with NUL", `{"active":true,"username":"alice\u0000",` + base + `}`, DescMalformed, ""},
		{"username with C1", fmt.Sprintf(`{"active":true,"username":"alice\u0085","aud":%q}`, testAudience), DescMalformed, ""},
		{"sub with ESC", fmt.Sprintf(`{"active":true,"sub":"\u001b[31m","aud":%q}`, testAudience), DescMalformed, ""},
		{"client_id with LF", fmt.Sprintf(`{"active":true,"client_id":"c\n1","aud":%q}`, testAudience), DescMalformed, ""},
		{"iss with DEL", fmt.Sprintf(`{"active":true,"iss":"https://as.example\u007f","aud":%q}`, testAudience), DescMalformed, ""},
		{"username invalid UTF-8", fmt.Sprintf(`{"active":true,"username":"a`+"\xff"+`","aud":%q}`, testAudience), DescMalformed, ""},
		{"sub lone surrogate", fmt.Sprintf(`{"active":true,"sub":"\udc00","aud":%q}`, testAudience), DescMalformed, ""},
		{"non-ASCII username is fine", fmt.Sprintf(`{"active":true,"username":"Jos\u00e9","aud":%q}`, testAudience), "", ""},
		{"truncated body stays unavailable", `{"active":true,`, DescIntrospect, ""},
	}
	answers := map[string]string{}
	for _, tt := range tests {
		answers[tt.name] = tt.body
	}
	as := &fakeAS{answers: answers}
	v := newIntrospectionFor(t, as)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := v.Validate(context.Background(), tt.name)
			if tt.want == "" {
				if err != nil {
					t.Fatalf("want valid, got %v", err)
				}
				if got := strings.Join(p.Scopes(), " "); got != tt.scopes {
					t.Fatalf("scopes %q, want %q", got, tt.scopes)
				}
				return
			}
			kind := ErrInvalidToken
			if tt.want == DescIntrospect {
				kind = ErrUnavailable
			}
			var verr *Error
			if !errors.As(err, &verr) || verr.Description != tt.want || !errors.Is(err, kind) {
				t.Fatalf("got %v, want %q (%v)", err, tt.want, kind)
			}
			if strings.Contains(err.Error(), "SECRET") {
				t.Fatalf("the error quotes the response: %v", err)
			}
		})
	}
}
