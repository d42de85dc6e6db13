package authz

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/mcp-authz/mcp-authz/internal/tracing"
	"github.com/mcp-authz/mcp-authz/internal/tracing/tracingtest"
)

type observed struct {
	resource, decision, reason string
	d                          time.Duration
}

type recordingObserver struct {
	mu  sync.Mutex
	got []observed
}

func (o *recordingObserver) Check(resource, decision, reason string, d time.Duration) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.got = append(o.got, observed{resource, decision, reason, d})
}

func (o *recordingObserver) last(t *testing.T) observed {
	t.Helper()
	o.mu.Lock()
	defer o.mu.Unlock()
	if len(o.got) == 0 {
		t.Fatal("no decision observed")
	}
	return o.got[len(o.got)-1]
}

// TestObserverSeesEveryDecision: each kind of answer reaches the Observer
// with the resource, the decision and the reason that label the metrics.
func TestObserverSeesEveryDecision(t *testing.T) {
	for _, tc := range []struct {
		name                       string
		path                       string
		headers                    map[string]string
		grpcUnavailable            bool
		resource, decision, reason string
	}{
		{"allow", "/mcp", map[string]string{"authorization": "Bearer good"}, false, testResource, DecisionAllow, reasonOK},
		{"no credentials", "/mcp", nil, false, testResource, DecisionDeny, reasonNoCredentials},
		{"invalid token", "/mcp", map[string]string{"authorization": "Bearer expired"}, false, testResource, DecisionDeny, reasonInvalidToken},
		{"insufficient scope", "/mcp", map[string]string{"authorization": "Bearer readonly"}, false, testResource, DecisionDeny, reasonInsufficientScope},
		{"invalid request", "/mcp", map[string]string{"authorization": "Bearer a b"}, false, testResource, DecisionDeny, reasonInvalidRequest},
		{"unavailable 503", "/mcp", map[string]string{"authorization": "Bearer down"}, false, testResource, DecisionUnavailable, reasonUnavailable},
		{"unavailable gRPC", "/mcp", map[string]string{"authorization": "Bearer down"}, true, testResource, DecisionUnavailable, reasonUnavailable},
		{"no resource", "/elsewhere", map[string]string{"authorization": "Bearer good"}, false, "", DecisionDeny, reasonNoResource},
	} {
		t.Run(tc.name, func(t *testing.T) {
			obs := &recordingObserver{}
			s, _ := newTestServer(t, func(c *Config, r *Resource) {
				c.Observer = obs
				r.PathPrefixes = []string{"/mcp"}
				if tc.grpcUnavailable {
					c.Unavailable = UnavailableGRPC
				}
			})
			decide(t, s, envoyRequest(tc.path, tc.headers))
			got := obs.last(t)
			if got.resource != tc.resource || got.decision != tc.decision || got.reason != tc.reason {
				t.Fatalf("observed %+v, want %s/%s/%s", got, tc.resource, tc.decision, tc.reason)
			}
			if got.d <= 0 {
				t.Fatalf("duration %v", got.d)
			}
		})
	}
}

// logLines decodes a JSON log.
func logLines(t *testing.T, s string) []map[string]any {
	t.Helper()
	var out []map[string]any
	sc := bufio.NewScanner(strings.NewReader(s))
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("not JSON: %q", sc.Text())
		}
		out = append(out, m)
	}
	return out
}

func linesWith(lines []map[string]any, msg string) []map[string]any {
	var out []map[string]any
	for _, l := range lines {
		if l["msg"] == msg {
			out = append(out, l)
		}
	}
	return out
}

// TestDenialLogs: a denial is logged at INFO with its reason, the resource
// and the first 8 hex digits of the token's SHA-256, never the token; at
// most one line per reason per second, the next one carrying how many were
// suppressed.
func TestDenialLogs(t *testing.T) {
	var buf syncBuffer
	s, _ := newTestServer(t, func(c *Config, _ *Resource) {
		c.Logger = slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	})
	for range 50 {
		decide(t, s, envoyRequest("/mcp", map[string]string{"authorization": "Bearer expired"}))
	}
	decide(t, s, envoyRequest("/mcp", nil)) // another reason: its own limit
	lines := logLines(t, buf.String())
	denies := linesWith(lines, "deny")
	if len(denies) != 2 {
		t.Fatalf("%d deny lines, want 2 (one per reason):\n%s", len(denies), buf.String())
	}
	sum := sha256.Sum256([]byte("expired"))
	first := denies[0]
	if first["level"] != "INFO" || first["reason"] != "invalid_token" || first["resource"] != testResource ||
		first["token_sha256"] != hex.EncodeToString(sum[:4]) || first["status"] != float64(401) {
		t.Fatalf("deny line: %v", first)
	}
	if _, ok := first["suppressed"]; ok {
		t.Fatalf("first line claims suppressed lines: %v", first)
	}
	if second := denies[1]; second["reason"] != "unauthorized" || second["token_sha256"] != nil {
		t.Fatalf("second deny line: %v", second)
	}
	if strings.Contains(buf.String(), `"expired"`) || strings.Contains(buf.String(), "Bearer expired") {
		t.Fatal("the token reached the log")
	}

	time.Sleep(denialLogEvery + 50*time.Millisecond)
	buf.Reset()
	decide(t, s, envoyRequest("/mcp", map[string]string{"authorization": "Bearer expired"}))
	denies = linesWith(logLines(t, buf.String()), "deny")
	if len(denies) != 1 || denies[0]["suppressed"] != float64(49) {
		t.Fatalf("after the interval: %v", denies)
	}
}

