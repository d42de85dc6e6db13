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
	v, err := NewIntrospection(IntrospectionConfig{Endpoint: srv.URL, Issuer: "https://as.example", ClientID: "rs", ClientSecret: "secret",
		Audiences: []string{testAudience}, Client: srv.Client(), Timeout: time.Second})
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
