package validators

import (
	"context"
	"crypto/hmac"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/golang-jwt/jwt/v5"

	"github.com/mcp-authz/mcp-authz/internal/devissuer"
)

const testAudience = "https://mcp.example.com/mcp"

type fixture struct {
	iss *devissuer.Issuer
	rsa *devissuer.Key
	ec  *devissuer.Key
	v   *JWT
}

func newFixture(t testing.TB, mutate func(*JWTConfig)) *fixture {
	t.Helper()
	iss, err := devissuer.Start(devissuer.Config{Algorithms: []string{"RS256", "ES256"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { iss.Close() })
	f := &fixture{iss: iss}
	f.rsa, _ = iss.KeyFor("RS256")
	f.ec, _ = iss.KeyFor("ES256")
	cfg := JWTConfig{
		Issuers:   []IssuerConfig{{Issuer: iss.URL, JWKSURI: iss.JWKSURL()}},
		Audiences: []string{testAudience},
		Leeway:    60 * time.Second,
		Client:    http.DefaultClient,
		// Generous, so a loaded test machine never turns an unknown kid
		// into "unavailable" while a refresh is still running.
		RefreshWait: 5 * time.Second,
	}
	if mutate != nil {
		mutate(&cfg)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	f.v, err = NewJWT(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	waitLoaded(t, f.v)
	return f
}

func waitLoaded(t testing.TB, v *JWT) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for _, ks := range v.KeySets() {
		for !ks.Loaded() {
			if time.Now().After(deadline) {
				t.Fatal("JWKS never loaded")
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
}

// claims returns a valid claim set for the fixture's issuer.
func (f *fixture) claims() jwt.MapClaims {
	now := time.Now()
	return jwt.MapClaims{
		"iss":       f.iss.URL,
		"sub":       "user-1",
		"aud":       testAudience,
		"client_id": "client-1",
		"scope":     "mcp:read mcp:write",
		"iat":       now.Unix(),
		"exp":       now.Add(time.Hour).Unix(),
	}
}

func (f *fixture) sign(t *testing.T, k *devissuer.Key, mutate func(jwt.MapClaims), header map[string]any) string {
	t.Helper()
	c := f.claims()
	if mutate != nil {
		mutate(c)
	}
	tok, err := k.Sign(c, header)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func b64(v any) string {
	b, _ := json.Marshal(v)
	return base64.RawURLEncoding.EncodeToString(b)
}

// hmacToken builds an HS256 token keyed with secret, by hand, as an attacker would.
func hmacToken(header map[string]any, claims jwt.MapClaims, secret []byte) string {
	signing := b64(header) + "." + b64(claims)
	mac := hmac.New(sha256.New, secret)
	mac.Write([]byte(signing))
	return signing + "." + base64.RawURLEncoding.EncodeToString(mac.Sum(nil))
}

func TestJWTValidate(t *testing.T) {
	f := newFixture(t, nil)
	foreign, err := devissuer.NewKey("RS256")
	if err != nil {
		t.Fatal(err)
	}
	pubDER, _ := x509.MarshalPKIXPublicKey(f.rsa.Signer.Public().(*rsa.PublicKey))
	pubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER})
	now := time.Now()
	set := func(k string, v any) func(jwt.MapClaims) { return func(c jwt.MapClaims) { c[k] = v } }

	tests := []struct {
		name  string
		token func() string
		want  string // error description; "" means valid
		kind  error
	}{
		{"valid RS256", func() string { return f.sign(t, f.rsa, nil, nil) }, "", nil},
		{"valid ES256", func() string { return f.sign(t, f.ec, nil, nil) }, "", nil},
		{"valid without kid", func() string { return f.sign(t, f.rsa, nil, map[string]any{"kid": nil}) }, "", nil},
		{"alg none", func() string {
			return b64(map[string]any{"alg": "none", "kid": f.rsa.KID}) + "." + b64(f.claims()) + "."
		}, DescAlgorithm, ErrInvalidToken},
		{"alg NONE uppercase", func() string {
			return b64(map[string]any{"alg": "NONE", "kid": f.rsa.KID}) + "." + b64(f.claims()) + "."
		}, DescAlgorithm, ErrInvalidToken},
		{"HS256 keyed with the RSA public key PEM", func() string {
			return hmacToken(map[string]any{"alg": "HS256", "typ": "JWT", "kid": f.rsa.KID}, f.claims(), pubPEM)
		}, DescAlgorithm, ErrInvalidToken},
		{"HS256 keyed with the RSA public key DER", func() string {
			return hmacToken(map[string]any{"alg": "HS256", "kid": f.rsa.KID}, f.claims(), pubDER)
		}, DescAlgorithm, ErrInvalidToken},
		{"jku header injection", func() string {
			return f.sign(t, foreign, nil, map[string]any{"jku": "https://attacker.example/jwks", "kid": foreign.KID})
		}, DescHeader, ErrInvalidToken},
		{"jwk header injection", func() string {
			return f.sign(t, foreign, nil, map[string]any{"jwk": foreign.JWK(), "kid": foreign.KID})
		}, DescHeader, ErrInvalidToken},
		{"x5u header injection", func() string {
			return f.sign(t, foreign, nil, map[string]any{"x5u": "https://attacker.example/cert"})
		}, DescHeader, ErrInvalidToken},
		{"crit header", func() string {
			return f.sign(t, f.rsa, nil, map[string]any{"crit": []string{"exp"}})
		}, DescHeader, ErrInvalidToken},
		{"known kid with a foreign signature", func() string {
			return f.sign(t, foreign, nil, map[string]any{"kid": f.rsa.KID})
		}, DescSignature, ErrInvalidToken},
		{"RS256 header naming the EC key", func() string {
			return f.sign(t, foreign, nil, map[string]any{"kid": f.ec.KID})
		}, DescSignature, ErrInvalidToken},
		{"flipped signature byte", func() string {
			tok := f.sign(t, f.rsa, nil, nil)
			i := strings.LastIndexByte(tok, '.') + 5
			c := byte('A')
			if tok[i] == 'A' {
				c = 'B'
			}
			return tok[:i] + string(c) + tok[i+1:]
		}, DescSignature, ErrInvalidToken},
		{"unknown kid", func() string {
			return f.sign(t, foreign, nil, nil)
		}, DescUnknownKey, ErrInvalidToken},
		{"expired beyond leeway", func() string {
			return f.sign(t, f.rsa, set("exp", now.Add(-2*time.Minute).Unix()), nil)
		}, DescExpired, ErrInvalidToken},
		{"expired within leeway", func() string {
			return f.sign(t, f.rsa, set("exp", now.Add(-30*time.Second).Unix()), nil)
		}, "", nil},
		{"nbf beyond leeway", func() string {
			return f.sign(t, f.rsa, set("nbf", now.Add(2*time.Minute).Unix()), nil)
		}, DescNotYetValid, ErrInvalidToken},
		{"nbf within leeway", func() string {
			return f.sign(t, f.rsa, set("nbf", now.Add(30*time.Second).Unix()), nil)
		}, "", nil},
		{"iat in the future", func() string {
			return f.sign(t, f.rsa, set("iat", now.Add(5*time.Minute).Unix()), nil)
		}, DescIssuedFuture, ErrInvalidToken},
		{"missing exp", func() string {
			return f.sign(t, f.rsa, func(c jwt.MapClaims) { delete(c, "exp") }, nil)
		}, DescNoExpiry, ErrInvalidToken},
		{"foreign iss", func() string {
			return f.sign(t, f.rsa, set("iss", "https://evil.example"), nil)
		}, DescIssuer, ErrInvalidToken},
		{"iss with extra trailing slash", func() string {
			return f.sign(t, f.rsa, set("iss", f.iss.URL+"/"), nil)
		}, DescIssuer, ErrInvalidToken},
		{"aud with trailing slash", func() string {
			return f.sign(t, f.rsa, set("aud", testAudience+"/"), nil)
		}, "", nil},
		{"aud array containing the resource", func() string {
			return f.sign(t, f.rsa, set("aud", []string{"https://other.example", testAudience}), nil)
		}, "", nil},
		{"aud as a prefix of the resource", func() string {
			return f.sign(t, f.rsa, set("aud", "https://mcp.example.com/mc"), nil)
		}, DescAudience, ErrInvalidToken},
		{"aud extending the resource", func() string {
			return f.sign(t, f.rsa, set("aud", testAudience+"/admin"), nil)
		}, DescAudience, ErrInvalidToken},
		{"aud with two trailing slashes", func() string {
			return f.sign(t, f.rsa, set("aud", testAudience+"//"), nil)
		}, DescAudience, ErrInvalidToken},
		{"aud missing", func() string {
			return f.sign(t, f.rsa, func(c jwt.MapClaims) { delete(c, "aud") }, nil)
		}, DescAudience, ErrInvalidToken},
		{"not a JWT", func() string { return "opaque-token-value" }, DescMalformed, ErrInvalidToken},
		{"bad base64 header", func() string { return "!!!." + b64(f.claims()) + ".sig" }, DescMalformed, ErrInvalidToken},
		{"claims not JSON", func() string {
			return b64(map[string]any{"alg": "RS256"}) + "." + base64.RawURLEncoding.EncodeToString([]byte("nope")) + ".c2ln"
		}, DescMalformed, ErrInvalidToken},
		{"exp as a string", func() string {
			return f.sign(t, f.rsa, set("exp", "tomorrow"), nil)
		}, DescMalformed, ErrInvalidToken},
		{"scope as a number", func() string {
			return f.sign(t, f.rsa, set("scope", 7), nil)
		}, DescMalformed, ErrInvalidToken},
		{"unknown alg", func() string {
			return b64(map[string]any{"alg": "XX999"}) + "." + b64(f.claims()) + ".c2ln"
		}, DescAlgorithm, ErrInvalidToken},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := f.v.Validate(context.Background(), tt.token())
			if tt.want == "" {
				if err != nil {
					t.Fatalf("want valid, got %v", err)
				}
				if p.Subject() != "user-1" || p.ClientID() != "client-1" || p.Issuer() != f.iss.URL {
					t.Fatalf("principal = %+v", p)
				}
				return
			}
			var verr *Error
			if !errors.As(err, &verr) {
				t.Fatalf("want *Error %q, got %v", tt.want, err)
			}
			if verr.Description != tt.want || !errors.Is(err, tt.kind) {
				t.Fatalf("got %q (%v), want %q", verr.Description, verr.Kind, tt.want)
			}
		})
	}
}

func TestJWTPrincipal(t *testing.T) {
	f := newFixture(t, nil)
	tok := f.sign(t, f.rsa, nil, nil)
	p, err := f.v.Validate(context.Background(), tok)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(p.Scopes(), " "); got != "mcp:read mcp:write" {
		t.Errorf("scopes = %q", got)
	}
	if p.Claims(tok) != strings.Split(tok, ".")[1] {
		t.Errorf("claims are not the payload segment")
	}
	if p.ClaimsJSON() != "" {
		t.Errorf("the claims are kept: %q", p.ClaimsJSON())
	}
	// A copy: a caller keeping the claims must not keep the token.
	if c := p.Claims(tok); uintptr(unsafe.Pointer(unsafe.StringData(c))) >= uintptr(unsafe.Pointer(unsafe.StringData(tok))) &&
		uintptr(unsafe.Pointer(unsafe.StringData(c))) < uintptr(unsafe.Pointer(unsafe.StringData(tok)))+uintptr(len(tok)) {
		t.Errorf("the claims point into the token")
	}
	// Another token's payload is not taken for the claims.
	if got := p.Claims(f.sign(t, f.rsa, func(c jwt.MapClaims) { c["extra"] = strings.Repeat("x", 40) }, nil)); got != "" {
		t.Errorf("claims read from a token of another length: %q", got)
	}
	if p.ExpiresAt().IsZero() || p.Subject() != "user-1" || p.ClientID() != "client-1" || p.Issuer() != f.iss.URL {
		t.Errorf("principal = %+v", p)
	}
	// One string besides the struct: the identity values, not the claims
	// (they are the token's payload segment).
	want := len("user-1") + len("client-1") + len(f.iss.URL) + len("mcp:read mcp:write")
	if _, data := p.Size(); data != want {
		t.Errorf("principal holds %d bytes, want %d: the identity values alone", data, want)
	}
}

// TestNewPrincipal: identity values are substrings of the claims where
// the JSON spells them as they are, and laid out after them otherwise.
func TestNewPrincipal(t *testing.T) {
	exp := time.Unix(2000000000, 0)
	for _, tt := range []struct {
		name   string
		id     Identity
		extras int // bytes laid out after the claims
	}{
		{"all in the claims", Identity{Subject: "user-1", ClientID: "client-1", Issuer: "https://as.example", Scopes: []string{"a", "b:c"},
			ClaimsJSON: `{"iss":"https://as.example","sub":"user-1","client_id":"client-1","scope":"a b:c"}`}, 0},
		{"escaped issuer", Identity{Issuer: "https://as.example/", ClaimsJSON: `{"iss":"https:\/\/as.example\/"}`}, len("https://as.example/")},
		{"scp array", Identity{Scopes: []string{"a", "b"}, ClaimsJSON: `{"scp":["a","b"]}`}, len("a b")},
		{"no claims, repeated name", Identity{Subject: "svc", ClientID: "svc", Scopes: []string{"mcp:read"}}, len("svcmcp:read")},
		{"nothing", Identity{}, 0},
		{"claims in the token", Identity{Subject: "user-1", ClientID: "user-1", Issuer: "https://as.example", Scopes: []string{"a", "b"},
			ClaimsInToken: 120}, len("user-1https://as.examplea b")},
	} {
		t.Run(tt.name, func(t *testing.T) {
			tt.id.ExpiresAt = exp
			p := NewPrincipal(tt.id)
			if p.Subject() != tt.id.Subject || p.ClientID() != tt.id.ClientID || p.Issuer() != tt.id.Issuer ||
				p.ScopeString() != strings.Join(tt.id.Scopes, " ") || !slices.Equal(p.Scopes(), tt.id.Scopes) ||
				p.ClaimsJSON() != tt.id.ClaimsJSON || !p.ExpiresAt().Equal(exp) {
				t.Fatalf("principal %+v from %+v", p, tt.id)
			}
			if _, data := p.Size(); data != len(tt.id.ClaimsJSON)+tt.extras {
				t.Errorf("%d bytes, want %d", data, len(tt.id.ClaimsJSON)+tt.extras)
			}
			if p.Claims("") != base64.RawURLEncoding.EncodeToString([]byte(tt.id.ClaimsJSON)) {
				t.Errorf("claims %q", p.Claims(""))
			}
			for _, sc := range tt.id.Scopes {
				if !p.HasScope(sc) {
					t.Errorf("scope %q missing", sc)
				}
			}
			if p.HasScope("b") && !slices.Contains(tt.id.Scopes, "b") || p.HasScope("") {
				t.Errorf("a scope it was not granted")
			}
		})
	}
}

func TestJWTScopeShapes(t *testing.T) {
	f := newFixture(t, nil)
	tests := []struct {
		name   string
		mutate func(jwt.MapClaims)
		want   string
	}{
		{"scope string", nil, "mcp:read mcp:write"},
		{"scp array (Okta)", func(c jwt.MapClaims) { delete(c, "scope"); c["scp"] = []string{"a", "b"} }, "a b"},
		{"scp string (Azure AD)", func(c jwt.MapClaims) { delete(c, "scope"); c["scp"] = "User.Read Files.Read" }, "User.Read Files.Read"},
		{"no scopes", func(c jwt.MapClaims) { delete(c, "scope") }, ""},
		{"azp as client id", func(c jwt.MapClaims) { delete(c, "client_id"); c["azp"] = "client-1" }, "mcp:read mcp:write"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := f.v.Validate(context.Background(), f.sign(t, f.rsa, tt.mutate, nil))
			if err != nil {
				t.Fatal(err)
			}
			if got := strings.Join(p.Scopes(), " "); got != tt.want {
				t.Errorf("scopes = %q, want %q", got, tt.want)
			}
			if p.ClientID() != "client-1" {
				t.Errorf("client id = %q", p.ClientID())
			}
		})
	}
}

func TestJWTRequireATJWT(t *testing.T) {
	f := newFixture(t, func(c *JWTConfig) { c.Issuers[0].RequireATJWT = true })
	for _, tt := range []struct {
		typ  any
		want string
	}{
		{"at+jwt", ""},
		{"application/at+JWT", ""},
		{"JWT", DescType},
		{nil, DescType},
	} {
		_, err := f.v.Validate(context.Background(), f.sign(t, f.rsa, nil, map[string]any{"typ": tt.typ}))
		got := ""
		var verr *Error
		if errors.As(err, &verr) {
			got = verr.Description
		} else if err != nil {
			t.Fatal(err)
		}
		if got != tt.want {
			t.Errorf("typ %v: got %q, want %q", tt.typ, got, tt.want)
		}
	}
}

func TestJWTAlgorithmAllowList(t *testing.T) {
	f := newFixture(t, func(c *JWTConfig) { c.Issuers[0].Algorithms = []string{"ES256"} })
	_, err := f.v.Validate(context.Background(), f.sign(t, f.rsa, nil, nil))
	var verr *Error
	if !errors.As(err, &verr) || verr.Description != DescAlgorithm {
		t.Fatalf("RS256 with ES256-only allow-list: %v", err)
	}
	if _, err := f.v.Validate(context.Background(), f.sign(t, f.ec, nil, nil)); err != nil {
		t.Fatalf("ES256: %v", err)
	}
}

func TestNewJWTRejectsBadConfig(t *testing.T) {
	base := func() JWTConfig {
		return JWTConfig{
			Issuers:   []IssuerConfig{{Issuer: "http://127.0.0.1:1", JWKSURI: "http://127.0.0.1:1/jwks"}},
			Audiences: []string{testAudience},
			Client:    http.DefaultClient,
		}
	}
	tests := []struct {
		name   string
		mutate func(*JWTConfig)
	}{
		{"HMAC in allow-list", func(c *JWTConfig) { c.Issuers[0].Algorithms = []string{"HS256"} }},
		{"none in allow-list", func(c *JWTConfig) { c.Issuers[0].Algorithms = []string{"none"} }},
		{"no audience", func(c *JWTConfig) { c.Audiences = nil }},
		{"no issuer", func(c *JWTConfig) { c.Issuers = nil }},
		{"http JWKS off loopback", func(c *JWTConfig) { c.Issuers[0].JWKSURI = "http://as.example/jwks" }},
		{"http issuer off loopback without jwks_uri", func(c *JWTConfig) { c.Issuers[0] = IssuerConfig{Issuer: "http://as.example"} }},
		{"duplicate issuer", func(c *JWTConfig) { c.Issuers = append(c.Issuers, c.Issuers[0]) }},
		{"negative leeway", func(c *JWTConfig) { c.Leeway = -time.Second }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := base()
			tt.mutate(&c)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			if _, err := NewJWT(ctx, c); err == nil {
				t.Fatal("accepted")
			}
		})
	}
}

func TestFingerprintChangesWithPolicy(t *testing.T) {
	base := JWTConfig{
		Issuers:   []IssuerConfig{{Issuer: "https://as.example", JWKSURI: "https://as.example/jwks"}},
		Audiences: []string{"https://a.example/mcp"},
		Leeway:    time.Minute,
	}
	fp := jwtFingerprint(base)
	variants := []func(c *JWTConfig){
		func(c *JWTConfig) { c.Audiences = []string{"https://b.example/mcp"} },
		func(c *JWTConfig) { c.Leeway = 0 },
		func(c *JWTConfig) {
			c.Issuers = []IssuerConfig{{Issuer: "https://as.example", JWKSURI: "https://other.example/jwks"}}
		},
		func(c *JWTConfig) {
			c.Issuers = []IssuerConfig{{Issuer: "https://as.example", JWKSURI: "https://as.example/jwks", Algorithms: []string{"ES256"}}}
		},
		func(c *JWTConfig) {
			c.Issuers = []IssuerConfig{{Issuer: "https://as.example", JWKSURI: "https://as.example/jwks", RequireATJWT: true}}
		},
	}
	for i, m := range variants {
		c := base
		m(&c)
		if jwtFingerprint(c) == fp {
			t.Errorf("variant %d: same fingerprint", i)
		}
	}
	if jwtFingerprint(base) != fp {
		t.Error("fingerprint not deterministic")
	}
}

// TestMemo: nothing is kept for a principal's first use; from its second
// on, one value is kept per key, and a new key's value replaces the old
// one's (a reload's routes replace the old routes).
func TestMemo(t *testing.T) {
	p := NewPrincipal(Identity{Subject: "s"})
	type val struct {
		Kept
		name string
	}
	vals := map[string]*val{}
	computed := 0
	compute := func(v string) func() *Kept {
		return func() *Kept { computed++; vals[v] = &val{name: v}; return &vals[v].Kept }
	}
	if got := p.Memo("a", compute("A")); got != nil || computed != 0 {
		t.Fatalf("first use: %v, %d computed", got, computed)
	}
	for range 3 {
		if got := p.Memo("a", compute("A")); got != &vals["A"].Kept {
			t.Fatalf("got %p, not A's value", got)
		}
	}
	if computed != 1 {
		t.Fatalf("computed %d times for one owner", computed)
	}
	for range 3 {
		if got := p.Memo("b", compute("B")); got != &vals["B"].Kept {
			t.Fatalf("got %p, not B's value", got)
		}
	}
	if computed != 2 {
		t.Fatalf("computed %d times for two owners in turn", computed)
	}
}
