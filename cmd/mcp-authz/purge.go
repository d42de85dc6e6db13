package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/mcp-authz/mcp-authz/cache"
	"github.com/mcp-authz/mcp-authz/config"
	"github.com/mcp-authz/mcp-authz/validators"
)

// purgeCmd removes a token's verdicts from Redis and tells every replica
// to drop its in-process copy: the revocation path when a token must stop
// working before its cache TTL.
func purgeCmd(args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	c := command{name: "purge", usage: "mcp-authz purge (--token-file FILE | --sha256 HEX) [--config FILE]",
		about: "Drops a token's cached verdicts fleet-wide, for a token that must stop working before its " +
			"cache TTL: deletes them from Redis under every policy and publishes an invalidation, so every " +
			"replica drops its in-process copy within a second. The token is read from a file (never from " +
			"the command line, where ps would show it), hashed, and not printed; --sha256 takes the digest " +
			"instead (printf %s \"$TOKEN\" | sha256sum). Redis is the redis section of --config, overridden " +
			"by the environment; the verdict secret is required, as for serve. The side server's " +
			"POST /admin/purge does the same over HTTP.",
		env: []string{
			"REDIS_URL                     redis://[user:password@]host:port/db, rediss:// for TLS",
			"MCP_AUTHZ_CACHE_SECRET        the fleet's verdict secrets, comma-separated",
			"MCP_AUTHZ_CACHE_SECRET_FILE   or a file of them, one per line",
		}}
	fs := c.flagSet()
	configPath := fs.String("config", "", "YAML configuration `FILE` (its redis section; the environment overrides it)")
	tokenFile := fs.String("token-file", "", "`file` holding the token to purge (read, hashed, never printed)")
	digest := fs.String("sha256", "", "`hex` SHA-256 of the token to purge")
	if _, code, done := c.parse(fs, args, 0, stdout, stderr); done {
		return code
	}
	var sum [sha256.Size]byte
	switch {
	case (*tokenFile == "") == (*digest == ""):
		fmt.Fprintln(stderr, "mcp-authz purge: give exactly one of --token-file and --sha256")
		return 2
	case *tokenFile != "":
		b, err := os.ReadFile(*tokenFile)
		if err != nil {
			fmt.Fprintf(stderr, "mcp-authz purge: --token-file: %v\n", err)
			return 2
		}
		tok := strings.TrimSpace(string(b))
		tok = strings.TrimSpace(strings.TrimPrefix(tok, "Bearer "))
		sum = cache.HashToken(tok)
	default:
		d, err := validators.ParseAPIKeyDigest(*digest)
		if err != nil {
			fmt.Fprintf(stderr, "mcp-authz purge: --sha256: %v\n", err)
			return 2
		}
		sum = d
	}
	rc, err := config.LoadRedis(*configPath, getenv)
	if err != nil {
		fmt.Fprintf(stderr, "mcp-authz purge: config: %v\n", err)
		return 2
	}
	opts, err := rc.UniversalOptions()
	if err != nil {
		fmt.Fprintf(stderr, "mcp-authz purge: redis: %v\n", err)
		return 2
	}
	client := redis.NewUniversalClient(opts)
	defer client.Close()
	store, err := cache.NewRedis(cache.RedisOptions{Client: client, Prefix: rc.Prefix, Secrets: rc.Secrets, Logger: slog.New(slog.NewTextHandler(stderr, nil))})
	if err != nil {
		fmt.Fprintf(stderr, "mcp-authz purge: %v\n", err)
		return 1
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	n, err := store.Purge(ctx, sum)
	if err != nil {
		fmt.Fprintf(stderr, "mcp-authz purge: %v\n", err)
		return 1
	}
	fmt.Fprintf(stdout, "purged token sha256:%s: %d Redis keys deleted, every replica notified\n", hex.EncodeToString(sum[:]), n)
	return 0
}
