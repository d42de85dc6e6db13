package authz

// Red-team attacks on clipped denial lines (1de3763, 871abc3) and the
// claims in the allow's dynamic metadata (5e4e43b). A test that passes
// documents a defence.

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/protobuf/proto"

	"github.com/mcp-authz/mcp-authz/cache"
	"github.com/mcp-authz/mcp-authz/validators"
)

// TestRedteamDenialLineBounded: a client's host and path reach a denial
// line only for an unrouted request; whatever their bytes (control
// characters, quotes, newlines, invalid UTF-8, continuation bytes at the
// cut), the line is one JSON object of bounded size, and a token in the
// query or fragment never appears in it.
func TestRedteamDenialLineBounded(t *testing.T) {
	const secret = "SECRETTOKENVALUE"
	for name, c := range map[string]struct{ host, path string }{
		"newlines and quotes": {"evil\n{\"level\":\"ERROR\"}\r\n", "/x\"\n\\" + strings.Repeat("\n", 10_000)},
		"control characters":  {"h\x00\x1b[31m\x7f", "/\x01\x02" + strings.Repeat("\x1b", 5_000)},
		"continuation bytes":  {"h", "/" + strings.Repeat("\x80", 100_000)},
		"invalid UTF-8 host":  {strings.Repeat("\xff", 100_000), "/y"},
		"query token":         {"h", "/elsewhere?access_token=" + secret + "&" + strings.Repeat("a", 50_000)},
		"fragment token":      {"h", "/elsewhere#access_token=" + secret},
		"four-byte runes":     {strings.Repeat("😀", 30_000), "/" + strings.Repeat("😀", 30_000)},
	} {
		t.Run(name, func(t *testing.T) {
			var buf syncBuffer
			s, _ := newTestServer(t, func(cfg *Config, r *Resource) {
				cfg.Logger = slog.New(slog.NewJSONHandler(&buf, nil))
				r.PathPrefixes = []string{"/mcp"}
			})
			req := envoyRequest(c.path, map[string]string{"authorization": "Bearer " + secret})
			req.Attributes.Request.Http.Host = c.host
			in := inputFromProto(req, &s.read)
			if _, err := s.check(context.Background(), &in); err != nil {
				t.Fatal(err)
			}
			out := buf.String()
			if strings.Contains(out, secret) {
				t.Fatalf("the token reached the log: %q", out)
			}
			if n := strings.Count(out, "\n"); n != 1 {
				t.Fatalf("%d lines: %q", n, out)
			}
			if len(out) > 2*(maxLogged*6+64)+256 {
				t.Fatalf("a denial line of %d bytes", len(out))
			}
			var line map[string]any
			if err := json.Unmarshal([]byte(out), &line); err != nil || line["msg"] != "deny" {
				t.Fatalf("not one JSON deny line (%v): %q", err, out)
			}
		})
	}
}

// TestRedteamMetadataClaimsAreTheTokens: the allow's dynamic metadata
// claims are the claims header's value and the validated token's, on the
// first use (rendered), the second (kept) and later ones (shared), per
// operation, for many tokens of one payload length, after a reload (a
// new Server over the same cached principals), and for principals that
// keep their claims (introspection).
func TestRedteamMetadataClaimsAreTheTokens(t *testing.T) {
	store, _ := cache.NewMemory(cache.MemoryOptions{})
	cv, _ := cache.New(rtValidator{}, store, cache.Options{Policy: "p"})
	newServer := func() *Server {
		s, err := NewServer(Config{Resources: []*Resource{{URI: testResource, RequiredScopes: []string{"mcp:read"}, Validator: cv}},
			Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	check := func(s *Server, tok, body string) (header, meta string) {
		t.Helper()
		req := mcpRequest("POST", "/mcp", body, map[string]string{"authorization": "Bearer " + tok, "mcp-session-id": "s"})
		wire, _ := proto.Marshal(req)
		got, err := s.CheckWire(context.Background(), wire)
		if err != nil {
			t.Fatal(err)
		}
		for i := range wire {
			wire[i] = 'X'
		}
		var resp authv3.CheckResponse
		if err := proto.Unmarshal(got, &resp); err != nil {
			t.Fatal(err)
		}
		if msg, err := s.Check(context.Background(), req); err != nil || !proto.Equal(msg, &resp) {
			t.Fatalf("the message differs from the wire answer: %v", err)
		}
		return headersOf(&resp)["x-mcp-auth-claims"], resp.GetDynamicMetadata().GetFields()["claims"].GetStringValue()
	}
	bodies := []string{callTool("a"), callTool("b"), `{"jsonrpc":"2.0","id":1,"method":"ping"}`}
	for gen := range 2 { // gen 1: a reload's Server, the same cached principals
		s := newServer()
		for round := range 3 {
			for i := range 16 {
				tok, payload, _ := rtToken(i)
				for _, body := range bodies {
					if h, m := check(s, tok, body); h != payload || m != payload {
						t.Fatalf("server %d, round %d, token %d: header %q, metadata %q, want %q", gen, round, i, h, m, payload)
					}
				}
			}
		}
	}

	// Introspection principals keep their claims.
	kept := map[string]string{}
	iv := &fakeValidator{answers: map[string]func() (*validators.Principal, error){}}
	for i := range 8 {
		js := fmt.Sprintf(`{"active":true,"sub":"u-%02d","scope":"mcp:read"}`, i)
		tok := fmt.Sprintf("opaque-%02d", i)
		kept[tok] = js
		iv.answers[tok] = func() (*validators.Principal, error) {
			return validators.NewPrincipal(validators.Identity{Subject: fmt.Sprintf("u-%02d", i), Issuer: "https://as.example",
				Scopes: []string{"mcp:read"}, ExpiresAt: time.Now().Add(time.Hour), ClaimsJSON: js}), nil
		}
	}
	icv, _ := cache.New(iv, store, cache.Options{Policy: "introspection"})
	s, err := NewServer(Config{Resources: []*Resource{{URI: testResource, RequiredScopes: []string{"mcp:read"}, Validator: icv}},
		Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	for round := range 3 {
		for tok, js := range kept {
			want := base64URL(js)
			if h, m := check(s, tok, bodies[round]); h != want || m != want {
				t.Fatalf("round %d, %s: header %q, metadata %q, want %q", round, tok, h, m, want)
			}
		}
	}
}

func base64URL(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }
