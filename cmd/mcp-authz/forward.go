package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/mcp-authz/mcp-authz/authz"
)

// forwardLimits bound one request on the forward-auth listener as the side
// server's do (DESIGN §7); the body is what Envoy's http_service sends
// (authz.ForwardMaxBody, one byte more so that a longer one is seen as
// truncated rather than failing), and headers leave room for a token of
// max_token_bytes.
var forwardLimits = sideLimits{readHeader: 5 * time.Second, read: 10 * time.Second, write: 10 * time.Second, idle: 60 * time.Second,
	body: authz.ForwardMaxBody + 1}

const forwardMaxHeaderBytes = 64 << 10

// listenForward binds the forward-auth listener when forward_addr is set.
func (s *service) listenForward() error {
	if s.cfg.ForwardAddr == "" {
		return nil
	}
	ln, err := net.Listen("tcp", s.cfg.ForwardAddr)
	if err != nil {
		return listenError(s.cfg, "forward_addr", err)
	}
	s.forwardLn = ln
	return nil
}

// serveForward serves the forward-auth endpoints on the bound listener, if
// any, reporting a failure on errc; the returned function shuts it down.
func (s *service) serveForward(errc chan<- error) func(context.Context) {
	if s.forwardLn == nil {
		return func(context.Context) {}
	}
	// The decision changes with a reload: serve the current generation's.
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { s.current().forward.ServeHTTP(w, r) })
	hs := newSideServer(h, forwardLimits, s.log.With("listener", "forward_addr"))
	hs.MaxHeaderBytes = forwardMaxHeaderBytes
	go func() {
		if err := hs.Serve(s.forwardLn); !errors.Is(err, http.ErrServerClosed) {
			errc <- fmt.Errorf("forward_addr: %w", err)
		}
	}()
	s.log.Info("forward-auth listener (nginx, Traefik, Caddy, Envoy http_service): keep it private to the proxy",
		"forward", s.forwardLn.Addr().String())
	return func(ctx context.Context) { _ = hs.Shutdown(ctx) }
}
