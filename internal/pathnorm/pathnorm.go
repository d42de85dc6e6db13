// Package pathnorm normalizes request paths as Envoy's normalize_path and
// merge_slashes do (DESIGN §7), refusing the paths different servers read
// differently, and brings configured path prefixes and hosts to the form
// requests are matched in, for authz's router and config's conflict check
// alike.
package pathnorm

import (
	"errors"
	"fmt"
	"strings"
)

// ErrAmbiguous is what Normalize's errors wrap (errors.Is): the
// request path is one that different servers read differently, so no
// path-based decision can be trusted. The caller answers 400 invalid_request.
var ErrAmbiguous = errors.New("ambiguous request path")

// pathRefusal says why a path was refused. Its values are constant strings,
// so returning one allocates nothing and never echoes the path.
type pathRefusal string

func (e pathRefusal) Error() string { return ErrAmbiguous.Error() + ": " + string(e) }
func (e pathRefusal) Unwrap() error { return ErrAmbiguous }

const (
	refusedNotAbsolute pathRefusal = "path does not start with '/'"
	refusedBadEscape   pathRefusal = "malformed percent-escape"
	refusedEncodedSep  pathRefusal = "encoded '/', '\\', ';' or NUL"
	refusedParameter   pathRefusal = "';' path parameter"
	refusedBackslash   pathRefusal = "'\\' in path"
	refusedByte        pathRefusal = "control, space, non-ASCII, '?' or '#' byte in path"
	refusedClimbsEmpty pathRefusal = "'..' after an empty segment"
)

// Byte classes of pathClass.
const (
	// pathPlain: copied as is and already canonical: ALPHA DIGIT - _ ~
	// (not "."), the sub-delims but ";", ":" "@", and "[" "]" (which
	// Chromium's canonicalizer passes through).
	pathPlain = 1 << iota
	// pathUnreserved: RFC 3986 unreserved; an escape of one is decoded.
	pathUnreserved
	// pathEscaped: printable bytes RFC 3986 does not allow in a path, which
	// Envoy's canonicalizer percent-encodes: " < > ^ ` { | }
	pathEscaped
	// pathHex: a hex digit; pathUpperHex: one already in canonical case.
	pathHex
	pathUpperHex
)

var pathClass = func() (t [256]uint8) {
	for c := 'A'; c <= 'Z'; c++ {
		t[c] |= pathPlain | pathUnreserved
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c] |= pathPlain | pathUnreserved
	}
	for c := '0'; c <= '9'; c++ {
		t[c] |= pathPlain | pathUnreserved | pathHex | pathUpperHex
	}
	for _, c := range "-_~" {
		t[c] |= pathPlain | pathUnreserved
	}
	t['.'] |= pathUnreserved
	for _, c := range "!$&'()*+,=:@[]" {
		t[c] |= pathPlain
	}
	for _, c := range "\"<>^`{|}" {
		t[c] |= pathEscaped
	}
	for _, c := range "ABCDEF" {
		t[c] |= pathHex | pathUpperHex
	}
	for _, c := range "abcdef" {
		t[c] |= pathHex
	}
	return t
}()

