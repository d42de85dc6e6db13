// Package config turns the YAML file and the environment into one validated
// configuration value. It is the only package that knows the names of
// configuration fields and environment variables.
package config

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
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
	GRPC            GRPCConfig        `yaml:"grpc"`
	// HTTPTLS serves the side server over TLS (optional; client_ca_file
	// does not apply: the metadata is public).
	HTTPTLS   TLSConfig        `yaml:"http_tls"`
	Resources []ResourceConfig `yaml:"resources"`

	// ForwardAddr enables the HTTP forward-auth listener (nginx, Traefik,
	// Caddy, Envoy's http_service; DESIGN §9). Empty: off. Private, like
	// the gRPC listener: only the proxy may reach it.
	ForwardAddr string `yaml:"forward_addr"`

	// envResource is set when the environment configures the resource.
	envResource bool
	// origin maps a field path to the environment variable that set it, so
	// errors name what the operator actually wrote.
	origin map[string]string
}

// GRPCConfig bounds the gRPC listener.
type GRPCConfig struct {
	// MaxRecvBytes bounds one CheckRequest; keep it at least Envoy's
	// with_request_body max_request_bytes plus the headers. Default 256 KiB.
	MaxRecvBytes int `yaml:"max_recv_bytes"`
	// Reflection enables gRPC server reflection (for grpcurl); off in
	// production, on in dev.
	Reflection bool `yaml:"reflection"`
	// TLS serves the gRPC listener over TLS; with ClientCAFile, only clients
	// with a certificate from that CA (Envoy) may connect (mTLS).
	TLS TLSConfig `yaml:"tls"`
}

// TLSConfig names certificate files, re-read when they change.
type TLSConfig struct {
	CertFile     string `yaml:"cert_file"`
	KeyFile      string `yaml:"key_file"`
	ClientCAFile string `yaml:"client_ca_file"`
}

// Enabled reports whether a certificate is configured.
func (t TLSConfig) Enabled() bool { return t.CertFile != "" }

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
	// SentinelPassword (or SentinelPasswordFile) authenticates to the
	// Sentinels themselves (their requirepass), which may differ from the
	// data nodes' password. Only with MasterName.
	SentinelPassword     string `yaml:"sentinel_password"`
	SentinelPasswordFile string `yaml:"sentinel_password_file"`
	DB                   int    `yaml:"db"`
	TLS                  bool   `yaml:"tls"`
	// Prefix starts every key. Default "mcp-authz".
	Prefix string `yaml:"prefix"`
	// Timeout bounds each cache call. Default 10ms.
	Timeout Duration `yaml:"timeout"`
	// L1TTL caps how long a replica keeps a verdict in process. Default 30s.
	L1TTL Duration `yaml:"l1_ttl"`
	// Backoff is how long the tier is skipped after repeated errors; it
	// doubles while Redis stays down, up to 30s. Default 1s.
	Backoff Duration `yaml:"backoff"`
	// VerdictSecretFile holds the fleet's verdict secrets, one per line
	// (the first signs, all verify): Redis is shared, so what it returns
	// is trusted only with a valid HMAC. Required with Redis, unless
	// MCP_AUTHZ_CACHE_SECRET gives them.
	VerdictSecretFile string `yaml:"verdict_secret_file"`

	// Secrets are the verdict secrets, resolved by validation.
	Secrets [][]byte `yaml:"-"`
	// envSecrets holds MCP_AUTHZ_CACHE_SECRET, comma-separated, as given.
	envSecrets string
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

	// MCP-aware policy (DESIGN §6).
	PathPrefixes   []string            `yaml:"path_prefixes"`
	Endpoints      EndpointsConfig     `yaml:"endpoints"`
	LegacySSE      LegacySSEConfig     `yaml:"legacy_sse"`
	Operations     []OperationConfig   `yaml:"operations"`
	ScopeImplies   map[string][]string `yaml:"scope_implies"`
	UnreadableBody string              `yaml:"unreadable_body"` // deny (default) or route_scopes
	AllowedOrigins []string            `yaml:"allowed_origins"`
	SessionBinding bool                `yaml:"session_binding"`
	SessionTTL     Duration            `yaml:"session_ttl"`
}

// EndpointsConfig says which classes of MCP requests need credentials
// (the seed's per-endpoint auth). Both default to true.
type EndpointsConfig struct {
	Initialize *bool `yaml:"initialize"`
	Messages   *bool `yaml:"messages"`
}

// Protects reports whether the class is protected (unset means yes).
func Protects(b *bool) bool { return b == nil || *b }

// LegacySSEConfig names the paths of the legacy HTTP+SSE transport.
type LegacySSEConfig struct {
	SSEPath      string `yaml:"sse_path"`      // default /sse
	MessagesPath string `yaml:"messages_path"` // default /messages
}

// OperationConfig requires scopes for a JSON-RPC method, optionally only
// for tools, prompts or resources whose name or URI matches Name (a glob
// where only * is special).
type OperationConfig struct {
	Method string   `yaml:"method"`
	Name   string   `yaml:"name"`
	Scopes []string `yaml:"scopes"`
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
			return 0, fmt.Errorf("%q is negative: a duration is 0 or more", s)
		}
		if ms > math.MaxInt64/int64(time.Millisecond) {
			return 0, fmt.Errorf("%q milliseconds is longer than a duration can be", s)
		}
		return Duration(time.Duration(ms) * time.Millisecond), nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("%q is not a duration (use e.g. 15m, 30s or milliseconds)", s)
	}
	if d < 0 {
		return 0, fmt.Errorf("%q is negative: a duration is 0 or more", s)
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

// Introspections lists a resource's introspection settings in the order
// they are tried.
func (r *ResourceConfig) Introspections() []*IntrospectionConfig {
	list, _ := r.introspections(0)
	return list
}

// Complete applies defaults to a configuration built in code (as `dev`
// does) and validates it, as Load does for a file and the environment.
func (c *Config) Complete() error {
	if c.origin == nil {
		c.origin = map[string]string{}
	}
	c.applyDefaults()
	return c.validate()
}

// Prefixes returns the resource's path prefixes, whichever way they were
// written.
func (r *ResourceConfig) Prefixes() []string {
	if r.PathPrefix != "" {
		return []string{r.PathPrefix}
	}
	return r.PathPrefixes
}
