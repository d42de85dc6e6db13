package main

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/reflection"

	"github.com/redis/go-redis/v9"

	"github.com/mcp-authz/mcp-authz/authz"
	"github.com/mcp-authz/mcp-authz/cache"
	"github.com/mcp-authz/mcp-authz/config"
	"github.com/mcp-authz/mcp-authz/metadata"
	"github.com/mcp-authz/mcp-authz/validators"
)

func serveCmd(args []string, getenv func(string) string, stderr io.Writer) int {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	configPath := fs.String("config", "", "YAML configuration file (environment variables override it)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	cfg, err := config.Load(*configPath, getenv)
	if err != nil {
		fmt.Fprintf(stderr, "mcp-authz: config: %v\n", err)
		return 2
	}
	return runService(cfg, stderr, "mcp-authz", nil)
}

// runService builds the service for cfg, binds its listeners, calls ready
// (if any), and serves until SIGINT or SIGTERM. name prefixes error lines.
func runService(cfg *config.Config, stderr io.Writer, name string, ready func(*service) error) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	log, closeLog, err := newLogger(cfg.Log, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "%s: log: %v\n", name, err)
		return 2
	}
	defer closeLog()
	svc, err := newService(ctx, cfg, log)
	if err == nil {
		err = svc.listen()
	}
	if err == nil && ready != nil {
		err = ready(svc)
	}
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", name, err)
		return 1
	}
	defer svc.tel.shutdown() // after serve: the last spans are exported
	if err := svc.serve(ctx); err != nil {
		log.Error("server failed", "error", err)
		return 1
	}
	return 0
}

