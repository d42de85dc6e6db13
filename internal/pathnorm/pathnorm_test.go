package pathnorm

import (
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// pathCases are grep-able by name. want "" means refused.
var pathCases = []struct {
	name, in, want string
}{
	// Already normal: returned as is.
	{"root", "/", "/"},
	{"mcp", "/mcp", "/mcp"},
	{"messages", "/mcp/messages", "/mcp/messages"},
	{"trailing slash kept", "/mcp/", "/mcp/"},
	{"sub-delims colon at", "/a/!$&'()*+,=:@", "/a/!$&'()*+,=:@"},
	{"brackets pass", "/a[0]", "/a[0]"},
	{"dots inside names", "/a/.b/c./..d/e..", "/a/.b/c./..d/e.."},
	{"three dots is a name", "/a/.../b", "/a/.../b"},
	{"upper escape kept", "/caf%C3%A9", "/caf%C3%A9"},
	{"encoded percent kept", "/a%25b", "/a%25b"},
	{"encoded question mark kept", "/a%3Fb", "/a%3Fb"},

	// The attacks of the issue, with tools on /mcp and admin on /mcp/admin.
	{"double slash", "/mcp//admin", "/mcp/admin"},
	{"many slashes", "///mcp///admin//", "/mcp/admin/"},
	{"dot segment", "/mcp/./admin", "/mcp/admin"},
	{"dot dot removes a segment", "/mcp/x/../admin", "/mcp/admin"},
	{"encoded dot", "/mcp/%2e/admin", "/mcp/admin"},
	{"encoded dot upper", "/mcp/%2E/admin", "/mcp/admin"},
	{"encoded unreserved letter", "/mcp/%61dmin", "/mcp/admin"},
	{"encoded unreserved upper hex", "/mcp/%41dmin", "/mcp/Admin"},
	{"semicolon parameter", "/mcp/admin;x", ""},
	{"semicolon alone", "/mcp/admin;", ""},
	{"semicolon mid segment", "/mcp/ad;min", ""},
	{"encoded slash", "/mcp/admin%2Fx", ""},
	{"encoded slash lower", "/mcp/admin%2fx", ""},
	{"encoded NUL", "/mcp/admin%00", ""},
	{"encoded backslash", "/mcp%5Cadmin", ""},
	{"encoded backslash lower", "/mcp%5cadmin", ""},
	{"encoded semicolon", "/mcp/admin%3Bx", ""},
	{"encoded semicolon lower", "/mcp/admin%3bx", ""},
	{"raw backslash", `/mcp\admin`, ""},

	// Dot segments.
	{"dot at end", "/mcp/.", "/mcp/"},
	{"encoded dot at end", "/mcp/%2e", "/mcp/"},
	{"dot dot at end", "/mcp/admin/..", "/mcp/"},
	{"dot dot leaves admin", "/mcp/admin/../x", "/mcp/x"},
	{"dot dot at the end keeps the slash", "/mcp/x/..", "/mcp/"},
	{"dot dot twice", "/a/b/c/./../../g", "/a/g"},
	{"dot dot over a segment after an empty one", "/a//b/../..", ""},
	{"encoded dot dot", "/mcp/x/%2e%2E/admin", "/mcp/admin"},
	{"half encoded dot dot", "/mcp/x/.%2e/admin", "/mcp/admin"},
	{"dot dot over empty segment", "/mcp/x//../admin", ""},
	{"dot dot over root empty segment", "//../mcp", ""},
	{"dot dot above root", "/..", "/"},
	{"dot dot above root then path", "/../mcp/admin", "/mcp/admin"},
	{"dots above root", "/./../.././mcp", "/mcp"},
	{"dot root", "/.", "/"},
	{"dot slash root", "/./", "/"},
	{"encoded dot dot above root", "/%2E%2e/mcp", "/mcp"},
	{"dot dot after dot", "/./../mcp", "/mcp"},
	{"dot then name", "/.mcp", "/.mcp"},
	{"encoded dot in name", "/mcp%2ejson", "/mcp.json"},
	{"encoded dots make three", "/a/%2e%2e%2e/b", "/a/.../b"},
	{"double slash root", "//", "/"},

	// Escapes.
	{"lower hex kept escape upper-cased", "/caf%c3%a9", "/caf%C3%A9"},
	{"mixed hex", "/a%3a%3A", "/a%3A%3A"},
	{"double encoding decoded once", "/mcp/%252e%252e/admin", "/mcp/%252e%252e/admin"},
	{"double encoding upper", "/mcp/%252E", "/mcp/%252E"},
	{"double encoded slash kept", "/a%252Fb", "/a%252Fb"},
	{"encoded tilde", "/%7euser", "/~user"},
	{"encoded hyphen underscore", "/a%2d%5Fb", "/a-_b"},
	{"encoded digit", "/v%31", "/v1"},
	{"encoded space kept", "/a%20b", "/a%20b"},
	{"encoded control kept", "/a%0d%0Ab", "/a%0D%0Ab"},
	{"encoded hash kept", "/a%23b", "/a%23b"},
	{"lone percent", "/a%", ""},
	{"percent one digit", "/a%2", ""},
	{"percent bad digit", "/a%G1", ""},
	{"percent bad second digit", "/a%1G", ""},
	{"percent before slash", "/a%/b", ""},
	{"percent percent", "/a%%30%30", ""},
	{"escaped by envoy", "/a\"b<c>d^e`f{g|h}", "/a%22b%3Cc%3Ed%5Ee%60f%7Bg%7Ch%7D"},

	// Bytes refused raw.
	{"space", "/a b", ""},
	{"tab", "/a\tb", ""},
	{"newline", "/a\nb", ""},
	{"NUL", "/a\x00b", ""},
	{"DEL", "/a\x7fb", ""},
	{"non-ASCII", "/caf\xc3\xa9", ""},
	{"question mark", "/a?b", ""},
	{"hash", "/a#b", ""},

	// Not a path.
	{"empty", "", ""},
	{"asterisk", "*", ""},
	{"relative", "mcp", ""},
	{"absolute form", "http://h/mcp", ""},
	{"dot relative", "./mcp", ""},
}

func TestNormalizePathCases(t *testing.T) {
	for _, tc := range pathCases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Normalize(tc.in)
			switch {
			case tc.want == "" && err == nil:
				t.Fatalf("Normalize(%q) = %q, want refused", tc.in, got)
			case tc.want == "" && !errors.Is(err, ErrAmbiguous):
				t.Fatalf("Normalize(%q) error %v does not wrap ErrAmbiguous", tc.in, err)
			case tc.want != "" && err != nil:
				t.Fatalf("Normalize(%q): %v, want %q", tc.in, err, tc.want)
			case got != tc.want:
				t.Fatalf("Normalize(%q) = %q, want %q", tc.in, got, tc.want)
			}
			ref, ok := referenceNormalizePath(tc.in)
			if ok != (err == nil) || ref != got {
				t.Fatalf("reference(%q) = %q, %v; Normalize = %q, %v", tc.in, ref, ok, got, err)
			}
		})
	}
}

