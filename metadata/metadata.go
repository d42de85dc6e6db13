// Package metadata describes protected resources: the RFC 9728 Protected
// Resource Metadata document, its well-known location, and the HTTP handler
// that serves it.
package metadata

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
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
// The first document is also served at the bare well-known path.
type Handler struct {
	docs map[string][]byte // request path -> JSON
}

// NewHandler renders docs once; it fails if two resources share a path.
func NewHandler(docs []Document) (*Handler, error) {
	if len(docs) == 0 {
		return nil, errors.New("metadata: no documents")
	}
	h := &Handler{docs: make(map[string][]byte)}
	for i, d := range docs {
		p, err := WellKnownPath(d.Resource)
		if err != nil {
			return nil, fmt.Errorf("metadata: resource: %w", err)
		}
		if u, _ := url.Parse(p); u != nil {
			p = strings.TrimSuffix(u.Path, "/")
		}
		if _, dup := h.docs[p]; dup {
			return nil, fmt.Errorf("metadata: two resources share the metadata path %s", p)
		}
		body, err := render(d)
		if err != nil {
			return nil, err
		}
		h.docs[p] = body
		if i == 0 {
			if _, taken := h.docs[WellKnownPrefix]; !taken {
				h.docs[WellKnownPrefix] = body
			}
		}
	}
	return h, nil
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
	body, ok := h.docs[strings.TrimSuffix(r.URL.Path, "/")]
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
