package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"flag"
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
	fs := flag.NewFlagSet("purge", flag.ContinueOnError)
	fs.SetOutput(stderr)
	configPath := fs.String("config", "", "YAML configuration file (its redis section; REDIS_URL overrides it)")
	tokenFile := fs.String("token-file", "", "file holding the token to purge (read, hashed, never printed)")
	digest := fs.String("sha256", "", "hex SHA-256 of the token to purge")
	if err := fs.Parse(args); err != nil {
		return 2
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
