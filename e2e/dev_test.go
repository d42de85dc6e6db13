package e2e

import (
	"bufio"
	"encoding/json"
	"net/http"
	"os/exec"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestDevAndCheckCommands runs the README's first command and its "testing
// your setup" steps: `mcp-authz dev` prints a token (as export TOKEN=...),
// and `mcp-authz check` is denied without it and allowed with it.
func TestDevAndCheckCommands(t *testing.T) {
	grpcAddr, httpAddr := freeAddr(t), freeAddr(t)
	dev := exec.Command(binary, "dev", "--grpc-addr", grpcAddr, "--http-addr", httpAddr)
	out, err := dev.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := dev.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = dev.Process.Signal(syscall.SIGTERM); _ = dev.Wait() }()

	tokens := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 64<<10), 64<<10)
		for sc.Scan() {
			if tok, ok := strings.CutPrefix(sc.Text(), "export TOKEN="); ok {
				tokens <- tok
			}
		}
	}()
	var token string
	select {
	case token = <-tokens:
	case <-time.After(15 * time.Second):
		t.Fatal("mcp-authz dev printed no token")
	}

	url := "http://" + httpAddr + "/mcp"
	check := func(args ...string) (string, int) {
		t.Helper()
		cmd := exec.Command(binary, append([]string{"check", "--addr", grpcAddr, url}, args...)...)
		b, err := cmd.CombinedOutput()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		return string(b), code
	}
	// The service may still be loading the dev issuer's JWKS.
	var got string
	var code int
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if got, code = check("-H", "Authorization: Bearer "+token); code == 0 {
			break
		}
	}
	if code != 0 || !strings.Contains(got, "decision: ALLOWED") || !strings.Contains(got, "x-mcp-auth-subject: dev-user") {
		t.Fatalf("with the printed token (exit %d):\n%s", code, got)
	}
	got, code = check()
	want := regexp.MustCompile(`(?m)^www-authenticate: Bearer resource_metadata="http://` + regexp.QuoteMeta(httpAddr) + `/.well-known/oauth-protected-resource/mcp", scope="mcp:read"$`)
	if code != 1 || !strings.Contains(got, "status: 401") || !want.MatchString(got) {
		t.Fatalf("without a token (exit %d):\n%s", code, got)
	}
	got, code = check("-H", "Authorization: Bearer "+token+"x")
	if code != 1 || !strings.Contains(got, `error="invalid_token"`) {
		t.Fatalf("with a damaged token (exit %d):\n%s", code, got)
	}
}

// TestDevOnFreePorts: `dev` with port 0 builds its resource (and so the
// metadata URL and the token audience) with the port it bound, and its
// resource answers to the context extension envoy.yaml sends.
func TestDevOnFreePorts(t *testing.T) {
	dev := exec.Command(binary, "dev", "--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0")
	out, err := dev.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := dev.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = dev.Process.Signal(syscall.SIGTERM); _ = dev.Wait() }()
	type printed struct{ grpc, metadata, token string }
	got := make(chan printed, 1)
	go func() {
		var p printed
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 64<<10), 64<<10)
		for sc.Scan() {
			f := strings.Fields(sc.Text())
			switch {
			case len(f) >= 3 && f[0] == "ext_authz":
				p.grpc = f[2]
			case len(f) >= 3 && f[0] == "resource" && f[1] == "metadata":
				p.metadata = f[2]
			case len(f) == 2 && f[0] == "export":
				p.token = strings.TrimPrefix(f[1], "TOKEN=")
				got <- p
				return
			}
		}
	}()
	var p printed
	select {
	case p = <-got:
	case <-time.After(15 * time.Second):
		t.Fatal("mcp-authz dev printed no token")
	}
	if strings.HasSuffix(p.grpc, ":0") || !strings.HasPrefix(p.metadata, "http://127.0.0.1:") || strings.Contains(p.metadata, ":0/") {
		t.Fatalf("addresses with port 0: %+v", p)
	}
	resp, err := http.Get(p.metadata)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var doc struct {
		Resource string `json:"resource"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&doc); err != nil {
		t.Fatal(err)
	}
	host := strings.TrimPrefix(strings.SplitN(p.metadata, "/.well-known/", 2)[0], "http://")
	if doc.Resource != "http://"+host+"/mcp" {
		t.Fatalf("resource %q, metadata at %s", doc.Resource, p.metadata)
	}
	var b []byte
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		cmd := exec.Command(binary, "check", "--addr", p.grpc, "--context-extension", "mcp_resource=tools", doc.Resource, "-H", "Authorization: Bearer "+p.token)
		if b, err = cmd.CombinedOutput(); err == nil {
			break
		}
	}
	if err != nil || !strings.Contains(string(b), "decision: ALLOWED") {
		t.Fatalf("check with mcp_resource=tools: %v\n%s", err, b)
	}
}
