package main

import (
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
	"go.yaml.in/yaml/v3"

	"github.com/mcp-authz/mcp-authz/metadata"
	"github.com/mcp-authz/mcp-authz/validators"
)

// Config is the whole service configuration: the YAML file's shape, with the
// seed's environment variables overlaid on it.
type Config struct {
	GRPCAddr        string            `yaml:"grpc_addr"`
	HTTPAddr        string            `yaml:"http_addr"`
	Log             LogConfig         `yaml:"log"`
	Unavailable     UnavailableConfig `yaml:"unavailable"`
	Cache           CacheConfig       `yaml:"cache"`
	IdentityHeaders IdentityConfig    `yaml:"identity_headers"`
	MaxTokenBytes   int               `yaml:"max_token_bytes"`
	JWKS            JWKSConfig        `yaml:"jwks"`
	Redis           *RedisConfig      `yaml:"redis"`
	Admin           AdminConfig       `yaml:"admin"`
	Resources       []ResourceConfig  `yaml:"resources"`

	// envResource is set when the environment configures the resource.
	envResource bool
	// origin maps a field path to the environment variable that set it, so
	// errors name what the operator actually wrote.
	origin map[string]string
}

// LogConfig selects log level, format and an optional log file.
type LogConfig struct {
	Level     string `yaml:"level"`  // debug, info, warn, error
	Format    string `yaml:"format"` // json, text
	File      bool   `yaml:"file"`
	Directory string `yaml:"directory"`
}

// UnavailableConfig says how "authorization server unreachable" is reported.
type UnavailableConfig struct {
	Mode       string   `yaml:"mode"` // http (503 + Retry-After) or grpc (UNAVAILABLE)
	RetryAfter Duration `yaml:"retry_after"`
}

// CacheConfig bounds the verdict cache.
type CacheConfig struct {
	TTL         Duration `yaml:"ttl"`
	NegativeTTL Duration `yaml:"negative_ttl"`
	MaxBytes    uint64   `yaml:"max_bytes"`
}

// IdentityConfig controls what reaches the upstream on allow.
type IdentityConfig struct {
	Prefix             string `yaml:"prefix"`
	StripAuthorization bool   `yaml:"strip_authorization"`
}

// RedisConfig enables the shared verdict cache tier. Without it the
// in-process cache is the only tier.
type RedisConfig struct {
	// URL: redis://[user:password@]host:port/db, or rediss:// for TLS.
	URL string `yaml:"url"`
	// Addresses, for Sentinel (with MasterName) or Cluster (several
	// addresses, no MasterName), instead of URL.
	Addresses    []string `yaml:"addresses"`
	MasterName   string   `yaml:"master_name"`
	Username     string   `yaml:"username"`
	Password     string   `yaml:"password"`
	PasswordFile string   `yaml:"password_file"`
	DB           int      `yaml:"db"`
	TLS          bool     `yaml:"tls"`
	// Prefix starts every key. Default "mcp-authz".
	Prefix string `yaml:"prefix"`
	// Timeout bounds each cache call. Default 10ms.
	Timeout Duration `yaml:"timeout"`
	// L1TTL caps how long a replica keeps a verdict in process. Default 30s.
	L1TTL Duration `yaml:"l1_ttl"`
	// Backoff is how long the tier is skipped after repeated errors; it
	// doubles while Redis stays down, up to 30s. Default 1s.
	Backoff Duration `yaml:"backoff"`
}

// AdminConfig enables the side server's admin endpoints (POST
// /admin/purge), authenticated with a bearer token.
type AdminConfig struct {
	Token     string `yaml:"token"`
	TokenFile string `yaml:"token_file"`
}

// JWKSConfig tunes unknown-kid refreshes for every issuer.
type JWKSConfig struct {
	RefreshWait        Duration `yaml:"refresh_wait"`
	MinRefreshInterval Duration `yaml:"min_refresh_interval"`
}

// ResourceConfig is one protected MCP resource.
type ResourceConfig struct {
	Name                  string               `yaml:"name"`
	Resource              string               `yaml:"resource"`
	ResourceName          string               `yaml:"resource_name"`
	ResourceDocumentation string               `yaml:"resource_documentation"`
	AuthorizationServers  []string             `yaml:"authorization_servers"`
	ScopesSupported       []string             `yaml:"scopes_supported"`
	RequiredScopes        []string             `yaml:"required_scopes"`
	Audiences             []string             `yaml:"audiences"`
	Hosts                 []string             `yaml:"hosts"`
	PathPrefix            string               `yaml:"path_prefix"`
	Validation            string               `yaml:"validation"`
	Leeway                *Duration            `yaml:"leeway"`
	Issuers               []IssuerConfig       `yaml:"issuers"`
	Introspection         *IntrospectionConfig `yaml:"introspection"`
	APIKeys               *APIKeysConfig       `yaml:"api_keys"`
	HMAC                  *HMACConfig          `yaml:"hmac"`
}

