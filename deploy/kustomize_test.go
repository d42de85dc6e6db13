package deploy

import (
	"bytes"
	"errors"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// namespace is where deploy/kubernetes puts mcp-authz, and what deploy/istio
// and the Redis URL assume.
const namespace = "mcp-authz"

type kustomization struct {
	Kind       string   `yaml:"kind"`
	Namespace  string   `yaml:"namespace"`
	Resources  []string `yaml:"resources"`
	Components []string `yaml:"components"`
	Patches    []struct {
		Path string `yaml:"path"`
	} `yaml:"patches"`
	SecretGenerator []struct {
		Namespace string   `yaml:"namespace"`
		Files     []string `yaml:"files"`
	} `yaml:"secretGenerator"`
}

// manifest is the part of a Kubernetes object these tests look at.
type manifest struct {
	APIVersion string `yaml:"apiVersion"`
	Kind       string `yaml:"kind"`
	Metadata   struct {
		Name      string `yaml:"name"`
		Namespace string `yaml:"namespace"`
	} `yaml:"metadata"`
	raw map[string]any
}

func readManifests(t *testing.T, path string) []manifest {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return decodeManifests(t, path, raw)
}

func decodeManifests(t *testing.T, name string, raw []byte) []manifest {
	t.Helper()
	var list []manifest
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	for {
		var n yaml.Node
		if err := dec.Decode(&n); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		var m manifest
		if err := n.Decode(&m); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if err := n.Decode(&m.raw); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if m.APIVersion == "" || m.Kind == "" || m.Metadata.Name == "" {
			t.Errorf("%s: a document without apiVersion, kind or metadata.name", name)
		}
		list = append(list, m)
	}
	return list
}

func kustomizations(t *testing.T) map[string]kustomization {
	t.Helper()
	all := map[string]kustomization{}
	_ = filepath.WalkDir(".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.Name() != "kustomization.yaml" {
			return err
		}
		raw, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		var k kustomization
		if err := yaml.Unmarshal(raw, &k); err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		all[filepath.Dir(p)] = k
		return nil
	})
	return all
}

// gitignored reports whether dir's .gitignore lists name: a file the
// operator makes (a secret), which the repository must not hold.
func gitignored(dir, name string) bool {
	b, err := os.ReadFile(filepath.Join(dir, ".gitignore"))
	return err == nil && slices.Contains(strings.Fields(string(b)), name)
}

// TestKustomizations: every kustomization lists files and directories that
// exist (a secret the operator makes is git-ignored instead), resources
// parse, components are components, and the documented entry points exist.
func TestKustomizations(t *testing.T) {
	all := kustomizations(t)
	for _, dir := range []string{"kubernetes/base", "kubernetes/overlays/with-redis", "kubernetes/overlays/with-istio"} {
		if _, ok := all[dir]; !ok {
			t.Errorf("%s/kustomization.yaml is missing (README: kubectl apply -k deploy/%s)", dir, dir)
		}
	}
	for dir, k := range all {
		for _, r := range k.Resources {
			p := filepath.Join(dir, r)
			st, err := os.Stat(p)
			switch {
			case err != nil:
				t.Errorf("%s: resource %s: %v", dir, r, err)
			case st.IsDir():
				if _, ok := all[filepath.Clean(p)]; !ok {
					t.Errorf("%s: resource %s is a directory without kustomization.yaml", dir, r)
				}
			default:
				readManifests(t, p)
			}
		}
		for _, c := range k.Components {
			p := filepath.Clean(filepath.Join(dir, c))
			if ck, ok := all[p]; !ok || ck.Kind != "Component" {
				t.Errorf("%s: component %s is not a kustomize Component", dir, c)
			}
		}
		for _, p := range k.Patches {
			if _, err := os.Stat(filepath.Join(dir, p.Path)); err != nil {
				t.Errorf("%s: patch %s: %v", dir, p.Path, err)
			} else {
				readManifests(t, filepath.Join(dir, p.Path))
			}
		}
		for _, g := range k.SecretGenerator {
			for _, f := range g.Files {
				_, name, ok := strings.Cut(f, "=")
				if !ok {
					name = f
				}
				if _, err := os.Stat(filepath.Join(dir, name)); err != nil && !gitignored(dir, name) {
					t.Errorf("%s: secret file %s neither exists nor is git-ignored as the operator's to make", dir, name)
				}
			}
		}
	}
}

