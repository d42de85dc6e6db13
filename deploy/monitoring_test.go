package deploy

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/redis/go-redis/v9"
	"go.yaml.in/yaml/v3"

	"github.com/mcp-authz/mcp-authz/cache"
	"github.com/mcp-authz/mcp-authz/telemetry"
	"github.com/mcp-authz/mcp-authz/validators"
)

// exported scrapes a registry with every mcp-authz metric populated and
// returns each family's label names.
func exported(t *testing.T) map[string]map[string]bool {
	t.Helper()
	m := telemetry.NewMetrics()
	m.Check("r", "allow", "ok", time.Microsecond)
	m.Introspection("https://as.example")("active", time.Millisecond)
	mem, _ := cache.NewMemory(cache.MemoryOptions{})
	client := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"})
	t.Cleanup(func() { client.Close() })
	l2, err := cache.NewRedis(cache.RedisOptions{Client: client, Secrets: [][]byte{[]byte(strings.Repeat("s", 32))}})
	if err != nil {
		t.Fatal(err)
	}
	m.WatchCache(mem, l2)
	srv := httptest.NewServer(http.NotFoundHandler())
	t.Cleanup(srv.Close)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	reg := validators.NewKeySets(ctx)
	if _, err := reg.Get(validators.KeySetConfig{Issuer: "https://issuer.example", JWKSURI: srv.URL + "/jwks", Client: srv.Client()}); err != nil {
		t.Fatal(err)
	}
	m.WatchKeySets(reg)
	mfs, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]map[string]bool{}
	add := func(name string, mf *dto.MetricFamily) {
		labels := map[string]bool{}
		for _, mm := range mf.GetMetric() {
			for _, l := range mm.GetLabel() {
				labels[l.GetName()] = true
			}
		}
		out[name] = labels
	}
	for _, mf := range mfs {
		add(mf.GetName(), mf)
		if mf.GetType() == dto.MetricType_HISTOGRAM {
			for _, suffix := range []string{"_bucket", "_sum", "_count"} {
				add(mf.GetName()+suffix, mf)
			}
			out[mf.GetName()+"_bucket"]["le"] = true
		}
	}
	return out
}

var (
	metricRef = regexp.MustCompile(`\b(mcp_authz_[a-z0-9_]+)(\{[^}]*\})?`)
	matcher   = regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)`)
)

// checkExprs fails unless every expression names mcp-authz metrics that
// the service exports, with label matchers on labels they have.
func checkExprs(t *testing.T, where string, exprs []string, metrics map[string]map[string]bool) map[string]bool {
	t.Helper()
	used := map[string]bool{}
	for _, e := range exprs {
		refs := metricRef.FindAllStringSubmatch(e, -1)
		if len(refs) == 0 {
			t.Errorf("%s: expression uses no mcp_authz metric: %s", where, e)
		}
		for _, ref := range refs {
			labels, ok := metrics[ref[1]]
			if !ok {
				t.Errorf("%s: %s is not exported (expression %s)", where, ref[1], e)
				continue
			}
			used[strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(ref[1], "_bucket"), "_sum"), "_count")] = true
			for _, m := range matcher.FindAllStringSubmatch(ref[2], -1) {
				if !labels[m[1]] {
					t.Errorf("%s: %s has no label %q (expression %s)", where, ref[1], m[1], e)
				}
			}
		}
	}
	return used
}

// TestPrometheusRulesUseExportedMetrics: the PrometheusRule parses, every
// rule is an alert with a severity and a summary, and its expressions name
// only metrics (and labels) the service exports.
func TestPrometheusRulesUseExportedMetrics(t *testing.T) {
	raw, err := os.ReadFile("prometheus/mcp-authz-rules.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		APIVersion string `yaml:"apiVersion"`
		Kind       string `yaml:"kind"`
		Metadata   struct {
			Name   string            `yaml:"name"`
			Labels map[string]string `yaml:"labels"`
		} `yaml:"metadata"`
		Spec struct {
			Groups []struct {
				Name  string `yaml:"name"`
				Rules []struct {
					Alert       string            `yaml:"alert"`
					Expr        string            `yaml:"expr"`
					For         string            `yaml:"for"`
					Labels      map[string]string `yaml:"labels"`
					Annotations map[string]string `yaml:"annotations"`
				} `yaml:"rules"`
			} `yaml:"groups"`
		} `yaml:"spec"`
	}
	dec := yaml.NewDecoder(strings.NewReader(string(raw)))
	dec.KnownFields(true)
	if err := dec.Decode(&doc); err != nil {
		t.Fatal(err)
	}
	if doc.APIVersion != "monitoring.coreos.com/v1" || doc.Kind != "PrometheusRule" || len(doc.Spec.Groups) == 0 {
		t.Fatalf("not a PrometheusRule: %+v", doc)
	}
	metrics := exported(t)
	var exprs []string
	alerts := map[string]bool{}
	for _, g := range doc.Spec.Groups {
		for _, r := range g.Rules {
			if r.Alert == "" || r.Labels["severity"] == "" || r.Annotations["summary"] == "" {
				t.Errorf("rule %+v lacks alert name, severity or summary", r)
			}
			if r.For != "" {
				if _, err := time.ParseDuration(r.For); err != nil {
					t.Errorf("%s: for %q", r.Alert, r.For)
				}
			}
			alerts[r.Alert] = true
			exprs = append(exprs, r.Expr)
		}
	}
	used := checkExprs(t, "PrometheusRule", exprs, metrics)
	// What the alerts are for (issue 11): decisions answered unavailable,
	// dependencies down, forged verdicts, refused reloads.
	for _, m := range []string{"mcp_authz_checks_total", "mcp_authz_redis_up", "mcp_authz_jwks_refreshes_total",
		"mcp_authz_verdict_integrity_failures_total", "mcp_authz_config_reloads_total"} {
		if !used[m] {
			t.Errorf("no alert on %s", m)
		}
	}
}

// TestGrafanaDashboardUsesExportedMetrics: the dashboard is JSON, each
// panel has a query, and every query names only exported metrics (and
// labels).
func TestGrafanaDashboardUsesExportedMetrics(t *testing.T) {
	raw, err := os.ReadFile("grafana/mcp-authz-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		UID    string `json:"uid"`
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
		Templating struct {
			List []struct {
				Name       string `json:"name"`
				Definition string `json:"definition"`
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(raw, &dash); err != nil {
		t.Fatal(err)
	}
	if dash.UID == "" || len(dash.Panels) == 0 {
		t.Fatal("no uid or no panels")
	}
	var exprs []string
	for _, p := range dash.Panels {
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			exprs = append(exprs, tg.Expr)
		}
	}
	for _, v := range dash.Templating.List {
		if v.Definition != "" {
			exprs = append(exprs, v.Definition)
		}
	}
	used := checkExprs(t, "dashboard", exprs, exported(t))
	for _, m := range []string{"mcp_authz_checks_total", "mcp_authz_check_duration_seconds", "mcp_authz_cache_requests_total",
		"mcp_authz_jwks_refreshes_total", "mcp_authz_introspection_requests_total", "mcp_authz_redis_up"} {
		if !used[m] {
			t.Errorf("no panel shows %s", m)
		}
	}
}
