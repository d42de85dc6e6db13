package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"reflect"
	"regexp"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// decodeYAML decodes raw into cfg. Before the decoder sees it, the document
// is walked against Config's yaml tags, so that an unknown key or a value
// of the wrong type is reported as "FILE:LINE: field.path: what is wrong"
// rather than in terms of Go types.
func decodeYAML(file string, raw []byte, cfg *Config) error {
	var doc yaml.Node
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		return syntaxError(file, err)
	}
	if doc.Kind == 0 {
		return nil // empty file
	}
	if err := checkNode(&doc, reflect.TypeOf(cfg).Elem(), ""); err != nil {
		var pe *pathError
		if errors.As(err, &pe) {
			return fmt.Errorf("%s:%d: %s: %s", file, pe.line, pe.path, pe.msg)
		}
		return fmt.Errorf("%s: %w", file, err)
	}
	// The walk accepted the document, so this decode should too; its error,
	// if any, is still reported.
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	dec.KnownFields(true)
	if err := dec.Decode(cfg); err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("%s: %s", file, oneLine(strings.TrimPrefix(err.Error(), "yaml: ")))
	}
	return nil
}

// pathError is a problem at one node of the document.
type pathError struct {
	path string
	line int
	msg  string
}

func (e *pathError) Error() string { return fmt.Sprintf("line %d: %s: %s", e.line, e.path, e.msg) }

func errAt(n *yaml.Node, path, format string, args ...any) error {
	if path == "" {
		path = "(top level)"
	}
	return &pathError{path: path, line: n.Line, msg: fmt.Sprintf(format, args...)}
}

var yamlLine = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// syntaxError turns the parser's "yaml: line 3: ..." into "FILE:3: ...".
func syntaxError(file string, err error) error {
	msg := oneLine(err.Error())
	if m := yamlLine.FindStringSubmatch(msg); m != nil {
		return fmt.Errorf("%s:%s: not valid YAML: %s", file, m[1], m[2])
	}
	return fmt.Errorf("%s: not valid YAML: %s", file, strings.TrimPrefix(msg, "yaml: "))
}

var (
	unmarshalerType = reflect.TypeOf((*yaml.Unmarshaler)(nil)).Elem()
	durationType    = reflect.TypeOf(Duration(0))
)

// checkNode checks that n can be decoded into a value of type t, naming
// path in what it reports.
func checkNode(n *yaml.Node, t reflect.Type, path string) error {
	switch n.Kind {
	case yaml.DocumentNode:
		if len(n.Content) == 0 {
			return nil
		}
		return checkNode(n.Content[0], t, path)
	case yaml.AliasNode:
		return checkNode(n.Alias, t, path)
	}
	if n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null" {
		return nil // the zero value: the field is unset
	}
	pointer := false
	for t.Kind() == reflect.Pointer {
		t, pointer = t.Elem(), true
	}
	if reflect.PointerTo(t).Implements(unmarshalerType) {
		if n.Kind != yaml.ScalarNode {
			return errAt(n, path, "expected a single value, found %s", kindName(n))
		}
		v := reflect.New(t)
		if err := n.Decode(v.Interface()); err != nil {
			return errAt(n, path, "%s", oneLine(strings.TrimPrefix(err.Error(), "yaml: ")))
		}
		// An explicit 0 would silently become the default: a duration
		// that may be 0 is a pointer (leeway).
		if t == durationType && !pointer && v.Elem().Interface().(Duration) == 0 {
			return errAt(n, path, "0 is not allowed: give a duration greater than 0, or leave the field out for the default")
		}
		return nil
	}
	switch t.Kind() {
	case reflect.Struct:
		return checkMapping(n, t, path)
	case reflect.Map:
		if n.Kind != yaml.MappingNode {
			return errAt(n, path, "expected a mapping (key: value), found %s", kindName(n))
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			if k.Kind != yaml.ScalarNode {
				return errAt(k, path, "keys must be single values")
			}
			if err := checkNode(v, t.Elem(), joinPath(path, k.Value)); err != nil {
				return err
			}
		}
		return nil
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			return errAt(n, path, "expected a list ([a, b] or one \"- item\" per line), found %s", kindName(n))
		}
		for i, c := range n.Content {
			if err := checkNode(c, t.Elem(), fmt.Sprintf("%s[%d]", path, i)); err != nil {
				return err
			}
		}
		return nil
	}
	if n.Kind != yaml.ScalarNode {
		return errAt(n, path, "expected a single value, found %s", kindName(n))
	}
	if err := n.Decode(reflect.New(t).Interface()); err != nil {
		switch t.Kind() {
		case reflect.Bool:
			return errAt(n, path, "%q is not a boolean (true or false)", n.Value)
		case reflect.Int, reflect.Int64, reflect.Int32:
			return errAt(n, path, "%q is not a whole number", n.Value)
		case reflect.Uint, reflect.Uint64, reflect.Uint32:
			return errAt(n, path, "%q is not a whole number of 0 or more", n.Value)
		}
		return errAt(n, path, "%s", oneLine(strings.TrimPrefix(err.Error(), "yaml: ")))
	}
	return nil
}

