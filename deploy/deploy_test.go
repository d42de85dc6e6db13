// Package deploy holds the shipped Envoy, Istio and Kubernetes
// configuration; its tests check what can be checked without running them.
package deploy

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/cors/v3"
	extauthzv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_authz/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	"go.yaml.in/yaml/v3"
	"google.golang.org/protobuf/encoding/protojson"
)

// loadBootstrap decodes envoy.yaml the way Envoy does: YAML to JSON, then
// the Bootstrap proto with every Any resolved and unknown fields rejected.
func loadBootstrap(t *testing.T) *bootstrapv3.Bootstrap {
	t.Helper()
	return loadBootstrapFile(t, "envoy/envoy.yaml")
}

// loadBootstrapFile is loadBootstrap for any shipped Envoy configuration.
func loadBootstrapFile(t *testing.T, path string) *bootstrapv3.Bootstrap {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var doc any
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	js, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	var b bootstrapv3.Bootstrap
	if err := protojson.Unmarshal(js, &b); err != nil {
		t.Fatalf("%s does not match Envoy's schema: %v", path, err)
	}
	if err := b.ValidateAll(); err != nil {
		t.Fatalf("%s fails Envoy's validation rules: %v", path, err)
	}
	return &b
}

func TestEnvoyConfig(t *testing.T) {
	b := loadBootstrap(t)
	clusters := map[string]bool{}
	for _, c := range b.GetStaticResources().GetClusters() {
		clusters[c.GetName()] = true
	}
	var hcm hcmv3.HttpConnectionManager
	if err := b.GetStaticResources().GetListeners()[0].GetFilterChains()[0].GetFilters()[0].GetTypedConfig().UnmarshalTo(&hcm); err != nil {
		t.Fatal(err)
	}
	var authz extauthzv3.ExtAuthz
	found, sawCORS := false, false
	for _, f := range hcm.GetHttpFilters() {
		switch f.GetName() {
		case "envoy.filters.http.cors":
			sawCORS = true
		case "envoy.filters.http.ext_authz":
			if err := f.GetTypedConfig().UnmarshalTo(&authz); err != nil {
				t.Fatal(err)
			}
			found = true
			if !sawCORS {
				t.Error("the CORS filter must come before ext_authz")
			}
		}
	}
	if !found {
		t.Fatal("no ext_authz filter")
	}
	// The path mcp-authz judges must be the path the upstream serves.
	if !hcm.GetNormalizePath().GetValue() || !hcm.GetMergeSlashes() ||
		hcm.GetPathWithEscapedSlashesAction() != hcmv3.HttpConnectionManager_REJECT_REQUEST {
		t.Error("normalize_path, merge_slashes and path_with_escaped_slashes_action: REJECT_REQUEST are required")
	}
	if hcm.GetCommonHttpProtocolOptions().GetHeadersWithUnderscoresAction().String() != "REJECT_REQUEST" {
		t.Error("headers_with_underscores_action must be REJECT_REQUEST")
	}
	if !authz.GetValidateMutations() {
		t.Error("validate_mutations must be on")
	}
	body := authz.GetWithRequestBody()
	if body == nil || !body.GetPackAsBytes() || !body.GetAllowPartialMessage() {
		t.Error("with_request_body must be set with pack_as_bytes and allow_partial_message")
	}
	// mcp-authz's default gRPC receive limit is 256 KiB; leave room for headers.
	if n := body.GetMaxRequestBytes(); n == 0 || n > 192<<10 {
		t.Errorf("with_request_body.max_request_bytes %d does not fit mcp-authz's 256 KiB receive limit", n)
	}
	if d := authz.GetGrpcService().GetTimeout().AsDuration(); d < time.Second {
		t.Errorf("ext_authz timeout %v leaves no room for a first introspection", d)
	}
	if authz.GetFailureModeAllow() {
		t.Error("ext_authz fails open")
	}
	if c := authz.GetGrpcService().GetEnvoyGrpc().GetClusterName(); !clusters[c] {
		t.Errorf("ext_authz cluster %q is not defined", c)
	}
	if authz.GetTransportApiVersion().String() != "V3" {
		t.Errorf("transport_api_version %v", authz.GetTransportApiVersion())
	}

	routes := hcm.GetRouteConfig().GetVirtualHosts()[0].GetRoutes()
	var sawMetadata bool
	named := map[string]bool{}
	for _, r := range routes {
		m := r.GetMatch().GetPrefix() + r.GetMatch().GetPath()
		if !clusters[r.GetRoute().GetCluster()] {
			t.Errorf("route %s targets undefined cluster %q", m, r.GetRoute().GetCluster())
		}
		var per extauthzv3.ExtAuthzPerRoute
		if err := r.GetTypedPerFilterConfig()["envoy.filters.http.ext_authz"].UnmarshalTo(&per); err != nil {
			t.Fatalf("route %s: %v", m, err)
		}
		if m == "/.well-known/oauth-protected-resource" {
			sawMetadata = per.GetDisabled()
			continue
		}
		if per.GetDisabled() {
			t.Errorf("route %s to the MCP server bypasses ext_authz", m)
		}
		named[m] = per.GetCheckSettings().GetContextExtensions()["mcp_resource"] == "tools"
	}
	if !sawMetadata {
		t.Error("metadata route must bypass ext_authz")
	}
	for _, p := range []string{"/mcp", "/sse", "/messages"} {
		if !named[p] {
			t.Errorf("route %s must name its resource in context_extensions", p)
		}
	}
}

