package config

import (
	"os"
	"reflect"
	"regexp"
	"sort"
	"strings"
	"testing"
)

// fieldPaths lists the yaml paths of every field under t ("resources[].issuers[].jwks_uri").
func fieldPaths(t reflect.Type, prefix string) []string {
	for t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice || t.Kind() == reflect.Map {
		if t.Kind() == reflect.Slice {
			prefix += "[]"
		}
		t = t.Elem()
	}
	if t.Kind() != reflect.Struct || reflect.PointerTo(t).Implements(unmarshalerType) {
		return nil
	}
	var paths []string
	for name, f := range yamlFields(t) {
		p := joinPath(prefix, name)
		paths = append(paths, p)
		paths = append(paths, fieldPaths(f.Type, p)...)
	}
	sort.Strings(paths)
	return paths
}

// TestExampleConfigIsComplete: config.example.yaml shows every setting
// (as a key, or as a commented-out key) and its header names every
// environment variable the configuration reads.
func TestExampleConfigIsComplete(t *testing.T) {
	raw, err := os.ReadFile("../config.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	example := string(raw)
	for _, p := range fieldPaths(reflect.TypeOf(Config{}), "") {
		segs := strings.Split(strings.ReplaceAll(p, "[]", ""), ".")
		name := segs[len(segs)-1]
		// As a key, "name:", set or commented out, or named in a comment.
		key := regexp.MustCompile(`(^|[^\w-])` + regexp.QuoteMeta(name) + `:`)
		if !key.MatchString(example) {
			t.Errorf("config.example.yaml does not show %s", p)
		}
	}

	var header strings.Builder
	for _, line := range strings.SplitAfter(example, "\n") {
		if !strings.HasPrefix(line, "#") {
			break
		}
		header.WriteString(line)
	}
	for _, v := range configVariables(t) {
		if !regexp.MustCompile(`\b` + v + `\b`).MatchString(header.String()) {
			t.Errorf("the header of config.example.yaml does not name %s", v)
		}
	}
}

// configVariables lists every environment variable the package reads: what
// Load asks for, and every variable name written in its source.
func configVariables(t *testing.T) []string {
	seen := map[string]bool{}
	for _, v := range EnvironmentVariables() {
		seen[v] = true
	}
	files, err := os.ReadDir(".")
	if err != nil {
		t.Fatal(err)
	}
	name := regexp.MustCompile(`"((?:OAUTH|MCP|REDIS)_[A-Z0-9_]+)"`)
	for _, f := range files {
		if !strings.HasSuffix(f.Name(), ".go") || strings.HasSuffix(f.Name(), "_test.go") {
			continue
		}
		src, err := os.ReadFile(f.Name())
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range name.FindAllStringSubmatch(string(src), -1) {
			seen[m[1]] = true
		}
	}
	var list []string
	for v := range seen {
		list = append(list, v)
	}
	sort.Strings(list)
	if len(list) < 30 {
		t.Fatalf("found only %v", list)
	}
	return list
}

// TestEnvironmentVariablesAreAllListed: the list serve --help prints is
// every variable the source names.
func TestEnvironmentVariablesAreAllListed(t *testing.T) {
	listed := map[string]bool{}
	for _, v := range EnvironmentVariables() {
		listed[v] = true
	}
	for _, v := range configVariables(t) {
		if !listed[v] {
			t.Errorf("%s is named in the source but Load never asks for it", v)
		}
	}
}
