package e2e

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"google.golang.org/protobuf/proto"

	"github.com/mcp-authz/mcp-authz/internal/redistest"
	cachev1 "github.com/mcp-authz/mcp-authz/proto/mcpauthz/cache/v1"
)

// TestRedisContentsAreUntrusted plays an attacker who can write to the
// shared Redis but does not hold the fleet's verdict secret (DESIGN §7):
// a verdict forged for any token, a real user's verdict overwritten with a
// denial, or one copied under another token's key decide nothing.
func TestRedisContentsAreUntrusted(t *testing.T) {
	rs := redistest.Start(t)
	proxy, calls := countingProxy(t)
	env := introspectionEnv(proxy)
	env["REDIS_URL"] = rs.URL()
	env["MCP_AUTHZ_CACHE_SECRET"] = testCacheSecret
	env["OAUTH_INTROSPECTION_CACHE_TTL"] = "5m"
	// A short in-process tier, so that checks below read Redis again.
	cfg := writeConfig(t, "redis: {timeout: 250ms, backoff: 200ms, l1_ttl: 1ms}\n")
	p := startAuthz(t, env, true, "serve", "--config", cfg)

	user := token(t, "rs-client", "mcp:read", opaqueResource)
	if ok, www := allowed(t, p, user); !ok {
		t.Fatalf("user denied: %s", www)
	}
	client := redis.NewClient(&redis.Options{Addr: rs.Addr})
	defer client.Close()
	ctx := context.Background()
	keys, err := client.Keys(ctx, "mcp-authz:v3:*").Result()
	if err != nil || len(keys) != 1 {
		t.Fatalf("keys %v %v", keys, err)
	}
	userKey := keys[0]
	policy := strings.Split(userKey, ":")[2] // the fingerprint is not a secret: it is in every key
	keyFor := func(tok string) string {
		sum := sha256.Sum256([]byte(tok))
		return "mcp-authz:v3:" + policy + ":" + hex.EncodeToString(sum[:])
	}
	verdict := func(active bool, subject string) []byte {
		b, err := proto.Marshal(&cachev1.Verdict{
			SchemaVersion: 3, Active: active, Subject: subject, Issuer: issuer, Scopes: []string{"mcp:read", "mcp:admin"},
			ExpiresAt: time.Now().Add(time.Hour).Unix(), CachedUntilMs: time.Now().Add(4 * time.Minute).UnixMilli(),
			ErrorDescription: "Token is not active",
		})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	// A MAC under a guessed secret, in the stored layout (MAC || message).
	withMAC := func(secret string, key string, msg []byte) []byte {
		m := hmac.New(sha256.New, []byte(secret))
		m.Write([]byte(key))
		m.Write(msg)
		return append(m.Sum(nil), msg...)
	}
	attacker := "attacker-chosen-token"

	for _, tc := range []struct {
		name  string
		key   string
		value []byte
	}{
		{"allow for any token, no MAC", keyFor(attacker), verdict(true, "admin")},
		{"allow for any token, MAC under a guessed secret", keyFor(attacker), withMAC("guess-guess-guess-guess-guess-guess", keyFor(attacker), verdict(true, "admin"))},
		{"allow for any token, 32 zero bytes as MAC", keyFor(attacker), append(make([]byte, 32), verdict(true, "admin")...)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := client.Set(ctx, tc.key, tc.value, time.Hour).Err(); err != nil {
				t.Fatal(err)
			}
			if ok, _ := allowed(t, p, attacker); ok {
				t.Fatal("a forged verdict allowed an attacker-chosen token")
			}
		})
	}

	t.Run("a real user's verdict overwritten with a denial", func(t *testing.T) {
		if err := client.Set(ctx, userKey, verdict(false, ""), 0).Err(); err != nil { // no TTL either
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond) // past the 1 ms in-process copy
		before := calls.Load()
		if ok, www := allowed(t, p, user); !ok {
			t.Fatalf("the forged denial locked the user out: %s", www)
		}
		if calls.Load() != before+1 {
			t.Fatalf("introspection calls %d -> %d: the forged value was not treated as a miss", before, calls.Load())
		}
		// The verdict is written back in the background, after the allow.
		for deadline := time.Now().Add(2 * time.Second); ; time.Sleep(10 * time.Millisecond) {
			ttl := client.PTTL(ctx, userKey).Val()
			if ttl > 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("the rewritten verdict has no TTL (%v)", ttl)
			}
		}
	})

	t.Run("the user's valid verdict copied under another token's key", func(t *testing.T) {
		good, err := client.Get(ctx, userKey).Bytes()
		if err != nil {
			t.Fatal(err)
		}
		if err := client.Set(ctx, keyFor(attacker), good, time.Hour).Err(); err != nil {
			t.Fatal(err)
		}
		if ok, _ := allowed(t, p, attacker); ok {
			t.Fatal("a verdict copied to another key allowed its token")
		}
	})

	if !strings.Contains(p.logs.String(), "integrity check") {
		t.Errorf("integrity failures not logged:\n%s", p.logs.String())
	}
	if strings.Contains(p.logs.String(), attacker) || strings.Contains(p.logs.String(), user) {
		t.Error("a token reached the logs")
	}
}