func newLogger(c config.LogConfig, stderr io.Writer) (*slog.Logger, func(), error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(c.Level)); err != nil {
		return nil, nil, err
	}
	w := stderr
	closer := func() {}
	if c.File {
		if err := os.MkdirAll(c.Directory, 0o750); err != nil {
			return nil, nil, fmt.Errorf("MCP_LOG_DIRECTORY: %w", err)
		}
		f, err := os.OpenFile(filepath.Join(c.Directory, "mcp-authz.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o640)
		if err != nil {
			return nil, nil, fmt.Errorf("MCP_LOG_DIRECTORY: %w", err)
		}
		w = io.MultiWriter(stderr, f)
		closer = func() { _ = f.Close() }
	}
	opts := &slog.HandlerOptions{Level: level}
	var h slog.Handler = slog.NewJSONHandler(w, opts)
	if c.Format == "text" {
		h = slog.NewTextHandler(w, opts)
	}
	return slog.New(h), closer, nil
}

// service is the wired process: the Check server and the HTTP side server.
type service struct {
	cfg     *config.Config
	log     *slog.Logger
	authz   *authz.Server
	keySets map[string]*validators.RemoteKeySet
	// jwks is the registry of JWKS caches: one per (issuer, JWKS URI),
	// shared by every resource that names it.
	jwks     *validators.KeySets
	memory   *cache.Memory
	redis    *cache.Redis // nil without Redis
	metadata *metadata.Handler
	health   *health.Server
	tel      *observability

	grpcLn, httpLn net.Listener
}

// outboundClient fetches discovery documents and JWKS. Redirects are
// followed only to URLs that CheckOutboundURL accepts.
func outboundClient() *http.Client {
	return &http.Client{
		Transport: &http.Transport{
			Proxy:                 http.ProxyFromEnvironment,
			DialContext:           (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			TLSHandshakeTimeout:   5 * time.Second,
			ResponseHeaderTimeout: 10 * time.Second,
			MaxIdleConnsPerHost:   64, // introspection under load reuses connections
			IdleConnTimeout:       90 * time.Second,
			ForceAttemptHTTP2:     true,
		},
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if len(via) >= 5 {
				return errors.New("too many redirects")
			}
			return validators.CheckOutboundURL(req.URL.String())
		},
	}
}

func newService(ctx context.Context, cfg *config.Config, log *slog.Logger) (*service, error) {
	memory, err := cache.NewMemory(cache.MemoryOptions{MaxBytes: cfg.Cache.MaxBytes})
	if err != nil {
		return nil, err
	}
	tel, err := newObservability(ctx, log)
	if err != nil {
		return nil, err
	}
	s := &service{cfg: cfg, log: log, keySets: map[string]*validators.RemoteKeySet{}, memory: memory, jwks: validators.NewKeySets(ctx), tel: tel}
	var store cache.Store = memory
	if rc := cfg.Redis; rc != nil {
		opts, err := rc.UniversalOptions()
		if err != nil {
			return nil, fmt.Errorf("redis: %w", err)
		}
		client := redis.NewUniversalClient(opts)
		context.AfterFunc(ctx, func() { _ = client.Close() })
		l2, err := cache.NewRedis(cache.RedisOptions{Client: client, Prefix: rc.Prefix, Timeout: rc.Timeout.D(), Backoff: rc.Backoff.D(),
			Secrets: rc.Secrets, Logger: log})
		if err != nil {
			return nil, err
		}
		store = &cache.Tiered{L1: memory, L2: l2, L1TTL: rc.L1TTL.D()}
		s.redis = l2
		// A purge anywhere in the fleet drops this replica's copy too.
		l2.Subscribe(ctx, func(sum [sha256.Size]byte) { memory.InvalidateToken(sum) })
		// Redis is never required: report, do not fail.
		pingCtx, cancel := context.WithTimeout(ctx, time.Second)
		if err := client.Ping(pingCtx).Err(); err != nil {
			log.Warn("redis cache tier not reachable at start-up; using the in-process cache until it is", "error", err)
		}
		cancel()
	}
	tel.metrics.WatchCache(memory, s.redis)
	tel.metrics.WatchKeySets(s.jwks)
	client := tel.instrument(outboundClient())
	var resources []*authz.Resource
	var docs []metadata.Document
	for _, rc := range cfg.Resources {
		v, ttl, err := s.newValidator(ctx, rc, client)
		if err != nil {
			return nil, fmt.Errorf("resource %q: %w", rc.Name, err)
		}
		cached, err := cache.New(v, store, cache.Options{
			Policy:      v.Fingerprint(),
			TTL:         ttl,
			NegativeTTL: cfg.Cache.NegativeTTL.D(),
			Tracer:      tel.tracer(),
		})
		if err != nil {
			return nil, err
		}
		resources = append(resources, authzResource(rc, cached))
		logResource(log, &rc)
		if !config.Protects(rc.Endpoints.Initialize) && len(rc.Operations) == 0 {
			log.Warn("endpoints.initialize is false: initialize requests pass without a token only when Envoy sends the request body (with_request_body); without it every session-less POST needs one",
				"resource", rc.Name)
		}
		docs = append(docs, metadata.Document{
			Resource:               rc.Resource,
			AuthorizationServers:   rc.AuthorizationServers,
			ScopesSupported:        rc.ScopesSupported,
			BearerMethodsSupported: []string{"header"},
			ResourceName:           rc.ResourceName,
			ResourceDocumentation:  rc.ResourceDocumentation,
		})
	}
	var sessions authz.SessionStore
	for _, rc := range cfg.Resources {
		if rc.SessionBinding {
			opts := cache.SessionOptions{}
			if s.redis != nil {
				opts.Shared = s.redis
			}
			st, err := cache.NewSessions(opts)
			if err != nil {
				return nil, err
			}
			sessions = st
			break
		}
	}
	mode := authz.UnavailableHTTP
	if cfg.Unavailable.Mode == "grpc" {
		mode = authz.UnavailableGRPC
	}
	s.authz, err = authz.NewServer(authz.Config{
		Resources:            resources,
		Unavailable:          mode,
		RetryAfter:           cfg.Unavailable.RetryAfter.D(),
		MaxTokenBytes:        cfg.MaxTokenBytes,
		IdentityHeaderPrefix: cfg.IdentityHeaders.Prefix,
		StripAuthorization:   cfg.IdentityHeaders.StripAuthorization,
		Sessions:             sessions,
		Logger:               log,
		Observer:             tel.metrics,
		Tracer:               tel.tracer(),
	})
	if err != nil {
		return nil, err
	}
	s.metadata, err = metadata.NewHandler(docs)
	if err != nil {
		return nil, err
	}
	return s, nil
}

// authzResource is the decision's view of a configured resource.
func authzResource(rc config.ResourceConfig, v authz.Validator) *authz.Resource {
	r := &authz.Resource{
		Name:                      rc.Name,
		URI:                       rc.Resource,
		ScopesSupported:           rc.ScopesSupported,
		RequiredScopes:            rc.RequiredScopes,
		Hosts:                     rc.Hosts,
		PathPrefixes:              rc.Prefixes(),
		APIKeys:                   rc.Validation == "apikey",
		Validator:                 v,
		UnprotectedInitialize:     !config.Protects(rc.Endpoints.Initialize),
		UnprotectedMessages:       !config.Protects(rc.Endpoints.Messages),
		LegacySSE:                 authz.LegacySSE{SSEPath: rc.LegacySSE.SSEPath, MessagesPath: rc.LegacySSE.MessagesPath},
		ScopeImplies:              rc.ScopeImplies,
		UnreadableBodyRouteScopes: rc.UnreadableBody == "route_scopes",
		AllowedOrigins:            rc.AllowedOrigins,
		SessionBinding:            rc.SessionBinding,
		SessionTTL:                rc.SessionTTL.D(),
	}
	for _, op := range rc.Operations {
		r.Operations = append(r.Operations, authz.Operation{Method: op.Method, Name: op.Name, Scopes: op.Scopes})
	}
	return r
}

// policyValidator is a validator whose verdicts can be cached.
type policyValidator interface {
	authz.Validator
	Fingerprint() string
}

// newValidator builds a resource's validation strategy and the TTL that
// caps its cached verdicts.
func (s *service) newValidator(ctx context.Context, rc config.ResourceConfig, client *http.Client) (policyValidator, time.Duration, error) {
	switch rc.Validation {
	case "apikey":
		keys, err := rc.LoadAPIKeys()
		if err != nil {
			return nil, 0, err
		}
		v, err := validators.NewAPIKeys(keys)
		return v, s.cfg.Cache.TTL.D(), err
	case "hmac":
		h := rc.HMAC
		v, err := validators.NewHMAC(validators.HMACConfig{
			Secret:             []byte(h.Secret),
			Algorithms:         h.Algorithms,
			Issuer:             h.Issuer,
			Audiences:          h.Audiences,
			AllowMissingExpiry: h.AllowMissingExpiry,
			Leeway:             rc.Leeway.D(),
		})
		return v, s.cfg.Cache.TTL.D(), err
	}
	var jv *validators.JWT
	if rc.Validation == "jwt" || rc.Validation == "auto" {
		issuers := make([]validators.IssuerConfig, 0, len(rc.Issuers))
		for _, ic := range rc.Issuers {
			issuers = append(issuers, validators.IssuerConfig{
				Issuer:          ic.Issuer,
				JWKSURI:         ic.JWKSURI,
				Algorithms:      ic.Algorithms,
				RequireATJWT:    ic.RequireATJWT,
				JWKSCacheTTL:    ic.JWKSCacheTTL.D(),
				ClientIDs:       ic.ClientIDs,
				RequireTokenUse: ic.RequireTokenUse,
			})
		}
		var err error
		jv, err = validators.NewJWT(ctx, validators.JWTConfig{
			KeySets:            s.jwks,
			Issuers:            issuers,
			Audiences:          rc.Audiences,
			Leeway:             rc.Leeway.D(),
			Client:             client,
			RefreshWait:        s.cfg.JWKS.RefreshWait.D(),
			MinRefreshInterval: s.cfg.JWKS.MinRefreshInterval.D(),
			Logger:             s.log,
			Tracer:             s.tel.tracer(),
		})
		if err != nil {
			return nil, 0, err
		}
		for iss, ks := range jv.KeySets() {
			s.keySets[iss] = ks
		}
		if rc.Validation == "jwt" {
			return jv, s.cfg.Cache.TTL.D(), nil
		}
	}
	var servers []*validators.Introspection
	ttl := s.cfg.Cache.TTL.D()
	list := rc.Introspections()
	for k, in := range list {
		iv, err := validators.NewIntrospection(validators.IntrospectionConfig{
			Endpoint:             in.Endpoint,
			Issuer:               in.Issuer,
			ClientID:             in.ClientID,
			ClientSecret:         in.ClientSecret,
			AuthMethod:           in.AuthMethod,
			Audiences:            rc.Audiences,
			AllowMissingAudience: in.AllowMissingAudience,
			Leeway:               rc.Leeway.D(),
			Timeout:              in.Timeout.D(),
			Client:               client,
			Logger:               s.log,
			Observe:              s.tel.introspection(in),
		})
		if err != nil {
			return nil, 0, err
		}
		servers = append(servers, iv)
		// Revocation shows within the shortest cache TTL of any server.
		if k == 0 || in.CacheTTL.D() < ttl {
			ttl = in.CacheTTL.D()
		}
	}
	var intro policyValidator = servers[0]
	if len(servers) > 1 {
		multi, err := validators.NewFirstActive(servers...)
		if err != nil {
			return nil, 0, err
		}
		intro = multi
	}
	if jv != nil {
		return validators.NewAuto(jv, intro), ttl, nil
	}
	return intro, ttl, nil
}

// listen binds both listeners, so that a port conflict fails start-up
// before anything is served.
func (s *service) listen() error {
	var err error
	if s.grpcLn, err = net.Listen("tcp", s.cfg.GRPCAddr); err != nil {
		return fmt.Errorf("grpc_addr: %w", err)
	}
	if s.httpLn, err = net.Listen("tcp", s.cfg.HTTPAddr); err != nil {
		_ = s.grpcLn.Close()
		return fmt.Errorf("http_addr: %w", err)
	}
	return nil
}

func (s *service) httpHandler() http.Handler {
	mux := http.NewServeMux()
	for _, p := range s.metadata.Paths() {
		mux.Handle(p, s.metadata)
	}
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		_, _ = io.WriteString(w, "ok\n")
	})
	mux.HandleFunc("GET /readyz", s.serveReady)
	mux.Handle("GET /metrics", s.tel.metrics.Handler())
	if s.cfg.Admin.Token != "" {
		mux.HandleFunc("POST /admin/purge", s.servePurge)
	}
	return mux
}

