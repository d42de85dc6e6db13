package authz

import (
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/mcp-authz/mcp-authz/validators"
)

// Operation requires scopes for JSON-RPC messages (DESIGN §6): every rule
// that matches a message adds its scopes to what the request needs.
type Operation struct {
	// Method is the JSON-RPC method, matched exactly (e.g. "tools/call").
	Method string
	// Name, when set, must match the message's params.name (tools/call,
	// prompts/get) or params.uri (resources/read, resources/subscribe,
	// resources/unsubscribe): an exact value, or a glob in which only "*"
	// is special (any run of characters, "/" included), matched
	// case-sensitively against the whole value.
	Name   string
	Scopes []string
}

// LegacySSE names the paths of the legacy HTTP+SSE transport.
type LegacySSE struct {
	// SSEPath is the event stream opened by GET; it counts as initialize.
	// Zero means "/sse".
	SSEPath string
	// MessagesPath takes POST ?sessionId=; it counts as messages. Zero
	// means "/messages".
	MessagesPath string
}

// class is what a request does in an MCP session (DESIGN §6).
type class int

const (
	// classMessages: everything but session initialization.
	classMessages class = iota
	// classInitialize: a session-less POST whose body is an initialize
	// request, or the legacy transport's stream GET.
	classInitialize
	// classUnknown: a session-less POST whose body cannot prove its method.
	classUnknown
)

// bodyState is the outcome of reading a POST body.
type bodyState int

const (
	bodyNotRead bodyState = iota // not a POST
	bodyOK
	bodyAbsent     // a POST without a body (Envoy not configured to send it)
	bodyUnreadable // truncated, compressed, not JSON, not JSON-RPC
	bodyDuplicate  // duplicate member names: the server may read it otherwise
)

// readBody reads the JSON-RPC messages of a POST. msgs is reused.
func readBody(in *checkInput, msgs []jsonrpcMessage) (bodyState, []jsonrpcMessage) {
	if in.method != http.MethodPost {
		return bodyNotRead, msgs
	}
	if !in.hasBody {
		return bodyAbsent, msgs
	}
	if in.partialBody {
		return bodyUnreadable, msgs
	}
	if ce := strings.TrimSpace(in.contentEncoding); ce != "" && !strings.EqualFold(ce, "identity") {
		return bodyUnreadable, msgs
	}
	msgs, err := parseJSONRPC(in.body, msgs[:0])
	switch {
	case err == nil:
		return bodyOK, msgs
	case err == errBodyDuplicate:
		return bodyDuplicate, msgs
	default:
		return bodyUnreadable, msgs
	}
}

// classify places a request in its class. path is normalized.
func (rt *route) classify(in *checkInput, path string, state bodyState, msgs []jsonrpcMessage) class {
	switch in.method {
	case http.MethodGet:
		if path == rt.ssePath {
			return classInitialize
		}
		return classMessages
	case http.MethodPost:
		if len(in.sessionID) > 0 || path == rt.messagesPath {
			return classMessages
		}
		if state != bodyOK {
			return classUnknown
		}
		if len(msgs) == 1 && msgs[0].HasMethod && msgs[0].Method == "initialize" {
			return classInitialize
		}
		return classMessages
	default:
		return classMessages
	}
}

// protects reports whether requests of class c need credentials. A request
// whose class is unknown is protected if either class is: fail closed.
func (rt *route) protects(c class) bool {
	switch c {
	case classInitialize:
		return !rt.UnprotectedInitialize
	case classMessages:
		return !rt.UnprotectedMessages
	default:
		return !rt.UnprotectedInitialize || !rt.UnprotectedMessages
	}
}

// neededScopes returns every scope the messages need: the route's, plus
// those of each operation rule that matches a request or notification.
// Responses need only the route's. The result shares RequiredScopes when
// no rule matches.
func (rt *route) neededScopes(msgs []jsonrpcMessage) []string {
	needed := rt.RequiredScopes
	grown := false
	for i := range msgs {
		m := &msgs[i]
		if !m.HasMethod {
			continue
		}
		for j := range rt.Operations {
			op := &rt.Operations[j]
			if op.Method != m.Method {
				continue
			}
			if op.Name != "" && (!m.HasTarget || !globMatch(op.Name, m.Target)) {
				continue
			}
			for _, s := range op.Scopes {
				if slices.Contains(needed, s) {
					continue
				}
				if !grown {
					needed = slices.Clone(needed)
					grown = true
				}
				needed = append(needed, s)
			}
		}
	}
	return needed
}

