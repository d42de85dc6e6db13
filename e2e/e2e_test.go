package e2e

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"

	"github.com/mcp-authz/mcp-authz/internal/devissuer"
)

// TestWithSharedService runs the checks that do not disturb the service
// against one process.
func TestWithSharedService(t *testing.T) {
	env := baseEnv()
	env["MCP_AUTHZ_GRPC_REFLECTION"] = "true"
	p := startAuthz(t, env, true)
	rsTok := token(t, "rs-client", "mcp:read mcp:write", resource)
	esTok := token(t, "es-client", "mcp:read", resource)

	t.Run("no token: 401 with the discovery challenge, metadata resolves", func(t *testing.T) {
		resp := p.check(t, envoyCheck("POST", "/mcp", nil))
		if codes.Code(resp.GetStatus().GetCode()) == codes.OK || resp.GetDeniedResponse().GetStatus().GetCode() != 401 {
			t.Fatalf("got %v", resp)
		}
		www := deniedHeader(resp, "www-authenticate")
		want := `Bearer resource_metadata="https://mcp.example.com/.well-known/oauth-protected-resource/mcp", scope="mcp:read"`
		if www != want {
			t.Fatalf("WWW-Authenticate %q", www)
		}
		// Follow the challenge the way an MCP client does; Envoy routes the
		// well-known path to the side server, here reached directly.
		md := regexp.MustCompile(`resource_metadata="https://[^/]+([^"]+)"`).FindStringSubmatch(www)
		r, err := http.Get("http://" + p.httpAddr + md[1])
		if err != nil {
			t.Fatal(err)
		}
		defer r.Body.Close()
		var doc map[string]any
		if err := json.NewDecoder(r.Body).Decode(&doc); err != nil {
			t.Fatal(err)
		}
		if doc["resource"] != resource || r.Header.Get("Content-Type") != "application/json" {
			t.Fatalf("metadata %v (%s)", doc, r.Header.Get("Content-Type"))
		}
		if as, _ := doc["authorization_servers"].([]any); len(as) != 1 || as[0] != issuer {
			t.Fatalf("authorization_servers %v", doc["authorization_servers"])
		}
		if bm, _ := doc["bearer_methods_supported"].([]any); len(bm) != 1 || bm[0] != "header" {
			t.Fatalf("bearer_methods_supported %v", doc["bearer_methods_supported"])
		}
	})

	for _, tc := range []struct{ name, tok, client string }{{"RS256", rsTok, "rs-client"}, {"ES256", esTok, "es-client"}} {
		t.Run("valid "+tc.name+" token from oidc-provider is allowed", func(t *testing.T) {
			resp := p.check(t, envoyCheck("POST", "/mcp", map[string]string{
				"authorization": "Bearer " + tc.tok, "x-mcp-auth-subject": "spoofed",
			}))
			if codes.Code(resp.GetStatus().GetCode()) != codes.OK {
				t.Fatalf("denied: %v", resp.GetDeniedResponse())
			}
			hdr := map[string]string{}
			for _, h := range resp.GetOkResponse().GetHeaders() {
				hdr[h.GetHeader().GetKey()] = h.GetHeader().GetValue()
			}
			if hdr["x-mcp-auth-subject"] != tc.client || hdr["x-mcp-auth-client-id"] != tc.client || hdr["x-mcp-auth-issuer"] != issuer {
				t.Fatalf("identity headers %v", hdr)
			}
			claims, err := base64.RawURLEncoding.DecodeString(hdr["x-mcp-auth-claims"])
			if err != nil || !strings.Contains(string(claims), `"client_id":"`+tc.client+`"`) {
				t.Fatalf("claims header %q: %v", claims, err)
			}
			if md := resp.GetDynamicMetadata().GetFields(); md["sub"].GetStringValue() != tc.client {
				t.Fatalf("dynamic metadata %v", md)
			}
		})
	}

	t.Run("lower-case bearer scheme", func(t *testing.T) {
		resp := p.check(t, envoyCheck("GET", "/mcp", map[string]string{"authorization": "bearer " + rsTok}))
		if codes.Code(resp.GetStatus().GetCode()) != codes.OK {
			t.Fatalf("denied: %v", resp.GetDeniedResponse())
		}
	})

	t.Run("missing scope: 403 insufficient_scope", func(t *testing.T) {
		tok := token(t, "rs-client", "mcp:write", resource)
		resp := p.check(t, envoyCheck("POST", "/mcp", map[string]string{"authorization": "Bearer " + tok}))
		if resp.GetDeniedResponse().GetStatus().GetCode() != 403 {
			t.Fatalf("got %v", resp)
		}
		want := `Bearer error="insufficient_scope", scope="mcp:read", resource_metadata="https://mcp.example.com/.well-known/oauth-protected-resource/mcp"`
		if got := deniedHeader(resp, "www-authenticate"); got != want {
			t.Fatalf("WWW-Authenticate %q", got)
		}
	})

	t.Run("token for another resource: 401 audience", func(t *testing.T) {
		tok := token(t, "rs-client", "mcp:read", "https://other.example.com/mcp")
		resp := p.check(t, envoyCheck("POST", "/mcp", map[string]string{"authorization": "Bearer " + tok}))
		want := `Bearer error="invalid_token", error_description="Token audience invalid", resource_metadata="https://mcp.example.com/.well-known/oauth-protected-resource/mcp", scope="mcp:read"`
		if got := deniedHeader(resp, "www-authenticate"); got != want || resp.GetDeniedResponse().GetStatus().GetCode() != 401 {
			t.Fatalf("got %d %q", resp.GetDeniedResponse().GetStatus().GetCode(), got)
		}
	})

	t.Run("tampered token: 401 invalid signature", func(t *testing.T) {
		parts := strings.Split(rsTok, ".")
		claims, _ := base64.RawURLEncoding.DecodeString(parts[1])
		forged := strings.Replace(string(claims), `"scope":"mcp:read mcp:write"`, `"scope":"mcp:read mcp:write mcp:admin"`, 1)
		tok := parts[0] + "." + base64.RawURLEncoding.EncodeToString([]byte(forged)) + "." + parts[2]
		resp := p.check(t, envoyCheck("POST", "/mcp", map[string]string{"authorization": "Bearer " + tok}))
		if got := deniedHeader(resp, "www-authenticate"); !strings.Contains(got, `error_description="Invalid token signature"`) {
			t.Fatalf("got %q", got)
		}
	})

	t.Run("malformed credentials: 400 invalid_request", func(t *testing.T) {
		for _, h := range []map[string]string{
			{"authorization": "Bearer " + rsTok + ",Bearer " + esTok},
			{"authorization": "Bearer"},
			{"authorization": "Bearer a b"},
		} {
			resp := p.check(t, envoyCheck("POST", "/mcp", h))
			if resp.GetDeniedResponse().GetStatus().GetCode() != 400 || !strings.Contains(deniedHeader(resp, "www-authenticate"), `error="invalid_request"`) {
				t.Fatalf("got %v", resp.GetDeniedResponse())
			}
		}
		resp := p.check(t, envoyCheck("GET", "/mcp?access_token="+rsTok, map[string]string{"authorization": "Bearer " + rsTok}))
		if resp.GetDeniedResponse().GetStatus().GetCode() != 400 {
			t.Fatalf("header+query: %v", resp.GetDeniedResponse())
		}
		resp = p.check(t, envoyCheck("GET", "/mcp?access_token="+rsTok, nil))
		if resp.GetDeniedResponse().GetStatus().GetCode() != 401 || strings.Contains(deniedHeader(resp, "www-authenticate"), "error=") {
			t.Fatalf("query only: %v", resp.GetDeniedResponse())
		}
	})

	t.Run("oversized token is refused", func(t *testing.T) {
		resp := p.check(t, envoyCheck("POST", "/mcp", map[string]string{"authorization": "Bearer " + strings.Repeat("A", 100<<10)}))
		if code := resp.GetDeniedResponse().GetStatus().GetCode(); code != 401 && code != 400 {
			t.Fatalf("got %d", code)
		}
	})

	t.Run("grpc health, and reflection when enabled", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		h, err := healthpb.NewHealthClient(p.conn).Check(ctx, &healthpb.HealthCheckRequest{Service: "envoy.service.auth.v3.Authorization"})
		if err != nil || h.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			t.Fatalf("health %v %v", h, err)
		}
		stream, err := reflectionpb.NewServerReflectionClient(p.conn).ServerReflectionInfo(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := stream.Send(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}}); err != nil {
			t.Fatal(err)
		}
		r, err := stream.Recv()
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, s := range r.GetListServicesResponse().GetService() {
			names = append(names, s.GetName())
		}
		if !strings.Contains(strings.Join(names, ","), "envoy.service.auth.v3.Authorization") {
			t.Fatalf("reflection lists %v", names)
		}
	})
}