// APIKeysConfig lists the static API keys of a resource (validation: apikey).
type APIKeysConfig struct {
	Keys []APIKeyConfig `yaml:"keys"`
	// File holds more keys, one per line: NAME SHA256-HEX [SCOPE ...].
	File string `yaml:"file"`
}

// APIKeyConfig is one key: its SHA-256 digest, or the key itself, which is
// hashed at load and not kept.
type APIKeyConfig struct {
	Name   string   `yaml:"name"`
	SHA256 string   `yaml:"sha256"`
	Key    string   `yaml:"key"`
	Scopes []string `yaml:"scopes"`
}

// HMACConfig configures shared-secret JWTs (validation: hmac), for
// migration from the seed's JWTAuthProvider.
type HMACConfig struct {
	Secret             string   `yaml:"secret"`
	SecretFile         string   `yaml:"secret_file"`
	Algorithms         []string `yaml:"algorithms"`
	Issuer             string   `yaml:"issuer"`
	Audiences          []string `yaml:"audiences"`
	AllowMissingExpiry bool     `yaml:"allow_missing_expiry"`
}

// IntrospectionConfig configures RFC 7662 introspection for a resource.
type IntrospectionConfig struct {
	// Endpoint; discovered from Issuer when empty.
	Endpoint string `yaml:"endpoint"`
	// Issuer is checked against the response's iss, and is where the
	// endpoint is discovered. Default: the first authorization server.
	Issuer           string `yaml:"issuer"`
	ClientID         string `yaml:"client_id"`
	ClientSecret     string `yaml:"client_secret"`
	ClientSecretFile string `yaml:"client_secret_file"`
	// AuthMethod: client_secret_basic (default) or client_secret_post.
	AuthMethod string   `yaml:"auth_method"`
	Timeout    Duration `yaml:"timeout"`
	// CacheTTL caps how long an active verdict is cached (never past exp).
	CacheTTL Duration `yaml:"cache_ttl"`
	// AllowMissingAudience accepts answers without aud.
	AllowMissingAudience bool `yaml:"allow_missing_audience"`
}

// IssuerConfig is one trusted JWT issuer of a resource.
type IssuerConfig struct {
	Issuer       string   `yaml:"issuer"`
	JWKSURI      string   `yaml:"jwks_uri"`
	Algorithms   []string `yaml:"algorithms"`
	RequireATJWT bool     `yaml:"require_at_jwt"`
	JWKSCacheTTL Duration `yaml:"jwks_cache_ttl"`
	// Preset fills in a provider's conventions: auth0, okta, cognito,
	// azure (v2 issuer) or azure-v1 (sts.windows.net issuer).
	Preset string `yaml:"preset"`
	// ClientIDs accept tokens without aud whose client_id is listed
	// (required by the cognito preset).
	ClientIDs []string `yaml:"client_ids"`
	// RequireTokenUse must equal the token_use claim (cognito: access).
	RequireTokenUse string `yaml:"require_token_use"`
	// Introspection, for opaque tokens from this issuer (validation
	// introspection or auto).
	Introspection *IntrospectionConfig `yaml:"introspection"`
}

// Duration accepts Go syntax ("15m") or a bare number of milliseconds, as
// the seed's environment variables did.
type Duration time.Duration

// ParseDuration parses Go duration syntax or integer milliseconds.
func ParseDuration(s string) (Duration, error) {
	s = strings.TrimSpace(s)
	if ms, err := strconv.ParseInt(s, 10, 64); err == nil {
		if ms < 0 {
			return 0, fmt.Errorf("%q is negative", s)
		}
		return Duration(time.Duration(ms) * time.Millisecond), nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("%q is not a duration (use e.g. 15m, 30s or milliseconds)", s)
	}
	if d < 0 {
		return 0, fmt.Errorf("%q is negative", s)
	}
	return Duration(d), nil
}

// UnmarshalYAML implements yaml.Unmarshaler.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	v, err := ParseDuration(n.Value)
	if err != nil {
		return err
	}
	*d = v
	return nil
}

