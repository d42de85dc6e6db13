package e2e

// The test MCP users care about most: the official MCP TypeScript SDK client
// (e2e/mcpsdk, pinned by package-lock.json) going from no token, through RFC
// 9728 discovery, dynamic registration and an OAuth authorization (code +
// PKCE + RFC 8707 resource), to tool calls on an SDK MCP server, through an
// Envoy stand-in (internal/envoyfront) that asks the real mcp-authz binary
// over real gRPC. Everything listens on loopback:
//
//   client.mjs --> envoyfront --/mcp (ext_authz: mcp-authz gRPC)--> server.mjs
//                      '--/.well-known/oauth-protected-resource (public)--> mcp-authz HTTP
//   client.mjs --> as.mjs (oidc-provider: registration, authorization, token)
//   mcp-authz  --> as.mjs (discovery, JWKS)
//
// TestMCPSDKThroughProxies puts a real Caddy or nginx with the shipped
// recipe where envoyfront is, asking mcp-authz over HTTP.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mcp-authz/mcp-authz/internal/envoyfront"
)

// TestMCPSDKOAuthFlow: no token -> 401 challenge -> discovery through the
// front -> registration -> authorization for the challenge's scope -> tool
// calls, with the identity (and no token) reaching the MCP server.
func TestMCPSDKOAuthFlow(t *testing.T) {
	st, err := startMCPSDKStand(t, false)
	if err != nil {
		t.Fatal(err)
	}
	run := st.runClient(t, "basic", "alice")
	st.assertOAuthFlow(t, run)

	ex := st.exchanges()
	if len(ex) == 0 || ex[0].Status != 401 {
		t.Fatalf("front's first check: %+v", ex)
	}
	for _, e := range ex {
		if e.Err != nil {
			t.Errorf("Check failed: %v", e.Err)
		}
	}
}

// assertOAuthFlow checks a "basic" run of client.mjs as alice: the 401
// challenge, discovery and registration through the front, one
// authorization for the challenge's scope, tool calls, the SSE stream and
// the session's end, and what the MCP server and the AS saw.
func (st *mcpsdkStand) assertOAuthFlow(t *testing.T, run *clientRun) {
	t.Helper()
	first := run.of("http")[0]
	if first.Method != "POST" || first.URL != st.resource || first.RPC != "initialize" || first.Bearer || first.Status != 401 {
		t.Fatalf("first request: %+v", first)
	}
	wantChallenge := fmt.Sprintf(`Bearer resource_metadata="%s", scope="mcp:tools"`, st.metadataURL)
	if first.WWWAuthenticate != wantChallenge {
		t.Fatalf("challenge %q, want %q", first.WWWAuthenticate, wantChallenge)
	}
	st.assertDiscoveredAndRegistered(t, run)

	auths := run.of("authorize")
	if len(auths) != 1 || auths[0].Scope != "mcp:tools" || auths[0].Resource != st.resource || auths[0].CodeChallengeMethod != "S256" {
		t.Fatalf("authorization requests: %+v", auths)
	}
	tokens := run.of("tokens")
	if len(tokens) != 1 {
		t.Fatalf("tokens: %+v", tokens)
	}
	assertToken(t, tokens[0], st.resource, "alice", "mcp:tools")

	if in := run.find("http", func(s clientStep) bool { return s.RPC == "initialize" && s.Bearer }); in == nil || in.Status != 200 {
		t.Fatalf("initialize with the token: %+v", in)
	}
	if tools := run.of("tools"); len(tools) != 1 || !slices.Equal(tools[0].Names, []string{"delete_repo", "echo", "whoami"}) {
		t.Fatalf("tools: %+v", tools)
	}
	if echo := run.find("call", func(s clientStep) bool { return s.Tool == "echo" }); echo == nil || echo.Text != "hello through envoy" || echo.IsError {
		t.Fatalf("echo: %+v", echo)
	}
	who := run.of("whoami")
	if len(who) != 1 || who[0].Subject != "alice" || who[0].Scopes != "mcp:tools" || who[0].Issuer != st.issuer || who[0].Authorization || !who[0].HasClaims {
		t.Fatalf("whoami: %+v", who)
	}
	if sse := run.find("sse", nil); sse == nil || sse.Status != 200 {
		t.Fatalf("the SDK's SSE stream (GET) through the front: %+v", sse)
	}
	if del := run.find("http", func(s clientStep) bool { return s.Method == "DELETE" }); del == nil || !del.Bearer || del.Status != 200 || run.find("terminated", nil) == nil {
		t.Fatalf("session termination: %+v", del)
	}

	// The MCP server: every request that reached it came with the identity
	// and without the token; the unauthenticated initialize never arrived;
	// the SSE stream (GET) and the session's end (DELETE) went through too.
	seen := st.serverSeen(t)
	methods := map[string]int{}
	for _, s := range seen {
		if s.Subject != "alice" || s.Authorization || s.Scopes != "mcp:tools" {
			t.Errorf("the MCP server saw %+v", s)
		}
		methods[s.HTTPMethod+" "+strings.Join(s.RPCMethods, ",")]++
	}
	if methods["POST initialize"] != 1 || methods["GET "] < 1 || methods["DELETE "] != 1 || methods["POST tools/call"] != 2 {
		t.Errorf("requests at the MCP server: %v", methods)
	}

	as := st.asStats(t)
	if len(as.Registrations) != 1 || as.Registrations[0].Scope != "mcp:tools" {
		t.Errorf("registrations: %+v", as.Registrations)
	}
	if len(as.Authorizations) != 1 || as.Authorizations[0].User != "alice" || as.Authorizations[0].Granted[st.resource] != "mcp:tools" {
		t.Errorf("authorizations at the AS: %+v", as.Authorizations)
	}
}

