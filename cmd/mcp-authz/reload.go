package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"os"
	"os/signal"
	"reflect"
	"syscall"
	"time"

	"github.com/mcp-authz/mcp-authz/config"
)

// reloadGrace is how long a replaced generation stays usable: Checks that
// started on it finish within Envoy's timeout, well under this.
const reloadGrace = 30 * time.Second

// configPollInterval is how often the --config file is looked at. Polling
// the content (not file events) also sees Kubernetes' ConfigMap updates,
// which swap a symlink rather than write the file.
const configPollInterval = 2 * time.Second

// reload re-reads the configuration and swaps a generation built from it
// in, atomically: a Check runs wholly on the old or wholly on the new one.
// An invalid configuration is refused with a log line, and the current one
// stays.
func (s *service) reload(ctx context.Context, why string) error {
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	if s.load == nil {
		s.log.Info("nothing to reload: the configuration was not read from a file", "trigger", why)
		return errors.New("nothing to reload")
	}
	cfg, err := s.load()
	if err == nil {
		s.warnRestartOnly(cfg)
		var g *generation
		if g, err = s.buildGeneration(ctx, cfg); err == nil {
			old := s.gen.Swap(g)
			s.handle.Swap(g.authz)
			time.AfterFunc(reloadGrace, old.close)
			s.log.Info("configuration reloaded", "trigger", why, "resources", len(cfg.Resources))
			s.reloaded(true)
			return nil
		}
	}
	s.log.Error("configuration reload refused; the running configuration stays", "trigger", why, "error", err)
	s.reloaded(false)
	return err
}

// reloaded reports a reload's outcome to the metrics, when they are on.
func (s *service) reloaded(ok bool) {
	if s.onReload != nil {
		s.onReload(ok)
	}
}

// warnRestartOnly names settings a reload cannot apply: listeners (and the
// side server's TLS files), Redis, gRPC limits, logging and the cache size
// are built once, at start.
func (s *service) warnRestartOnly(next *config.Config) {
	cur := s.cfg
	for _, f := range []struct {
		name      string
		old, next any
	}{
		{"grpc_addr", cur.GRPCAddr, next.GRPCAddr},
		{"http_addr", cur.HTTPAddr, next.HTTPAddr},
		{"forward_addr", cur.ForwardAddr, next.ForwardAddr},
		{"http_tls", cur.HTTPTLS, next.HTTPTLS},
		{"grpc", cur.GRPC, next.GRPC},
		{"log", cur.Log, next.Log},
		{"cache.max_bytes", cur.Cache.MaxBytes, next.Cache.MaxBytes},
		{"redis", cur.Redis, next.Redis},
	} {
		if !reflect.DeepEqual(f.old, f.next) {
			s.log.Warn("a reload does not apply this setting; restart to change it", "field", f.name)
		}
	}
}

// watchReloads reloads on SIGHUP and when the --config file's content
// changes, until ctx ends.
func (s *service) watchReloads(ctx context.Context, path string) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	// last is the content the running configuration was read from (as
	// near as a file being rewritten allows): a poll reloads when the file
	// differs from it, whatever triggered the last reload.
	sum := func() [sha256.Size]byte {
		b, _ := os.ReadFile(path)
		return sha256.Sum256(b)
	}
	last := sum()
	tick := time.NewTicker(configPollInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
			last = sum()
			_ = s.reload(ctx, "SIGHUP")
		case <-tick.C:
			if path == "" {
				continue
			}
			b, err := os.ReadFile(path)
			if err != nil {
				continue // being replaced; the next tick sees the new file
			}
			if sum := sha256.Sum256(b); !bytes.Equal(sum[:], last[:]) {
				last = sum
				_ = s.reload(ctx, "config file changed")
			}
		}
	}
}
