package config

import (
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/mcp-authz/mcp-authz/validators"
)

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
	if c.GRPC.MaxRecvBytes == 0 {
		c.GRPC.MaxRecvBytes = 256 << 10
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
		if r.UnreadableBody == "" {
			r.UnreadableBody = "deny"
		}
		if r.SessionTTL == 0 {
			r.SessionTTL = Duration(24 * time.Hour)
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
			// A Cognito pool's issuer says what it is; without the preset
			// every access token (no aud) would be refused.
			if is.Preset == "" && cognitoIssuer.MatchString(is.Issuer) {
				is.Preset = "cognito"
			}
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
		in.Timeout = Duration(time.Second)
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

// azureV2Issuer and azureV1Issuer match the two Azure AD issuer forms and
// capture the tenant; cognitoIssuer matches a Cognito user pool.
var (
	azureV2Issuer = regexp.MustCompile(`^https://login\.microsoftonline\.com/([^/]+)/v2\.0$`)
	azureV1Issuer = regexp.MustCompile(`^https://sts\.windows\.net/([^/]+)/$`)
	cognitoIssuer = regexp.MustCompile(`^https://cognito-idp\.[a-z0-9-]+\.amazonaws\.com/[^/]+$`)
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
		// Cognito access tokens carry no aud, only client_id. The seed's
		// recipe named the app client in OAUTH_AUDIENCE: audiences given
		// explicitly, none of them a URL, are taken as the client ids.
		if len(is.ClientIDs) == 0 && explicitAudience && !slices.ContainsFunc(r.Audiences, func(a string) bool { return strings.Contains(a, "://") }) {
			is.ClientIDs = slices.Clone(r.Audiences)
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
