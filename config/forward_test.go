package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestForwardAddr: the forward-auth listener is off unless configured, by
// MCP_AUTHZ_FORWARD_ADDR or forward_addr, and a bad address names itself.
func TestForwardAddr(t *testing.T) {
	cfg, err := Load("", envFunc(seedEnv()))
	if err != nil || cfg.ForwardAddr != "" {
		t.Fatalf("default: %q %v", cfg.ForwardAddr, err)
	}
	env := seedEnv()
	env["MCP_AUTHZ_FORWARD_ADDR"] = "127.0.0.1:9193"
	if cfg, err = Load("", envFunc(env)); err != nil || cfg.ForwardAddr != "127.0.0.1:9193" {
		t.Fatalf("env: %q %v", cfg.ForwardAddr, err)
	}
	path := filepath.Join(t.TempDir(), "c.yaml")
	if err := os.WriteFile(path, []byte("forward_addr: \":9193\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if cfg, err = Load(path, envFunc(seedEnv())); err != nil || cfg.ForwardAddr != ":9193" {
		t.Fatalf("yaml: %q %v", cfg.ForwardAddr, err)
	}
	env["MCP_AUTHZ_FORWARD_ADDR"] = "9193"
	if _, err = Load("", envFunc(env)); err == nil || !strings.Contains(err.Error(), "MCP_AUTHZ_FORWARD_ADDR") {
		t.Fatalf("bad address: %v", err)
	}
}
