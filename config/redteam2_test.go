package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Red-team attacks on the Redis settings: REDIS_URL and
// MCP_AUTHZ_CACHE_SECRET overriding the file (67c2cef), the Sentinels' own
// password (26c18fe) and a Redis URL that keeps the section's other
// settings (91d9acc). A test that passes documents a defence.

// rtLoad loads yaml (with one resource) under env.
func rtLoad(t *testing.T, yaml string, env map[string]string) (*Config, error) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "c.yaml")
	if err := os.WriteFile(path, []byte(yaml+okResource), 0o600); err != nil {
		t.Fatal(err)
	}
	return Load(path, envFunc(env))
}

// TestRedteamRedisURLErrorsKeepThePassword: a Redis URL that does not
// parse stops start-up (and a reload) with a line naming the field,
// never the password in it, whether the URL comes from REDIS_URL or the
// file, and whatever part of it is wrong (a password with an unescaped
// '/', '?' or '#' spills into the port, path or query).
func TestRedteamRedisURLErrorsKeepThePassword(t *testing.T) {
	const pw = "s3cretPassw0rd"
	secret := strings.Repeat("s", 32)
	for _, u := range []string{
		"redis://:" + pw + "@127.0.0.1:badport",
		"redis://:s3cret/Passw0rd@127.0.0.1:6379",
		"redis://:s3cret?Passw0rd@127.0.0.1:6379",
		"redis://:s3cret#Passw0rd@127.0.0.1:6379",
		"redis://127.0.0.1:6379/0?password=" + pw + "@",
		"redis://user:" + pw + "@ho st:6379",
		"redis://user:" + pw + "@[::1:6379",
		"redis://user:" + pw + "%zz@127.0.0.1:6379",
		"redis://user:" + pw + "@127.0.0.1:6379/x",
		"redis://user:" + pw + "@127.0.0.1:6379?foo=1",
		"redis://user:" + pw + "@127.0.0.1:6379/0/1",
		"rediss://user:" + pw + "\x7f@127.0.0.1:6379",
		"ftp://user:" + pw + "@127.0.0.1",
	} {
		for _, from := range []string{"REDIS_URL", "redis.url"} {
			t.Run(from+" "+u, func(t *testing.T) {
				env := map[string]string{"MCP_AUTHZ_CACHE_SECRET": secret}
				yaml := ""
				if from == "REDIS_URL" {
					env["REDIS_URL"] = u
				} else {
					yaml = "redis: {url: '" + u + "'}\n"
				}
				_, err := rtLoad(t, yaml, env)
				if err == nil {
					t.Fatal("accepted")
				}
				if strings.Contains(err.Error(), pw[:6]) || strings.Contains(err.Error(), pw[len(pw)-6:]) {
					t.Fatalf("the error carries the password: %v", err)
				}
				if !strings.Contains(err.Error(), from) {
					t.Fatalf("the error does not name %s: %v", from, err)
				}
				// UniversalOptions, used past validation, says the same.
				r := &RedisConfig{URL: u}
				if _, err := r.UniversalOptions(); err == nil || strings.Contains(err.Error(), pw[:6]) {
					t.Fatalf("UniversalOptions: %v", err)
				}
			})
		}
	}
}

