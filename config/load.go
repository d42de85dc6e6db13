package config

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"
)

// readConfigFile decodes the optional YAML file, rejecting unknown fields
// and naming the field and line of anything it cannot take.
func readConfigFile(path string) (*Config, error) {
	cfg := &Config{origin: map[string]string{}}
	if path == "" {
		return cfg, nil
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("--config: %w", err)
	}
	if err := decodeYAML(path, raw, cfg); err != nil {
		return nil, err
	}
	return cfg, nil
}

// Load reads the optional YAML file, overlays the environment, applies
// defaults and validates. Errors are one line naming the field.
func Load(path string, getenv func(string) string) (*Config, error) {
	cfg, err := readConfigFile(path)
	if err != nil {
		return nil, err
	}
	if err := cfg.applyEnv(getenv); err != nil {
		return nil, err
	}
	cfg.applyDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	return cfg, nil
}

// EnvironmentVariables lists, sorted, the variables Load reads.
func EnvironmentVariables() []string {
	seen := map[string]bool{}
	c := &Config{origin: map[string]string{}}
	// Every variable is looked at, if only to see that it is unset.
	_ = c.applyEnv(func(name string) string { seen[name] = true; return "" })
	names := make([]string, 0, len(seen))
	for n := range seen {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

// envFields names the environment variable of each single-resource field,
// for errors about fields the environment configures but left unset.
var envFields = map[string]string{
	"resources[0].resource":                         "OAUTH_RESOURCE",
	"resources[0].authorization_servers":            "OAUTH_AUTHORIZATION_SERVER",
	"resources[0].audiences":                        "OAUTH_AUDIENCE",
	"resources[0].scopes_supported":                 "OAUTH_SCOPES_SUPPORTED",
	"resources[0].required_scopes":                  "OAUTH_REQUIRED_SCOPES",
	"resources[0].endpoints.initialize":             "OAUTH_PROTECT_INITIALIZE",
	"resources[0].endpoints.messages":               "OAUTH_PROTECT_MESSAGES",
	"resources[0].allowed_origins":                  "MCP_AUTHZ_ALLOWED_ORIGINS",
	"resources[0].validation":                       "OAUTH_VALIDATION",
	"resources[0].issuers":                          "OAUTH_ISSUER",
	"resources[0].issuers[0].issuer":                "OAUTH_ISSUER",
	"resources[0].issuers[0].jwks_uri":              "OAUTH_JWKS_URI",
	"resources[0].issuers[0].algorithms":            "OAUTH_ALGORITHMS",
	"resources[0].issuers[0].preset":                "OAUTH_PROVIDER",
	"resources[0].issuers[0].client_ids":            "OAUTH_ALLOWED_CLIENT_IDS",
	"resources[0].introspection":                    "OAUTH_INTROSPECTION_ENDPOINT",
	"resources[0].introspection.endpoint":           "OAUTH_INTROSPECTION_ENDPOINT",
	"resources[0].introspection.client_id":          "OAUTH_CLIENT_ID",
	"resources[0].introspection.client_secret":      "OAUTH_CLIENT_SECRET",
	"resources[0].introspection.client_secret_file": "OAUTH_CLIENT_SECRET_FILE",
	"resources[0].api_keys.file":                    "MCP_API_KEYS_FILE",
	"resources[0].hmac.secret":                      "MCP_JWT_SECRET",
	"resources[0].hmac.secret_file":                 "MCP_JWT_SECRET_FILE",
}

// fieldError names a field by its environment variable when it came from
// one, or when the environment configures the resource it belongs to.
func (c *Config) fieldError(field, format string, args ...any) error {
	name := field
	if env, ok := c.origin[field]; ok {
		name = env
	} else if env, ok := envFields[field]; ok && c.envResource {
		name = env
	}
	return fmt.Errorf("%s: %s", name, fmt.Sprintf(format, args...))
}

// serviceEnv names the variable of each service-level field, for errors
// about a field that was left at its default.
var serviceEnv = map[string]string{
	"grpc_addr":    "MCP_AUTHZ_GRPC_ADDR",
	"http_addr":    "MCP_AUTHZ_HTTP_ADDR",
	"forward_addr": "MCP_AUTHZ_FORWARD_ADDR",
}

// NameField records that field was set by name (a command-line flag, say),
// so that errors about it name that.
func (c *Config) NameField(field, name string) {
	if c.origin == nil {
		c.origin = map[string]string{}
	}
	c.origin[field] = name
}

// FieldName is what to tell the operator to change about field: the
// variable or flag that set it, else the YAML field and its variable.
func (c *Config) FieldName(field string) string {
	if name, ok := c.origin[field]; ok {
		return name
	}
	if env, ok := serviceEnv[field]; ok {
		return env + " / " + field
	}
	return field
}

func splitList(s string) []string {
	return strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' || r == '\n' })
}

// envReader overlays environment variables on configuration fields and
// records which variable set which field, so that errors name it.
type envReader struct {
	getenv func(string) string
	origin map[string]string
}

// has reports whether any of the variables is set.
func (e envReader) has(names ...string) bool {
	for _, n := range names {
		if e.getenv(n) != "" {
			return true
		}
	}
	return false
}

// raw sets *dst to the variable's value as given (secrets keep their spaces).
func (e envReader) raw(name, field string, dst *string) {
	if v := e.getenv(name); v != "" {
		*dst = v
		e.origin[field] = name
	}
}

// str sets *dst to the trimmed value.
func (e envReader) str(name, field string, dst *string) {
	if v := e.getenv(name); v != "" {
		*dst = strings.TrimSpace(v)
		e.origin[field] = name
	}
}

// list sets *dst to the comma- or space-separated values.
func (e envReader) list(name, field string, dst *[]string) {
	if v := e.getenv(name); v != "" {
		*dst = splitList(v)
		e.origin[field] = name
	}
}

// duration sets *dst to the variable's duration, which must be more than
// 0 (0 would silently mean the default) and no shorter than least.
func (e envReader) duration(name, field string, dst *Duration, least time.Duration) error {
	v := e.getenv(name)
	if v == "" {
		return nil
	}
	d, err := ParseDuration(v)
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	switch {
	case d == 0 && least > 0:
		return fmt.Errorf("%s: 0 is not allowed: it must be at least %v (unset it for the default)", name, least)
	case d == 0:
		return fmt.Errorf("%s: 0 is not allowed: give a duration greater than 0 (unset it for the default)", name)
	case d.D() < least:
		return fmt.Errorf("%s: %q is shorter than %v", name, v, least)
	}
	*dst = d
	e.origin[field] = name
	return nil
}

func (e envReader) integer(name, field string, dst *int) error {
	v := e.getenv(name)
	if v == "" {
		return nil
	}
	n, err := strconv.Atoi(strings.TrimSpace(v))
	if err != nil {
		return fmt.Errorf("%s: %q is not a whole number", name, v)
	}
	*dst = n
	e.origin[field] = name
	return nil
}

func (e envReader) boolean(name string, dst *bool) error {
	v := e.getenv(name)
	if v == "" {
		return nil
	}
	b, err := strconv.ParseBool(strings.TrimSpace(v))
	if err != nil {
		return fmt.Errorf("%s: %q is not a boolean (true/false)", name, v)
	}
	*dst = b
	return nil
}

// logging applies the seed's log variables.
func (e envReader) logging(c *Config) error {
	var debug bool
	if err := e.boolean("MCP_DEBUG_CONSOLE", &debug); err != nil {
		return err
	}
	if debug {
		c.Log.Level, c.Log.Format = "debug", "text"
	}
	if err := e.boolean("MCP_ENABLE_FILE_LOGGING", &c.Log.File); err != nil {
		return err
	}
	e.str("MCP_LOG_DIRECTORY", "log.directory", &c.Log.Directory)
	return nil
}

// ApplyDevEnv applies to a configuration built in code (mcp-authz dev) the
// variables dev honours: logging and the Redis tier. dev is one process:
// without a verdict secret of the fleet's, a random one serves.
func (c *Config) ApplyDevEnv(getenv func(string) string) error {
	if c.origin == nil {
		c.origin = map[string]string{}
	}
	e := envReader{getenv: getenv, origin: c.origin}
	if err := e.logging(c); err != nil {
		return err
	}
	e.redis(c)
	if r := c.Redis; r != nil && r.envSecrets == "" && r.VerdictSecretFile == "" && len(r.Secrets) == 0 {
		b := make([]byte, 32)
		_, _ = rand.Read(b)
		r.Secrets = [][]byte{[]byte(hex.EncodeToString(b))}
	}
	return nil
}

// redis applies REDIS_URL and the verdict secret variables, creating the
// redis section for REDIS_URL if the file has none. The secrets go with
// Redis: without REDIS_URL or a redis section, the in-process cache is the
// only tier whatever they say.
func (e envReader) redis(c *Config) {
	if c.Redis == nil {
		if !e.has("REDIS_URL") {
			// Looked at all the same, so that EnvironmentVariables lists them.
			_ = e.has("MCP_AUTHZ_CACHE_SECRET", "MCP_AUTHZ_CACHE_SECRET_FILE")
			return
		}
		c.Redis = &RedisConfig{}
	}
	// The environment overrides the file: REDIS_URL names the one node
	// to use in place of the file's Sentinels (and their own password)
	// or Cluster nodes, and MCP_AUTHZ_CACHE_SECRET replaces the file's
	// secret file. Both secret variables at once still conflict
	// (verdictSecrets).
	if e.has("REDIS_URL") {
		if c.Redis.MasterName != "" {
			c.Redis.SentinelPassword, c.Redis.SentinelPasswordFile = "", ""
		}
		c.Redis.Addresses, c.Redis.MasterName = nil, ""
	}
	e.str("REDIS_URL", "redis.url", &c.Redis.URL)
	if e.has("MCP_AUTHZ_CACHE_SECRET") && !e.has("MCP_AUTHZ_CACHE_SECRET_FILE") {
		c.Redis.VerdictSecretFile = ""
	}
	e.raw("MCP_AUTHZ_CACHE_SECRET", "redis.verdict_secret", &c.Redis.envSecrets)
	e.str("MCP_AUTHZ_CACHE_SECRET_FILE", "redis.verdict_secret_file", &c.Redis.VerdictSecretFile)
}

// The seed's single-resource variables, by the part of the resource they set.
var (
	resourceEnv      = []string{"OAUTH_RESOURCE", "OAUTH_AUTHORIZATION_SERVER", "OAUTH_AUDIENCE", "OAUTH_VALIDATION", "OAUTH_SCOPES_SUPPORTED", "OAUTH_REQUIRED_SCOPES", "OAUTH_PROTECT_INITIALIZE", "OAUTH_PROTECT_MESSAGES", "MCP_AUTHZ_ALLOWED_ORIGINS"}
	issuerEnv        = []string{"OAUTH_ISSUER", "OAUTH_JWKS_URI", "OAUTH_ALGORITHMS", "OAUTH_JWKS_CACHE_TTL", "OAUTH_PROVIDER", "OAUTH_ALLOWED_CLIENT_IDS"}
	introspectionEnv = []string{"OAUTH_INTROSPECTION_ENDPOINT", "OAUTH_CLIENT_ID", "OAUTH_CLIENT_SECRET", "OAUTH_CLIENT_SECRET_FILE", "OAUTH_INTROSPECTION_CACHE_TTL", "OAUTH_INTROSPECTION_TIMEOUT"}
	legacyEnv        = []string{"MCP_API_KEYS_FILE", "MCP_JWT_SECRET", "MCP_JWT_SECRET_FILE"}
)

// applyEnv overlays the environment: service settings, and the seed's
// single-resource variables.
func (c *Config) applyEnv(getenv func(string) string) error {
	e := envReader{getenv: getenv, origin: c.origin}
	e.str("MCP_AUTHZ_GRPC_ADDR", "grpc_addr", &c.GRPCAddr)
	e.str("MCP_AUTHZ_HTTP_ADDR", "http_addr", &c.HTTPAddr)
	e.str("MCP_AUTHZ_FORWARD_ADDR", "forward_addr", &c.ForwardAddr)
	if err := e.logging(c); err != nil {
		return err
	}
	e.str("MCP_AUTHZ_UNAVAILABLE_MODE", "unavailable.mode", &c.Unavailable.Mode)
	if err := e.boolean("MCP_AUTHZ_STRIP_AUTHORIZATION", &c.IdentityHeaders.StripAuthorization); err != nil {
		return err
	}
	if err := e.integer("MCP_AUTHZ_GRPC_MAX_RECV_BYTES", "grpc.max_recv_bytes", &c.GRPC.MaxRecvBytes); err != nil {
		return err
	}
	if err := e.boolean("MCP_AUTHZ_GRPC_REFLECTION", &c.GRPC.Reflection); err != nil {
		return err
	}
	e.str("MCP_AUTHZ_GRPC_TLS_CERT_FILE", "grpc.tls.cert_file", &c.GRPC.TLS.CertFile)
	e.str("MCP_AUTHZ_GRPC_TLS_KEY_FILE", "grpc.tls.key_file", &c.GRPC.TLS.KeyFile)
	e.str("MCP_AUTHZ_GRPC_TLS_CLIENT_CA_FILE", "grpc.tls.client_ca_file", &c.GRPC.TLS.ClientCAFile)
	e.str("MCP_AUTHZ_HTTP_TLS_CERT_FILE", "http_tls.cert_file", &c.HTTPTLS.CertFile)
	e.str("MCP_AUTHZ_HTTP_TLS_KEY_FILE", "http_tls.key_file", &c.HTTPTLS.KeyFile)
	e.raw("MCP_AUTHZ_ADMIN_TOKEN", "admin.token", &c.Admin.Token)
	e.str("MCP_AUTHZ_ADMIN_TOKEN_FILE", "admin.token_file", &c.Admin.TokenFile)
	e.redis(c)

	if !e.has(resourceEnv...) && !e.has(issuerEnv...) && !e.has(introspectionEnv...) && !e.has(legacyEnv...) {
		return nil
	}
	switch len(c.Resources) {
	case 0:
		c.Resources = []ResourceConfig{{}}
	case 1:
	default:
		return errors.New("OAUTH_*: environment variables configure a single resource, but --config defines several; set them in the file instead")
	}
	c.envResource = true
	r := &c.Resources[0]
	const p = "resources[0]."
	e.str("OAUTH_RESOURCE", p+"resource", &r.Resource)
	e.list("OAUTH_AUTHORIZATION_SERVER", p+"authorization_servers", &r.AuthorizationServers)
	e.list("OAUTH_AUDIENCE", p+"audiences", &r.Audiences)
	e.list("OAUTH_SCOPES_SUPPORTED", p+"scopes_supported", &r.ScopesSupported)
	e.list("OAUTH_REQUIRED_SCOPES", p+"required_scopes", &r.RequiredScopes)
	e.str("OAUTH_VALIDATION", p+"validation", &r.Validation)
	for _, b := range []struct {
		env string
		dst **bool
	}{{"OAUTH_PROTECT_INITIALIZE", &r.Endpoints.Initialize}, {"OAUTH_PROTECT_MESSAGES", &r.Endpoints.Messages}} {
		if e.has(b.env) {
			v := true
			if err := e.boolean(b.env, &v); err != nil {
				return err
			}
			*b.dst = &v
		}
	}
	e.list("MCP_AUTHZ_ALLOWED_ORIGINS", p+"allowed_origins", &r.AllowedOrigins)

	if e.has(introspectionEnv...) {
		// The cache TTL and the timeout tune introspection; alone they do
		// not configure it (nor make it the inferred validation).
		in := r.Introspection
		if in == nil {
			in = &IntrospectionConfig{}
			if e.has("OAUTH_INTROSPECTION_ENDPOINT", "OAUTH_CLIENT_ID", "OAUTH_CLIENT_SECRET", "OAUTH_CLIENT_SECRET_FILE") {
				r.Introspection = in
			}
		}
		const ip = p + "introspection."
		e.str("OAUTH_INTROSPECTION_ENDPOINT", ip+"endpoint", &in.Endpoint)
		e.str("OAUTH_CLIENT_ID", ip+"client_id", &in.ClientID)
		e.raw("OAUTH_CLIENT_SECRET", ip+"client_secret", &in.ClientSecret)
		e.str("OAUTH_CLIENT_SECRET_FILE", ip+"client_secret_file", &in.ClientSecretFile)
		if err := e.duration("OAUTH_INTROSPECTION_CACHE_TTL", ip+"cache_ttl", &in.CacheTTL, 0); err != nil {
			return err
		}
		if err := e.duration("OAUTH_INTROSPECTION_TIMEOUT", ip+"timeout", &in.Timeout, 0); err != nil {
			return err
		}
	}
	if e.has("MCP_API_KEYS_FILE") {
		if r.APIKeys == nil {
			r.APIKeys = &APIKeysConfig{}
		}
		e.str("MCP_API_KEYS_FILE", p+"api_keys.file", &r.APIKeys.File)
	}
	if e.has("MCP_JWT_SECRET", "MCP_JWT_SECRET_FILE") {
		if r.HMAC == nil {
			r.HMAC = &HMACConfig{}
		}
		e.str("MCP_JWT_SECRET_FILE", p+"hmac.secret_file", &r.HMAC.SecretFile)
		e.raw("MCP_JWT_SECRET", p+"hmac.secret", &r.HMAC.Secret)
	}

	if !e.has(issuerEnv...) {
		return nil
	}
	if len(r.Issuers) > 1 {
		return errors.New("OAUTH_ISSUER: environment variables configure a single issuer, but --config defines several; set them in the file instead")
	}
	if len(r.Issuers) == 0 {
		r.Issuers = []IssuerConfig{{}}
	}
	is := &r.Issuers[0]
	const ip = p + "issuers[0]."
	e.str("OAUTH_ISSUER", ip+"issuer", &is.Issuer)
	e.str("OAUTH_JWKS_URI", ip+"jwks_uri", &is.JWKSURI)
	e.list("OAUTH_ALGORITHMS", ip+"algorithms", &is.Algorithms)
	e.str("OAUTH_PROVIDER", ip+"preset", &is.Preset)
	e.list("OAUTH_ALLOWED_CLIENT_IDS", ip+"client_ids", &is.ClientIDs)
	return e.duration("OAUTH_JWKS_CACHE_TTL", ip+"jwks_cache_ttl", &is.JWKSCacheTTL, time.Second)
}

// readSecret reads a mounted secret file; a trailing newline is not part
// of the secret.
// secretOf resolves a secret given either inline (*value) or by a file
// (field names the file's setting, as "redis.password_file"; the inline
// one is the same without "_file"): both at once is an error, and the
// file's contents (less a trailing newline) become *value.
func (c *Config) secretOf(value *string, file, field string) error {
	switch {
	case *value != "" && file != "":
		name := field[strings.LastIndexByte(field, '.')+1:]
		return c.fieldError(field, "set either %s or %s, not both", strings.TrimSuffix(name, "_file"), name)
	case file != "":
		s, err := readSecret(file)
		if err != nil {
			return c.fieldError(field, "%v", err)
		}
		*value = s
	}
	return nil
}

func readSecret(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	return strings.TrimRight(string(b), "\r\n"), nil
}
