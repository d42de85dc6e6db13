package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	yaml "go.yaml.in/yaml/v3"
)

// secretMarker stands for a secret in FuzzLoad's files.
const secretMarker = "s3cr3t-MARKER"

// secretKeys are the settings whose values are secrets.
var secretKeys = map[string]bool{"client_secret": true, "password": true, "sentinel_password": true, "secret": true, "token": true}

// FuzzLoad: whatever a configuration file holds, Load never panics; a
// refusal is one line (DESIGN §5); and a secret given inline never appears
// in it.
func FuzzLoad(f *testing.F) {
	example, err := os.ReadFile("../config.example.yaml")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(string(example))
	f.Add(okResource)
	f.Add(okResource + "  introspection: {client_id: rs, client_secret: " + secretMarker + "}\n")
	f.Add(okResource + "  introspection: {client_id: rs, client_secret: " + secretMarker + ", timeout: -1}\n")
	f.Add("redis:\n  url: redis://u:" + secretMarker + "@127.0.0.1:6379/0\n  password: " + secretMarker + "\n  db: x\n")
	f.Add("redis:\n  addresses: [127.0.0.1:26379]\n  master_name: m\n  sentinel_password: " + secretMarker + "\n")
	f.Add("admin: {token: " + secretMarker + "}\n")
	f.Add(okResource + "  validation: hmac\n  hmac: {secret: " + secretMarker + ", algorithms: [HS512]}\n")
	f.Add("cache:\n  ttl: 1m\n  ttl: 2m\n")
	f.Add("- a\n- b\n")
	path := filepath.Join(f.TempDir(), "c.yaml") // each fuzzing process has its own
	f.Fuzz(func(t *testing.T, file string) {
		if err := os.WriteFile(path, []byte(file), 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := Load(path, envFunc(nil))
		if err == nil {
			return
		}
		msg := err.Error()
		if strings.ContainsAny(msg, "\n\r") {
			t.Fatalf("not one line: %q", msg)
		}
		if strings.Contains(msg, secretMarker) && onlySecrets(file) {
			t.Fatalf("a secret in the error: %q", msg)
		}
	})
}

// onlySecrets reports whether file parses and every scalar that holds
// secretMarker is the value of a secret setting (or a URL's password: a
// redis url).
func onlySecrets(file string) bool {
	var root yaml.Node
	if yaml.Unmarshal([]byte(file), &root) != nil {
		return false
	}
	ok := true
	var walk func(n *yaml.Node, key string)
	walk = func(n *yaml.Node, key string) {
		switch n.Kind {
		case yaml.ScalarNode:
			if strings.Contains(n.Value, secretMarker) && !secretKeys[key] && !(key == "url" && inUserinfo(n.Value)) {
				ok = false
			}
		case yaml.MappingNode:
			for i := 0; i+1 < len(n.Content); i += 2 {
				if strings.Contains(n.Content[i].Value, secretMarker) {
					ok = false
				}
				walk(n.Content[i+1], n.Content[i].Value)
			}
		default:
			for _, c := range n.Content {
				walk(c, key)
			}
		}
	}
	walk(&root, "")
	return ok
}

// inUserinfo reports whether every secretMarker in the URL u lies in its
// userinfo (between "://" and the last "@").
func inUserinfo(u string) bool {
	i, j := strings.Index(u, "://"), strings.LastIndex(u, "@")
	if i < 0 || j < i {
		return false
	}
	return strings.Count(u[i+3:j], secretMarker) == strings.Count(u, secretMarker)
}
