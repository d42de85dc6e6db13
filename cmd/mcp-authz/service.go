package main

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/reflection"

	"github.com/redis/go-redis/v9"

	"github.com/mcp-authz/mcp-authz/authz"
	"github.com/mcp-authz/mcp-authz/cache"
	"github.com/mcp-authz/mcp-authz/config"
	"github.com/mcp-authz/mcp-authz/validators"
)

func serveCmd(args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	c := serveHelp()
	fs := c.flagSet()
	configPath := fs.String("config", "", "YAML configuration `FILE` (environment variables override it)")
	if _, code, done := c.parse(fs, args, 0, stdout, stderr); done {
		return code
	}
	load := func() (*config.Config, error) { return config.Load(*configPath, getenv) }
	cfg, err := load()
	if err != nil {
		fmt.Fprintf(stderr, "mcp-authz: config: %v\n", err)
		return 2
	}
	return runService(cfg, stderr, "mcp-authz", func(svc *service) error {
		svc.load, svc.configPath = load, *configPath
		return nil
	})
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
	if err == nil {
		go svc.watchReloads(ctx, svc.configPath)
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

// service is the wired process: the Check server and the HTTP side server,
// the stores that outlive a configuration (verdict cache, Redis, session
// bindings, JWKS caches), and the current generation built from the
// configuration.
type service struct {
	// cfg is the configuration the process started with: listen
	// addresses, Redis, gRPC and log settings, which a reload cannot change.
	cfg *config.Config
	log *slog.Logger
	// load re-reads the configuration for a reload; nil when there is
	// nothing to re-read (dev).
	load func() (*config.Config, error)

	gen    atomic.Pointer[generation]
	handle *authz.Handle

	memory   *cache.Memory
	redis    *cache.Redis // nil without Redis
	store    cache.Store
	sessions *cache.Sessions
	// jwks is the registry of JWKS caches: one per (issuer, JWKS URI),
	// shared by every resource and every generation that names it.
	jwks   *validators.KeySets
	client *http.Client
	health *health.Server
	// tel is the process's metrics and tracing: one for every generation.
	tel *observability

	// grpcTLS and httpTLS serve the listeners' certificates, when set.
	grpcTLS, httpTLS *tlsFiles

	reloadMu sync.Mutex
	// onReload, when set, counts reloads (config_reloads_total).
	onReload func(ok bool)
	// configPath is watched for changes when set.
	configPath string

	grpcLn, httpLn net.Listener
	forwardLn      net.Listener // nil unless forward_addr is set
}

// current returns the generation serving now.
func (s *service) current() *generation { return s.gen.Load() }

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
	s := &service{cfg: cfg, log: log, memory: memory, store: memory, jwks: validators.NewKeySets(ctx), tel: tel,
		client: tel.instrument(outboundClient())}
	s.onReload = tel.metrics.ReloadResult
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
		s.store = &cache.Tiered{L1: memory, L2: l2, L1TTL: rc.L1TTL.D()}
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
	sessionOpts := cache.SessionOptions{}
	if s.redis != nil {
		sessionOpts.Shared = s.redis
	}
	if s.sessions, err = cache.NewSessions(sessionOpts); err != nil {
		return nil, err
	}
	if t := cfg.GRPC.TLS; t.Enabled() {
		if s.grpcTLS, err = newTLSFiles(t.CertFile, t.KeyFile, t.ClientCAFile, []string{"h2"}, log); err != nil {
			return nil, fmt.Errorf("grpc.tls: %w", err)
		}
	}
	if t := cfg.HTTPTLS; t.Enabled() {
		if s.httpTLS, err = newTLSFiles(t.CertFile, t.KeyFile, "", []string{"h2", "http/1.1"}, log); err != nil {
			return nil, fmt.Errorf("http_tls: %w", err)
		}
	}
	g, err := s.buildGeneration(ctx, cfg)
	if err != nil {
		return nil, err
	}
	s.gen.Store(g)
	s.handle = authz.NewHandle(g.authz)
	return s, nil
}

// listen binds both listeners, so that a port conflict fails start-up
// before anything is served.
func (s *service) listen() error {
	var err error
	if s.grpcLn, err = net.Listen("tcp", s.cfg.GRPCAddr); err != nil {
		return listenError(s.cfg, "grpc_addr", err)
	}
	if s.httpLn, err = net.Listen("tcp", s.cfg.HTTPAddr); err != nil {
		_ = s.grpcLn.Close()
		return listenError(s.cfg, "http_addr", err)
	}
	if err = s.listenForward(); err != nil {
		_ = s.grpcLn.Close()
		_ = s.httpLn.Close()
		return err
	}
	return nil
}

// serve runs until ctx ends, then shuts down gracefully: health turns
// NOT_SERVING first so Envoy stops routing new checks here.
func (s *service) serve(ctx context.Context) error {
	opts := []grpc.ServerOption{
		// Reused workers keep their grown stacks: without them every Check
		// starts a fresh goroutine whose stack is grown again, which costs
		// more than the cached Check itself.
		grpc.NumStreamWorkers(uint32(64 * runtime.GOMAXPROCS(0))),
		grpc.SharedWriteBuffer(true),
		authz.Codec(),
		// A CheckRequest is headers plus at most Envoy's max_request_bytes
		// of body; anything larger is refused before it is buffered.
		grpc.MaxRecvMsgSize(s.cfg.GRPC.MaxRecvBytes),
		grpc.MaxConcurrentStreams(1000),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 5 * time.Second, PermitWithoutStream: true}),
		grpc.KeepaliveParams(keepalive.ServerParameters{MaxConnectionIdle: 15 * time.Minute}),
	}
	if s.grpcTLS != nil {
		opts = append(opts, grpc.Creds(credentials.NewTLS(s.grpcTLS.serverConfig())))
	}
	gs := grpc.NewServer(opts...)
	s.handle.Register(gs)
	s.health = health.NewServer()
	healthpb.RegisterHealthServer(gs, s.health)
	s.health.SetServingStatus(authv3.Authorization_ServiceDesc.ServiceName, healthpb.HealthCheckResponse_SERVING)
	if s.cfg.GRPC.Reflection {
		reflection.Register(gs)
	}

	hs := newSideServer(s.httpHandler(), sideServerLimits, s.log.With("listener", "http_addr"))
	if s.httpTLS != nil {
		hs.TLSConfig = s.httpTLS.serverConfig()
	}

	errc := make(chan error, 3)
	go func() { errc <- gs.Serve(s.grpcLn) }()
	go func() {
		var err error
		if s.httpTLS != nil {
			err = hs.ServeTLS(s.httpLn, "", "")
		} else {
			err = hs.Serve(s.httpLn)
		}
		if !errors.Is(err, http.ErrServerClosed) {
			errc <- err
		}
	}()
	stopForward := s.serveForward(errc)
	s.log.Info("mcp-authz serving", "grpc", s.grpcLn.Addr().String(), "http", s.httpLn.Addr().String(),
		"resources", len(s.current().cfg.Resources), "version", version())

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
	stopForward(shutdownCtx)
	return err
}
