package config

import (
	"context"
	"crypto/x509"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/mcp-authz/mcp-authz/internal/redistest"
)

// TestRedisSettingsReachTheServer: the redis settings, as an operator
// writes them, connect to a real redis-server that requires a password:
// standalone by REDIS_URL with the password in password_file, and
// through Sentinel (addresses + master_name) (DESIGN §4: go-redis
// UniversalClient, standalone, Sentinel, Cluster, TLS and password).
func TestRedisSettingsReachTheServer(t *testing.T) {
	const password = "redis-pa55word"
	master := redistest.StartWith(t, "--requirepass", password)
	sentinel := redistest.StartSentinel(t, master, "mymaster", password)
	const sentinelPassword = "sentinel-pa55word"
	lockedSentinel := redistest.StartSentinelAuth(t, master, "mymaster", password, sentinelPassword)
	dir := t.TempDir()
	pwFile := filepath.Join(dir, "redis-password")
	if err := os.WriteFile(pwFile, []byte(password+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	sentinelPwFile := filepath.Join(dir, "sentinel-password")
	if err := os.WriteFile(sentinelPwFile, []byte(sentinelPassword+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		redisURL string
		yaml     string
		wantErr  string // "" when the client must work
	}{
		{"REDIS_URL with password_file", "redis://" + master.Addr + "/0", "redis: {password_file: " + pwFile + "}\n", ""},
		{"REDIS_URL with the password in it", "redis://:" + password + "@" + master.Addr + "/0", "", ""},
		{"redis.url with password", "", "redis: {url: redis://" + master.Addr + "/1, password: " + password + "}\n", ""},
		{"Sentinel with password_file", "", "redis: {addresses: [" + sentinel + "], master_name: mymaster, password_file: " + pwFile + "}\n", ""},
		{"no password", "redis://" + master.Addr + "/0", "", "NOAUTH"},
		{"Sentinel with its own password", "", "redis: {addresses: [" + lockedSentinel + "], master_name: mymaster, password_file: " + pwFile +
			", sentinel_password_file: " + sentinelPwFile + "}\n", ""},
		{"Sentinel with its own password inline", "", "redis: {addresses: [" + lockedSentinel + "], master_name: mymaster, password: " + password +
			", sentinel_password: " + sentinelPassword + "}\n", ""},
		// Without it the Sentinel answers nothing, so no master is found.
		{"Sentinel without its password", "", "redis: {addresses: [" + lockedSentinel + "], master_name: mymaster, password_file: " + pwFile + "}\n", "redis: all sentinels"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			client := clientFor(t, tc.redisURL, tc.yaml)
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			err := client.Set(ctx, "k", "v", time.Minute).Err()
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want %s", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if v, err := client.Get(ctx, "k").Result(); err != nil || v != "v" {
				t.Fatalf("get: %q %v", v, err)
			}
		})
	}
}

// TestRedisTLSIsSpoken: rediss://, and tls: true beside a redis:// URL or
// with addresses, make the client speak TLS to a TLS-only redis-server:
// its self-signed certificate is refused by the client's verification
// (which a plain-text client would never get to), never skipped.
func TestRedisTLSIsSpoken(t *testing.T) {
	cert, key := selfSigned(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tlsAddr := ln.Addr().String()
	ln.Close()
	_, tlsPort, _ := net.SplitHostPort(tlsAddr)
	redistest.StartWith(t, "--tls-port", tlsPort, "--tls-cert-file", cert, "--tls-key-file", key, "--tls-ca-cert-file", cert, "--tls-auth-clients", "no")
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if c, err := net.Dial("tcp", tlsAddr); err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the TLS port never opened")
		}
	}
	for _, tc := range []struct{ name, redisURL, yaml string }{
		{"rediss://", "rediss://" + tlsAddr + "/0", ""},
		{"redis:// with tls: true", "redis://" + tlsAddr + "/0", "redis: {tls: true}\n"},
		{"addresses with tls: true", "", "redis: {addresses: [" + tlsAddr + "], tls: true}\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			client := clientFor(t, tc.redisURL, tc.yaml)
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			err := client.Ping(ctx).Err()
			var unknown x509.UnknownAuthorityError
			if !errors.As(err, &unknown) {
				t.Fatalf("ping: %v, want the server's certificate refused (TLS spoken and verified)", err)
			}
		})
	}
}

// clientFor loads a configuration of the Redis section yaml (and one
// resource) with REDIS_URL set to redisURL when not empty, and returns the
// go-redis client its options build; it is closed when the test ends.
func clientFor(t *testing.T, redisURL, yaml string) redis.UniversalClient {
	t.Helper()
	path := filepath.Join(t.TempDir(), "c.yaml")
	if err := os.WriteFile(path, []byte(yaml+"resources: [{resource: https://m.example/mcp, authorization_servers: [https://as.example]}]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"MCP_AUTHZ_CACHE_SECRET": strings.Repeat("s", 32)}
	if redisURL != "" {
		env["REDIS_URL"] = redisURL
	}
	cfg, err := Load(path, envFunc(env))
	if err != nil {
		t.Fatal(err)
	}
	o, err := cfg.Redis.UniversalOptions()
	if err != nil {
		t.Fatal(err)
	}
	client := redis.NewUniversalClient(o)
	t.Cleanup(func() { client.Close() })
	return client
}
