package config

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/mcp-authz/mcp-authz/metadata"
	"github.com/mcp-authz/mcp-authz/validators"
	"github.com/redis/go-redis/v9"
)

func (c *Config) validate() error {
	for _, a := range []struct{ field, v string }{{"grpc_addr", c.GRPCAddr}, {"http_addr", c.HTTPAddr}} {
		if _, _, err := net.SplitHostPort(a.v); err != nil {
			return c.fieldError(a.field, "%q is not host:port", a.v)
		}
	}
	if _, _, err := net.SplitHostPort(c.ForwardAddr); c.ForwardAddr != "" && err != nil {
		return c.fieldError("forward_addr", "%q is not host:port", c.ForwardAddr)
	}
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		return c.fieldError("log.level", "%q is not one of debug, info, warn, error", c.Log.Level)
	}
	switch c.Log.Format {
	case "json", "text":
	default:
		return c.fieldError("log.format", "%q is not one of json, text", c.Log.Format)
	}
	switch c.Unavailable.Mode {
	case "http", "grpc":
	default:
		return c.fieldError("unavailable.mode", "%q is not one of http, grpc", c.Unavailable.Mode)
	}
	if c.MaxTokenBytes < 256 {
		return c.fieldError("max_token_bytes", "%d is too small (at least 256)", c.MaxTokenBytes)
	}
	if p := c.IdentityHeaders.Prefix; strings.ContainsAny(p, " :\t\r\n") || strings.HasPrefix(p, "x-envoy") {
		return c.fieldError("identity_headers.prefix", "%q is not a usable header name prefix", p)
	}
	if err := c.validateRedis(); err != nil {
		return err
	}
	if err := c.validateTLS("grpc.tls", c.GRPC.TLS); err != nil {
		return err
	}
	if c.HTTPTLS.ClientCAFile != "" {
		return c.fieldError("http_tls.client_ca_file", "not supported: the side server serves public metadata")
	}
	if err := c.validateTLS("http_tls", c.HTTPTLS); err != nil {
		return err
	}
	if err := c.validateAdmin(); err != nil {
		return err
	}
	if len(c.Resources) == 0 {
		return errors.New("resources: no protected resource configured (set OAUTH_RESOURCE and OAUTH_AUTHORIZATION_SERVER, or resources in --config; `mcp-authz dev` runs a self-contained setup)")
	}
	names := map[string]bool{}
	for i := range c.Resources {
		if err := c.validateResource(i); err != nil {
			return err
		}
		n := c.Resources[i].Name
		if names[n] {
			return c.fieldError(fmt.Sprintf("resources[%d].name", i), "%q is used by another resource", n)
		}
		names[n] = true
	}
	return nil
}