// TestRedteamRedisURLReplacesSentinelPassword: REDIS_URL replaces the
// file's Sentinels (67c2cef); a file whose Sentinels have their own
// password (26c18fe) must not then stop start-up for a password that
// has no Sentinel left, nor send it anywhere. The data nodes' password
// stays.
func TestRedteamRedisURLReplacesSentinelPassword(t *testing.T) {
	dir := t.TempDir()
	secretFile := filepath.Join(dir, "secrets")
	if err := os.WriteFile(secretFile, []byte(strings.Repeat("f", 32)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	sentinelPwFile := filepath.Join(dir, "sentinel-password")
	if err := os.WriteFile(sentinelPwFile, []byte("sentinel-pw\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	const base = "redis: {addresses: [127.0.0.1:26379], master_name: mymaster, password: pw, verdict_secret_file: "
	for name, own := range map[string]string{
		"sentinel_password":      "sentinel_password: spw",
		"sentinel_password_file": "sentinel_password_file: " + sentinelPwFile,
	} {
		t.Run(name, func(t *testing.T) {
			yaml := base + secretFile + ", " + own + "}\n"
			cfg, err := rtLoad(t, yaml, nil)
			if err != nil {
				t.Fatalf("the file alone: %v", err)
			}
			if o, _ := cfg.Redis.UniversalOptions(); o.SentinelPassword == "" {
				t.Fatal("the file alone lost the Sentinels' password")
			}
			cfg, err = rtLoad(t, yaml, map[string]string{"REDIS_URL": "redis://127.0.0.1:6380"})
			if err != nil {
				t.Fatalf("REDIS_URL over the file's Sentinels: %v", err)
			}
			o, err := cfg.Redis.UniversalOptions()
			if err != nil {
				t.Fatal(err)
			}
			if o.MasterName != "" || o.SentinelPassword != "" || len(o.Addrs) != 1 || o.Password != "pw" {
				t.Fatalf("master %q, sentinel password %q, addresses %v, password %q", o.MasterName, o.SentinelPassword, o.Addrs, o.Password)
			}
		})
	}
}

// TestRedteamRedisEnvCombinations: whatever the file and the environment
// combine, Redis is either refused with a clear line or runs with at
// least one verdict secret of 32 bytes, TLS whenever the file or the URL
// asks for it, the file's password unless the URL gives one, and the URL's
// database when the URL names one (even 0).
func TestRedteamRedisEnvCombinations(t *testing.T) {
	dir := t.TempDir()
	secretFile := filepath.Join(dir, "secrets")
	if err := os.WriteFile(secretFile, []byte(strings.Repeat("f", 32)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	emptyFile := filepath.Join(dir, "empty")
	if err := os.WriteFile(emptyFile, []byte("\n\r\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	envSecret := strings.Repeat("e", 32)
	tests := []struct {
		name     string
		yaml     string
		env      map[string]string
		wantErr  string
		tls      bool
		password string
		db       int
	}{
		{"tls in the file, redis:// URL", "redis: {tls: true, verdict_secret_file: " + secretFile + "}\n",
			map[string]string{"REDIS_URL": "redis://127.0.0.1:6380"}, "", true, "", 0},
		{"rediss:// URL, no tls in the file", "redis: {verdict_secret_file: " + secretFile + "}\n",
			map[string]string{"REDIS_URL": "rediss://127.0.0.1:6380"}, "", true, "", 0},
		{"file's password, URL with a user only", "redis: {password: pw, verdict_secret_file: " + secretFile + "}\n",
			map[string]string{"REDIS_URL": "redis://app@127.0.0.1:6380"}, "", false, "pw", 0},
		{"URL's password wins", "redis: {password: pw, verdict_secret_file: " + secretFile + "}\n",
			map[string]string{"REDIS_URL": "redis://:url-pw@127.0.0.1:6380"}, "", false, "url-pw", 0},
		{"URL names database 0 over the file's 4", "redis: {db: 4, verdict_secret_file: " + secretFile + "}\n",
			map[string]string{"REDIS_URL": "redis://127.0.0.1:6380/0"}, "", false, "", 0},
		{"URL's db=0 query over the file's 4", "redis: {db: 4, verdict_secret_file: " + secretFile + "}\n",
			map[string]string{"REDIS_URL": "redis://127.0.0.1:6380?db=0"}, "", false, "", 0},
		{"URL without a database keeps the file's", "redis: {db: 4, verdict_secret_file: " + secretFile + "}\n",
			map[string]string{"REDIS_URL": "redis://127.0.0.1:6380"}, "", false, "", 4},
		{"secret variable of spaces replaces the file", "redis: {url: 'redis://127.0.0.1:6380', verdict_secret_file: " + secretFile + "}\n",
			map[string]string{"MCP_AUTHZ_CACHE_SECRET": "   "}, "MCP_AUTHZ_CACHE_SECRET: secret 1 of", false, "", 0},
		{"secret variable of commas", "redis: {url: 'redis://127.0.0.1:6380'}\n",
			map[string]string{"MCP_AUTHZ_CACHE_SECRET": ",,"}, "MCP_AUTHZ_CACHE_SECRET: secret 1 of", false, "", 0},
		{"secret file of blank lines", "redis: {url: 'redis://127.0.0.1:6380'}\n",
			map[string]string{"MCP_AUTHZ_CACHE_SECRET_FILE": emptyFile}, "holds no secret", false, "", 0},
		{"REDIS_URL with a redis section and no secret", "redis: {prefix: p}\n",
			map[string]string{"REDIS_URL": "redis://127.0.0.1:6380"}, "required with Redis", false, "", 0},
		{"REDIS_URL, secret only in the file's section", "redis: {verdict_secret_file: " + secretFile + "}\n",
			map[string]string{"REDIS_URL": "redis://127.0.0.1:6380"}, "", false, "", 0},
		{"environment secret over the file's", "redis: {url: 'redis://127.0.0.1:6380', verdict_secret_file: " + secretFile + "}\n",
			map[string]string{"MCP_AUTHZ_CACHE_SECRET": envSecret}, "", false, "", 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := rtLoad(t, tc.yaml, tc.env)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want %q", err, tc.wantErr)
				}
				if strings.Contains(err.Error(), "fffff") || strings.Contains(err.Error(), "eeeee") {
					t.Fatalf("the error carries a secret: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			r := cfg.Redis
			if len(r.Secrets) == 0 {
				t.Fatal("Redis without a verdict secret")
			}
			for _, s := range r.Secrets {
				if len(s) < minVerdictSecret {
					t.Fatalf("a %d-byte secret", len(s))
				}
			}
			o, err := r.UniversalOptions()
			if err != nil {
				t.Fatal(err)
			}
			if (o.TLSConfig != nil) != tc.tls || o.Password != tc.password || o.DB != tc.db {
				t.Fatalf("tls %v password %q db %d; want %v %q %d", o.TLSConfig != nil, o.Password, o.DB, tc.tls, tc.password, tc.db)
			}
			if o.MasterName != "" || o.SentinelPassword != "" || len(o.Addrs) != 1 {
				t.Fatalf("REDIS_URL kept Sentinel settings: master %q, sentinel password %q, addresses %v", o.MasterName, o.SentinelPassword, o.Addrs)
			}
		})
	}
}
