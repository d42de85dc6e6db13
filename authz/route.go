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
//
// Prefixes match case-sensitively, as Envoy's routes do, but MCP servers
// may not: Express routes without regard to case by default. With /mcp
// and /mcp/admin claimed by two resources, /mcp/ADMIN would be judged as
// /mcp's and served as /mcp/admin. So a path whose resource changes when
// letter case is ignored is ambiguous (find), and two prefixes that differ
// only in case are refused (add).
type router struct {
	byName map[string]*route
	// byHost maps a lower-cased host to its resources by normalized prefix
	// ("" is the root); anyHost holds resources without hosts.
	byHost  map[string]map[string]*route
	anyHost map[string]*route
	// foldedByHost and foldedAny are byHost and anyHost with ASCII letters
	// in prefixes lowered; upper says whether a prefix has an upper-case
	// letter (a path without one then needs no second lookup).
	foldedByHost map[string]map[string]*route
	foldedAny    map[string]*route
	upper        bool
}

func newRouter() *router {
	return &router{byName: map[string]*route{}, byHost: map[string]map[string]*route{}, anyHost: map[string]*route{},
		foldedByHost: map[string]map[string]*route{}, foldedAny: map[string]*route{}}
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
		r.upper = r.upper || hasUpper(p)
		if len(rt.Hosts) == 0 {
			if err := claim(r.anyHost, r.foldedAny, rt, "any host", p); err != nil {
				return err
			}
			continue
		}
		for _, h := range rt.Hosts {
			h = pathnorm.Host(h)
			if r.byHost[h] == nil {
				r.byHost[h], r.foldedByHost[h] = map[string]*route{}, map[string]*route{}
			}
			if err := claim(r.byHost[h], r.foldedByHost[h], rt, "host "+h, p); err != nil {
				return err
			}
		}
	}
	return nil
}

// claim gives rt the prefix p in exact and its case-folded form in folded.
func claim(exact, folded map[string]*route, rt *route, where, p string) error {
	if other, ok := exact[p]; ok {
		return conflict(rt, other, where, p)
	}
	if other, ok := folded[asciiLower(p)]; ok && other != rt {
		return conflict(rt, other, where, p+" (or the same but for letter case, which servers may not tell apart)")
	}
	exact[p], folded[asciiLower(p)] = rt, rt
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
// an any-host one. ambiguous: the request would be judged as one resource
// and could be served as another by a server that ignores letter case
// (the path's resource by prefix changes when case is ignored, and is
// not the one found); it is then refused. A request that matches no
// resource is denied anyway and stays so.
func (r *router) find(in *checkInput, path string) (rt *route, ambiguous bool) {
	fold := r.upper || hasUpper(path)
	if in.hasResource {
		rt = r.byName[in.resource] // an unknown name matches nothing: fail closed
		if rt == nil || !fold {
			return rt, false
		}
	}
	host := pathnorm.HostOnly(in.host)
	if hasUpper(host) {
		host = strings.ToLower(host)
	}
	byPrefix := longest(r.byHost[host], r.anyHost, path)
	if !in.hasResource {
		rt = byPrefix
	}
	if rt != nil && fold {
		folded := longest(r.foldedByHost[host], r.foldedAny, asciiLower(path))
		ambiguous = folded != byPrefix && folded != rt
	}
	return rt, ambiguous
}

// longest returns the resource of the longest prefix of path in hosted or
// anyHost, hosted first at equal length.
func longest(hosted, anyHost map[string]*route, path string) *route {
	cand := strings.TrimRight(path, "/")
	for {
		if rt, ok := hosted[cand]; ok {
			return rt
		}
		if rt, ok := anyHost[cand]; ok {
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