func (c *Config) validateResource(i int) error {
	r := &c.Resources[i]
	p := fmt.Sprintf("resources[%d].", i)
	if r.Resource == "" {
		return c.fieldError(p+"resource", "required (the MCP server's canonical URL, e.g. https://mcp.example.com/mcp)")
	}
	u, err := metadata.ParseResource(r.Resource)
	if err != nil {
		return c.fieldError(p+"resource", "%v", err)
	}
	if u.Scheme != "https" && !validators.IsLoopbackHost(u.Hostname()) {
		return c.fieldError(p+"resource", "%q must be an https URL (http only for loopback hosts)", r.Resource)
	}
	if err := c.validatePolicy(i); err != nil {
		return err
	}
	switch r.Validation {
	case "apikey":
		return c.validateAPIKeys(i)
	case "hmac":
		return c.validateHMAC(i)
	}
	if len(r.AuthorizationServers) == 0 {
		return c.fieldError(p+"authorization_servers", "at least one authorization server URL is required")
	}
	for _, as := range r.AuthorizationServers {
		if err := validators.CheckOutboundURL(as); err != nil {
			return c.fieldError(p+"authorization_servers", "%v", err)
		}
	}
	for _, a := range r.Audiences {
		if strings.TrimSpace(a) == "" {
			return c.fieldError(p+"audiences", "empty audience")
		}
	}
	switch r.Validation {
	case "jwt":
	case "introspection", "auto":
		if err := c.validateIntrospection(i); err != nil {
			return err
		}
		if r.Validation == "introspection" {
			return nil // no JWT issuers to check
		}
	default:
		return c.fieldError(p+"validation", "%q is not one of jwt, introspection, auto, apikey, hmac", r.Validation)
	}
	if r.Leeway.D() > 10*time.Minute {
		return c.fieldError(p+"leeway", "%v is more than 10m", r.Leeway.D())
	}
	if len(r.Issuers) == 0 {
		return c.fieldError(p+"issuers", "at least one issuer is required (OAUTH_ISSUER)")
	}
	seen := map[string]bool{}
	for j, is := range r.Issuers {
		ip := fmt.Sprintf("%sissuers[%d].", p, j)
		if is.Issuer == "" {
			return c.fieldError(ip+"issuer", "required")
		}
		if err := validators.CheckOutboundURL(is.Issuer); err != nil {
			return c.fieldError(ip+"issuer", "%v", err)
		}
		if seen[is.Issuer] {
			return c.fieldError(ip+"issuer", "%q is listed twice", is.Issuer)
		}
		seen[is.Issuer] = true
		if is.JWKSURI != "" {
			if err := validators.CheckOutboundURL(is.JWKSURI); err != nil {
				return c.fieldError(ip+"jwks_uri", "%v", err)
			}
		}
		if err := validators.CheckAlgorithms(is.Algorithms); err != nil {
			return c.fieldError(ip+"algorithms", "%v", err)
		}
		if is.JWKSCacheTTL.D() < time.Second {
			return c.fieldError(ip+"jwks_cache_ttl", "%v is shorter than 1s", is.JWKSCacheTTL.D())
		}
		switch is.Preset {
		case "", "auth0", "okta":
		case "cognito":
			if len(is.ClientIDs) == 0 {
				return c.fieldError(ip+"client_ids", "required for a Cognito issuer: its access tokens carry no aud, so list the app client ids whose tokens are accepted (explicit audiences that are client ids, not URLs, are taken as them)")
			}
		case "azure":
			if !azureV2Issuer.MatchString(is.Issuer) {
				return c.fieldError(ip+"issuer", "%q is not an Azure AD v2 issuer (https://login.microsoftonline.com/TENANT/v2.0)", is.Issuer)
			}
		case "azure-v1":
			if !azureV1Issuer.MatchString(is.Issuer) {
				return c.fieldError(ip+"issuer", "%q is not an Azure AD v1 issuer (https://sts.windows.net/TENANT/)", is.Issuer)
			}
		default:
			return c.fieldError(ip+"preset", "%q is not one of auth0, okta, cognito, azure, azure-v1", is.Preset)
		}
	}
	return nil
}

func (c *Config) validateIntrospection(i int) error {
	r := &c.Resources[i]
	list, paths := r.introspections(i)
	if len(list) == 0 {
		// What is missing is this service's credentials: the endpoint is
		// discovered from the issuer.
		if c.envResource {
			return fmt.Errorf("OAUTH_CLIENT_ID, OAUTH_CLIENT_SECRET: required for OAUTH_VALIDATION=%s: introspection authenticates this service to the authorization server (OAUTH_CLIENT_SECRET_FILE may give the secret; OAUTH_INTROSPECTION_ENDPOINT is discovered from the issuer when unset)", r.Validation)
		}
		return c.fieldError(fmt.Sprintf("resources[%d].introspection", i), "required for validation %q: client_id and client_secret (or client_secret_file) of this service; the endpoint is discovered from the issuer when not given", r.Validation)
	}
	for k, in := range list {
		if err := c.validateIntrospectionConfig(paths[k]+".", in); err != nil {
			return err
		}
	}
	return nil
}

func (c *Config) validateIntrospectionConfig(p string, in *IntrospectionConfig) error {
	if in.Endpoint != "" {
		if err := validators.CheckOutboundURL(in.Endpoint); err != nil {
			return c.fieldError(p+"endpoint", "%v", err)
		}
	} else if in.Issuer == "" {
		return c.fieldError(p+"endpoint", "required (or an issuer to discover it from)")
	}
	if in.Issuer != "" {
		if err := validators.CheckOutboundURL(in.Issuer); err != nil {
			return c.fieldError(p+"issuer", "%v", err)
		}
	}
	if in.ClientID == "" {
		return c.fieldError(p+"client_id", "required: introspection authenticates this service to the authorization server")
	}
	switch {
	case in.ClientSecret != "" && in.ClientSecretFile != "":
		return c.fieldError(p+"client_secret_file", "set either client_secret or client_secret_file, not both")
	case in.ClientSecretFile != "":
		var err error
		if in.ClientSecret, err = readSecret(in.ClientSecretFile); err != nil {
			return c.fieldError(p+"client_secret_file", "%v", err)
		}
		if in.ClientSecret == "" {
			return c.fieldError(p+"client_secret_file", "%s is empty", in.ClientSecretFile)
		}
	case in.ClientSecret == "":
		return c.fieldError(p+"client_secret", "required (or client_secret_file)")
	}
	switch in.AuthMethod {
	case "client_secret_basic", "client_secret_post":
	default:
		return c.fieldError(p+"auth_method", "%q is not one of client_secret_basic, client_secret_post", in.AuthMethod)
	}
	if in.Timeout.D() > 10*time.Second {
		return c.fieldError(p+"timeout", "%v is longer than 10s; keep it under Envoy's ext_authz timeout", in.Timeout.D())
	}
	return nil
}