// Normalize returns the request path (no query, no fragment: the caller
// strips from the first '?' or '#') as Envoy's normalize_path + merge_slashes
// would present it, or an error wrapping ErrAmbiguous (caller answers 400
// invalid_request) for paths that different servers read differently.
//
// The result:
//   - starts with "/"; "*" (OPTIONS *), an empty path and absolute-form
//     targets are refused, as no resource prefix can own them;
//   - has escapes of unreserved characters (ALPHA DIGIT - . _ ~) decoded,
//     hex in either case, before dot segments are looked for: "%2e%2E" is
//     "..";
//   - keeps every other escape, with its hex in upper case (RFC 3986
//     §6.2.2.1). Envoy keeps the case the client sent; upstreams decode
//     both alike, and one spelling per path keeps prefix and exact matches
//     honest;
//   - percent-encodes " < > ^ ` { | } as Envoy's canonicalizer does;
//   - has dot segments removed as RFC 3986 §5.2.4 says ("/mcp/x/../admin"
//     is "/mcp/admin", "/.." is "/"); then runs of "/" merged (Envoy's
//     order).
//
// Refused:
//   - escapes of "/", "\", NUL and ";" in either case, and malformed escapes
//     ("%", "%2", "%G1");
//   - a raw "\" (Envoy turns it into "/", most servers do not), a raw ";"
//     (path parameters: some servers strip ";x", others keep it), control
//     characters, DEL, space, non-ASCII bytes, and "?" or "#";
//   - a ".." that would remove an empty segment ("/mcp/x//../admin"):
//     that is /mcp/x/admin to Envoy (resolve, then merge) but /mcp/admin to
//     nginx and Go's path.Clean (merge while resolving).
//
// Dot segments are resolved, as DESIGN §7 and Envoy's normalize_path do. A
// deployment whose proxy forwards the raw path to a server that does not
// resolve them (Node's http, Express) must normalize in the proxy
// (Envoy's normalize_path, Istio's pathNormalization), as the shipped
// configurations do: otherwise "/mcp/admin/../x" is judged as /mcp/x and
// served as /mcp/admin.
//
// Decoding happens once: "%252e" stays "%252e" ("%25" is the escape, "2e"
// is text). A server that decodes twice is out of scope.
//
// An already normal path, the usual case, is returned as is, without
// allocating.
func Normalize(p string) (string, error) {
	if isNormal(p) {
		return p, nil
	}
	return normalizeSlow(p)
}

// isNormal reports whether Normalize(p) is p itself: it only accepts,
// leaving every refusal and rewrite to normalizeSlow.
func isNormal(p string) bool {
	if len(p) == 0 || p[0] != '/' {
		return false
	}
	for i := 1; i < len(p); i++ {
		c := p[i]
		if pathClass[c]&pathPlain != 0 {
			continue
		}
		switch c {
		case '/':
			if p[i-1] == '/' {
				return false
			}
		case '.':
			if p[i-1] != '/' {
				continue
			}
			j := i + 1
			if j < len(p) && p[j] == '.' {
				j++
			}
			if j == len(p) || p[j] == '/' {
				return false // a "." or ".." segment
			}
		case '%':
			if i+2 >= len(p) || pathClass[p[i+1]]&pathUpperHex == 0 || pathClass[p[i+2]]&pathUpperHex == 0 {
				return false
			}
			v := unhex(p[i+1])<<4 | unhex(p[i+2])
			if pathClass[v]&pathUnreserved != 0 || refusedEscape(v) {
				return false
			}
			i += 2
		default:
			return false
		}
	}
	return true
}

func normalizeSlow(p string) (string, error) {
	if len(p) == 0 || p[0] != '/' {
		return "", refusedNotAbsolute
	}
	// RFC 3986 §5.2.4 on whole segments, empty ones kept (slashes are
	// merged after, Envoy's order), then joined.
	segs := make([]string, 0, 8)
	var b strings.Builder
	for rest := p[1:]; ; {
		seg, next, more := strings.Cut(rest, "/")
		switch dotCount(seg) {
		case 1: // ".": dropped
			if !more {
				segs = append(segs, "") // "/a/." is "/a/"
			}
		case 2: // "..": drops the last segment, or nothing at the root
			if n := len(segs); n > 0 {
				if segs[n-1] == "" {
					return "", refusedClimbsEmpty
				}
				segs = segs[:n-1]
			}
			if !more {
				segs = append(segs, "") // "/a/b/.." is "/a/"
			}
		default:
			b.Reset()
			if err := appendSegment(&b, seg); err != nil {
				return "", err
			}
			segs = append(segs, b.String())
		}
		if !more {
			break
		}
		rest = next
	}
	b.Reset()
	b.Grow(len(p))
	b.WriteByte('/')
	for i, seg := range segs {
		if seg == "" {
			if i == len(segs)-1 && b.Len() > 1 {
				b.WriteByte('/') // a trailing slash stays; merge_slashes
			}
			continue
		}
		if b.Len() > 1 {
			b.WriteByte('/')
		}
		b.WriteString(seg)
	}
	return b.String(), nil
}

