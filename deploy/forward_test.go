package deploy

import (
	"bytes"
	"errors"
	"io"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"

	extauthzv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_authz/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"go.yaml.in/yaml/v3"

	"github.com/mcp-authz/mcp-authz/authz"
)

// The recipes for the forward-auth endpoints (DESIGN §9). deploy/nginx is
// run in a real nginx by e2e TestNginx; the others are checked here as far
// as they can be without their proxy.

// identityHeaders are the headers every recipe must copy from mcp-authz's
// answer to the upstream request, with the default prefix.
func identityHeaders() []string {
	var out []string
	for _, h := range []string{authz.HeaderSubject, authz.HeaderClientID, authz.HeaderScopes, authz.HeaderIssuer,
		authz.HeaderClaims, authz.HeaderResource, authz.HeaderMethod, authz.HeaderTool} {
		out = append(out, "x-mcp-auth-"+h)
	}
	return out
}

func lowerAll(list []string) []string {
	out := make([]string, len(list))
	for i, s := range list {
		out[i] = strings.ToLower(strings.TrimSpace(s))
	}
	return out
}

// yamlDocs decodes every document of a shipped YAML file.
func yamlDocs(t *testing.T, path string) []map[string]any {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var docs []map[string]any
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	for {
		var doc map[string]any
		if err := dec.Decode(&doc); errors.Is(err, io.EOF) {
			return docs
		} else if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		docs = append(docs, doc)
	}
}

// dig walks nested maps.
func dig(t *testing.T, v any, keys ...string) any {
	t.Helper()
	for _, k := range keys {
		m, ok := v.(map[string]any)
		if !ok {
			t.Fatalf("no %q in %v", k, v)
		}
		v = m[k]
	}
	return v
}

func strings_(v any) []string {
	var out []string
	for _, x := range v.([]any) {
		out = append(out, x.(string))
	}
	return out
}

func TestEnvoyHTTPServiceConfig(t *testing.T) {
	b := loadBootstrapFile(t, "envoy/envoy-http.yaml")
	clusters := map[string]bool{}
	for _, c := range b.GetStaticResources().GetClusters() {
		clusters[c.GetName()] = true
	}
	var hcm hcmv3.HttpConnectionManager
	if err := b.GetStaticResources().GetListeners()[0].GetFilterChains()[0].GetFilters()[0].GetTypedConfig().UnmarshalTo(&hcm); err != nil {
		t.Fatal(err)
	}
	if !hcm.GetNormalizePath().GetValue() || !hcm.GetMergeSlashes() ||
		hcm.GetPathWithEscapedSlashesAction() != hcmv3.HttpConnectionManager_REJECT_REQUEST ||
		hcm.GetCommonHttpProtocolOptions().GetHeadersWithUnderscoresAction().String() != "REJECT_REQUEST" {
		t.Error("path normalization and underscore rejection as in envoy.yaml are required")
	}
	var ea extauthzv3.ExtAuthz
	for _, f := range hcm.GetHttpFilters() {
		if f.GetName() == "envoy.filters.http.ext_authz" {
			if err := f.GetTypedConfig().UnmarshalTo(&ea); err != nil {
				t.Fatal(err)
			}
		}
	}
	hs := ea.GetHttpService()
	if hs == nil {
		t.Fatal("no http_service")
	}
	if hs.GetPathPrefix() != authz.ForwardPathEnvoy {
		t.Errorf("path_prefix %q, mcp-authz serves %s/<path>", hs.GetPathPrefix(), authz.ForwardPathEnvoy)
	}
	if !clusters[hs.GetServerUri().GetCluster()] {
		t.Errorf("cluster %q not defined", hs.GetServerUri().GetCluster())
	}
	if ea.GetFailureModeAllow() || ea.GetStatusOnError().GetCode() != 503 {
		t.Error("must fail closed with 503")
	}
	body := ea.GetWithRequestBody()
	if body == nil || body.GetPackAsBytes() || body.GetMaxRequestBytes() > authz.ForwardMaxBody || !body.GetAllowPartialMessage() {
		t.Errorf("with_request_body %v: the HTTP service sends the body as is, at most %d bytes", body, authz.ForwardMaxBody)
	}
	has := func(list []string, name string) bool { return slices.Contains(list, name) }
	var reqExact, reqPrefix, upPrefix, client []string
	for _, p := range hs.GetAuthorizationRequest().GetAllowedHeaders().GetPatterns() {
		reqExact, reqPrefix = append(reqExact, p.GetExact()), append(reqPrefix, p.GetPrefix())
	}
	for _, p := range hs.GetAuthorizationResponse().GetAllowedUpstreamHeaders().GetPatterns() {
		upPrefix = append(upPrefix, p.GetPrefix())
	}
	for _, p := range hs.GetAuthorizationResponse().GetAllowedClientHeaders().GetPatterns() {
		client = append(client, p.GetExact())
	}
	for _, h := range []string{"origin", "mcp-session-id", "access-control-request-method", "content-encoding", "x-api-key", "x-envoy-auth-partial-body"} {
		if !has(reqExact, h) {
			t.Errorf("allowed_headers lacks %s", h)
		}
	}
	if !has(reqPrefix, "x-mcp-auth-") || !has(upPrefix, "x-mcp-auth-") {
		t.Error("x-mcp-auth- must reach mcp-authz (so it can have them removed) and come back to the upstream")
	}
	for _, h := range []string{"www-authenticate", "retry-after", "content-type", "access-control-allow-origin", "access-control-expose-headers", "vary"} {
		if !has(client, h) {
			t.Errorf("allowed_client_headers lacks %s", h)
		}
	}
	var sawMetadata bool
	for _, r := range hcm.GetRouteConfig().GetVirtualHosts()[0].GetRoutes() {
		var per extauthzv3.ExtAuthzPerRoute
		cfg := r.GetTypedPerFilterConfig()["envoy.filters.http.ext_authz"]
		if cfg != nil {
			if err := cfg.UnmarshalTo(&per); err != nil {
				t.Fatal(err)
			}
		}
		if r.GetMatch().GetPrefix() == "/.well-known/oauth-protected-resource" {
			sawMetadata = per.GetDisabled()
		} else if per.GetDisabled() {
			t.Errorf("route %v bypasses ext_authz", r.GetMatch())
		}
	}
	if !sawMetadata {
		t.Error("metadata route must bypass ext_authz")
	}
}

