package authz

import (
	"context"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
)

func FuzzParseAuthorization(f *testing.F) {
	for _, s := range []string{
		"", "Bearer", "Bearer ", "Bearer abc", "bearer abc==", "BEARER a.b.c", "Bearer a b",
		"Basic dXNlcjpwYXNz", "Bearer a,Bearer b", `Digest realm="x", nonce="y"`, "Bearer ab=cd",
		"Bearer\tabc", " Bearer abc ", "Bearer ~+/-._", "Bearer =", "Bearerabc", "Bearer \x00",
		"Basic a,Basic b", `Digest username="a,Bearer x", realm="r"`, `Digest a="\",", Basic b`, "Basic a, ,b=c", ",,", `"`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		// Two credentials as Envoy joins them are never one.
		if two := parseAuthorization("Basic " + v + ",Basic x"); two.kind != credInvalid {
			t.Fatalf("two joined credentials read as %v", two.kind)
		}
		c := parseAuthorization(v)
		switch c.kind {
		case credBearer:
			if c.token == "" || !isToken68(c.token) {
				t.Fatalf("accepted token %q from %q", c.token, v)
			}
			if strings.ContainsAny(c.token, " ,\"\\") {
				t.Fatalf("token %q contains a delimiter", c.token)
			}
			if again := parseAuthorization("Bearer " + c.token); again.kind != credBearer || again.token != c.token {
				t.Fatalf("round trip of %q failed", c.token)
			}
		case credInvalid:
			if c.reason == "" {
				t.Fatalf("invalid_request without a reason for %q", v)
			}
		case credNone:
			if c.token != "" {
				t.Fatal("token with credNone")
			}
		}
	})
}

func FuzzCheck(f *testing.F) {
	f.Add("/mcp", "Bearer good")
	f.Add("/mcp?access_token=x", "Bearer good")
	f.Add("/mcp?access_token=x", "")
	f.Add("/mcp?%61ccess_token=x", "bearer good")
	f.Add("/mcp", "Bearer good, Bearer good")
	f.Add("/mcp", "Bearer expired")
	f.Add("/mcp", "Bearer down")
	s, _ := newTestServer(f, nil)
	f.Fuzz(func(t *testing.T, path, authorization string) {
		headers := map[string]string{}
		if authorization != "" {
			headers["authorization"] = authorization
		}
		resp, err := s.Check(context.Background(), envoyRequest(path, headers))
		if err != nil {
			t.Fatalf("Check error in HTTP unavailable mode: %v", err)
		}
		code := codes.Code(resp.GetStatus().GetCode())
		if code == codes.OK {
			// Only the fake validator's good tokens may pass, and only from the header.
			c := parseAuthorization(authorization)
			if c.kind != credBearer || (c.token != "good" && c.token != "noclient") || hasQueryToken(path) {
				t.Fatalf("allowed path=%q authorization=%q", path, authorization)
			}
			return
		}
		d := resp.GetDeniedResponse()
		if d == nil || d.GetStatus().GetCode() == 0 {
			t.Fatalf("denial without an HTTP status: %v", resp)
		}
		for _, h := range d.GetHeaders() {
			if h.GetHeader().GetKey() == "www-authenticate" && strings.Contains(h.GetHeader().GetValue(), authorization) && len(authorization) > 12 {
				t.Fatalf("challenge echoes the credentials: %q", h.GetHeader().GetValue())
			}
		}
	})
}