// TestMCPSDKStepUp: a tool whose operation rule needs repo:admin. The token
// for mcp:tools calls echo, is refused for delete_repo with 403
// insufficient_scope naming every scope the call needs; the SDK authorizes
// again for exactly those and retries the call on the same session.
func TestMCPSDKStepUp(t *testing.T) {
	st, err := startMCPSDKStand(t, true)
	if err != nil {
		t.Fatal(err)
	}
	run := st.runClient(t, "stepup", "alice")
	st.assertDiscoveredAndRegistered(t, run)

	echo := run.find("call", func(s clientStep) bool { return s.Tool == "echo" })
	if echo == nil || echo.Text != "hello through envoy" {
		t.Fatalf("echo with mcp:tools only: %+v", echo)
	}
	refused := run.find("http", func(s clientStep) bool { return s.RPC == "tools/call" && s.Status == 403 })
	if refused == nil {
		t.Fatal("delete_repo was not refused for want of repo:admin")
	}
	wantChallenge := fmt.Sprintf(`Bearer error="insufficient_scope", scope="mcp:tools repo:admin", resource_metadata="%s"`, st.metadataURL)
	if refused.WWWAuthenticate != wantChallenge {
		t.Fatalf("403 challenge %q, want %q", refused.WWWAuthenticate, wantChallenge)
	}

	auths := run.of("authorize")
	if len(auths) != 2 || auths[0].Scope != "mcp:tools" || auths[1].Scope != "mcp:tools repo:admin" || auths[1].Resource != st.resource {
		t.Fatalf("authorization requests: %+v", auths)
	}
	tokens := run.of("tokens")
	if len(tokens) != 2 {
		t.Fatalf("tokens: %+v", tokens)
	}
	assertToken(t, tokens[1], st.resource, "alice", "mcp:tools repo:admin")

	del := run.find("call", func(s clientStep) bool { return s.Tool == "delete_repo" })
	if del == nil || del.Text != "deleted demo" || del.IsError {
		t.Fatalf("delete_repo after step-up: %+v", del)
	}
	if del.Session == "" || del.Session != echo.Session {
		t.Errorf("step-up changed the session: %q then %q", echo.Session, del.Session)
	}
	if who := run.of("whoami"); len(who) != 2 || who[1].Scopes != "mcp:tools repo:admin" || who[1].Authorization {
		t.Errorf("whoami after step-up: %+v", who)
	}

	// The refused call never reached the MCP server; the retried one did,
	// with the stepped-up identity.
	var deletes []serverSeen
	for _, s := range st.serverSeen(t) {
		if s.Authorization || s.Subject != "alice" {
			t.Errorf("the MCP server saw %+v", s)
		}
		if s.Tool == "delete_repo" {
			deletes = append(deletes, s)
		}
	}
	if len(deletes) != 1 || deletes[0].Scopes != "mcp:tools repo:admin" {
		t.Errorf("delete_repo at the MCP server: %+v", deletes)
	}
	if as := st.asStats(t); len(as.Registrations) != 1 || len(as.Authorizations) != 2 {
		t.Errorf("the AS saw %d registrations, %d authorizations", len(as.Registrations), len(as.Authorizations))
	}
}