// servePurge removes a token's verdicts fleet-wide: from Redis, and from
// every replica's in-process cache through the invalidation channel.
// Body: {"sha256": "<hex digest of the token>"} or {"token": "<the token>"}.
func (s *service) servePurge(w http.ResponseWriter, r *http.Request) {
	given, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok || subtle.ConstantTimeCompare([]byte(given), []byte(s.cfg.Admin.Token)) != 1 {
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

// serveReady reports ready once every issuer's JWKS has loaded: until then
// this replica can only answer 503 for tokens.
func (s *service) serveReady(w http.ResponseWriter, _ *http.Request) {
	issuers := make(map[string]string, len(s.keySets))
	ready := true
	for iss, ks := range s.keySets {
		if ks.Loaded() {
			issuers[iss] = "jwks loaded"
		} else {
			issuers[iss] = "waiting for jwks"
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

func newSideServer(h http.Handler, l sideLimits) *http.Server {
	return &http.Server{
		Handler:           http.MaxBytesHandler(h, l.body),
		ReadHeaderTimeout: l.readHeader,
		ReadTimeout:       l.read,
		WriteTimeout:      l.write,
		IdleTimeout:       l.idle,
		MaxHeaderBytes:    32 << 10,
	}
}

// serve runs until ctx ends, then shuts down gracefully: health turns
// NOT_SERVING first so Envoy stops routing new checks here.
func (s *service) serve(ctx context.Context) error {
	gs := grpc.NewServer(
		// Reused workers keep their grown stacks: without them every Check
		// starts a fresh goroutine whose stack is grown again, which costs
		// more than the cached Check itself.
		grpc.NumStreamWorkers(uint32(64*runtime.GOMAXPROCS(0))),
		grpc.SharedWriteBuffer(true),
		authz.Codec(),
		// A CheckRequest is headers plus at most Envoy's max_request_bytes
		// of body; anything larger is refused before it is buffered.
		grpc.MaxRecvMsgSize(s.cfg.GRPC.MaxRecvBytes),
		grpc.MaxConcurrentStreams(1000),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 5 * time.Second, PermitWithoutStream: true}),
		grpc.KeepaliveParams(keepalive.ServerParameters{MaxConnectionIdle: 15 * time.Minute}),
	)
	s.authz.Register(gs)
	s.health = health.NewServer()
	healthpb.RegisterHealthServer(gs, s.health)
	s.health.SetServingStatus(authv3.Authorization_ServiceDesc.ServiceName, healthpb.HealthCheckResponse_SERVING)
	if s.cfg.GRPC.Reflection {
		reflection.Register(gs)
	}

	hs := newSideServer(s.httpHandler(), sideServerLimits)

	errc := make(chan error, 2)
	go func() { errc <- gs.Serve(s.grpcLn) }()
	go func() {
		if err := hs.Serve(s.httpLn); !errors.Is(err, http.ErrServerClosed) {
			errc <- err
		}
	}()
	s.log.Info("mcp-authz serving", "grpc", s.grpcLn.Addr().String(), "http", s.httpLn.Addr().String(),
		"resources", len(s.cfg.Resources), "version", version())

	var err error
	select {
	case <-ctx.Done():
	case err = <-errc:
	}
	s.log.Info("shutting down")
	s.health.Shutdown()
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	stopped := make(chan struct{})
	go func() { gs.GracefulStop(); close(stopped) }()
	select {
	case <-stopped:
	case <-shutdownCtx.Done():
		gs.Stop()
	}
	_ = hs.Shutdown(shutdownCtx)
	return err
}
