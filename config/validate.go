package config

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"time"

	"github.com/mcp-authz/mcp-authz/metadata"
	"github.com/mcp-authz/mcp-authz/validators"
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
	if c.GRPC.MaxRecvBytes < 0 {
		// gRPC would refuse every CheckRequest, and Envoy apply its
		// failure mode to all of them.
		return c.fieldError("grpc.max_recv_bytes", "%d is negative: give a size in bytes (default 262144)", c.GRPC.MaxRecvBytes)
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
	if err := c.validateDocuments(); err != nil {
		return err
	}
	return c.validateRoutes()
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
	if err := c.secretOf(&in.ClientSecret, in.ClientSecretFile, p+"client_secret_file"); err != nil {
		return err
	}
	switch {
	case in.ClientSecretFile != "":
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
	if err := c.secretOf(&h.Secret, h.SecretFile, p+".secret_file"); err != nil {
		return err
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
	if err := c.secretOf(&a.Token, a.TokenFile, "admin.token_file"); err != nil {
		return err
	}
	if a.TokenFile != "" && a.Token == "" {
		return c.fieldError("admin.token_file", "%s is empty", a.TokenFile)
	}
	if a.Token != "" && len(a.Token) < 16 {
		return c.fieldError("admin.token", "must be at least 16 characters")
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
