package validators

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/mcp-authz/mcp-authz/internal/devissuer"
)

// introspectionBench serves one fixed active answer on loopback.
func introspectionBench(b *testing.B) (*httptest.Server, []byte) {
	body := []byte(fmt.Sprintf(`{"active":true,"scope":"mcp:read mcp:write","client_id":"c1","sub":"u1","iss":"https://as.example","aud":"%s","exp":%d,"token_type":"Bearer"}`,
		testAudience, time.Now().Add(time.Hour).Unix()))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = r.ParseForm()
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(body)
	}))
	b.Cleanup(srv.Close)
	return srv, body
}

// BenchmarkIntrospectionMiss is one uncached introspection: our request
// building, the loopback round trip, parsing and checks.
func BenchmarkIntrospectionMiss(b *testing.B) {
	srv, _ := introspectionBench(b)
	v, err := NewIntrospection(context.Background(), IntrospectionConfig{Endpoint: srv.URL, Issuer: "https://as.example", ClientID: "rs", ClientSecret: "secret",
		Audiences: []string{testAudience}, Client: srv.Client(), Timeout: 10 * time.Second})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := v.Validate(ctx, "opaque-token-value-0123456789"); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkIntrospectionRoundTrip is the floor: the same POST with net/http
// and nothing else.
func BenchmarkIntrospectionRoundTrip(b *testing.B) {
	srv, _ := introspectionBench(b)
	client := srv.Client()
	form := url.Values{"token": {"opaque-token-value-0123456789"}, "token_type_hint": {"access_token"}}.Encode()
	b.ReportAllocs()
	for b.Loop() {
		req, _ := http.NewRequest(http.MethodPost, srv.URL, strings.NewReader(form))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.SetBasicAuth("rs", "secret")
		resp, err := client.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		_, _ = io.ReadAll(resp.Body)
		resp.Body.Close()
	}
}

// BenchmarkParseIntrospection is the parsing alone.
func BenchmarkParseIntrospection(b *testing.B) {
	_, body := introspectionBench(b)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ParseIntrospection(body); err != nil {
			b.Fatal(err)
		}
	}
}

// benchJWT is a JWT validator whose JWKS is loaded, and a valid token per
// algorithm from the same issuer.
func benchJWT(b *testing.B) (*fixture, map[string]string) {
	f := newFixture(b, nil)
	toks := map[string]string{}
	for alg, k := range map[string]*devissuer.Key{"RS256": f.rsa, "ES256": f.ec} {
		tok, err := k.Sign(f.claims(), map[string]any{"typ": "at+jwt"})
		if err != nil {
			b.Fatal(err)
		}
		toks[alg] = tok
	}
	return f, toks
}

// BenchmarkJWTValidate is one uncached JWT validation: parsing, claim
// checks, key lookup by kid and the signature.
func BenchmarkJWTValidate(b *testing.B) {
	f, toks := benchJWT(b)
	for _, alg := range []string{"RS256", "ES256"} {
		b.Run(alg, func(b *testing.B) {
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				if _, err := f.v.Validate(ctx, toks[alg]); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkGolangJWT is the baseline for BenchmarkJWTValidate: golang-jwt's
// own parse and verify of the same tokens, with the key in hand and the same
// claim checks (alg, iss, aud, exp required, leeway).
func BenchmarkGolangJWT(b *testing.B) {
	f, toks := benchJWT(b)
	for alg, k := range map[string]*devissuer.Key{"RS256": f.rsa, "ES256": f.ec} {
		b.Run(alg, func(b *testing.B) {
			pub := k.Signer.Public()
			p := jwt.NewParser(jwt.WithValidMethods([]string{alg}), jwt.WithAudience(testAudience),
				jwt.WithIssuer(f.iss.URL), jwt.WithExpirationRequired(), jwt.WithIssuedAt(), jwt.WithLeeway(time.Minute))
			keyfunc := func(*jwt.Token) (any, error) { return pub, nil }
			b.ReportAllocs()
			for b.Loop() {
				if _, err := p.Parse(toks[alg], keyfunc); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkJWTParse isolates decoding from the signature: the strict
// parser (base64url, JOSE header, claims, scope and identity checks)
// against golang-jwt's ParseUnverified of the same token into its
// RegisteredClaims.
func BenchmarkJWTParse(b *testing.B) {
	_, toks := benchJWT(b)
	tok := toks["RS256"]
	b.Run("strict", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var t jws
			if err := parseJWS(tok, &t); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("golang-jwt", func(b *testing.B) {
		p := jwt.NewParser()
		b.ReportAllocs()
		for b.Loop() {
			var c jwt.RegisteredClaims
			if _, _, err := p.ParseUnverified(tok, &c); err != nil {
				b.Fatal(err)
			}
		}
	})
}
