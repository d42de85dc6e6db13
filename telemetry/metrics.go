// Package telemetry is mcp-authz's metrics (Prometheus, client_golang) and
// traces (OpenTelemetry SDK, OTLP export). The packages that decide (authz,
// cache, validators) know nothing of either: they report through small
// hooks of their own (authz.Observer, the tracing.Tracer seam, the
// introspection observer) or keep atomic counters that Metrics reads when
// Prometheus scrapes.
package telemetry

import (
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/mcp-authz/mcp-authz/cache"
	"github.com/mcp-authz/mcp-authz/validators"
)

const namespace = "mcp_authz"

// Label values of the metrics that Metrics computes itself.
const (
	ResultSuccess = "success"
	ResultFailure = "failure"

	TierL1 = "l1"
	TierL2 = "l2"
)

// checkBuckets span a cached decision (microseconds) to a slow
// introspection (Envoy's default ext_authz timeout is 200 ms).
var checkBuckets = []float64{
	0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1,
}

// outboundBuckets are for calls to an authorization server.
var outboundBuckets = []float64{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.25, 0.5, 1, 2.5}

// Metrics is the service's Prometheus registry: the decisions, the
// dependencies' outcomes and the cache tiers. It implements authz.Observer.
// One Metrics serves a process for its whole life: configuration reloads
// point it at the new stores (Watch*) and keep counting.
type Metrics struct {
	reg *prometheus.Registry

	checks        *prometheus.CounterVec
	checkDuration prometheus.Histogram
	// checkCounters caches the children of checks by label values, read
	// without a lock: a decision costs a map lookup, not the CounterVec's
	// hashing and read lock. Replaced whole (under mu) when a new
	// combination appears; resources come from configuration and reasons
	// are a fixed set, so that is rare.
	checkCounters atomic.Pointer[map[checkKey]prometheus.Counter]
	mu            sync.Mutex

	introRequests *prometheus.CounterVec
	introDuration *prometheus.HistogramVec
	reloads       *prometheus.CounterVec

	stores  atomic.Pointer[stores]
	keySets atomic.Pointer[validators.KeySets]
}

type checkKey struct{ resource, decision, reason string }

type stores struct {
	l1 *cache.Memory
	l2 *cache.Redis
}

// NewMetrics returns a registry with every mcp_authz metric, and Go
// runtime and process metrics.
func NewMetrics() *Metrics {
	m := &Metrics{reg: prometheus.NewRegistry()}
	m.checks = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Name: "checks_total",
		Help: "Decisions, by resource (empty when none matched), decision (allow, deny, unavailable) and reason (the denial's error code, or ok, unprotected).",
	}, []string{"resource", "decision", "reason"})
	m.checkDuration = prometheus.NewHistogram(prometheus.HistogramOpts{
		Namespace: namespace, Name: "check_duration_seconds",
		Help:    "Time to decide a Check, from the request read to the response chosen.",
		Buckets: checkBuckets,
	})
	m.introRequests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Name: "introspection_requests_total",
		Help: "Token introspections (RFC 7662), by issuer (or endpoint) and result (active, inactive, invalid, error).",
	}, []string{"issuer", "result"})
	m.introDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: namespace, Name: "introspection_duration_seconds",
		Help:    "Duration of token introspections, discovery included, by issuer (or endpoint).",
		Buckets: outboundBuckets,
	}, []string{"issuer"})
	m.reloads = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Name: "config_reloads_total",
		Help: "Configuration reloads, by result (success, failure: the old configuration stays).",
	}, []string{"result"})
	m.reloads.WithLabelValues(ResultSuccess)
	m.reloads.WithLabelValues(ResultFailure)
	empty := map[checkKey]prometheus.Counter{}
	m.checkCounters.Store(&empty)
	m.reg.MustRegister(m.checks, m.checkDuration, m.introRequests, m.introDuration, m.reloads, statsCollector{m},
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Registry returns the registry, to add metrics or to gather in tests.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Handler serves the registry in the Prometheus text format (or
// OpenMetrics, when the scraper asks for it).
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{EnableOpenMetrics: true})
}

// Check implements authz.Observer.
func (m *Metrics) Check(resource, decision, reason string, d time.Duration) {
	k := checkKey{resource, decision, reason}
	c, ok := (*m.checkCounters.Load())[k]
	if !ok {
		c = m.checkCounter(k)
	}
	c.Inc()
	m.checkDuration.Observe(d.Seconds())
}

func (m *Metrics) checkCounter(k checkKey) prometheus.Counter {
	m.mu.Lock()
	defer m.mu.Unlock()
	old := *m.checkCounters.Load()
	if c, ok := old[k]; ok {
		return c
	}
	c := m.checks.WithLabelValues(k.resource, k.decision, k.reason)
	next := make(map[checkKey]prometheus.Counter, len(old)+1)
	for k, v := range old {
		next[k] = v
	}
	next[k] = c
	m.checkCounters.Store(&next)
	return c
}

