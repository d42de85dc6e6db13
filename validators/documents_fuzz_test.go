package validators

import (
	"net"
	"net/url"
	"strings"
	"testing"

	"github.com/MicahParks/jwkset"
	json "github.com/go-json-experiment/json"

	"github.com/mcp-authz/mcp-authz/internal/devissuer"
)

// FuzzParseJWKS: an issuer's JWKS document, whatever it holds, is read
// without a panic; a set that is not refused has a usable key; no
// symmetric or encryption key is ever kept (a public document cannot hold
// a verification secret); and the tables a Check reads are built from it
// without a panic, each kid-less candidate fitting its algorithm, at most
// maxKidlessKeys of them.
func FuzzParseJWKS(f *testing.F) {
	var jwks []map[string]any
	for _, alg := range []string{"RS256", "ES256", "ES384", "EdDSA"} {
		k, err := devissuer.NewKey(alg)
		if err != nil {
			f.Fatal(err)
		}
		jwks = append(jwks, k.JWK())
	}
	doc, _ := json.Marshal(map[string]any{"keys": jwks})
	if keys, skipped, err := parseJWKS(doc); err != nil || len(keys) != len(jwks) || len(skipped) != 0 {
		f.Fatalf("the seed set: %d keys, %v skipped, %v", len(keys), skipped, err)
	}
	f.Add(doc)
	f.Add([]byte(`{"keys":[{"kty":"oct","k":"c2VjcmV0","kid":"a"}]}`))
	f.Add([]byte(`{"keys":[{"kty":"EC","crv":"P-256","x":"x","y":"y","kid":"a","kid":"b"}]}`))
	f.Add([]byte(`{"keys":[{"kty":"RSA","use":"enc","n":"AQAB","e":"AQAB"}]}`))
	f.Add([]byte(`{"keys":{}}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, body []byte) {
		keys, _, err := parseJWKS(body)
		if err != nil {
			if len(keys) != 0 {
				t.Fatal("a refused set with keys")
			}
			return
		}
		if len(keys) == 0 {
			t.Fatal("an accepted set without a key")
		}
		for _, k := range keys {
			if m := k.Marshal(); m.KTY == jwkset.KtyOct || m.USE == jwkset.UseEnc {
				t.Fatalf("kept a %s key for %s", m.KTY, m.USE)
			}
		}
		_ = kidTable(keys)
		for alg, ks := range kidlessTable(keys) {
			if len(ks) > maxKidlessKeys {
				t.Fatalf("%d kid-less candidates for %s", len(ks), alg)
			}
			for _, k := range ks {
				if k == nil {
					t.Fatalf("a nil kid-less candidate for %s", alg)
				}
			}
		}
	})
}

// FuzzDiscoveryDocument: a discovery document is accepted only when it
// names the configured issuer exactly and every endpoint it names is https,
// or http on a loopback host (checked here without CheckOutboundURL).
func FuzzDiscoveryDocument(f *testing.F) {
	f.Add([]byte(`{"issuer":"https://as.example","jwks_uri":"https://as.example/jwks","introspection_endpoint":"https://as.example/introspect"}`), "https://as.example")
	f.Add([]byte(`{"issuer":"https://as.example/","jwks_uri":"http://127.0.0.1:8080/jwks"}`), "https://as.example/")
	f.Add([]byte(`{"issuer":"https://as.example","introspection_endpoint":"http://as.example/introspect"}`), "https://as.example")
	f.Add([]byte(`{"issuer":"https://as.example","jwks_uri":"http://localhost.evil.example/jwks"}`), "https://as.example")
	f.Add([]byte(`{"issuer":"https://as.example","jwks_uri":"HTTP://[::1]/jwks"}`), "https://as.example")
	f.Fuzz(func(t *testing.T, body []byte, issuer string) {
		var md ServerMetadata
		if err := json.Unmarshal(body, &md); err != nil {
			return
		}
		if md.check(issuer) != nil {
			return
		}
		if md.Issuer != issuer {
			t.Fatalf("accepted issuer %q for %q", md.Issuer, issuer)
		}
		for _, e := range []string{md.JWKSURI, md.IntrospectionEndpoint} {
			if e != "" && !httpsOrLoopback(e) {
				t.Fatalf("accepted endpoint %q", e)
			}
		}
	})
}

// httpsOrLoopback is DESIGN §3's outbound rule, written again.
func httpsOrLoopback(raw string) bool {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || u.User != nil {
		return false
	}
	switch strings.ToLower(u.Scheme) {
	case "https":
		return true
	case "http":
		h := u.Hostname()
		if strings.EqualFold(h, "localhost") {
			return true
		}
		ip := net.ParseIP(h)
		return ip != nil && ip.IsLoopback()
	}
	return false
}
