package telemetry_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/redis/go-redis/v9"

	"github.com/mcp-authz/mcp-authz/cache"
	"github.com/mcp-authz/mcp-authz/telemetry"
	"github.com/mcp-authz/mcp-authz/validators"
)

// populated returns Metrics with every series family present: a decision,
// an introspection, a reload, both cache tiers and a JWKS key set whose
// refresh failed.
func populated(t *testing.T) *telemetry.Metrics {
	t.Helper()
	m := telemetry.NewMetrics()
	m.Check("tools", "allow", "ok", 3*time.Microsecond)
	m.Check("tools", "deny", "invalid_token", 5*time.Microsecond)
	m.Introspection("https://as.example")("active", 20*time.Millisecond)
	m.ReloadResult(false)
	mem, err := cache.NewMemory(cache.MemoryOptions{})
	if err != nil {
		t.Fatal(err)
	}
	client := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"})
	t.Cleanup(func() { client.Close() })
	l2, err := cache.NewRedis(cache.RedisOptions{Client: client, Secrets: [][]byte{[]byte(strings.Repeat("s", 32))}})
	if err != nil {
		t.Fatal(err)
	}
	m.WatchCache(mem, l2)
	down := httptest.NewServer(http.NotFoundHandler())
	t.Cleanup(down.Close)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	reg := validators.NewKeySets(ctx)
	ks, err := reg.Get(validators.KeySetConfig{Issuer: "https://issuer.example", JWKSURI: down.URL + "/jwks", Client: down.Client()})
	if err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(5 * time.Second); ks.Stats().Failed == 0; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the JWKS fetch never failed")
		}
	}
	m.WatchKeySets(reg)
	return m
}

func gather(t *testing.T, m *telemetry.Metrics) map[string]*dto.MetricFamily {
	t.Helper()
	mfs, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]*dto.MetricFamily{}
	for _, mf := range mfs {
		out[mf.GetName()] = mf
	}
	return out
}

// TestMetricsAreTheDesignedOnes: the mcp_authz_* families are exactly
// DESIGN §8's, with its labels and types.
func TestMetricsAreTheDesignedOnes(t *testing.T) {
	want := map[string]struct {
		typ    dto.MetricType
		labels []string
	}{
		"mcp_authz_checks_total":                     {dto.MetricType_COUNTER, []string{"decision", "reason", "resource"}},
		"mcp_authz_check_duration_seconds":           {dto.MetricType_HISTOGRAM, nil},
		"mcp_authz_cache_requests_total":             {dto.MetricType_COUNTER, []string{"result", "tier"}},
		"mcp_authz_jwks_refreshes_total":             {dto.MetricType_COUNTER, []string{"issuer", "result"}},
		"mcp_authz_introspection_requests_total":     {dto.MetricType_COUNTER, []string{"issuer", "result"}},
		"mcp_authz_introspection_duration_seconds":   {dto.MetricType_HISTOGRAM, []string{"issuer"}},
		"mcp_authz_redis_up":                         {dto.MetricType_GAUGE, nil},
		"mcp_authz_redis_backoff_seconds":            {dto.MetricType_GAUGE, nil},
		"mcp_authz_verdict_integrity_failures_total": {dto.MetricType_COUNTER, nil},
		"mcp_authz_config_reloads_total":             {dto.MetricType_COUNTER, []string{"result"}},
	}
	got := gather(t, populated(t))
	for name, mf := range got {
		if !strings.HasPrefix(name, "mcp_authz_") {
			continue
		}
		w, ok := want[name]
		if !ok {
			t.Errorf("unexpected family %s", name)
			continue
		}
		if mf.GetType() != w.typ {
			t.Errorf("%s: type %v, want %v", name, mf.GetType(), w.typ)
		}
		for _, m := range mf.GetMetric() {
			var labels []string
			for _, l := range m.GetLabel() {
				labels = append(labels, l.GetName())
			}
			slices.Sort(labels)
			if !slices.Equal(labels, w.labels) {
				t.Errorf("%s: labels %v, want %v", name, labels, w.labels)
			}
		}
	}
	for name := range want {
		if got[name] == nil {
			t.Errorf("family %s missing", name)
		}
	}
	if got["go_goroutines"] == nil || got["process_cpu_seconds_total"] == nil {
		t.Error("no Go runtime or process metrics")
	}
}

func value(t *testing.T, mfs map[string]*dto.MetricFamily, name string, labels map[string]string) float64 {
	t.Helper()
	mf := mfs[name]
	if mf == nil {
		t.Fatalf("no %s", name)
	}
next:
	for _, m := range mf.GetMetric() {
		for _, l := range m.GetLabel() {
			if v, ok := labels[l.GetName()]; ok && v != l.GetValue() {
				continue next
			}
		}
		switch {
		case m.GetCounter() != nil:
			return m.GetCounter().GetValue()
		case m.GetGauge() != nil:
			return m.GetGauge().GetValue()
		case m.GetHistogram() != nil:
			return float64(m.GetHistogram().GetSampleCount())
		}
	}
	t.Fatalf("no %s%v", name, labels)
	return 0
}

// TestMetricsValues: counters count, and scrapes read the stores' own
// counters.
func TestMetricsValues(t *testing.T) {
	m := populated(t)
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 250 {
				m.Check("tools", "allow", "ok", time.Microsecond)
			}
		}()
	}
	wg.Wait()
	m.ReloadResult(true)
	got := gather(t, m)
	for _, c := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"mcp_authz_checks_total", map[string]string{"resource": "tools", "decision": "allow", "reason": "ok"}, 1001},
		{"mcp_authz_checks_total", map[string]string{"decision": "deny", "reason": "invalid_token"}, 1},
		{"mcp_authz_check_duration_seconds", nil, 1002},
		{"mcp_authz_introspection_requests_total", map[string]string{"issuer": "https://as.example", "result": "active"}, 1},
		{"mcp_authz_introspection_requests_total", map[string]string{"result": "error"}, 0},
		{"mcp_authz_introspection_duration_seconds", nil, 1},
		{"mcp_authz_config_reloads_total", map[string]string{"result": "success"}, 1},
		{"mcp_authz_config_reloads_total", map[string]string{"result": "failure"}, 1},
		{"mcp_authz_jwks_refreshes_total", map[string]string{"issuer": "https://issuer.example", "result": "success"}, 0},
		{"mcp_authz_redis_up", nil, 1},
		{"mcp_authz_redis_backoff_seconds", nil, 0},
		{"mcp_authz_cache_requests_total", map[string]string{"tier": "l1", "result": "hit"}, 0},
		{"mcp_authz_cache_requests_total", map[string]string{"tier": "l2", "result": "skipped"}, 0},
	} {
		if v := value(t, got, c.name, c.labels); v != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, v, c.want)
		}
	}
	if v := value(t, got, "mcp_authz_jwks_refreshes_total", map[string]string{"result": "failure"}); v < 1 {
		t.Errorf("jwks failures %v", v)
	}
}

// TestMetricsHandlerServesPrometheusText: /metrics answers the text format.
func TestMetricsHandlerServesPrometheusText(t *testing.T) {
	srv := httptest.NewServer(populated(t).Handler())
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Fatalf("content type %q", ct)
	}
	for _, want := range []string{
		`mcp_authz_checks_total{decision="allow",reason="ok",resource="tools"} 1`,
		"# TYPE mcp_authz_check_duration_seconds histogram",
		`mcp_authz_redis_up 1`,
	} {
		if !strings.Contains(string(b), want) {
			t.Errorf("no %q in:\n%s", want, b)
		}
	}
}