// D returns the time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// readConfigFile decodes the optional YAML file, rejecting unknown fields.
func readConfigFile(path string) (*Config, error) {
	cfg := &Config{origin: map[string]string{}}
	if path == "" {
		return cfg, nil
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("--config: %w", err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	dec.KnownFields(true)
	if err := dec.Decode(cfg); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("--config %s: %s", path, oneLine(err.Error()))
	}
	return cfg, nil
}

// LoadConfig reads the optional YAML file, overlays the environment, applies
// defaults and validates. Errors are one line naming the field.
func LoadConfig(path string, getenv func(string) string) (*Config, error) {
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

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

// envFields names the environment variable of each single-resource field,
// for errors about fields the environment configures but left unset.
var envFields = map[string]string{
	"resources[0].resource":                         "OAUTH_RESOURCE",
	"resources[0].authorization_servers":            "OAUTH_AUTHORIZATION_SERVER",
	"resources[0].audiences":                        "OAUTH_AUDIENCE",
	"resources[0].scopes_supported":                 "OAUTH_SCOPES_SUPPORTED",
	"resources[0].required_scopes":                  "OAUTH_REQUIRED_SCOPES",
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

func (e envReader) duration(name, field string, dst *Duration) error {
	v := e.getenv(name)
	if v == "" {
		return nil
	}
	d, err := ParseDuration(v)
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	*dst = d
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

// redis applies REDIS_URL, creating the redis section if the file has none.
func (e envReader) redis(c *Config) {
	if !e.has("REDIS_URL") {
		return
	}
	if c.Redis == nil {
		c.Redis = &RedisConfig{}
	}
	e.str("REDIS_URL", "redis.url", &c.Redis.URL)
}

// The seed's single-resource variables, by the part of the resource they set.
var (
	resourceEnv      = []string{"OAUTH_RESOURCE", "OAUTH_AUTHORIZATION_SERVER", "OAUTH_AUDIENCE", "OAUTH_VALIDATION", "OAUTH_SCOPES_SUPPORTED", "OAUTH_REQUIRED_SCOPES"}
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
	e.str("MCP_AUTHZ_UNAVAILABLE_MODE", "unavailable.mode", &c.Unavailable.Mode)
	if err := e.boolean("MCP_AUTHZ_STRIP_AUTHORIZATION", &c.IdentityHeaders.StripAuthorization); err != nil {
		return err
	}
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

	if e.has(introspectionEnv...) {
		if r.Introspection == nil {
			r.Introspection = &IntrospectionConfig{}
		}
		in := r.Introspection
		const ip = p + "introspection."
		e.str("OAUTH_INTROSPECTION_ENDPOINT", ip+"endpoint", &in.Endpoint)
		e.str("OAUTH_CLIENT_ID", ip+"client_id", &in.ClientID)
		e.raw("OAUTH_CLIENT_SECRET", ip+"client_secret", &in.ClientSecret)
		e.str("OAUTH_CLIENT_SECRET_FILE", ip+"client_secret_file", &in.ClientSecretFile)
		if err := e.duration("OAUTH_INTROSPECTION_CACHE_TTL", ip+"cache_ttl", &in.CacheTTL); err != nil {
			return err
		}
		if err := e.duration("OAUTH_INTROSPECTION_TIMEOUT", ip+"timeout", &in.Timeout); err != nil {
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
	return e.duration("OAUTH_JWKS_CACHE_TTL", ip+"jwks_cache_ttl", &is.JWKSCacheTTL)
}

// readSecret reads a mounted secret file; a trailing newline is not part
// of the secret.
func readSecret(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	return strings.TrimRight(string(b), "\r\n"), nil
}

func (c *Config) applyDefaults() {
	if c.GRPCAddr == "" {
		c.GRPCAddr = ":9191"
	}
	if c.HTTPAddr == "" {
		c.HTTPAddr = ":9192"
	}
	if c.Log.Level == "" {
		c.Log.Level = "info"
	}
	if c.Log.Format == "" {
		c.Log.Format = "json"
	}
	if c.Log.Directory == "" {
		c.Log.Directory = "logs"
	}
	if c.Unavailable.Mode == "" {
		c.Unavailable.Mode = "http"
	}
	if c.Unavailable.RetryAfter == 0 {
		c.Unavailable.RetryAfter = Duration(5 * time.Second)
	}
	if c.Cache.TTL == 0 {
		c.Cache.TTL = Duration(5 * time.Minute)
	}
	if c.Cache.NegativeTTL == 0 {
		c.Cache.NegativeTTL = Duration(5 * time.Second)
	}
	if c.Cache.MaxBytes == 0 {
		c.Cache.MaxBytes = 64 << 20
	}
	if c.IdentityHeaders.Prefix == "" {
		c.IdentityHeaders.Prefix = "x-mcp-auth-"
	}
	if c.MaxTokenBytes == 0 {
		c.MaxTokenBytes = 16 << 10
	}
	if r := c.Redis; r != nil {
		if r.Prefix == "" {
			r.Prefix = "mcp-authz"
		}
		if r.Timeout == 0 {
			r.Timeout = Duration(10 * time.Millisecond)
		}
		if r.L1TTL == 0 {
			r.L1TTL = Duration(30 * time.Second)
		}
		if r.Backoff == 0 {
			r.Backoff = Duration(time.Second)
		}
	}
	if c.JWKS.RefreshWait == 0 {
		c.JWKS.RefreshWait = Duration(50 * time.Millisecond)
	}
	if c.JWKS.MinRefreshInterval == 0 {
		c.JWKS.MinRefreshInterval = Duration(time.Second)
	}
	for i := range c.Resources {
		r := &c.Resources[i]
		if r.Name == "" {
			r.Name = r.Resource
		}
		if r.Validation == "" {
			r.Validation = inferValidation(r)
		}
		if len(r.AuthorizationServers) > 0 {
			introspectionDefaults(r.Introspection, r.AuthorizationServers[0])
		}
		for j := range r.Issuers {
			introspectionDefaults(r.Issuers[j].Introspection, r.Issuers[j].Issuer)
		}
		explicitAudience := len(r.Audiences) > 0
		if !explicitAudience && r.Resource != "" {
			r.Audiences = []string{r.Resource}
		}
		if r.Leeway == nil {
			d := Duration(60 * time.Second)
			r.Leeway = &d
		}
		// The seed named the issuer only as the authorization server.
		if r.Validation != "jwt" && r.Validation != "auto" {
			// No JWT issuers: nothing to fetch keys for.
		} else if len(r.Issuers) == 0 && len(r.AuthorizationServers) > 0 {
			r.Issuers = []IssuerConfig{{Issuer: r.AuthorizationServers[0]}}
		} else if len(r.Issuers) == 1 && r.Issuers[0].Issuer == "" && len(r.AuthorizationServers) > 0 {
			r.Issuers[0].Issuer = r.AuthorizationServers[0]
		}
		for j := range r.Issuers {
			is := &r.Issuers[j]
			applyPreset(r, is, explicitAudience)
			if len(is.Algorithms) == 0 {
				is.Algorithms = append([]string(nil), validators.DefaultAlgorithms...)
			}
			if is.JWKSCacheTTL == 0 {
				is.JWKSCacheTTL = Duration(15 * time.Minute)
			}
		}
	}
}

func introspectionDefaults(in *IntrospectionConfig, issuer string) {
	if in == nil {
		return
	}
	if in.Issuer == "" {
		in.Issuer = issuer
	}
	if in.AuthMethod == "" {
		in.AuthMethod = "client_secret_basic"
	}
	if in.Timeout == 0 {
		in.Timeout = Duration(150 * time.Millisecond)
	}
	if in.CacheTTL == 0 {
		in.CacheTTL = Duration(5 * time.Minute)
	}
}

// introspections lists a resource's introspection settings in the order
// they are tried, with the field path of each.
func (r *ResourceConfig) introspections(i int) (list []*IntrospectionConfig, paths []string) {
	if r.Introspection != nil {
		list, paths = append(list, r.Introspection), append(paths, fmt.Sprintf("resources[%d].introspection", i))
	}
	for j := range r.Issuers {
		if in := r.Issuers[j].Introspection; in != nil {
			list, paths = append(list, in), append(paths, fmt.Sprintf("resources[%d].issuers[%d].introspection", i, j))
		}
	}
	return list, paths
}

// azureIssuer matches the two Azure AD issuer forms and captures the tenant.
var (
	azureV2Issuer = regexp.MustCompile(`^https://login\.microsoftonline\.com/([^/]+)/v2\.0$`)
	azureV1Issuer = regexp.MustCompile(`^https://sts\.windows\.net/([^/]+)/$`)
)

// applyPreset fills in what a provider's documentation prescribes, where
// the configuration left it open. validateResource reports a preset whose
// issuer does not have the provider's shape.
func applyPreset(r *ResourceConfig, is *IssuerConfig, explicitAudience bool) {
	defaultJWKS := func(uri string) {
		if is.JWKSURI == "" {
			is.JWKSURI = uri
		}
	}
	defaultAlgs := func() {
		if len(is.Algorithms) == 0 {
			is.Algorithms = []string{"RS256"}
		}
	}
	switch is.Preset {
	case "auth0":
		// Auth0's iss ends with a slash; the tenant URL is often written without.
		if is.Issuer != "" && !strings.HasSuffix(is.Issuer, "/") {
			is.Issuer += "/"
		}
		defaultJWKS(is.Issuer + ".well-known/jwks.json")
		defaultAlgs()
	case "okta":
		defaultJWKS(strings.TrimSuffix(is.Issuer, "/") + "/v1/keys")
		defaultAlgs()
		if !explicitAudience && !slices.Contains(r.Audiences, "api://default") {
			r.Audiences = append(r.Audiences, "api://default")
		}
	case "cognito":
		defaultJWKS(strings.TrimSuffix(is.Issuer, "/") + "/.well-known/jwks.json")
		defaultAlgs()
		if is.RequireTokenUse == "" {
			is.RequireTokenUse = "access"
		}
	case "azure":
		if m := azureV2Issuer.FindStringSubmatch(is.Issuer); m != nil {
			defaultJWKS("https://login.microsoftonline.com/" + m[1] + "/discovery/v2.0/keys")
		}
		defaultAlgs()
	case "azure-v1":
		if m := azureV1Issuer.FindStringSubmatch(is.Issuer); m != nil {
			defaultJWKS("https://login.microsoftonline.com/" + m[1] + "/discovery/keys")
		}
		defaultAlgs()
	}
}

// inferValidation picks the strategy the settings imply: introspection
// when only introspection is configured, auto when JWT issuers are also
// named explicitly, jwt otherwise.
func inferValidation(r *ResourceConfig) string {
	switch {
	case r.APIKeys != nil:
		return "apikey"
	case r.HMAC != nil:
		return "hmac"
	}
	if list, _ := r.introspections(0); len(list) == 0 {
		return "jwt"
	}
	for _, is := range r.Issuers {
		if is.JWKSURI != "" {
			return "auto"
		}
	}
	return "introspection"
}

func (c *Config) validate() error {
	for _, a := range []struct{ field, v string }{{"grpc_addr", c.GRPCAddr}, {"http_addr", c.HTTPAddr}} {
		if _, _, err := net.SplitHostPort(a.v); err != nil {
			return c.fieldError(a.field, "%q is not host:port", a.v)
		}
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
	for _, f := range []struct {
		name   string
		scopes []string
	}{{"scopes_supported", r.ScopesSupported}, {"required_scopes", r.RequiredScopes}} {
		for _, s := range f.scopes {
			if strings.ContainsAny(s, "\"\\") {
				return c.fieldError(p+f.name, "scope %q contains a quote or backslash", s)
			}
		}
	}
	for _, a := range r.Audiences {
		if strings.TrimSpace(a) == "" {
			return c.fieldError(p+"audiences", "empty audience")
		}
	}
	if r.PathPrefix != "" && !strings.HasPrefix(r.PathPrefix, "/") {
		return c.fieldError(p+"path_prefix", "%q must start with /", r.PathPrefix)
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
				return c.fieldError(ip+"client_ids", "required with preset cognito: Cognito access tokens carry no aud, so list the app client ids to accept")
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
		return c.fieldError(fmt.Sprintf("resources[%d].introspection", i), "required for validation %q (OAUTH_INTROSPECTION_ENDPOINT, OAUTH_CLIENT_ID, OAUTH_CLIENT_SECRET)", r.Validation)
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
		if _, err := c.apiKeysFromFile(r.APIKeys.File); err != nil {
			return c.fieldError(p+".file", "%v", err)
		}
	} else if len(r.APIKeys.Keys) == 0 {
		return c.fieldError(p, "no keys (keys or file)")
	}
	return nil
}

func (c *Config) apiKeysFromFile(path string) ([]validators.APIKey, error) {
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

// apiKeys returns every configured key as a digest; plaintext keys from
// the file are hashed here and not kept.
func (r *ResourceConfig) apiKeys(c *Config) ([]validators.APIKey, error) {
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
		more, err := c.apiKeysFromFile(r.APIKeys.File)
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

// LoadRedisConfig reads only what the purge command needs: the Redis
// settings from the file and REDIS_URL.
func LoadRedisConfig(path string, getenv func(string) string) (*RedisConfig, error) {
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
	if r.Timeout.D() > time.Second {
		return c.fieldError("redis.timeout", "%v is more than 1s; a cache is never worth waiting for", r.Timeout.D())
	}
	if strings.ContainsAny(r.Prefix, " :") {
		return c.fieldError("redis.prefix", "%q must not contain spaces or colons", r.Prefix)
	}
	return nil
}

// universalOptions builds the go-redis options for r.
func (r *RedisConfig) universalOptions() (*redis.UniversalOptions, error) {
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
