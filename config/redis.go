package config

import (
	"crypto/tls"
	"errors"
	"net"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// LoadRedis reads only what the purge command needs: the Redis
// settings from the file and REDIS_URL.
func LoadRedis(path string, getenv func(string) string) (*RedisConfig, error) {
	cfg, err := readConfigFile(path)
	if err != nil {
		return nil, err
	}
	envReader{getenv: getenv, origin: cfg.origin}.redis(cfg)
	if cfg.Redis == nil {
		return nil, errors.New("redis: not configured (set REDIS_URL or redis in --config)")
	}
	cfg.applyDefaults()
	if err := cfg.validateRedis(); err != nil {
		return nil, err
	}
	return cfg.Redis, nil
}

func (c *Config) validateRedis() error {
	r := c.Redis
	if r == nil {
		return nil
	}
	switch {
	case r.URL != "" && len(r.Addresses) > 0:
		return c.fieldError("redis.addresses", "set either url or addresses, not both")
	case r.URL == "" && len(r.Addresses) == 0:
		return c.fieldError("redis.url", "required (redis://host:port/db), or addresses for Sentinel/Cluster")
	case r.URL != "":
		if _, err := parseRedisURL(r.URL); err != nil {
			return c.fieldError("redis.url", "%v", err)
		}
	}
	for _, a := range r.Addresses {
		if _, _, err := net.SplitHostPort(a); err != nil {
			return c.fieldError("redis.addresses", "%q is not host:port", a)
		}
	}
	if err := c.secretOf(&r.Password, r.PasswordFile, "redis.password_file"); err != nil {
		return err
	}
	if err := c.secretOf(&r.SentinelPassword, r.SentinelPasswordFile, "redis.sentinel_password_file"); err != nil {
		return err
	}
	if (r.SentinelPassword != "" || r.SentinelPasswordFile != "") && r.MasterName == "" {
		return c.fieldError("redis.sentinel_password", "only for Sentinel: set master_name and the Sentinels' addresses")
	}
	if err := c.verdictSecrets(); err != nil {
		return err
	}
	if r.Timeout.D() > time.Second {
		return c.fieldError("redis.timeout", "%v is more than 1s; a cache is never worth waiting for", r.Timeout.D())
	}
	if strings.ContainsAny(r.Prefix, " :") {
		return c.fieldError("redis.prefix", "%q must not contain spaces or colons", r.Prefix)
	}
	return nil
}

// UniversalOptions builds the go-redis options for r.
func (r *RedisConfig) UniversalOptions() (*redis.UniversalOptions, error) {
	o := &redis.UniversalOptions{
		Addrs:      r.Addresses,
		MasterName: r.MasterName,
		Username:   r.Username,
		Password:   r.Password,
		DB:         r.DB,
		// The Sentinels' own password; go-redis uses it for them alone.
		SentinelPassword: r.SentinelPassword,
		// Calls are bounded by the cache timeout through their context;
		// a retry would only exceed it.
		ContextTimeoutEnabled: true,
		MaxRetries:            -1,
		DialTimeout:           time.Second,
	}
	if r.TLS {
		o.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	if r.URL != "" {
		u, err := parseRedisURL(r.URL)
		if err != nil {
			return nil, err
		}
		o.Addrs = []string{u.Addr}
		// What the URL gives wins; what it leaves out (a password from
		// password_file, tls, username, db) still comes from the section.
		if u.Username != "" {
			o.Username = u.Username
		}
		if u.Password != "" {
			o.Password = u.Password
		}
		if u.DB != 0 || urlNamesDB(r.URL) {
			o.DB = u.DB // even 0, when the URL says so
		}
		if u.TLSConfig != nil {
			o.TLSConfig = u.TLSConfig
		}
	}
	return o, nil
}

// urlNamesDB reports whether a Redis URL that parses names its database,
// by its path (redis://host/0) or a db query parameter, as go-redis reads
// them.
func urlNamesDB(s string) bool {
	u, err := url.Parse(s)
	return err == nil && (strings.Trim(u.Path, "/") != "" || u.Query().Has("db"))
}

// parseRedisURL is redis.ParseURL with errors that never quote a URL
// holding credentials: net/url's errors quote the whole URL, and go-redis's
// quote its path and query, where a password with an unescaped '/', '?'
// or '#' ends up.
func parseRedisURL(s string) (*redis.Options, error) {
	o, err := redis.ParseURL(s)
	if err != nil && strings.Contains(s, "@") {
		return nil, errors.New("not a valid Redis URL (redis[s]://[user:password@]host[:port][/db], with '@', ':', '/', '?', '#' and '%' percent-encoded in the user and password); the URL holds credentials, so it is not quoted")
	}
	return o, err
}

// minVerdictSecret is the shortest verdict secret accepted: HMAC-SHA256
// keys shorter than the hash add no strength and are guessable.
const minVerdictSecret = 32

// verdictSecrets resolves the Redis verdict secrets: MCP_AUTHZ_CACHE_SECRET
// (comma-separated, each as given), or one per line of the secret file.
func (c *Config) verdictSecrets() error {
	r := c.Redis
	var list []string
	field := "redis.verdict_secret_file"
	switch {
	case r.envSecrets != "" && r.VerdictSecretFile != "":
		return c.fieldError("redis.verdict_secret", "set either MCP_AUTHZ_CACHE_SECRET or a secret file (MCP_AUTHZ_CACHE_SECRET_FILE, redis.verdict_secret_file), not both")
	case r.envSecrets != "":
		list, field = strings.Split(r.envSecrets, ","), "redis.verdict_secret"
	case r.VerdictSecretFile != "":
		b, err := os.ReadFile(r.VerdictSecretFile)
		if err != nil {
			return c.fieldError(field, "%v", err)
		}
		for _, line := range strings.Split(string(b), "\n") {
			if line = strings.TrimRight(line, "\r"); line != "" {
				list = append(list, line)
			}
		}
		if len(list) == 0 {
			return c.fieldError(field, "%s holds no secret", r.VerdictSecretFile)
		}
	case len(r.Secrets) > 0:
		return nil // given in code (dev)
	default:
		return c.fieldError("redis.verdict_secret_file", "required with Redis: Redis is shared, so verdicts read from it are trusted only with an HMAC under the fleet's secret (MCP_AUTHZ_CACHE_SECRET, or MCP_AUTHZ_CACHE_SECRET_FILE with one secret of at least %d bytes per line)", minVerdictSecret)
	}
	r.Secrets = r.Secrets[:0]
	for i, sec := range list {
		if len(sec) < minVerdictSecret {
			return c.fieldError(field, "secret %d of %d is %d bytes; each must be at least %d", i+1, len(list), len(sec), minVerdictSecret)
		}
		r.Secrets = append(r.Secrets, []byte(sec))
	}
	return nil
}
