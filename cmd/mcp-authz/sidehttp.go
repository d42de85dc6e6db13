package main

import (
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"io"
	"log"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/mcp-authz/mcp-authz/cache"
	"github.com/mcp-authz/mcp-authz/internal/loglimit"
	"github.com/mcp-authz/mcp-authz/metadata"
	"github.com/mcp-authz/mcp-authz/validators"
)

func (s *service) httpHandler() http.Handler {
	mux := http.NewServeMux()
	// The documents change with a reload: serve the current generation's.
	docs := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { s.current().metadata.ServeHTTP(w, r) })
	mux.Handle(metadata.WellKnownPrefix, docs)
	mux.Handle(metadata.WellKnownPrefix+"/", docs)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		_, _ = io.WriteString(w, "ok\n")
	})
	mux.HandleFunc("GET /readyz", s.serveReady)
	mux.Handle("GET /metrics", s.tel.metrics.Handler())
	mux.HandleFunc("POST /admin/purge", s.servePurge)
	return mux
}

// servePurge removes a token's verdicts fleet-wide: from Redis, and from
// every replica's in-process cache through the invalidation channel.
// Body: {"sha256": "<hex digest of the token>"} or {"token": "<the token>"}.
func (s *service) servePurge(w http.ResponseWriter, r *http.Request) {
	admin := s.current().cfg.Admin.Token
	if admin == "" {
		http.NotFound(w, r) // the endpoint exists only with an admin token
		return
	}
	given, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok || subtle.ConstantTimeCompare([]byte(given), []byte(admin)) != 1 {
		w.Header().Set("WWW-Authenticate", `Bearer realm="mcp-authz admin"`)
		http.Error(w, `{"error":"unauthorized"}`, http.StatusUnauthorized)
		return
	}
	var req struct {
		SHA256 string `json:"sha256"`
		Token  string `json:"token"`
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil || (req.SHA256 == "") == (req.Token == "") {
		http.Error(w, `{"error":"invalid_request","error_description":"send {\"sha256\": HEX} or {\"token\": TOKEN}"}`, http.StatusBadRequest)
		return
	}
	sum := cache.HashToken(req.Token)
	if req.SHA256 != "" {
		d, err := validators.ParseAPIKeyDigest(req.SHA256)
		if err != nil {
			http.Error(w, `{"error":"invalid_request","error_description":"sha256 is not a hex SHA-256 digest"}`, http.StatusBadRequest)
			return
		}
		sum = d
	}
	local := s.memory.InvalidateToken(sum)
	resp := map[string]any{"sha256": hex.EncodeToString(sum[:]), "local_entries": local}
	if s.redis != nil {
		n, err := s.redis.Purge(r.Context(), sum)
		if err != nil {
			s.log.Error("purge failed", "error", err)
			http.Error(w, `{"error":"temporarily_unavailable","error_description":"Redis purge failed"}`, http.StatusServiceUnavailable)
			return
		}
		resp["redis_keys"] = n
		resp["fleet_notified"] = true
	}
	s.log.Info("purged a token's verdicts", "sha256", resp["sha256"], "redis_keys", resp["redis_keys"])
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(resp)
}

// serveReady reports ready once every issuer's JWKS has loaded and every
// introspection endpoint to discover is known: until then this replica can
// only answer 503 for tokens.
func (s *service) serveReady(w http.ResponseWriter, _ *http.Request) {
	g := s.current()
	issuers := make(map[string]string, len(g.waits))
	ready := true
	for _, r := range g.waits {
		if r.done() {
			if _, seen := issuers[r.issuer]; !seen {
				issuers[r.issuer] = r.ready
			}
		} else {
			issuers[r.issuer] = r.waiting
			ready = false
		}
	}
	w.Header().Set("Content-Type", "application/json")
	if !ready {
		w.WriteHeader(http.StatusServiceUnavailable)
	}
	_ = json.NewEncoder(w).Encode(map[string]any{"ready": ready, "issuers": issuers})
}

// sideLimits bound what one client may take of the HTTP side server.
type sideLimits struct {
	readHeader, read, write, idle time.Duration
	body                          int64
}

// sideServerLimits: the side server is public (RFC 9728 metadata), so a
// slow or oversized client must not hold it (DESIGN §7).
var sideServerLimits = sideLimits{readHeader: 5 * time.Second, read: 10 * time.Second, write: 10 * time.Second, idle: 60 * time.Second, body: 64 << 10}

func newSideServer(h http.Handler, l sideLimits, logger *slog.Logger) *http.Server {
	return &http.Server{
		Handler:           http.MaxBytesHandler(h, l.body),
		ReadHeaderTimeout: l.readHeader,
		ReadTimeout:       l.read,
		WriteTimeout:      l.write,
		IdleTimeout:       l.idle,
		MaxHeaderBytes:    32 << 10,
		ErrorLog:          log.New(&httpErrorLog{log: logger, limit: loglimit.Limiter{Every: httpErrorLogEvery}}, "", 0),
	}
}

// httpErrorLogEvery is how often net/http's own lines are let through: any
// client can cause one (a failed TLS handshake), so a scanner could
// otherwise fill the log.
const httpErrorLogEvery = 10 * time.Second

// httpErrorLog takes what net/http reports about connections (failed TLS
// handshakes, panics in handlers), which it otherwise prints to stderr as
// plain text through the standard logger, into the service's logger at
// WARN, at most one line per 10 seconds with the number suppressed before
// it.
type httpErrorLog struct {
	log   *slog.Logger
	limit loglimit.Limiter
}

func (w *httpErrorLog) Write(p []byte) (int, error) {
	if ok, suppressed := w.limit.Allow(time.Now()); ok {
		w.log.Warn("http server", slog.String("detail", strings.TrimSpace(string(p))), slog.Int64("suppressed", suppressed))
	}
	return len(p), nil
}
