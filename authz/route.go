package authz

import (
	"fmt"
	"strings"

	"github.com/mcp-authz/mcp-authz/internal/pathnorm"
)

// ContextExtensionResource is the Envoy context extension that names the
// protected resource of a route.
const ContextExtensionResource = "mcp_resource"

// router finds a request's resource: by context extension when Envoy sends
// one, else by host and longest path prefix. Lookups cost one map probe per
// path segment, whatever the number of resources.
type router struct {
	byName map[string]*route
	// byHost maps a lower-cased host to its resources by normalized prefix
	// ("" is the root); anyHost holds resources without hosts.
	byHost  map[string]map[string]*route
	anyHost map[string]*route
}

func newRouter() *router {
	return &router{byName: map[string]*route{}, byHost: map[string]map[string]*route{}, anyHost: map[string]*route{}}
}

// add indexes rt. Two resources with overlapping hosts (or both any-host)
// and the same normalized prefix would make one of them unreachable, so
// that is an error naming both.
func (r *router) add(rt *route) error {
	if other, dup := r.byName[rt.Name]; dup {
		return fmt.Errorf("resource name %q used twice (%s and %s)", rt.Name, other.URI, rt.URI)
	}
	r.byName[rt.Name] = rt
	prefixes := rt.PathPrefixes
	if len(prefixes) == 0 {
		prefixes = []string{""}
	}
	seen := map[string]bool{}
	for _, raw := range prefixes {
		p, err := pathnorm.Prefix(raw)
		if err != nil {
			return fmt.Errorf("resource %q: %w", rt.Name, err)
		}
		if seen[p] {
			continue
		}
		seen[p] = true
		if len(rt.Hosts) == 0 {
			if other, ok := r.anyHost[p]; ok {
				return conflict(rt, other, "any host", p)
			}
			r.anyHost[p] = rt
			continue
		}
		for _, h := range rt.Hosts {
			h = pathnorm.Host(h)
			m := r.byHost[h]
			if m == nil {
				m = map[string]*route{}
				r.byHost[h] = m
			}
			if other, ok := m[p]; ok {
				return conflict(rt, other, "host "+h, p)
			}
			m[p] = rt
		}
	}
	return nil
}

func conflict(a, b *route, where, prefix string) error {
	if prefix == "" {
		prefix = "/"
	}
	return fmt.Errorf("resources %q and %q both claim %s with path prefix %s: one of them could never be reached; give them different hosts or path_prefixes",
		b.Name, a.Name, where, prefix)
}

// find returns the resource for a request whose normalized path is path.
// Longer prefixes win; at equal length a host-specific resource wins over
// an any-host one.
func (r *router) find(in *checkInput, path string) *route {
	if in.hasResource {
		return r.byName[in.resource] // an unknown name matches nothing: fail closed
	}
	host := pathnorm.HostOnly(in.host)
	if hasUpper(host) {
		host = strings.ToLower(host)
	}
	hosted := r.byHost[host]
	cand := strings.TrimRight(path, "/")
	for {
		if rt, ok := hosted[cand]; ok {
			return rt
		}
		if rt, ok := r.anyHost[cand]; ok {
			return rt
		}
		if cand == "" {
			return nil
		}
		i := strings.LastIndexByte(cand, '/')
		if i < 0 {
			return nil
		}
		cand = cand[:i]
	}
}

func pathOnly(target string) string {
	if i := strings.IndexAny(target, "?#"); i >= 0 {
		return target[:i]
	}
	return target
}