// checkMapping checks a mapping against struct type t: every key must be
// one of its yaml tags, at most once.
func checkMapping(n *yaml.Node, t reflect.Type, path string) error {
	if n.Kind != yaml.MappingNode {
		return errAt(n, path, "expected a mapping (key: value), found %s", kindName(n))
	}
	fields := yamlFields(t)
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind != yaml.ScalarNode {
			return errAt(k, path, "keys must be single values")
		}
		if k.Value == "<<" { // a merge key: its mapping(s) belong here
			if err := checkMerge(v, t, path); err != nil {
				return err
			}
			continue
		}
		p := joinPath(path, k.Value)
		f, ok := fields[k.Value]
		if !ok {
			names := make([]string, 0, len(fields))
			for name := range fields {
				names = append(names, name)
			}
			if s := closest(k.Value, names); s != "" {
				return errAt(k, p, "unknown field; did you mean %s?", s)
			}
			where := "the top level"
			if path != "" {
				where = path
			}
			return errAt(k, p, "unknown field: not a setting of %s (config.example.yaml lists them all)", where)
		}
		if seen[k.Value] {
			return errAt(k, p, "given twice")
		}
		seen[k.Value] = true
		if err := checkNode(v, f.Type, p); err != nil {
			return err
		}
	}
	return nil
}

func checkMerge(v *yaml.Node, t reflect.Type, path string) error {
	if v.Kind == yaml.AliasNode {
		v = v.Alias
	}
	if v.Kind == yaml.SequenceNode {
		for _, c := range v.Content {
			if err := checkMerge(c, t, path); err != nil {
				return err
			}
		}
		return nil
	}
	return checkMapping(v, t, path)
}

// yamlFields maps the yaml names of t's fields to the fields.
func yamlFields(t reflect.Type) map[string]reflect.StructField {
	m := map[string]reflect.StructField{}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		switch name {
		case "-":
			continue
		case "":
			name = strings.ToLower(f.Name)
		}
		m[name] = f
	}
	return m
}

func joinPath(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		return strconv.Quote(n.Value)
	}
	return "something else"
}

// closest returns the name nearest to s, if it is near enough to be what
// was meant: a few edits away (ignoring case, "_" and "-"), or the only
// name that s begins.
func closest(s string, names []string) string {
	norm := func(x string) string {
		return strings.NewReplacer("_", "", "-", "", " ", "").Replace(strings.ToLower(x))
	}
	best, bestD := "", 1<<30
	for _, name := range names {
		d := levenshtein(norm(s), norm(name))
		if d < bestD || (d == bestD && name < best) {
			best, bestD = name, d
		}
	}
	limit := 2
	if len(s) >= 10 {
		limit = 3
	}
	if bestD <= limit {
		return best
	}
	// A name cut short ("sha" for "sha256"), if only one fits.
	var prefixed []string
	for _, name := range names {
		if len(s) >= 3 && strings.HasPrefix(norm(name), norm(s)) {
			prefixed = append(prefixed, name)
		}
	}
	if len(prefixed) == 1 {
		return prefixed[0]
	}
	return ""
}

// levenshtein is the edit distance between a and b (bytes; names are ASCII).
func levenshtein(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