func (c *Config) validateAPIKeys(i int) error {
	r := &c.Resources[i]
	p := fmt.Sprintf("resources[%d].api_keys", i)
	if r.APIKeys == nil {
		return c.fieldError(p, "required for validation apikey (MCP_API_KEYS_FILE)")
	}
	for j, k := range r.APIKeys.Keys {
		kp := fmt.Sprintf("%s.keys[%d]", p, j)
		switch {
		case k.Name == "":
			return c.fieldError(kp+".name", "required")
		case (k.SHA256 == "") == (k.Key == ""):
			return c.fieldError(kp, "set exactly one of sha256 and key")
		case k.SHA256 != "":
			if _, err := validators.ParseAPIKeyDigest(k.SHA256); err != nil {
				return c.fieldError(kp+".sha256", "%v", err)
			}
		}
	}
	if r.APIKeys.File != "" {
		if _, err := apiKeysFromFile(r.APIKeys.File); err != nil {
			return c.fieldError(p+".file", "%v", err)
		}
	} else if len(r.APIKeys.Keys) == 0 {
		return c.fieldError(p, "no keys (keys or file)")
	}
	return nil
}

func apiKeysFromFile(path string) ([]validators.APIKey, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	keys, err := validators.ParseAPIKeyFile(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return keys, nil
}

// LoadAPIKeys returns every configured key as a digest; plaintext keys from
// the file are hashed here and not kept.
func (r *ResourceConfig) LoadAPIKeys() ([]validators.APIKey, error) {
	var keys []validators.APIKey
	for _, k := range r.APIKeys.Keys {
		d := validators.HashAPIKey(k.Key)
		if k.SHA256 != "" {
			var err error
			if d, err = validators.ParseAPIKeyDigest(k.SHA256); err != nil {
				return nil, err
			}
		}
		keys = append(keys, validators.APIKey{Name: k.Name, SHA256: d, Scopes: k.Scopes})
	}
	if r.APIKeys.File != "" {
		more, err := apiKeysFromFile(r.APIKeys.File)
		if err != nil {
			return nil, err
		}
		keys = append(keys, more...)
	}
	return keys, nil
}

func (c *Config) validateHMAC(i int) error {
	r := &c.Resources[i]
	p := fmt.Sprintf("resources[%d].hmac", i)
	h := r.HMAC
	if h == nil {
		return c.fieldError(p, "required for validation hmac (MCP_JWT_SECRET or MCP_JWT_SECRET_FILE)")
	}
	switch {
	case h.Secret != "" && h.SecretFile != "":
		return c.fieldError(p+".secret_file", "set either secret or secret_file, not both")
	case h.SecretFile != "":
		var err error
		if h.Secret, err = readSecret(h.SecretFile); err != nil {
			return c.fieldError(p+".secret_file", "%v", err)
		}
	}
	if len(h.Secret) < 32 {
		return c.fieldError(p+".secret", "must be at least 32 bytes")
	}
	for _, a := range h.Algorithms {
		if a != "HS256" && a != "HS384" && a != "HS512" {
			return c.fieldError(p+".algorithms", "%q is not one of HS256, HS384, HS512", a)
		}
	}
	return nil
}

func (c *Config) validateAdmin() error {
	a := &c.Admin
	if a.Token != "" && a.TokenFile != "" {
		return c.fieldError("admin.token_file", "set either token or token_file, not both")
	}
	if a.TokenFile != "" {
		var err error
		if a.Token, err = readSecret(a.TokenFile); err != nil {
			return c.fieldError("admin.token_file", "%v", err)
		}
		if a.Token == "" {
			return c.fieldError("admin.token_file", "%s is empty", a.TokenFile)
		}
	}
	if a.Token != "" && len(a.Token) < 16 {
		return c.fieldError("admin.token", "must be at least 16 characters")
	}
	return nil
}

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
		if _, err := redis.ParseURL(r.URL); err != nil {
			return c.fieldError("redis.url", "%v", err)
		}
	}
	for _, a := range r.Addresses {
		if _, _, err := net.SplitHostPort(a); err != nil {
			return c.fieldError("redis.addresses", "%q is not host:port", a)
		}
	}
	if r.Password != "" && r.PasswordFile != "" {
		return c.fieldError("redis.password_file", "set either password or password_file, not both")
	}
	if r.PasswordFile != "" {
		var err error
		if r.Password, err = readSecret(r.PasswordFile); err != nil {
			return c.fieldError("redis.password_file", "%v", err)
		}
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
		u, err := redis.ParseURL(r.URL)
		if err != nil {
			return nil, err
		}
		o.Addrs = []string{u.Addr}
		o.Username, o.Password, o.DB, o.TLSConfig = u.Username, u.Password, u.DB, u.TLSConfig
	}
	return o, nil
}