func TestIstioHTTPProvider(t *testing.T) {
	docs := yamlDocs(t, "istio/mcp-authz-http.yaml")
	var provider, policy map[string]any
	for _, d := range docs {
		switch d["kind"] {
		case "IstioOperator":
			for _, p := range dig(t, d, "spec", "meshConfig", "extensionProviders").([]any) {
				provider = p.(map[string]any)
			}
		case "AuthorizationPolicy":
			policy = d
		}
	}
	if provider == nil || policy == nil {
		t.Fatal("provider or policy missing")
	}
	h := dig(t, provider, "envoyExtAuthzHttp").(map[string]any)
	if h["pathPrefix"] != authz.ForwardPathEnvoy || h["failOpen"] != false || h["statusOnError"] != "503" {
		t.Errorf("provider %v", h)
	}
	if dig(t, policy, "spec", "provider", "name") != provider["name"] || dig(t, policy, "spec", "action") != "CUSTOM" {
		t.Errorf("policy %v does not use %v", policy["spec"], provider["name"])
	}
	in := strings_(h["includeRequestHeadersInCheck"])
	for _, want := range []string{"authorization", "origin", "mcp-session-id", "access-control-request-method", "x-mcp-auth-*"} {
		if !slices.Contains(in, want) {
			t.Errorf("includeRequestHeadersInCheck lacks %s", want)
		}
	}
	if !slices.Contains(strings_(h["headersToUpstreamOnAllow"]), "x-mcp-auth-*") ||
		!slices.Contains(strings_(h["headersToDownstreamOnDeny"]), "www-authenticate") {
		t.Errorf("provider headers %v", h)
	}
	if n, _ := dig(t, h, "includeRequestBodyInCheck", "maxRequestBytes").(int); n == 0 || n > authz.ForwardMaxBody {
		t.Errorf("maxRequestBytes %d", n)
	}
}

func TestTraefikForwardAuth(t *testing.T) {
	docs := yamlDocs(t, "traefik/mcp-authz.yaml")
	http := docs[0]["http"].(map[string]any)
	fa := dig(t, http, "middlewares", "mcp-authz", "forwardAuth").(map[string]any)
	if !strings.HasSuffix(fa["address"].(string), authz.ForwardPathForwarded) {
		t.Errorf("address %v", fa["address"])
	}
	if fa["trustForwardHeader"] != false {
		t.Error("trustForwardHeader must be false: a client's X-Forwarded-Uri would choose the path mcp-authz judges")
	}
	copied := lowerAll(strings_(fa["authResponseHeaders"]))
	for _, h := range append(identityHeaders(), "authorization") {
		if !slices.Contains(copied, h) {
			t.Errorf("authResponseHeaders lacks %s", h)
		}
	}
	routers := dig(t, http, "routers").(map[string]any)
	for name, r := range routers {
		rule := r.(map[string]any)["rule"].(string)
		_, guarded := r.(map[string]any)["middlewares"]
		if strings.Contains(rule, "/.well-known/oauth-protected-resource") == guarded {
			t.Errorf("router %s (%s): only the metadata goes unchecked", name, rule)
		}
	}
}

