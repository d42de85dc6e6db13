// Package metadata describes protected resources: the RFC 9728 Protected
// Resource Metadata document, its well-known location, and the HTTP handler
// that serves it.
package metadata

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
)

// WellKnownPrefix is the RFC 9728 §3 well-known URI suffix.
const WellKnownPrefix = "/.well-known/oauth-protected-resource"

// Document is an RFC 9728 Protected Resource Metadata document. Empty fields
// are omitted, never sent as null.
type Document struct {
	Resource               string   `json:"resource"`
	AuthorizationServers   []string `json:"authorization_servers,omitempty"`
	ScopesSupported        []string `json:"scopes_supported,omitempty"`
	BearerMethodsSupported []string `json:"bearer_methods_supported,omitempty"`
	ResourceName           string   `json:"resource_name,omitempty"`
	ResourceDocumentation  string   `json:"resource_documentation,omitempty"`
}

// ParseResource checks that resource is an RFC 9728 resource identifier: an
// absolute https URL (http only for loopback hosts) without fragment.
func ParseResource(resource string) (*url.URL, error) {
	u, err := url.Parse(resource)
	if err != nil {
		return nil, fmt.Errorf("not a URL: %w", err)
	}
	if u.Scheme != "https" && u.Scheme != "http" {
		return nil, fmt.Errorf("%q must be an https URL", resource)
	}
	if u.Host == "" {
		return nil, fmt.Errorf("%q has no host", resource)
	}
	if u.Fragment != "" || strings.Contains(resource, "#") {
		return nil, fmt.Errorf("%q must not have a fragment", resource)
	}
	if u.User != nil {
		return nil, fmt.Errorf("%q must not carry credentials", resource)
	}
	return u, nil
}

// WellKnownPath returns the path of resource's metadata document: the
// well-known prefix inserted before the resource's path and query
// (https://h/mcp -> /.well-known/oauth-protected-resource/mcp).
func WellKnownPath(resource string) (string, error) {
	u, err := ParseResource(resource)
	if err != nil {
		return "", err
	}
	p := u.EscapedPath()
	if p == "/" {
		p = "" // RFC 9728 §3.1: a terminating slash after the host is removed
	}
	if u.RawQuery != "" {
		p += "?" + u.RawQuery
	}
	return WellKnownPrefix + p, nil
}

// WellKnownURL returns the absolute URL of resource's metadata document, the
// value of resource_metadata in challenges.
func WellKnownURL(resource string) (string, error) {
	u, err := ParseResource(resource)
	if err != nil {
		return "", err
	}
	p, err := WellKnownPath(resource)
	if err != nil {
		return "", err
	}
	return u.Scheme + "://" + u.Host + p, nil
}

// Handler serves metadata documents at their path-inserted well-known paths.
// The first document is also served at the bare well-known path. Resources
// whose documents share a path on different hosts (https://a.example/mcp
// and https://b.example/mcp) are told apart by the request's Host: the
// documents are public, and their contents still come from configuration.
type Handler struct {
	docs map[string][]hostDoc // request path -> documents, by host
}

// hostDoc is a rendered document and the host (lower-case, with the port
// when the resource names one) of its resource.
type hostDoc struct {
	host string
	body []byte
}

// DocumentAt is where the handler serves resource's document: its host
// (lower-cased, port kept) and the path requests are matched against. Two
// resources with the same pair cannot both be served, and the
// configuration refuses them.
func DocumentAt(resource string) (host, path string, err error) {
	u, err := ParseResource(resource)
	if err != nil {
		return "", "", err
	}
	p, err := WellKnownPath(resource)
	if err != nil {
		return "", "", err
	}
	if pu, _ := url.Parse(p); pu != nil {
		p = strings.TrimSuffix(pu.Path, "/")
	}
	return strings.ToLower(u.Host), p, nil
}

// NewHandler renders docs once; it fails if two resources share a path on
// the same host.
func NewHandler(docs []Document) (*Handler, error) {
	if len(docs) == 0 {
		return nil, errors.New("metadata: no documents")
	}
	h := &Handler{docs: make(map[string][]hostDoc)}
	for i, d := range docs {
		host, p, err := DocumentAt(d.Resource)
		if err != nil {
			return nil, fmt.Errorf("metadata: resource: %w", err)
		}
		for _, o := range h.docs[p] {
			if o.host == host {
				return nil, fmt.Errorf("metadata: two resources share the metadata path %s on %s", p, host)
			}
		}
		body, err := render(d)
		if err != nil {
			return nil, err
		}
		h.docs[p] = append(h.docs[p], hostDoc{host: host, body: body})
		if i == 0 {
			if _, taken := h.docs[WellKnownPrefix]; !taken {
				h.docs[WellKnownPrefix] = []hostDoc{{host: host, body: body}}
			}
		}
	}
	return h, nil
}

// lookup returns the document for path as asked of host: the only one
// there, else the one of that host (with its port, else by name alone).
func (h *Handler) lookup(path, host string) ([]byte, bool) {
	docs := h.docs[path]
	switch len(docs) {
	case 0:
		return nil, false
	case 1:
		return docs[0].body, true
	}
	host = strings.ToLower(host)
	for _, d := range docs {
		if d.host == host {
			return d.body, true
		}
	}
	name := hostName(host)
	for _, d := range docs {
		if hostName(d.host) == name {
			return d.body, true
		}
	}
	return nil, false
}

// hostName is host without its port.
func hostName(host string) string {
	if h, _, err := net.SplitHostPort(host); err == nil {
		return h
	}
	return host
}

// Paths lists the paths the handler answers, for mounting on a mux.
func (h *Handler) Paths() []string {
	paths := make([]string, 0, len(h.docs))
	for p := range h.docs {
		paths = append(paths, p)
	}
	return paths
}

func render(d Document) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false) // keep "resource" byte-identical to the configuration
	if err := enc.Encode(d); err != nil {
		return nil, fmt.Errorf("metadata: %w", err)
	}
	return buf.Bytes(), nil
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, ok := h.lookup(strings.TrimSuffix(r.URL.Path, "/"), r.Host)
	if !ok {
		http.NotFound(w, r)
		return
	}
	hdr := w.Header()
	// Browser-based MCP clients fetch this cross-origin.
	hdr.Set("Access-Control-Allow-Origin", "*")
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		hdr.Set("Content-Type", "application/json")
		hdr.Set("Cache-Control", "public, max-age=3600")
		hdr.Set("Content-Length", fmt.Sprint(len(body)))
		w.WriteHeader(http.StatusOK)
		if r.Method == http.MethodGet {
			_, _ = w.Write(body)
		}
	case http.MethodOptions:
		hdr.Set("Access-Control-Allow-Methods", "GET, HEAD, OPTIONS")
		hdr.Set("Access-Control-Allow-Headers", "Authorization, Content-Type, MCP-Protocol-Version")
		hdr.Set("Access-Control-Max-Age", "86400")
		w.WriteHeader(http.StatusNoContent)
	default:
		hdr.Set("Allow", "GET, HEAD, OPTIONS")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
	}
}