// yamlFiles lists every YAML file under deploy/.
func yamlFiles(t *testing.T) []string {
	t.Helper()
	var files []string
	err := filepath.WalkDir(".", func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && strings.HasSuffix(p, ".yaml") {
			files = append(files, p)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

// TestManifestsParse checks that every shipped YAML document parses, and
// that the compose and Kubernetes files refer to things that exist.
func TestManifestsParse(t *testing.T) {
	files := yamlFiles(t)
	if len(files) < 12 {
		t.Fatalf("found only %v", files)
	}
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		dec := yaml.NewDecoder(bytes.NewReader(raw))
		n := 0
		for {
			var doc map[string]any
			err := dec.Decode(&doc)
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			n++
			if k, ok := doc["kind"].(string); ok && strings.HasPrefix(f, "kubernetes") && doc["apiVersion"] == nil {
				t.Errorf("%s: %s without apiVersion", f, k)
			}
		}
		if n == 0 {
			t.Errorf("%s: no documents", f)
		}
	}
}

// TestIstioPolicyCoversEveryRoutedPath: whatever the VirtualService sends
// to the MCP server, the CUSTOM policy must check (a path list in the
// policy narrower than the routes' prefixes is a bypass).
func TestIstioPolicyCoversEveryRoutedPath(t *testing.T) {
	raw, err := os.ReadFile("istio/mcp-authz.yaml")
	if err != nil {
		t.Fatal(err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	var policy, vs map[string]any
	for {
		var doc map[string]any
		if err := dec.Decode(&doc); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		switch doc["kind"] {
		case "AuthorizationPolicy":
			policy = doc
		case "VirtualService":
			vs = doc
		}
	}
	if policy == nil || vs == nil {
		t.Fatal("policy or virtual service missing")
	}
	spec := policy["spec"].(map[string]any)
	if spec["action"] != "CUSTOM" {
		t.Fatalf("action %v", spec["action"])
	}
	rules, _ := spec["rules"].([]any)
	if len(rules) == 0 {
		t.Fatal("no rules: a CUSTOM policy without rules checks nothing")
	}
	for _, r := range rules {
		if m, _ := r.(map[string]any); len(m) != 0 {
			t.Errorf("rule %v narrows the check; it must match every request", m)
		}
	}
	for _, h := range vs["spec"].(map[string]any)["http"].([]any) {
		for _, m := range h.(map[string]any)["match"].([]any) {
			uri := m.(map[string]any)["uri"].(map[string]any)
			if p, ok := uri["prefix"].(string); ok && !strings.HasPrefix(p, "/.well-known/") {
				t.Errorf("route prefix %q also matches %sfoo and %s;x: match exact paths", p, p, p)
			}
		}
	}
}

// TestNetworkPolicyGuardsTheGRPCPort: only labelled clients reach 9191.
func TestNetworkPolicyGuardsTheGRPCPort(t *testing.T) {
	raw, err := os.ReadFile("kubernetes/base/mcp-authz.yaml")
	if err != nil {
		t.Fatal(err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	for {
		var doc struct {
			Kind string `yaml:"kind"`
			Spec struct {
				Ingress []struct {
					From  []map[string]any `yaml:"from"`
					Ports []struct {
						Port int `yaml:"port"`
					} `yaml:"ports"`
				} `yaml:"ingress"`
			} `yaml:"spec"`
		}
		if err := dec.Decode(&doc); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		if doc.Kind != "NetworkPolicy" {
			continue
		}
		for _, in := range doc.Spec.Ingress {
			for _, p := range in.Ports {
				if p.Port == 9191 && len(in.From) == 0 {
					t.Fatal("the gRPC port is open to every pod")
				}
			}
		}
		return
	}
	t.Fatal("no NetworkPolicy")
}

// TestMTLSCluster: the mTLS variant of the ext_authz cluster is a valid
// Envoy Cluster that presents a client certificate and verifies mcp-authz.
func TestMTLSCluster(t *testing.T) {
	raw, err := os.ReadFile("envoy/mtls-cluster.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var doc any
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	js, _ := json.Marshal(doc)
	var c clusterv3.Cluster
	if err := protojson.Unmarshal(js, &c); err != nil {
		t.Fatalf("mtls-cluster.yaml does not match Envoy's schema: %v", err)
	}
	if err := c.ValidateAll(); err != nil {
		t.Fatalf("mtls-cluster.yaml fails Envoy's validation rules: %v", err)
	}
	var up tlsv3.UpstreamTlsContext
	if err := c.GetTransportSocket().GetTypedConfig().UnmarshalTo(&up); err != nil {
		t.Fatal(err)
	}
	ctx := up.GetCommonTlsContext()
	if len(ctx.GetTlsCertificates()) == 0 || ctx.GetValidationContext().GetTrustedCa().GetFilename() == "" {
		t.Fatal("the cluster must present a client certificate and verify mcp-authz's")
	}
	if c.GetName() != "mcp_authz" {
		t.Fatalf("name %q: it replaces envoy.yaml's mcp_authz cluster", c.GetName())
	}
}
