package e2e

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
)

// assertRecipeIdentity: what reached the MCP server behind a recipe, for
// recipeAnswers' good token, carries its identity and not the token.
func assertRecipeIdentity(t *testing.T, h http.Header) {
	t.Helper()
	if h.Get("X-Mcp-Auth-Subject") != "rs-client" || h.Get("X-Mcp-Auth-Client-Id") != "rs-client" ||
		h.Get("X-Mcp-Auth-Issuer") != issuer || h.Get("X-Mcp-Auth-Scopes") != "mcp:read mcp:write" ||
		h.Get("X-Mcp-Auth-Resource") != resource || h.Get("X-Mcp-Auth-Claims") == "" {
		t.Fatalf("upstream identity headers: %v", h)
	}
	if h.Get("Authorization") != "" {
		t.Fatal("the token reached the upstream (strip_authorization)")
	}
}

// recipeAnswers holds a proxy running one of the shipped forward-auth
// recipes (base, in front of up) to the answers every recipe must give its
// clients as mcp-authz gave them: the discovery challenge, the step-up
// challenge, invalid and malformed credentials, ambiguity, and the public
// metadata. good is a valid token for resource with mcp:read and mcp:write.
func recipeAnswers(t *testing.T, base string, up *upstreamRecorder, good string) {
	t.Run("no token: 401 with the discovery challenge reaching the client", func(t *testing.T) {
		before := up.count()
		r := through(t, base, "POST", "/mcp", nil)
		want := `Bearer resource_metadata="` + prmURL + `", scope="mcp:read"`
		if r.status != 401 || r.header.Get("Www-Authenticate") != want || len(r.header.Values("Www-Authenticate")) != 1 {
			t.Fatalf("got %s", r)
		}
		if errorCode(t, r.body) != "unauthorized" || !strings.HasPrefix(r.header.Get("Content-Type"), "application/json") {
			t.Fatalf("body %q (%s)", r.body, r.header.Get("Content-Type"))
		}
		if up.count() != before {
			t.Fatal("a denied request reached the upstream")
		}
	})

	t.Run("missing scope: 403 with the insufficient_scope challenge", func(t *testing.T) {
		before := up.count()
		tok := token(t, "rs-client", "mcp:write", resource)
		r := through(t, base, "GET", "/mcp", map[string][]string{"Authorization": {"Bearer " + tok}})
		want := `Bearer error="insufficient_scope", scope="mcp:read", resource_metadata="` + prmURL + `"`
		if r.status != 403 || r.header.Get("Www-Authenticate") != want || len(r.header.Values("Www-Authenticate")) != 1 {
			t.Fatalf("got %s", r)
		}
		if errorCode(t, r.body) != "insufficient_scope" || r.header.Get("Retry-After") != "" {
			t.Fatalf("got %s", r)
		}
		if up.count() != before {
			t.Fatal("a denied request reached the upstream")
		}
	})

	t.Run("invalid token: 401 invalid_token", func(t *testing.T) {
		r := through(t, base, "GET", "/mcp", map[string][]string{"Authorization": {"Bearer " + good[:len(good)-4] + "AAAA"}})
		if r.status != 401 || !strings.Contains(r.header.Get("Www-Authenticate"), `error="invalid_token"`) ||
			len(r.header.Values("Www-Authenticate")) != 1 || errorCode(t, r.body) != "invalid_token" {
			t.Fatalf("got %s", r)
		}
	})

	t.Run("malformed credentials: mcp-authz's 400 stays a 400", func(t *testing.T) {
		r := through(t, base, "GET", "/mcp", map[string][]string{"Authorization": {"Bearer a b"}})
		if r.status != 400 || !strings.Contains(r.header.Get("Www-Authenticate"), `error="invalid_request"`) ||
			errorCode(t, r.body) != "invalid_request" || r.header.Get("Retry-After") != "" {
			t.Fatalf("got %s", r)
		}
	})

	// nginx refuses a repeated Authorization itself (400, its own page);
	// Caddy passes both on, and mcp-authz refuses the ambiguity
	// (TestForwardDuplicateAuthorization).
	t.Run("two Authorization headers never pass", func(t *testing.T) {
		before := up.count()
		r := through(t, base, "GET", "/mcp", map[string][]string{"Authorization": {"Bearer " + good, "Bearer " + good}})
		if r.status != 400 || up.count() != before {
			t.Fatalf("got %s", r)
		}
	})

	t.Run("an encoded slash in the path is refused, not routed", func(t *testing.T) {
		before := up.count()
		r := through(t, base, "GET", "/mcp%2F..%2Fadmin", map[string][]string{"Authorization": {"Bearer " + good}})
		if r.status != 400 || up.count() != before {
			t.Fatalf("got %s", r)
		}
	})

	t.Run("the metadata is served through the proxy without a token", func(t *testing.T) {
		r := through(t, base, "GET", "/.well-known/oauth-protected-resource/mcp", nil)
		var doc map[string]any
		if r.status != 200 || json.Unmarshal([]byte(r.body), &doc) != nil || doc["resource"] != resource {
			t.Fatalf("got %s", r)
		}
	})
}

// recipeUnavailable holds a recipe, started by start in front of up, to
// the answers when mcp-authz cannot validate tokens (its authorization
// server is unreachable) or cannot be reached at all: 503 with
// Retry-After, never the proxy's own 500 or 502, never the upstream. good
// is a valid token for resource.
func recipeUnavailable(t *testing.T, up *upstreamRecorder, good string, start func(t *testing.T, forwardAddr, sideAddr, upstreamAddr string) string) {
	t.Run("authorization server unreachable", func(t *testing.T) {
		dead := freeAddr(t) // nothing listens here
		p, fwd := startForwardAuthz(t, map[string]string{"OAUTH_JWKS_URI": "http://" + dead + "/jwks"})
		base := start(t, fwd, p.httpAddr, up.srv.Listener.Addr().String())
		r := through(t, base, "GET", "/mcp", map[string][]string{"Authorization": {"Bearer " + good}})
		if r.status != 503 || r.header.Get("Retry-After") != "5" || r.header.Get("Www-Authenticate") != "" {
			t.Fatalf("got %s", r)
		}
		if errorCode(t, r.body) != "temporarily_unavailable" || !strings.Contains(r.body, "JWKS") {
			t.Fatalf("body %q", r.body)
		}
		// Without a token there is nothing to validate: still the challenge.
		if r := through(t, base, "GET", "/mcp", nil); r.status != 401 {
			t.Fatalf("no token: %s", r)
		}
	})

	t.Run("mcp-authz unreachable", func(t *testing.T) {
		p, _ := startForwardAuthz(t, nil)
		base := start(t, freeAddr(t), p.httpAddr, up.srv.Listener.Addr().String())
		r := through(t, base, "GET", "/mcp", map[string][]string{"Authorization": {"Bearer " + good}})
		if r.status != 503 || r.header.Get("Retry-After") != "5" || errorCode(t, r.body) != "temporarily_unavailable" {
			t.Fatalf("got %s", r)
		}
	})
}
