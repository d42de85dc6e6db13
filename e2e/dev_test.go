package e2e

import (
	"bufio"
	"os/exec"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestDevAndCheckCommands runs the README's first command and its "testing
// your setup" steps: `mcp-authz dev` prints a token, and `mcp-authz check`
// is denied without it and allowed with it.
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
			if strings.HasPrefix(sc.Text(), "eyJ") {
				tokens <- sc.Text()
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