// Introspection returns the observer of one introspection server's
// validations (validators.IntrospectionConfig.Observe). issuer labels them:
// the configured issuer, else the endpoint.
func (m *Metrics) Introspection(issuer string) func(result string, d time.Duration) {
	counters := map[string]prometheus.Counter{}
	for _, r := range []string{validators.IntrospectionActive, validators.IntrospectionInactive, validators.IntrospectionInvalid, validators.IntrospectionError} {
		counters[r] = m.introRequests.WithLabelValues(issuer, r)
	}
	hist := m.introDuration.WithLabelValues(issuer)
	return func(result string, d time.Duration) {
		c, ok := counters[result]
		if !ok {
			c = m.introRequests.WithLabelValues(issuer, result)
		}
		c.Inc()
		hist.Observe(d.Seconds())
	}
}

// ReloadResult counts a configuration reload: ok when the new
// configuration was swapped in, false when it was refused.
func (m *Metrics) ReloadResult(ok bool) {
	if ok {
		m.reloads.WithLabelValues(ResultSuccess).Inc()
	} else {
		m.reloads.WithLabelValues(ResultFailure).Inc()
	}
}

// WatchCache makes scrapes read the cache tiers' counters: l1, the
// in-process tier, and l2, the Redis tier (nil without Redis: no Redis
// metrics are exported then).
func (m *Metrics) WatchCache(l1 *cache.Memory, l2 *cache.Redis) {
	m.stores.Store(&stores{l1: l1, l2: l2})
}

// WatchKeySets makes scrapes read the JWKS refresh counters of every live
// key set of r.
func (m *Metrics) WatchKeySets(r *validators.KeySets) { m.keySets.Store(r) }

// statsCollector reads, at scrape time, the counters that the cache tiers
// and the JWKS caches keep anyway: nothing is added to their paths.
type statsCollector struct{ m *Metrics }

var (
	descCacheRequests = prometheus.NewDesc(namespace+"_cache_requests_total",
		"Verdict cache lookups, by tier (l1: in process, l2: Redis) and result (hit, miss; l2 also error: a failed Redis call of any kind, skipped: the tier was backing off).",
		[]string{"tier", "result"}, nil)
	descJWKSRefreshes = prometheus.NewDesc(namespace+"_jwks_refreshes_total",
		"JWKS refreshes (discovery and fetch), by issuer and result (success, failure).",
		[]string{"issuer", "result"}, nil)
	descRedisUp = prometheus.NewDesc(namespace+"_redis_up",
		"1 while the Redis tier is in use, 0 while it is skipped after errors (exported only with Redis).", nil, nil)
	descRedisBackoff = prometheus.NewDesc(namespace+"_redis_backoff_seconds",
		"The current back-off of the Redis tier: 0 while Redis is up.", nil, nil)
	descIntegrity = prometheus.NewDesc(namespace+"_verdict_integrity_failures_total",
		"Values read from Redis that failed their integrity checks (MAC, decoding, exp, lifetime, TTL): each was a miss.", nil, nil)
)

func (c statsCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descCacheRequests, descJWKSRefreshes, descRedisUp, descRedisBackoff, descIntegrity} {
		ch <- d
	}
}

func (c statsCollector) Collect(ch chan<- prometheus.Metric) {
	counter := func(d *prometheus.Desc, v int64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	if st := c.m.stores.Load(); st != nil {
		if st.l1 != nil {
			s := st.l1.Stats()
			counter(descCacheRequests, s.Hits, TierL1, "hit")
			counter(descCacheRequests, s.Misses, TierL1, "miss")
		}
		if st.l2 != nil {
			s := st.l2.Stats()
			counter(descCacheRequests, s.Hits, TierL2, "hit")
			counter(descCacheRequests, s.Misses, TierL2, "miss")
			counter(descCacheRequests, s.Errors, TierL2, "error")
			counter(descCacheRequests, s.Skipped, TierL2, "skipped")
			up := 0.0
			if s.Up {
				up = 1
			}
			ch <- prometheus.MustNewConstMetric(descRedisUp, prometheus.GaugeValue, up)
			ch <- prometheus.MustNewConstMetric(descRedisBackoff, prometheus.GaugeValue, s.Backoff.Seconds())
			counter(descIntegrity, s.IntegrityFailures)
		}
	}
	if r := c.m.keySets.Load(); r != nil {
		// Several key sets may serve one issuer (configured and discovered
		// JWKS URIs): one series per issuer.
		type sums struct{ ok, failed int64 }
		by := map[string]*sums{}
		for _, s := range r.Stats() {
			t := by[s.Issuer]
			if t == nil {
				t = &sums{}
				by[s.Issuer] = t
			}
			t.ok += s.Succeeded
			t.failed += s.Failed
		}
		for iss, t := range by {
			counter(descJWKSRefreshes, t.ok, iss, ResultSuccess)
			counter(descJWKSRefreshes, t.failed, iss, ResultFailure)
		}
	}
}