// operation returns the method and tool (name or URI) of the first
// messages that have one, for the identity forwarded upstream.
func operation(msgs []jsonrpcMessage) (method, tool string) {
	haveMethod, haveTool := false, false
	for i := range msgs {
		m := &msgs[i]
		if !haveMethod && m.HasMethod {
			method, haveMethod = m.Method, true
		}
		if !haveTool && m.HasTarget {
			tool, haveTool = m.Target, true
		}
	}
	return method, tool
}

// globMatch matches value against pattern, in which only "*" is special: it
// stands for any run of characters, "/" included. The classic two-pointer
// walk: linear for patterns with one "*", never exponential.
func globMatch(pattern, value string) bool {
	p, v := 0, 0
	star, mark := -1, 0
	for v < len(value) {
		switch {
		case p < len(pattern) && pattern[p] == '*':
			star, mark = p, v
			p++
		case p < len(pattern) && pattern[p] == value[v]:
			p++
			v++
		case star >= 0:
			p = star + 1
			mark++
			v = mark
		default:
			return false
		}
	}
	for p < len(pattern) && pattern[p] == '*' {
		p++
	}
	return p == len(pattern)
}

// scopeClosure expands scope_implies transitively: closure[s] lists every
// scope that s grants besides itself.
func scopeClosure(implies map[string][]string) map[string][]string {
	if len(implies) == 0 {
		return nil
	}
	closure := make(map[string][]string, len(implies))
	for s := range implies {
		seen := map[string]bool{s: true}
		queue := slices.Clone(implies[s])
		var out []string
		for len(queue) > 0 {
			x := queue[0]
			queue = queue[1:]
			if seen[x] {
				continue
			}
			seen[x] = true
			out = append(out, x)
			queue = append(queue, implies[x]...)
		}
		slices.Sort(out)
		closure[s] = out
	}
	return closure
}

// granted reports whether the token scopes satisfy every scope in want,
// directly or through the resource's scope hierarchy.
func (rt *route) granted(p *validators.Principal, want []string) bool {
	for _, w := range want {
		if p.HasScope(w) {
			continue
		}
		found := false
		p.EachScope(func(h string) bool {
			found = slices.Contains(rt.implied[h], w)
			return !found
		})
		if !found {
			return false
		}
	}
	return true
}

// origins is a resource's allowed_origins list, prepared for matching.
type origins struct {
	exact map[string]bool
	// anyPort holds "scheme://host" of entries written "scheme://host:*".
	anyPort map[string]bool
}

// newOrigins parses allowed_origins entries: exact origins
// (scheme://host[:port], no path), or scheme://host:* for any port or none.
func newOrigins(list []string) (*origins, error) {
	if len(list) == 0 {
		return nil, nil
	}
	o := &origins{exact: map[string]bool{}, anyPort: map[string]bool{}}
	for _, e := range list {
		e = strings.ToLower(strings.TrimSpace(e))
		scheme, rest, ok := strings.Cut(e, "://")
		if !ok || scheme == "" || rest == "" || strings.ContainsAny(rest, "/?#@ ") {
			return nil, fmt.Errorf("allowed origin %q is not scheme://host[:port]", e)
		}
		if base, ok := strings.CutSuffix(e, ":*"); ok {
			o.anyPort[base] = true
			continue
		}
		o.exact[e] = true
	}
	return o, nil
}

// allows reports whether the Origin header value origin is allowed.
// Scheme and host compare case-insensitively (browsers send them lower-case).
func (o *origins) allows(origin string) bool {
	origin = strings.ToLower(origin)
	if o.exact[origin] {
		return true
	}
	if len(o.anyPort) == 0 {
		return false
	}
	base := origin
	if i := strings.LastIndexByte(origin, ':'); i > strings.Index(origin, "://")+2 && !strings.Contains(origin[i:], "]") {
		port := origin[i+1:]
		if port == "" || strings.Trim(port, "0123456789") != "" {
			return false
		}
		base = origin[:i]
	}
	return o.anyPort[base]
}

// validSessionID reports whether id is an MCP session id: visible ASCII
// (MCP 2025-11-25, "Session Management"), without ",": Envoy joins repeated
// headers with ",", and servers then disagree on which one they read.
func validSessionID(id string) bool {
	if id == "" || len(id) > 1024 {
		return false
	}
	for i := 0; i < len(id); i++ {
		if id[i] < 0x21 || id[i] > 0x7e || id[i] == ',' {
			return false
		}
	}
	return true
}