// TestNamespacesAgree: deploy/kubernetes puts everything in mcp-authz, and
// what names mcp-authz's address elsewhere (Istio, the Redis URL) says the
// same namespace.
func TestNamespacesAgree(t *testing.T) {
	all := kustomizations(t)
	if ns := all["kubernetes/base"].Namespace; ns != namespace {
		t.Fatalf("kubernetes/base namespace %q, want %q", ns, namespace)
	}
	var hasNamespace bool
	for _, f := range yamlFiles(t) {
		if !strings.HasPrefix(f, "kubernetes/") || filepath.Base(f) == "kustomization.yaml" {
			continue
		}
		for _, m := range readManifests(t, f) {
			if m.Kind == "Namespace" {
				hasNamespace = hasNamespace || m.Metadata.Name == namespace
				continue
			}
			if m.Metadata.Namespace != "" && m.Metadata.Namespace != namespace {
				t.Errorf("%s: %s %s in namespace %q", f, m.Kind, m.Metadata.Name, m.Metadata.Namespace)
			}
		}
	}
	if !hasNamespace {
		t.Error("no Namespace object: kubectl apply -k would fail on a fresh cluster")
	}
	for dir, k := range all {
		for _, g := range k.SecretGenerator {
			if g.Namespace != "" && g.Namespace != namespace {
				t.Errorf("%s: secret generated into %q", dir, g.Namespace)
			}
		}
	}

	service := regexp.MustCompile(`mcp-authz\.([a-z0-9-]+)\.svc`)
	istio, err := os.ReadFile("istio/mcp-authz.yaml")
	if err != nil {
		t.Fatal(err)
	}
	found := service.FindAllStringSubmatch(string(istio), -1)
	if len(found) < 2 { // the mesh config's provider and the metadata route
		t.Fatalf("deploy/istio names mcp-authz's service %d times", len(found))
	}
	for _, m := range found {
		if m[1] != namespace {
			t.Errorf("deploy/istio: %s, but mcp-authz runs in %s", m[0], namespace)
		}
	}

	// REDIS_URL names the Service that components/redis creates.
	redisURL := regexp.MustCompile(`redis://([a-z0-9-]+)\.([a-z0-9-]+)\.svc:(\d+)/`)
	patch, err := os.ReadFile("kubernetes/components/redis/mcp-authz-redis.yaml")
	if err != nil {
		t.Fatal(err)
	}
	m := redisURL.FindStringSubmatch(string(patch))
	if m == nil {
		t.Fatal("no REDIS_URL in the Redis component")
	}
	if m[2] != namespace {
		t.Errorf("REDIS_URL's namespace %s, want %s", m[2], namespace)
	}
	var svc bool
	for _, r := range readManifests(t, "kubernetes/components/redis/redis.yaml") {
		if r.Kind == "Service" && r.Metadata.Name == m[1] {
			svc = true
			ports, _ := r.raw["spec"].(map[string]any)["ports"].([]any)
			if len(ports) == 0 || strings.TrimSpace(toString(ports[0].(map[string]any)["port"])) != m[3] {
				t.Errorf("Service %s does not serve port %s", m[1], m[3])
			}
		}
	}
	if !svc {
		t.Errorf("REDIS_URL names Service %s, which components/redis does not create", m[1])
	}
}

func toString(v any) string {
	b, _ := yaml.Marshal(v)
	return string(b)
}

// TestKustomizeBuild builds every entry point with kubectl's kustomize, when
// kubectl is installed: what `kubectl apply -k` would send.
func TestKustomizeBuild(t *testing.T) {
	kubectl, err := exec.LookPath("kubectl")
	if err != nil {
		t.Skip("kubectl not installed; TestKustomizations checks the files")
	}
	// A copy, with the verdict secret the operator would make.
	tmp := t.TempDir()
	for _, dir := range []string{"kubernetes", "istio"} {
		if err := os.CopyFS(filepath.Join(tmp, dir), os.DirFS(dir)); err != nil {
			t.Fatal(err)
		}
	}
	secret := filepath.Join(tmp, "kubernetes/components/redis/verdict-secrets")
	if err := os.WriteFile(secret, []byte(strings.Repeat("s", 32)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, dir := range []string{"kubernetes/base", "kubernetes/overlays/with-redis", "kubernetes/overlays/with-istio"} {
		t.Run(dir, func(t *testing.T) {
			out, err := exec.Command(kubectl, "kustomize", filepath.Join(tmp, dir)).Output()
			if err != nil {
				var ee *exec.ExitError
				if errors.As(err, &ee) {
					t.Fatalf("kubectl kustomize: %v\n%s", err, ee.Stderr)
				}
				t.Fatal(err)
			}
			kinds := map[string]bool{}
			var secretName string
			for _, m := range decodeManifests(t, dir, out) {
				kinds[m.Kind] = true
				ns := m.Metadata.Namespace
				switch m.Kind {
				case "Namespace":
				case "AuthorizationPolicy", "VirtualService":
					if ns != "mcp" {
						t.Errorf("%s %s in %q: it belongs with the MCP server (mcp)", m.Kind, m.Metadata.Name, ns)
					}
				default:
					if ns != namespace {
						t.Errorf("%s %s in %q", m.Kind, m.Metadata.Name, ns)
					}
				}
				if m.Kind == "Secret" {
					secretName = m.Metadata.Name
				}
			}
			for _, k := range []string{"Namespace", "ConfigMap", "Deployment", "Service", "PodDisruptionBudget", "NetworkPolicy"} {
				if !kinds[k] {
					t.Errorf("no %s", k)
				}
			}
			switch dir {
			case "kubernetes/overlays/with-redis":
				if secretName == "" || !strings.Contains(string(out), "secretName: "+secretName) {
					t.Errorf("the Deployment does not mount the generated Secret %q", secretName)
				}
				if !strings.Contains(string(out), "REDIS_URL") || !strings.Contains(string(out), "image: redis:") {
					t.Error("no Redis, or mcp-authz not pointed at it")
				}
			case "kubernetes/overlays/with-istio":
				if !kinds["AuthorizationPolicy"] || !kinds["VirtualService"] {
					t.Error("the Istio objects are missing")
				}
			}
		})
	}
}