func (c *Config) checkScopes(field string, scopes []string) error {
	for _, s := range scopes {
		if !validators.IsScopeToken(s) {
			return c.fieldError(field, "%q is not a scope token (RFC 6749 §3.3: printable ASCII without spaces, quotes or backslashes)", s)
		}
	}
	return nil
}

// validatePolicy checks the MCP-aware policy of resource i (DESIGN §6).
func (c *Config) validatePolicy(i int) error {
	r := &c.Resources[i]
	p := fmt.Sprintf("resources[%d].", i)
	if err := c.checkScopes(p+"scopes_supported", r.ScopesSupported); err != nil {
		return err
	}
	if err := c.checkScopes(p+"required_scopes", r.RequiredScopes); err != nil {
		return err
	}
	if r.PathPrefix != "" && len(r.PathPrefixes) > 0 {
		return c.fieldError(p+"path_prefixes", "set either path_prefix or path_prefixes, not both")
	}
	for j, pp := range r.Prefixes() {
		field := p + "path_prefix"
		if len(r.PathPrefixes) > 0 {
			field = fmt.Sprintf("%spath_prefixes[%d]", p, j)
		}
		if !strings.HasPrefix(pp, "/") {
			return c.fieldError(field, "%q must start with /", pp)
		}
		if strings.ContainsAny(pp, "?#;\\") {
			return c.fieldError(field, "%q must be a plain path (no query, fragment, ';' or '\\')", pp)
		}
	}
	for k, v := range map[string]string{"sse_path": r.LegacySSE.SSEPath, "messages_path": r.LegacySSE.MessagesPath} {
		if v != "" && (!strings.HasPrefix(v, "/") || strings.ContainsAny(v, "?#;\\")) {
			return c.fieldError(p+"legacy_sse."+k, "%q must be a plain path starting with /", v)
		}
	}
	for j, op := range r.Operations {
		op := op
		f := fmt.Sprintf("%soperations[%d]", p, j)
		if op.Method == "" {
			return c.fieldError(f+".method", "required (a JSON-RPC method such as tools/call)")
		}
		if len(op.Scopes) == 0 {
			return c.fieldError(f+".scopes", "at least one scope is required")
		}
		if err := c.checkScopes(f+".scopes", op.Scopes); err != nil {
			return err
		}
	}
	for k, v := range r.ScopeImplies {
		f := p + "scope_implies." + k
		if !validators.IsScopeToken(k) {
			return c.fieldError(p+"scope_implies", "%q is not a scope token", k)
		}
		if err := c.checkScopes(f, v); err != nil {
			return err
		}
	}
	switch r.UnreadableBody {
	case "deny", "route_scopes":
	default:
		return c.fieldError(p+"unreadable_body", "%q is not one of deny, route_scopes", r.UnreadableBody)
	}
	for _, o := range r.AllowedOrigins {
		if err := checkOrigin(o); err != nil {
			return c.fieldError(p+"allowed_origins", "%v", err)
		}
	}
	if r.SessionTTL.D() < time.Minute {
		return c.fieldError(p+"session_ttl", "%v is shorter than 1m", r.SessionTTL.D())
	}
	return nil
}

// checkOrigin accepts scheme://host[:port] and scheme://host:* (any port).
func checkOrigin(o string) error {
	u, err := url.Parse(strings.TrimSuffix(o, ":*"))
	if err != nil || u.Scheme == "" || u.Host == "" || u.Path != "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return fmt.Errorf("%q is not an origin (scheme://host[:port], or scheme://host:* for any port)", o)
	}
	return nil
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

// validateTLS checks that a TLS section names a loadable certificate and
// key, and a readable CA bundle when it has one.
func (c *Config) validateTLS(p string, t TLSConfig) error {
	switch {
	case t.CertFile == "" && t.KeyFile == "" && t.ClientCAFile == "":
		return nil
	case t.CertFile == "":
		return c.fieldError(p+".cert_file", "required with key_file or client_ca_file")
	case t.KeyFile == "":
		return c.fieldError(p+".key_file", "required with cert_file")
	}
	if _, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile); err != nil {
		return c.fieldError(p+".cert_file", "%v", err)
	}
	if t.ClientCAFile != "" {
		pem, err := os.ReadFile(t.ClientCAFile)
		if err != nil {
			return c.fieldError(p+".client_ca_file", "%v", err)
		}
		if !x509.NewCertPool().AppendCertsFromPEM(pem) {
			return c.fieldError(p+".client_ca_file", "%s holds no PEM certificate", t.ClientCAFile)
		}
	}
	return nil
}