// mcpsdkStand is one running set: authorization server, MCP server,
// mcp-authz and the front.
type mcpsdkStand struct {
	dir         string // e2e/mcpsdk
	issuer      string
	serverURL   string // the MCP server itself (for /__seen)
	resource    string // the MCP URL through the front, also the resource URI
	metadataURL string // its RFC 9728 metadata through the front
	authz       *authzProc
	logs        map[string]*syncBuffer // by process, for failures

	mu  sync.Mutex
	obs []envoyfront.Exchange
}

var mcpsdkInstall sync.Once

// A front stands between the SDK client and the MCP server and asks
// mcp-authz about each request.
type front int

const (
	// frontEnvoy is internal/envoyfront, Envoy's ext_authz filter as a Go
	// stand-in (no Envoy runs here), over gRPC, with request bodies.
	frontEnvoy front = iota
	// frontCaddy is a real Caddy with deploy/caddy/Caddyfile (/forwarded).
	frontCaddy
	// frontNginx is a real nginx with deploy/nginx/mcp-authz.conf (/nginx).
	frontNginx
)

// startMCPSDKStand starts everything behind frontEnvoy. With operations the
// resource has the per-tool rule for delete_*. An error means mcp-authz
// refused to start; its text includes the service's output.
func startMCPSDKStand(t *testing.T, operations bool) (*mcpsdkStand, error) {
	t.Helper()
	return startMCPSDKStandBehind(t, operations, frontEnvoy)
}

// startMCPSDKStandBehind is startMCPSDKStand behind the given front.
func startMCPSDKStandBehind(t *testing.T, operations bool, fr front) (*mcpsdkStand, error) {
	t.Helper()
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	st := &mcpsdkStand{dir: filepath.Join(root, "e2e", "mcpsdk"), logs: map[string]*syncBuffer{}}
	mcpsdkInstall.Do(func() {
		if _, err := os.Stat(filepath.Join(st.dir, "node_modules", "@modelcontextprotocol", "sdk")); err == nil {
			return
		}
		npm := exec.Command("npm", "ci", "--no-audit", "--no-fund", "--loglevel=error")
		npm.Dir = st.dir
		if out, err := npm.CombinedOutput(); err != nil {
			t.Fatalf("npm ci in %s: %v\n%s", st.dir, err, out)
		}
	})
	t.Cleanup(func() {
		if t.Failed() {
			for name, logs := range st.logs {
				t.Logf("%s output:\n%s", name, logs.String())
			}
		}
	})
	// The two Node.js processes start side by side.
	as, server := st.launchNode(t, "as.mjs"), st.launchNode(t, "server.mjs")
	st.issuer, st.serverURL = as(), server()
	// Registered after the processes, so it runs while they still live:
	// what reached the MCP server, to tell a request lost on the way from
	// an answer lost on the way back.
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		if r, err := http.Get(strings.TrimSuffix(st.serverURL, "/mcp") + "/__seen"); err == nil {
			b, _ := io.ReadAll(r.Body)
			r.Body.Close()
			t.Logf("server.mjs saw: %s", b)
		}
	})

	// The front's address is part of the resource URI, so it comes first.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	base := "http://" + ln.Addr().String()
	st.resource = base + "/mcp"
	st.metadataURL = base + "/.well-known/oauth-protected-resource/mcp"
	fwdAddr, forward := "", ""
	if fr != frontEnvoy {
		// The proxy listens there instead, and asks mcp-authz over HTTP.
		ln.Close()
		fwdAddr = freeAddr(t)
		forward = "forward_addr: " + fwdAddr + "\n"
	}

	cfg := fmt.Sprintf(`log: {level: debug, format: text}
%[3]sidentity_headers: {strip_authorization: true}
resources:
  - name: tools
    resource: %[1]s
    authorization_servers: [%[2]s]
    scopes_supported: [mcp:tools, repo:admin]
    required_scopes: [mcp:tools]
    path_prefix: /mcp
    issuers:
      - issuer: %[2]s
        algorithms: [RS256]
`, st.resource, st.issuer, forward)
	if operations {
		cfg += `    operations:
      - {method: tools/call, name: "delete_*", scopes: [repo:admin]}
`
	}
	cfgPath := filepath.Join(t.TempDir(), "mcp-authz.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	st.authz = startAuthz(t, nil, true, "serve", "--config", cfgPath)
	upstream := strings.TrimSuffix(st.serverURL, "/mcp")
	switch fr {
	case frontCaddy:
		startCaddyOn(t, ln.Addr().String(), "127.0.0.1", fwdAddr, st.authz.httpAddr, strings.TrimPrefix(upstream, "http://"))
		return st, nil
	case frontNginx:
		startNginxOn(t, ln.Addr().String(), fwdAddr, st.authz.httpAddr, strings.TrimPrefix(upstream, "http://"))
		return st, nil
	}
	frontLogs := &syncBuffer{}
	st.logs["envoyfront"] = frontLogs
	f, err := envoyfront.New(envoyfront.Config{
		Client: st.authz.client,
		Routes: []envoyfront.Route{
			// As deploy/envoy/envoy.yaml: the metadata is public, /mcp is checked.
			{Prefix: "/.well-known/oauth-protected-resource", Upstream: "http://" + st.authz.httpAddr, DisableAuthz: true},
			{Prefix: "/mcp", Upstream: upstream, ContextExtensions: map[string]string{"mcp_resource": "tools"}},
		},
		// Envoy's default is 200 ms (deploy: 250 ms); generous here, where
		// the race detector runs on a loaded two-core machine.
		Timeout:         5 * time.Second,
		WithRequestBody: &envoyfront.BodySettings{MaxRequestBytes: 8192, AllowPartialMessage: true},
		Observe: func(ex envoyfront.Exchange) {
			st.mu.Lock()
			st.obs = append(st.obs, ex)
			st.mu.Unlock()
		},
		// Handlers may outlive the test by a moment (an SSE stream ending):
		// no t.Logf from them.
		ErrorLog: func(format string, args ...any) { fmt.Fprintf(frontLogs, format+"\n", args...) },
	})
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: f, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { srv.Close() })
	return st, nil
}

