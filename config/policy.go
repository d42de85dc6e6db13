package config

import (
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/mcp-authz/mcp-authz/internal/pathnorm"
	"github.com/mcp-authz/mcp-authz/metadata"
	"github.com/mcp-authz/mcp-authz/validators"
)

// checkScopes refuses a scope that is not an RFC 6749 scope-token, naming
// field.
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

// validateDocuments refuses two resources whose metadata documents would
// be served at one place (the same resource URI, or two differing only in
// what the well-known path drops: a trailing slash, a query): the side
// server could serve only one of them (DESIGN §6).
func (c *Config) validateDocuments() error {
	type place struct{ host, path string }
	owner := map[place]int{}
	for i := range c.Resources {
		host, path, err := metadata.DocumentAt(c.Resources[i].Resource)
		if err != nil {
			return c.fieldError(fmt.Sprintf("resources[%d].resource", i), "%v", err)
		}
		if o, dup := owner[place{host, path}]; dup {
			return c.fieldError(fmt.Sprintf("resources[%d].resource", i), "resources[%d] (%q) has its metadata document at the same place, https://%s%s: give each resource its own URI",
				o, c.Resources[o].Name, host, path)
		}
		owner[place{host, path}] = i
	}
	return nil
}

// validateRoutes refuses two resources that claim the same host (or both
// any host) and the same normalized path prefix: one of them could never
// be reached (DESIGN §6). authz refuses them too; here the refusal names
// the field, as every configuration error does.
func (c *Config) validateRoutes() error {
	type claim struct{ host, prefix string }
	owner := map[claim]int{}     // by case-folded prefix
	prefixOf := map[claim]bool{} // by prefix as written (normalized)
	for i := range c.Resources {
		r := &c.Resources[i]
		hosts := []string{""} // any host
		if len(r.Hosts) > 0 {
			hosts = hosts[:0]
			for _, h := range r.Hosts {
				hosts = append(hosts, pathnorm.Host(h))
			}
		}
		prefixes := r.Prefixes()
		if len(prefixes) == 0 {
			prefixes = []string{""}
		}
		for j, raw := range prefixes {
			field := fmt.Sprintf("resources[%d].path_prefix", i)
			if len(r.PathPrefixes) > 0 {
				field = fmt.Sprintf("resources[%d].path_prefixes[%d]", i, j)
			}
			p, err := pathnorm.Prefix(raw)
			if err != nil {
				return c.fieldError(field, "%q is a path servers read differently (%v)", raw, err)
			}
			for _, h := range hosts {
				// Case folded: servers that route without regard to case
				// (Express) cannot tell /mcp/admin from /mcp/Admin.
				k := claim{h, foldASCII(p)}
				if o, dup := owner[k]; dup && o != i {
					where, shown := "any host", p
					if h != "" {
						where = "host " + h
					}
					if shown == "" {
						shown = "/"
					}
					if _, exact := prefixOf[claim{h, p}]; !exact {
						shown += " but for letter case, which servers may not tell apart"
					}
					return c.fieldError(field, "resources[%d] (%q) already claims %s with path prefix %s: one of them could never be reached; give them different hosts or path_prefixes",
						o, c.Resources[o].Name, where, shown)
				}
				owner[k] = i
				prefixOf[claim{h, p}] = true
			}
		}
	}
	return nil
}

// foldASCII lowers the ASCII letters of s.
func foldASCII(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}