func TestNormalizePathNormalDoesNotAllocate(t *testing.T) {
	for _, p := range []string{"/", "/mcp", "/mcp/messages", "/mcp/", "/sse", "/caf%C3%A9/x%20y", "/a.b/..c"} {
		if !isNormal(p) {
			t.Errorf("isNormal(%q) = false", p)
		}
		if n := testing.AllocsPerRun(100, func() { _, _ = Normalize(p) }); n != 0 {
			t.Errorf("Normalize(%q): %v allocations", p, n)
		}
	}
}

// referenceNormalizePath is the slow, obviously correct reading of the same
// rules: decode the unreserved escapes, then RFC 3986 §5.2.4 remove_dot_segments
// step by step (refusing a ".." that would remove an empty segment), then
// merge slashes.
// It shares nothing with path.go.
func referenceNormalizePath(p string) (string, bool) {
	const (
		unreserved = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~"
		allowed    = unreserved + "!$&'()*+,=:@[]/"
		escaped    = "\"<>^`{|}"
	)
	if !strings.HasPrefix(p, "/") {
		return "", false
	}
	var dec strings.Builder
	for i := 0; i < len(p); i++ {
		c := p[i]
		switch {
		case c == '%':
			if i+3 > len(p) {
				return "", false
			}
			v, err := strconv.ParseUint(p[i+1:i+3], 16, 8)
			if err != nil {
				return "", false
			}
			i += 2
			switch {
			case v == 0 || v == '/' || v == '\\' || v == ';':
				return "", false
			case strings.IndexByte(unreserved, byte(v)) >= 0:
				dec.WriteByte(byte(v))
			default:
				fmt.Fprintf(&dec, "%%%02X", v)
			}
		case strings.IndexByte(allowed, c) >= 0:
			dec.WriteByte(c)
		case strings.IndexByte(escaped, c) >= 0:
			fmt.Fprintf(&dec, "%%%02X", c)
		default:
			return "", false
		}
	}

	// RFC 3986 §5.2.4, rules A to E, on the decoded text: a "." in it is
	// a dot, raw or decoded; what stays escaped holds no "/" or ".".
	in, out := dec.String(), ""
	for in != "" {
		switch {
		case strings.HasPrefix(in, "../"):
			in = in[3:]
		case strings.HasPrefix(in, "./"):
			in = in[2:]
		case strings.HasPrefix(in, "/./"):
			in = in[2:]
		case in == "/.":
			in = "/"
		case strings.HasPrefix(in, "/../") || in == "/..":
			in = "/" + in[min(len(in), 4):]
			if out != "" {
				last := strings.LastIndexByte(out, '/')
				if out[last+1:] == "" {
					return "", false // the segment ".." removes is empty
				}
				out = out[:last]
			}
		case in == "." || in == "..":
			in = ""
		default:
			j := strings.IndexByte(in[1:], '/')
			if j < 0 {
				j = len(in)
			} else {
				j++
			}
			out, in = out+in[:j], in[j:]
		}
	}
	return pathSlashRuns.ReplaceAllString(out, "/"), true
}