func (st *mcpsdkStand) exchanges() []envoyfront.Exchange {
	st.mu.Lock()
	defer st.mu.Unlock()
	return slices.Clone(st.obs)
}

// readyWriter collects a process's output and reports its "READY <x>" line.
type readyWriter struct {
	logs    *syncBuffer
	mu      sync.Mutex
	partial []byte
	ready   chan string
}

func (w *readyWriter) Write(p []byte) (int, error) {
	_, _ = w.logs.Write(p)
	w.mu.Lock()
	defer w.mu.Unlock()
	w.partial = append(w.partial, p...)
	for {
		i := bytes.IndexByte(w.partial, '\n')
		if i < 0 {
			return len(p), nil
		}
		if v, ok := strings.CutPrefix(string(w.partial[:i]), "READY "); ok {
			select {
			case w.ready <- v:
			default:
			}
		}
		w.partial = w.partial[i+1:]
	}
}

// launchNode runs a script of e2e/mcpsdk on a free port; the function it
// returns waits for the script's READY line and returns what follows it.
func (st *mcpsdkStand) launchNode(t *testing.T, script string) func() string {
	t.Helper()
	logs := &syncBuffer{}
	st.logs[script] = logs
	w := &readyWriter{logs: logs, ready: make(chan string, 1)}
	cmd := exec.Command("node", script, "0")
	cmd.Dir = st.dir
	cmd.Stdout, cmd.Stderr = w, logs
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", script, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
	})
	return func() string {
		t.Helper()
		select {
		case v := <-w.ready:
			return v
		case err := <-exited:
			exited <- err // for the cleanup
			t.Fatalf("%s exited: %v\n%s", script, err, logs.String())
		case <-time.After(30 * time.Second):
			t.Fatalf("%s did not start\n%s", script, logs.String())
		}
		return ""
	}
}

// clientStep is one JSON line of client.mjs (the fields of every step).
type clientStep struct {
	Step string `json:"step"`
	// http
	Method          string `json:"method"`
	URL             string `json:"url"`
	RPC             string `json:"rpc"`
	Bearer          bool   `json:"bearer"`
	Status          int    `json:"status"`
	WWWAuthenticate string `json:"www_authenticate"`
	// http, connected, call
	Session string `json:"session"`
	// authorize, registered, tokens
	Scope               string         `json:"scope"`
	Resource            string         `json:"resource"`
	ClientID            string         `json:"client_id"`
	CodeChallengeMethod string         `json:"code_challenge_method"`
	RefreshToken        bool           `json:"refresh_token"`
	Claims              map[string]any `json:"claims"`
	// tools, call
	Names   []string `json:"names"`
	Tool    string   `json:"tool"`
	Text    string   `json:"text"`
	IsError bool     `json:"is_error"`
	// whoami
	Subject       string `json:"subject"`
	Scopes        string `json:"scopes"`
	Issuer        string `json:"issuer"`
	HasClaims     bool   `json:"has_claims"`
	Authorization bool   `json:"authorization"`
	// error, unauthorized
	Message string `json:"message"`
}