// TestAllowLogsAtDebug: an allow is logged at DEBUG with sub and scope, and
// not at all at INFO.
func TestAllowLogsAtDebug(t *testing.T) {
	for _, level := range []slog.Level{slog.LevelDebug, slog.LevelInfo} {
		var buf syncBuffer
		s, _ := newTestServer(t, func(c *Config, _ *Resource) {
			c.Logger = slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: level}))
		})
		decide(t, s, envoyRequest("/mcp", map[string]string{"authorization": "Bearer good"}))
		allows := linesWith(logLines(t, buf.String()), "allow")
		if level == slog.LevelInfo {
			if len(allows) != 0 {
				t.Fatalf("allow logged at INFO: %v", allows)
			}
			continue
		}
		if len(allows) != 1 {
			t.Fatalf("allow lines: %s", buf.String())
		}
		a := allows[0]
		if a["level"] != "DEBUG" || a["sub"] != "user-1" || a["resource"] != testResource || a["scope"] != "mcp:read mcp:write" {
			t.Fatalf("allow line: %v", a)
		}
	}
}

// TestTraceContextReadOnlyWhenTracing: traceparent and tracestate are kept
// from the request only while a Tracer is configured, by both readers.
func TestTraceContextReadOnlyWhenTracing(t *testing.T) {
	const tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	req := envoyRequest("/mcp", map[string]string{"authorization": "Bearer good", "traceparent": tp, "tracestate": "vendor=x"})
	b, err := proto.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	for _, on := range []bool{false, true} {
		opts := &readOptions{identityPrefix: "x-mcp-auth-", traceContext: on}
		wire, err := parseCheckInput(b, opts)
		if err != nil {
			t.Fatal(err)
		}
		decoded := inputFromProto(req, opts)
		for _, in := range []checkInput{wire, decoded} {
			if on && (in.trace == nil || in.trace.parent != tp || in.trace.state != "vendor=x") {
				t.Fatalf("tracing on: %+v", in.trace)
			}
			if !on && in.trace != nil {
				t.Fatalf("tracing off, yet read: %+v", in.trace)
			}
		}
	}
}

// TestCheckSpans: with a Tracer, a Check is a server span parented by the
// forwarded traceparent, labelled with resource, decision and reason,
// around a validation span; no attribute holds the token.
func TestCheckSpans(t *testing.T) {
	rec := &tracingtest.Recorder{}
	s, _ := newTestServer(t, func(c *Config, _ *Resource) { c.Tracer = rec })
	const tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	for _, tc := range []struct {
		token, decision, reason, result string
	}{
		{"good", DecisionAllow, reasonOK, "valid"},
		{"expired", DecisionDeny, reasonInvalidToken, "invalid"},
		{"down", DecisionUnavailable, reasonUnavailable, "unavailable"},
	} {
		rec.Reset()
		decide(t, s, envoyRequest("/mcp", map[string]string{"authorization": "Bearer " + tc.token, "traceparent": tp}))
		spans := rec.Spans()
		if len(spans) != 2 {
			t.Fatalf("%s: spans %+v", tc.token, spans)
		}
		check, validate := spans[0], spans[1]
		if check.Name != "Check" || check.Parent != nil || check.Traceparent != tp || !check.Ended {
			t.Fatalf("%s: check span %+v", tc.token, check)
		}
		if check.Attrs[tracing.AttrResource] != testResource || check.Attrs[tracing.AttrDecision] != tc.decision ||
			check.Attrs[tracing.AttrReason] != tc.reason {
			t.Fatalf("%s: check attributes %v", tc.token, check.Attrs)
		}
		if (check.Err != nil) != (tc.decision == DecisionUnavailable) {
			t.Fatalf("%s: check span error %v", tc.token, check.Err)
		}
		if validate.Name != "validate" || validate.Parent == nil || validate.Parent.Name != "Check" || !validate.Ended ||
			validate.Attrs[tracing.AttrResult] != tc.result {
			t.Fatalf("%s: validate span %+v", tc.token, validate)
		}
		for _, sp := range spans {
			for k, v := range sp.Attrs {
				if v == tc.token || strings.Contains(v, "Bearer") {
					t.Fatalf("attribute %s=%q holds the token", k, v)
				}
			}
		}
	}
	// Without a traceparent the Check span starts a trace.
	rec.Reset()
	decide(t, s, envoyRequest("/mcp", nil))
	if spans := rec.Spans(); len(spans) != 1 || spans[0].Traceparent != "" || spans[0].Attrs[tracing.AttrReason] != reasonNoCredentials {
		t.Fatalf("spans %+v", spans)
	}
}