var (
	pathSlashRuns   = regexp.MustCompile(`/+`)
	pathLowerEscape = regexp.MustCompile(`%([0-9A-F][a-f]|[a-f][0-9A-Fa-f])`)
)

func FuzzNormalizePath(f *testing.F) {
	for _, tc := range pathCases {
		f.Add(tc.in)
	}
	f.Add("/mcp/%2e%2E/%2E./.%2e/%2e/%2e%2e%2e")
	f.Add("/a/b/c/./../../g")
	f.Add("/%7E%7e%5f%2D%2e%41%7A%30%39%2F%5C%00%3B%3b%25%C3%A9")
	f.Fuzz(func(t *testing.T, p string) {
		// Most random inputs do not start with "/"; check them as they come
		// and as a path.
		checkNormalizePath(t, p)
		checkNormalizePath(t, "/"+p)
	})
}

func checkNormalizePath(t *testing.T, p string) {
	t.Helper()
	got, err := Normalize(p)
	ref, ok := referenceNormalizePath(p)
	if ok != (err == nil) || ref != got {
		t.Fatalf("Normalize(%q) = %q, %v; reference = %q, %v", p, got, err, ref, ok)
	}
	if slow, serr := normalizeSlow(p); slow != got || (serr == nil) != (err == nil) {
		t.Fatalf("fast path accepted %q: slow path says %q, %v", p, slow, serr)
	}
	if err != nil {
		if !errors.Is(err, ErrAmbiguous) {
			t.Fatalf("error %v does not wrap ErrAmbiguous", err)
		}
		return
	}
	switch {
	case !strings.HasPrefix(got, "/"):
		t.Fatalf("%q -> %q: not absolute", p, got)
	case strings.Contains(got, "//"):
		t.Fatalf("%q -> %q: '//'", p, got)
	case strings.Contains(got+"/", "/./") || strings.Contains(got+"/", "/../"):
		t.Fatalf("%q -> %q: dot segment", p, got)
	case strings.ContainsAny(got, ";\\?# \x7f"):
		t.Fatalf("%q -> %q: forbidden byte", p, got)
	case pathLowerEscape.MatchString(got):
		t.Fatalf("%q -> %q: lower-case escape", p, got)
	}
	for i := 0; i < len(got); i++ {
		c := got[i]
		if c < 0x20 || c >= 0x7f {
			t.Fatalf("%q -> %q: byte %#x", p, got, c)
		}
		if c != '%' {
			continue
		}
		v, err := strconv.ParseUint(got[i+1:min(i+3, len(got))], 16, 8)
		switch {
		case err != nil || i+3 > len(got):
			t.Fatalf("%q -> %q: malformed escape", p, got)
		case strings.IndexByte("-._~", byte(v)) >= 0 || 'A' <= v && v <= 'Z' || 'a' <= v && v <= 'z' || '0' <= v && v <= '9':
			t.Fatalf("%q -> %q: escaped unreserved %q", p, got, rune(v))
		case v == 0 || v == '/' || v == '\\' || v == ';':
			t.Fatalf("%q -> %q: escaped separator", p, got)
		}
	}
	again, err := Normalize(got)
	if err != nil || again != got {
		t.Fatalf("not idempotent: %q -> %q -> %q, %v", p, got, again, err)
	}
	if !isNormal(got) {
		t.Fatalf("output %q not on the fast path", got)
	}
}

func BenchmarkNormalizePath(b *testing.B) {
	for _, bc := range []struct{ name, p string }{
		{"mcp", "/mcp"},
		{"messages", "/mcp/messages"},
		{"normal100", "/mcp/tools/some-long-segment_name/v1/%C3%A9t%C3%A9/resources/abcdefghijklmnopqrstuvwxyz/0123456789"},
		{"escapes100", "/mcp//tools/./%73ome-long-segment%5fname/v1/%c3%a9t%c3%a9/resources/%61bcdefghijklmnop/./x/01"},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := Normalize(bc.p); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