type clientRun struct{ steps []clientStep }

func (r *clientRun) of(step string) []clientStep {
	var out []clientStep
	for _, s := range r.steps {
		if s.Step == step {
			out = append(out, s)
		}
	}
	return out
}

func (r *clientRun) find(step string, match func(clientStep) bool) *clientStep {
	for i, s := range r.steps {
		if s.Step == step && (match == nil || match(s)) {
			return &r.steps[i]
		}
	}
	return nil
}

// runClient runs client.mjs to its end; it must finish with "done".
func (st *mcpsdkStand) runClient(t *testing.T, mode, user string) *clientRun {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "node", "client.mjs", st.resource, "--mode", mode, "--user", user)
	cmd.Dir = st.dir
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	runErr := cmd.Run()
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("client.mjs %s output:\n%s%s", mode, stdout.String(), stderr.String())
		}
	})
	run := &clientRun{}
	for _, line := range strings.Split(strings.TrimSpace(stdout.String()), "\n") {
		var s clientStep
		if err := json.Unmarshal([]byte(line), &s); err != nil {
			t.Fatalf("client printed %q: %v\nstderr:\n%s", line, err, stderr.String())
		}
		run.steps = append(run.steps, s)
	}
	if runErr != nil || len(run.steps) == 0 || run.steps[len(run.steps)-1].Step != "done" {
		t.Fatalf("client.mjs %s did not finish: %v", mode, runErr)
	}
	return run
}

// assertDiscoveredAndRegistered: the SDK fetched the metadata named by the
// challenge through the front, found the AS there, and registered.
func (st *mcpsdkStand) assertDiscoveredAndRegistered(t *testing.T, run *clientRun) {
	t.Helper()
	prm := run.find("http", func(s clientStep) bool { return s.URL == st.metadataURL })
	if prm == nil || prm.Status != 200 {
		t.Fatalf("metadata through the front: %+v", prm)
	}
	if reg := run.find("http", func(s clientStep) bool { return s.Method == "POST" && strings.HasPrefix(s.URL, st.issuer+"/reg") }); reg == nil || reg.Status != 201 {
		t.Fatalf("dynamic registration: %+v", reg)
	}
	if regs := run.of("registered"); len(regs) != 1 || regs[0].ClientID == "" {
		t.Fatalf("registered: %+v", regs)
	}
}

func assertToken(t *testing.T, s clientStep, resource, sub, scope string) {
	t.Helper()
	aud := s.Claims["aud"]
	if list, ok := aud.([]any); ok && len(list) == 1 {
		aud = list[0]
	}
	if aud != resource || s.Claims["sub"] != sub || s.Claims["scope"] != scope || s.Scope != scope {
		t.Fatalf("token: scope %q, claims %v; want aud %s, sub %s, scope %q", s.Scope, s.Claims, resource, sub, scope)
	}
}

type serverSeen struct {
	HTTPMethod    string   `json:"http_method"`
	RPCMethods    []string `json:"rpc_methods"`
	Tool          string   `json:"tool"`
	Session       string   `json:"session"`
	Subject       string   `json:"subject"`
	Scopes        string   `json:"scopes"`
	Authorization bool     `json:"authorization"`
}

func (st *mcpsdkStand) serverSeen(t *testing.T) []serverSeen {
	t.Helper()
	var seen []serverSeen
	getJSON(t, strings.TrimSuffix(st.serverURL, "/mcp")+"/__seen", &seen)
	if len(seen) == 0 {
		t.Fatal("nothing reached the MCP server")
	}
	return seen
}

type asStats struct {
	Registrations []struct {
		ClientID string `json:"client_id"`
		Scope    string `json:"scope"`
	} `json:"registrations"`
	Authorizations []struct {
		User    string            `json:"user"`
		Scope   string            `json:"scope"`
		Granted map[string]string `json:"granted"`
	} `json:"authorizations"`
}

func (st *mcpsdkStand) asStats(t *testing.T) asStats {
	t.Helper()
	var s asStats
	getJSON(t, st.issuer+"/__stats", &s)
	return s
}

func getJSON(t *testing.T, url string, v any) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatalf("%s: %v", url, err)
	}
}