// TestForwardReadsTraceContext: the forward-auth front end reads the trace
// context the same way the gRPC readers do: only while tracing is on.
func TestForwardReadsTraceContext(t *testing.T) {
	const tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	for _, on := range []bool{false, true} {
		s, _ := newTestServer(t, nil)
		s.read.traceContext = on
		for _, ep := range []string{ForwardPathNginx, ForwardPathForwarded, ForwardPathEnvoy} {
			r := forwardRequest(ep, original{method: "POST", target: "/mcp", headers: [][2]string{
				{"Authorization", "Bearer good"}, {"Traceparent", tp}, {"Tracestate", "vendor=x"},
			}})
			conv, target := forwardEndpoint(r.RequestURI)
			in, problem := s.forwardInput(r, conv, target)
			if problem != "" {
				t.Fatalf("%s: %s", ep, problem)
			}
			if on && (in.trace == nil || in.trace.parent != tp || in.trace.state != "vendor=x") {
				t.Fatalf("%s, tracing on: %+v", ep, in.trace)
			}
			if !on && in.trace != nil {
				t.Fatalf("%s, tracing off, yet read: %+v", ep, in.trace)
			}
		}
	}
}

// TestDenialLogClipsClientStrings: the host and path of an unrouted
// request are the client's, up to the gRPC message limit; its denial line
// carries at most maxLogged bytes of each, cut at a character's start.
func TestDenialLogClipsClientStrings(t *testing.T) {
	for _, c := range []struct {
		name, host, path   string
		wantHost, wantPath string
	}{
		{"short", "mcp.example.com", "/elsewhere?access_token=x", "mcp.example.com", "/elsewhere"},
		{"exactly the limit", "mcp.example.com", "/" + strings.Repeat("a", maxLogged-1), "mcp.example.com", "/" + strings.Repeat("a", maxLogged-1)},
		{"long path", "mcp.example.com", "/" + strings.Repeat("a", 100_000), "mcp.example.com",
			"/" + strings.Repeat("a", maxLogged-1) + "…(99745 more bytes)"},
		// "é" is two bytes: the cut falls inside the 128th.
		{"long host, multi-byte", strings.Repeat("é", 1_000), "/elsewhere",
			strings.Repeat("é", maxLogged/2) + "…(1744 more bytes)", "/elsewhere"},
		{"cut inside a character", "x" + strings.Repeat("é", 1_000), "/elsewhere",
			"x" + strings.Repeat("é", maxLogged/2-1) + "…(1746 more bytes)", "/elsewhere"},
	} {
		t.Run(c.name, func(t *testing.T) {
			var buf syncBuffer
			s, _ := newTestServer(t, func(cfg *Config, r *Resource) {
				cfg.Logger = slog.New(slog.NewJSONHandler(&buf, nil))
				r.PathPrefixes = []string{"/mcp"}
			})
			req := envoyRequest(c.path, map[string]string{":authority": c.host})
			req.Attributes.Request.Http.Host = c.host
			decide(t, s, req)
			denies := linesWith(logLines(t, buf.String()), "deny")
			if len(denies) != 1 {
				t.Fatalf("deny lines: %s", buf.String())
			}
			if d := denies[0]; d["host"] != c.wantHost || d["path"] != c.wantPath {
				t.Fatalf("host %q (%d bytes), path %q (%d bytes)", d["host"], len(d["host"].(string)), d["path"], len(d["path"].(string)))
			}
		})
	}
}

// TestUnavailableIsLoggedAsADenial: a Check answered 503 (or gRPC
// UNAVAILABLE) because the token could not be validated is a denial, and
// gets its INFO line like any other (DESIGN §8: every denial, with
// reason, resource and token hash), besides the WARN line about the
// dependency.
func TestUnavailableIsLoggedAsADenial(t *testing.T) {
	sum := sha256.Sum256([]byte("down"))
	for _, c := range []struct {
		name       string
		mode       UnavailableMode
		wantStatus any
	}{
		{"503", UnavailableHTTP, float64(503)},
		{"gRPC UNAVAILABLE", UnavailableGRPC, nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			var buf syncBuffer
			s, _ := newTestServer(t, func(cfg *Config, _ *Resource) {
				cfg.Logger = slog.New(slog.NewJSONHandler(&buf, nil))
				cfg.Unavailable = c.mode
			})
			decide(t, s, envoyRequest("/mcp", map[string]string{"authorization": "Bearer down"}))
			lines := logLines(t, buf.String())
			denies := linesWith(lines, "deny")
			if len(denies) != 1 {
				t.Fatalf("deny lines: %s", buf.String())
			}
			d := denies[0]
			if d["level"] != "INFO" || d["reason"] != reasonUnavailable || d["resource"] != testResource ||
				d["token_sha256"] != hex.EncodeToString(sum[:4]) || d["status"] != c.wantStatus {
				t.Fatalf("deny line: %v", d)
			}
			if len(linesWith(lines, "cannot validate token: answering unavailable")) != 1 {
				t.Fatalf("no WARN line about the dependency: %s", buf.String())
			}
		})
	}
}