func TestIngressNginxAnnotations(t *testing.T) {
	docs := yamlDocs(t, "ingress-nginx/mcp-authz.yaml")
	var protected, public int
	for _, d := range docs {
		ann, _ := dig(t, d, "metadata").(map[string]any)["annotations"].(map[string]any)
		paths := dig(t, d, "spec", "rules").([]any)[0].(map[string]any)["http"].(map[string]any)["paths"].([]any)
		path := paths[0].(map[string]any)["path"].(string)
		if strings.HasPrefix(path, "/.well-known/oauth-protected-resource") {
			public++
			if ann["nginx.ingress.kubernetes.io/auth-url"] != nil {
				t.Error("the metadata must stay public")
			}
			continue
		}
		protected++
		if !strings.HasSuffix(ann["nginx.ingress.kubernetes.io/auth-url"].(string), authz.ForwardPathNginx) {
			t.Errorf("auth-url %v", ann["nginx.ingress.kubernetes.io/auth-url"])
		}
		if ann["nginx.ingress.kubernetes.io/auth-method"] != "GET" {
			t.Error("auth-method makes the controller set X-Original-URI itself")
		}
		if ann["nginx.ingress.kubernetes.io/auth-keepalive"] != nil {
			t.Error("auth-keepalive replaces auth_request with Lua: the error pages would not see mcp-authz's answer")
		}
		copied := lowerAll(strings.Split(ann["nginx.ingress.kubernetes.io/auth-response-headers"].(string), ","))
		for _, h := range append(identityHeaders(), "authorization") {
			if !slices.Contains(copied, h) {
				t.Errorf("auth-response-headers lacks %s", h)
			}
		}
		snippet := ann["nginx.ingress.kubernetes.io/configuration-snippet"].(string)
		for _, want := range []string{"error_page 403", "error_page 500", "$upstream_http_x_mcp_authz_body"} {
			if !strings.Contains(snippet, want) {
				t.Errorf("configuration-snippet lacks %s", want)
			}
		}
	}
	if protected != 1 || public != 1 {
		t.Fatalf("%d protected and %d public ingresses", protected, public)
	}
}

// TestNginxRecipe: the static half of deploy/nginx (e2e TestNginx runs it).
func TestNginxRecipe(t *testing.T) {
	raw, err := os.ReadFile("nginx/mcp-authz.conf")
	if err != nil {
		t.Fatal(err)
	}
	conf := strings.ToLower(string(raw))
	for _, h := range identityHeaders() {
		v := "$upstream_http_" + strings.ReplaceAll(h, "-", "_")
		if !strings.Contains(conf, v) || !strings.Contains(conf, "proxy_set_header "+h+" ") {
			t.Errorf("%s is not copied from mcp-authz's answer", h)
		}
	}
	for _, want := range []string{"proxy_pass http://mcp_authz_forward" + authz.ForwardPathNginx + ";", "proxy_set_header x-original-uri    $request_uri;",
		"error_page 401", "error_page 403", "error_page 500", `proxy_set_header authorization "";`} {
		if !strings.Contains(conf, want) {
			t.Errorf("recipe lacks %q", want)
		}
	}
}

// TestCaddyfile: Caddy's own parser accepts the recipe (when Debian's caddy
// is installed), and it copies every identity header.
func TestCaddyfile(t *testing.T) {
	raw, err := os.ReadFile("caddy/Caddyfile")
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range identityHeaders() {
		if !strings.Contains(strings.ToLower(string(raw)), h) {
			t.Errorf("copy_headers lacks %s", h)
		}
	}
	if !strings.Contains(string(raw), "uri "+authz.ForwardPathForwarded) {
		t.Error("forward_auth must ask /forwarded")
	}
	caddy, err := exec.LookPath("caddy")
	if err != nil {
		t.Skip("caddy not installed (apt-get install caddy): Caddyfile syntax not checked")
	}
	if out, err := exec.Command(caddy, "adapt", "--config", "caddy/Caddyfile", "--adapter", "caddyfile").CombinedOutput(); err != nil {
		t.Fatalf("caddy adapt: %v\n%s", err, out)
	}
}
