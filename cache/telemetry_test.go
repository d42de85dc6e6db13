package cache

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/mcp-authz/mcp-authz/internal/redistest"
	"github.com/mcp-authz/mcp-authz/internal/tracing"
	"github.com/mcp-authz/mcp-authz/internal/tracing/tracingtest"
	"github.com/mcp-authz/mcp-authz/validators"
)

func invalidAnswer(string) (*validators.Principal, error) {
	return nil, &validators.Error{Kind: validators.ErrInvalidToken, Description: validators.DescSignature}
}

// spanSummary renders spans as "name[result]<parent" lines.
func spanSummary(spans []tracingtest.Span) string {
	var b strings.Builder
	for _, s := range spans {
		b.WriteString(s.Name)
		if r := s.Attrs[tracing.AttrCacheResult]; r != "" {
			b.WriteString("[" + r + "]")
		}
		if s.Parent != nil {
			b.WriteString("<" + s.Parent.Name)
		}
		b.WriteString(" ")
	}
	return strings.TrimSpace(b.String())
}

// TestCacheSpans: with a Tracer, each tier's lookup is a span with its
// result, and a miss's validation another; all children of the caller's.
func TestCacheSpans(t *testing.T) {
	srv := redistest.Start(t)
	r, _ := newRedisStore(t, srv)
	rec := &tracingtest.Recorder{}
	tiered := &Tiered{L1: newMemory(t), L2: r}
	inner := &countingValidator{answer: validFor(time.Hour)}
	v := newCached(t, inner, tiered, Options{Tracer: rec})
	ctx, parent := rec.Start(context.Background(), "validate")
	defer parent.End()

	if _, err := v.Validate(ctx, "tok"); err != nil {
		t.Fatal(err)
	}
	if got, want := spanSummary(rec.Spans()), "validate cache.l1[miss]<validate cache.l2[miss]<validate validate.miss<validate"; got != want {
		t.Fatalf("fresh token: %s, want %s", got, want)
	}
	rec.Reset()
	if _, err := v.Validate(ctx, "tok"); err != nil {
		t.Fatal(err)
	}
	if got, want := spanSummary(rec.Spans()), "cache.l1[hit]<validate"; got != want {
		t.Fatalf("cached token: %s, want %s", got, want)
	}
	// Another replica (its own L1) finds the verdict in Redis.
	rec.Reset()
	other := newCached(t, inner, &Tiered{L1: newMemory(t), L2: r}, Options{Tracer: rec})
	if _, err := other.Validate(ctx, "tok"); err != nil {
		t.Fatal(err)
	}
	if got, want := spanSummary(rec.Spans()), "cache.l1[miss]<validate cache.l2[hit]<validate"; got != want {
		t.Fatalf("from the fleet: %s, want %s", got, want)
	}
	for _, s := range rec.Spans() {
		if !s.Ended {
			t.Fatalf("span %s not ended", s.Name)
		}
	}
	// Negative verdicts are hits too, told apart.
	rec.Reset()
	bad := newCached(t, &countingValidator{answer: invalidAnswer}, newMemory(t), Options{Tracer: rec})
	_, _ = bad.Validate(ctx, "bad")
	_, _ = bad.Validate(ctx, "bad")
	if got, want := spanSummary(rec.Spans()), "cache.l1[miss]<validate validate.miss<validate cache.l1[negative_hit]<validate"; got != want {
		t.Fatalf("negative: %s, want %s", got, want)
	}
}

// TestRedisLoggerIsSlogAtWarnRateLimited: go-redis's own lines become
// WARN records of the service's (JSON) log, one per period, the next one
// counting the suppressed lines.
func TestRedisLoggerIsSlogAtWarnRateLimited(t *testing.T) {
	var buf bytes.Buffer
	l := NewRedisLogger(slog.New(slog.NewJSONHandler(&buf, nil)))
	l.limit.Every = time.Second // the production period, shortened
	var _ interface {
		Printf(context.Context, string, ...any)
	} = l
	for i := range 20 {
		l.Printf(context.Background(), "redis: connection pool: failed to dial after %d attempts: %s\n", i, "dial tcp 127.0.0.1:1: connect: connection refused")
	}
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 1 {
		t.Fatalf("%d lines for 20 within a period:\n%s", len(lines), buf.String())
	}
	var rec map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &rec); err != nil {
		t.Fatal(err)
	}
	if rec["level"] != "WARN" || rec["msg"] != "redis client" ||
		rec["detail"] != "redis: connection pool: failed to dial after 0 attempts: dial tcp 127.0.0.1:1: connect: connection refused" ||
		rec["suppressed"] != float64(0) {
		t.Fatalf("record %v", rec)
	}
	time.Sleep(l.limit.Every) // the period is over
	buf.Reset()
	l.Printf(context.Background(), "redis: later")
	if err := json.Unmarshal(buf.Bytes(), &rec); err != nil || rec["suppressed"] != float64(19) {
		t.Fatalf("after the period: %s", buf.String())
	}
}

// TestSetRedisLoggerRoutesGoRedis: go-redis's own logging, once routed,
// reaches the slog handler rather than stderr. A client dialing a closed
// port with a pool warm-up makes go-redis log.
func TestSetRedisLoggerRoutesGoRedis(t *testing.T) {
	var buf syncBuffer
	SetRedisLogger(slog.New(slog.NewJSONHandler(&buf, nil)))
	t.Cleanup(func() { SetRedisLogger(slog.New(slog.DiscardHandler)) })
	// A Sentinel client whose sentinels are all down logs "sentinel: ..."
	// through go-redis's logger.
	c := redis.NewFailoverClient(&redis.FailoverOptions{MasterName: "m", SentinelAddrs: []string{"127.0.0.1:1"},
		DialTimeout: 50 * time.Millisecond, MaxRetries: -1})
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_ = c.Ping(ctx).Err()
	deadline := time.Now().Add(2 * time.Second)
	for !strings.Contains(buf.String(), `"msg":"redis client"`) {
		if time.Now().After(deadline) {
			t.Fatalf("go-redis logged nothing through slog: %q", buf.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if !strings.Contains(buf.String(), `"level":"WARN"`) {
		t.Fatalf("not WARN: %s", buf.String())
	}
}
