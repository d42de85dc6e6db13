package main

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"
)

// tlsFiles serves a certificate (and, for mTLS, a client CA bundle) from
// files, re-reading them when they change: rotated certificates (cert-manager,
// a Kubernetes Secret) take effect on the next handshake, without a restart.
type tlsFiles struct {
	certFile, keyFile, caFile string
	// nextProtos are offered in ALPN (h2 for gRPC).
	nextProtos []string
	// checkEvery bounds how often the files are looked at.
	checkEvery time.Duration
	log        *slog.Logger

	mu      sync.Mutex
	checked time.Time
	stamp   string // modification times and sizes of the files loaded
	cfg     *tls.Config
}

// newTLSFiles loads the files once; an error names what could not be read.
func newTLSFiles(certFile, keyFile, caFile string, nextProtos []string, log *slog.Logger) (*tlsFiles, error) {
	t := &tlsFiles{certFile: certFile, keyFile: keyFile, caFile: caFile, nextProtos: nextProtos, checkEvery: time.Second, log: log}
	stamp, err := t.stampNow()
	if err != nil {
		return nil, err
	}
	if t.cfg, err = t.load(); err != nil {
		return nil, err
	}
	t.stamp, t.checked = stamp, time.Now()
	return t, nil
}

// serverConfig is the tls.Config for a listener.
func (t *tlsFiles) serverConfig() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		NextProtos: t.nextProtos,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			return t.current(), nil
		},
	}
}

// current returns the configuration for a handshake, reloading the files
// if they changed. A file that cannot be read keeps the last good one.
func (t *tlsFiles) current() *tls.Config {
	t.mu.Lock()
	defer t.mu.Unlock()
	if time.Since(t.checked) < t.checkEvery {
		return t.cfg
	}
	t.checked = time.Now()
	stamp, err := t.stampNow()
	if err != nil || stamp == t.stamp {
		return t.cfg
	}
	cfg, err := t.load()
	if err != nil {
		t.log.Error("TLS files changed but cannot be loaded; keeping the previous certificate", "error", err)
		return t.cfg
	}
	t.cfg, t.stamp = cfg, stamp
	t.log.Info("TLS certificate reloaded", "cert_file", t.certFile)
	return cfg
}

func (t *tlsFiles) stampNow() (string, error) {
	s := ""
	for _, f := range []string{t.certFile, t.keyFile, t.caFile} {
		if f == "" {
			continue
		}
		fi, err := os.Stat(f)
		if err != nil {
			return "", err
		}
		s += fmt.Sprintf("%d/%d;", fi.ModTime().UnixNano(), fi.Size())
	}
	return s, nil
}

func (t *tlsFiles) load() (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(t.certFile, t.keyFile)
	if err != nil {
		return nil, fmt.Errorf("loading %s and %s: %w", t.certFile, t.keyFile, err)
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}, NextProtos: t.nextProtos}
	if t.caFile != "" {
		pem, err := os.ReadFile(t.caFile)
		if err != nil {
			return nil, err
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, errors.New(t.caFile + ": no PEM certificate")
		}
		// mTLS: only clients with a certificate from this CA (Envoy) may ask.
		cfg.ClientCAs, cfg.ClientAuth = pool, tls.RequireAndVerifyClientCert
	}
	return cfg, nil
}