// dotCount is 1 for a "." segment, 2 for "..", each dot raw or "%2e" in
// either case, else 0. Malformed escapes are left to appendSegment.
func dotCount(seg string) int {
	if len(seg) > 6 {
		return 0
	}
	n := 0
	for i := 0; i < len(seg); i++ {
		switch {
		case seg[i] == '.':
		case seg[i] == '%' && i+2 < len(seg) && seg[i+1] == '2' && (seg[i+2] == 'e' || seg[i+2] == 'E'):
			i += 2
		default:
			return 0
		}
		n++
	}
	if n > 2 {
		return 0
	}
	return n
}

// appendSegment writes the canonical form of one non-empty, non-dot segment.
func appendSegment(b *strings.Builder, seg string) error {
	for i := 0; i < len(seg); i++ {
		c := seg[i]
		cl := pathClass[c]
		switch {
		case cl&(pathPlain|pathUnreserved) != 0:
			b.WriteByte(c)
		case c == '%':
			if i+2 >= len(seg) || pathClass[seg[i+1]]&pathHex == 0 || pathClass[seg[i+2]]&pathHex == 0 {
				return refusedBadEscape
			}
			v := unhex(seg[i+1])<<4 | unhex(seg[i+2])
			i += 2
			switch {
			case refusedEscape(v):
				return refusedEncodedSep
			case pathClass[v]&pathUnreserved != 0:
				b.WriteByte(v)
			default:
				writeEscape(b, v)
			}
		case cl&pathEscaped != 0:
			writeEscape(b, c)
		case c == ';':
			return refusedParameter
		case c == '\\':
			return refusedBackslash
		default:
			return refusedByte
		}
	}
	return nil
}

// refusedEscape reports the decoded bytes that are refused in any case: a
// server that decodes before splitting or stripping reads "/", "\" and ";"
// as structure; NUL truncates in C servers (Envoy rejects it).
func refusedEscape(v byte) bool {
	return v == '/' || v == '\\' || v == ';' || v == 0
}

func writeEscape(b *strings.Builder, v byte) {
	const upperHex = "0123456789ABCDEF"
	b.WriteByte('%')
	b.WriteByte(upperHex[v>>4])
	b.WriteByte(upperHex[v&0xf])
}

// unhex decodes one hex digit the caller has checked.
func unhex(c byte) byte {
	switch {
	case c <= '9':
		return c - '0'
	case c <= 'F':
		return c - 'A' + 10
	default:
		return c - 'a' + 10
	}
}

// Prefix brings a configured path prefix to the form requests are matched
// in: normalized like a request path, without a trailing "/" ("/" itself
// becomes "", the root).
func Prefix(prefix string) (string, error) {
	if prefix == "" {
		return "", nil
	}
	p, err := Normalize(prefix)
	if err != nil {
		return "", fmt.Errorf("path prefix %q: %w", prefix, err)
	}
	return strings.TrimRight(p, "/"), nil
}

// Host is a configured or requested host as routes are matched: without
// its port, lower-cased.
func Host(hostport string) string { return strings.ToLower(HostOnly(hostport)) }

// HostOnly is hostport without its port (an IPv6 literal keeps its
// brackets).
func HostOnly(hostport string) string {
	if i := strings.LastIndexByte(hostport, ':'); i >= 0 && !strings.Contains(hostport[i:], "]") {
		return hostport[:i]
	}
	return hostport
}
