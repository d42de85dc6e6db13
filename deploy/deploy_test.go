// Package deploy holds the shipped Envoy, Istio and Kubernetes
// configuration; its tests check what can be checked without running them.
package deploy

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	extauthzv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_authz/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	"go.yaml.in/yaml/v3"
	"google.golang.org/protobuf/encoding/protojson"
)

// loadBootstrap decodes envoy.yaml the way Envoy does: YAML to JSON, then
// the Bootstrap proto with every Any resolved and unknown fields rejected.
func loadBootstrap(t *testing.T) *bootstrapv3.Bootstrap {
	t.Helper()
	raw, err := os.ReadFile("envoy/envoy.yaml")
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
		t.Fatalf("envoy.yaml does not match Envoy's schema: %v", err)
	}
	if err := b.ValidateAll(); err != nil {
		t.Fatalf("envoy.yaml fails Envoy's validation rules: %v", err)
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
	found := false
	for _, f := range hcm.GetHttpFilters() {
		if f.GetName() == "envoy.filters.http.ext_authz" {
			if err := f.GetTypedConfig().UnmarshalTo(&authz); err != nil {
				t.Fatal(err)
			}
			found = true
		}
	}
	if !found {
		t.Fatal("no ext_authz filter")
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
	var sawMetadata, sawMCP bool
	for _, r := range routes {
		if !clusters[r.GetRoute().GetCluster()] {
			t.Errorf("route %s targets undefined cluster %q", r.GetMatch().GetPrefix(), r.GetRoute().GetCluster())
		}
		var per extauthzv3.ExtAuthzPerRoute
		if err := r.GetTypedPerFilterConfig()["envoy.filters.http.ext_authz"].UnmarshalTo(&per); err != nil {
			t.Fatalf("route %s: %v", r.GetMatch().GetPrefix(), err)
		}
		switch r.GetMatch().GetPrefix() {
		case "/.well-known/oauth-protected-resource":
			sawMetadata = per.GetDisabled()
		case "/mcp":
			sawMCP = per.GetCheckSettings().GetContextExtensions()["mcp_resource"] == "tools"
		}
	}
	if !sawMetadata {
		t.Error("metadata route must bypass ext_authz")
	}
	if !sawMCP {
		t.Error("/mcp route must name its resource in context_extensions")
	}
}

// TestManifestsParse checks that every shipped YAML document parses, and
// that the compose and Kubernetes files refer to things that exist.
func TestManifestsParse(t *testing.T) {
	files, _ := filepath.Glob("*/*.yaml")
	if len(files) < 5 {
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