// TestKeyRotationAndKIDFlood needs its own process: it changes the
// provider's keys and counts JWKS fetches.
func TestKeyRotationAndKIDFlood(t *testing.T) {
	p := startAuthz(t, baseEnv(), true)
	time.Sleep(1100 * time.Millisecond) // past the unknown-kid refresh interval

	before := providerStats(t)
	resp, err := http.Post(issuer+"/__rotate?alg=RS256", "application/json", nil)
	if err != nil {
		t.Fatal(err)
	}
	var rotated struct{ KID string }
	_ = json.NewDecoder(resp.Body).Decode(&rotated)
	resp.Body.Close()
	tok := token(t, "rs-client", "mcp:read", resource)
	var hdr struct{ KID string }
	hb, _ := base64.RawURLEncoding.DecodeString(strings.Split(tok, ".")[0])
	_ = json.Unmarshal(hb, &hdr)
	if hdr.KID != rotated.KID {
		t.Fatalf("provider signed with %q, rotated to %q", hdr.KID, rotated.KID)
	}
	// Accepted at once when the JWKS answers within refresh_wait (50 ms);
	// on a loaded machine the first check may get 503 while the refresh
	// finishes in the background. Either way: within seconds, no restart.
	deadline := time.Now().Add(5 * time.Second)
	for {
		r := p.check(t, envoyCheck("POST", "/mcp", map[string]string{"authorization": "Bearer " + tok}))
		if codes.Code(r.GetStatus().GetCode()) == codes.OK {
			break
		}
		if code := r.GetDeniedResponse().GetStatus().GetCode(); code != 503 || time.Now().After(deadline) {
			t.Fatalf("token signed with the rotated key: %v", r.GetDeniedResponse())
		}
		time.Sleep(100 * time.Millisecond)
	}
	if got := providerStats(t) - before; got < 1 || got > 2 {
		t.Errorf("rotation cost %d JWKS fetches, want 1 (2 if a retry came after the rate limit)", got)
	}

	// A flood of tokens with random kids: each must be refused, and the
	// JWKS endpoint must see at most about one fetch per second.
	time.Sleep(1100 * time.Millisecond)
	before = providerStats(t)
	start := time.Now()
	var wg sync.WaitGroup
	var mu sync.Mutex
	denied, total := 0, 0
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			key, _ := devissuer.NewKey("ES256")
			for time.Since(start) < 2500*time.Millisecond {
				key.KID = randomKID()
				forged, _ := key.Sign(jwt.MapClaims{
					"iss": issuer, "sub": "attacker", "aud": resource, "scope": "mcp:read",
					"exp": time.Now().Add(time.Hour).Unix(), "iat": time.Now().Unix(),
				}, map[string]any{"typ": "at+jwt"})
				r := p.check(t, envoyCheck("POST", "/mcp", map[string]string{"authorization": "Bearer " + forged}))
				mu.Lock()
				total++
				if r.GetDeniedResponse().GetStatus().GetCode() == 401 {
					denied++
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	fetches := providerStats(t) - before
	t.Logf("kid flood: %d forged tokens in %v, %d JWKS fetches", total, elapsed.Round(time.Millisecond), fetches)
	if denied != total || total < 100 {
		t.Errorf("%d of %d forged tokens denied with 401", denied, total)
	}
	if limit := int(elapsed/time.Second) + 1; fetches > limit {
		t.Errorf("%d JWKS fetches in %v, want <= %d", fetches, elapsed, limit)
	}
}

func randomKID() string {
	k, _ := devissuer.NewKey("EdDSA")
	return k.KID
}

func TestAuthorizationServerUnreachable(t *testing.T) {
	env := baseEnv()
	env["OAUTH_JWKS_URI"] = "http://" + freeAddr(t) + "/jwks" // nothing listens there
	p := startAuthz(t, env, false)

	r, err := http.Get("http://" + p.httpAddr + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	r.Body.Close()
	if r.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("/readyz = %d while the JWKS is unreachable", r.StatusCode)
	}
	tok := token(t, "rs-client", "mcp:read", resource)
	resp := p.check(t, envoyCheck("POST", "/mcp", map[string]string{"authorization": "Bearer " + tok}))
	d := resp.GetDeniedResponse()
	if codes.Code(resp.GetStatus().GetCode()) == codes.OK || d.GetStatus().GetCode() != 503 {
		t.Fatalf("want 503, got %v", resp)
	}
	if deniedHeader(resp, "retry-after") == "" || deniedHeader(resp, "www-authenticate") != "" {
		t.Fatalf("503 headers %v", d.GetHeaders())
	}
	if !strings.Contains(d.GetBody(), "JWKS endpoint unreachable") {
		t.Fatalf("body %s", d.GetBody())
	}
	if strings.Contains(p.logs.String(), tok) {
		t.Fatal("token in logs")
	}
}

func TestUnavailableAsGRPCStatus(t *testing.T) {
	env := baseEnv()
	env["OAUTH_JWKS_URI"] = "http://" + freeAddr(t) + "/jwks"
	env["MCP_AUTHZ_UNAVAILABLE_MODE"] = "grpc"
	p := startAuthz(t, env, false)
	tok := token(t, "rs-client", "mcp:read", resource)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := p.client.Check(ctx, envoyCheck("POST", "/mcp", map[string]string{"authorization": "Bearer " + tok}))
	if err == nil || !strings.Contains(err.Error(), "Unavailable") {
		t.Fatalf("want gRPC UNAVAILABLE, got %v", err)
	}
}

func TestBadConfigurationStopsStartup(t *testing.T) {
	tests := []struct {
		name  string
		env   map[string]string
		field string
	}{
		{"nothing configured", map[string]string{}, "resources"},
		{"resource not https", map[string]string{"OAUTH_RESOURCE": "ftp://mcp.example.com"}, "OAUTH_RESOURCE"},
		{"HMAC algorithm", map[string]string{"OAUTH_ALGORITHMS": "HS256"}, "OAUTH_ALGORITHMS"},
		{"bad duration", map[string]string{"OAUTH_JWKS_CACHE_TTL": "soon"}, "OAUTH_JWKS_CACHE_TTL"},
		{"http issuer off loopback", map[string]string{"OAUTH_AUTHORIZATION_SERVER": "http://as.example.com"}, "OAUTH_AUTHORIZATION_SERVER"},
		{"bad listen address", map[string]string{"MCP_AUTHZ_GRPC_ADDR": "nope"}, "MCP_AUTHZ_GRPC_ADDR"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := baseEnv()
			if len(tt.env) == 0 {
				env = map[string]string{}
			}
			for k, v := range tt.env {
				env[k] = v
			}
			out := runToExit(t, env, 2)
			lines := strings.Split(strings.TrimSpace(string(out)), "\n")
			if len(lines) != 1 || !strings.Contains(lines[0], tt.field) {
				t.Fatalf("want one line naming %s, got:\n%s", tt.field, out)
			}
		})
	}
}

// runToExit runs the binary with only env (and a PATH) and returns its
// output; it must exit with code.
func runToExit(t *testing.T, env map[string]string, code int) []byte {
	t.Helper()
	cmd := exec.Command(binary)
	cmd.Env = []string{"PATH=/usr/bin:/bin"}
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	out, err := cmd.CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != code {
		t.Fatalf("exit %v, want %d; output %s", err, code, out)
	}
	return out
}

// TestPortInUseStopsStartup: a port in use ends start-up with one line
// naming the variable to change, and nothing after it (no JWKS "failure"
// for the fetch the stop abandoned).
func TestPortInUseStopsStartup(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	// A JWKS that never answers: its fetch is in flight when start-up ends.
	hang := make(chan struct{})
	jwks := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-hang:
		}
	}))
	defer jwks.Close()
	defer close(hang)
	for _, tt := range []struct {
		name, env, want string
	}{
		{"grpc", "MCP_AUTHZ_GRPC_ADDR", "mcp-authz: MCP_AUTHZ_GRPC_ADDR: listen tcp " + busy.Addr().String() + ": bind: address already in use"},
		{"http", "MCP_AUTHZ_HTTP_ADDR", "mcp-authz: MCP_AUTHZ_HTTP_ADDR: listen tcp " + busy.Addr().String() + ": bind: address already in use"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			env := baseEnv()
			env["OAUTH_JWKS_URI"] = jwks.URL + "/jwks"
			env["MCP_AUTHZ_GRPC_ADDR"], env["MCP_AUTHZ_HTTP_ADDR"] = freeAddr(t), freeAddr(t)
			env[tt.env] = busy.Addr().String()
			out := runToExit(t, env, 1)
			// Start-up logs may come first; the error is the last line,
			// and nothing reports the abandoned JWKS fetch as a failure.
			lines := strings.Split(strings.TrimSpace(string(out)), "\n")
			last := lines[len(lines)-1]
			if !strings.HasPrefix(last, tt.want) || !strings.Contains(last, "set "+tt.env+" to a free address") {
				t.Fatalf("want a last line %q..., got:\n%s", tt.want, out)
			}
			if strings.Contains(string(out), "refresh failed") || strings.Contains(string(out), "canceled") {
				t.Fatalf("a stop reported as a failure:\n%s", out)
			}
		})
	}
}

func TestGracefulShutdown(t *testing.T) {
	p := startAuthz(t, baseEnv(), false)
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-p.exited:
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v", err)
		}
		p.exited <- nil // for the cleanup
	case <-time.After(10 * time.Second):
		t.Fatal("no exit within 10s of SIGTERM")
	}
}
