package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/mcp-authz/mcp-authz/config"
)

// testCA issues certificates for the TLS tests.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
}

func newTestCA(t *testing.T) *testCA {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return &testCA{cert: cert, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// issue writes a leaf certificate and key to dir/name.{crt,key}.
func (ca *testCA) issue(t *testing.T, dir, name string, serial int64, client bool) (certFile, keyFile string) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	usage := x509.ExtKeyUsageServerAuth
	if client {
		usage = x509.ExtKeyUsageClientAuth
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: name},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, ExtKeyUsage: []x509.ExtKeyUsage{usage},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	kb, _ := x509.MarshalECPrivateKey(key)
	certFile, keyFile = filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key")
	// Write to a temporary name and rename, as cert-manager and kubelet do.
	for f, b := range map[string][]byte{
		certFile: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		keyFile:  pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}),
	} {
		if err := os.WriteFile(f+".tmp", b, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(f+".tmp", f); err != nil {
			t.Fatal(err)
		}
	}
	return certFile, keyFile
}

// TestGRPCMutualTLS: with grpc.tls and a client CA, a client without a
// certificate is refused, one with a certificate from the CA is served,
// and a rotated server certificate is used without a restart.
func TestGRPCMutualTLS(t *testing.T) {
	dir := t.TempDir()
	ca := newTestCA(t)
	caFile := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(caFile, ca.pem, 0o600); err != nil {
		t.Fatal(err)
	}
	srvCert, srvKey := ca.issue(t, dir, "server", 100, false)
	cliCert, cliKey := ca.issue(t, dir, "envoy", 200, true)

	cfg := &config.Config{
		GRPCAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0",
		Log:  config.LogConfig{Level: "error", Format: "text"},
		GRPC: config.GRPCConfig{TLS: config.TLSConfig{CertFile: srvCert, KeyFile: srvKey, ClientCAFile: caFile}},
		Resources: []config.ResourceConfig{{
			Resource: "https://m.example/mcp", AuthorizationServers: []string{"http://127.0.0.1:1"},
		}},
	}
	if err := cfg.Complete(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	svc, err := newService(ctx, cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	svc.grpcTLS.checkEvery = 0 // look at the files on every handshake
	if err := svc.listen(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- svc.serve(ctx) }()
	defer func() { cancel(); <-done }()
	addr := svc.grpcLn.Addr().String()

	roots := x509.NewCertPool()
	roots.AddCert(ca.cert)
	health := func(certs ...tls.Certificate) error {
		creds := credentials.NewTLS(&tls.Config{RootCAs: roots, Certificates: certs, ServerName: "127.0.0.1"})
		cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
		if err != nil {
			return err
		}
		defer cc.Close()
		cctx, ccancel := context.WithTimeout(ctx, 5*time.Second)
		defer ccancel()
		_, err = healthpb.NewHealthClient(cc).Check(cctx, &healthpb.HealthCheckRequest{})
		return err
	}
	clientPair, err := tls.LoadX509KeyPair(cliCert, cliKey)
	if err != nil {
		t.Fatal(err)
	}
	if err := health(); err == nil {
		t.Fatal("a client without a certificate was served")
	}
	if err := health(clientPair); err != nil {
		t.Fatalf("Envoy's certificate refused: %v", err)
	}
	other := newTestCA(t)
	otherCert, otherKey := other.issue(t, dir, "stranger", 300, true)
	strangerPair, _ := tls.LoadX509KeyPair(otherCert, otherKey)
	if err := health(strangerPair); err == nil {
		t.Fatal("a certificate from another CA was accepted")
	}

	serial := func() int64 {
		c, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: roots, Certificates: []tls.Certificate{clientPair}, ServerName: "127.0.0.1", NextProtos: []string{"h2"}})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		return c.ConnectionState().PeerCertificates[0].SerialNumber.Int64()
	}
	if got := serial(); got != 100 {
		t.Fatalf("serving serial %d", got)
	}
	ca.issue(t, dir, "server", 101, false) // rotation writes the same files
	deadline := time.Now().Add(5 * time.Second)
	for serial() != 101 {
		if time.Now().After(deadline) {
			t.Fatal("the rotated certificate was not picked up")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := health(clientPair); err != nil {
		t.Fatalf("after rotation: %v", err)
	}
}

// TestTLSConfigErrorsNameTheField: bad TLS settings stop start-up naming
// the field.
func TestTLSConfigErrorsNameTheField(t *testing.T) {
	dir := t.TempDir()
	ca := newTestCA(t)
	cert, key := ca.issue(t, dir, "server", 1, false)
	for name, tc := range map[string]struct {
		tls  config.TLSConfig
		want string
	}{
		"key without cert":    {config.TLSConfig{KeyFile: key}, "grpc.tls.cert_file"},
		"cert without key":    {config.TLSConfig{CertFile: cert}, "grpc.tls.key_file"},
		"unreadable cert":     {config.TLSConfig{CertFile: filepath.Join(dir, "nope"), KeyFile: key}, "grpc.tls.cert_file"},
		"key of another cert": {config.TLSConfig{CertFile: cert, KeyFile: cert}, "grpc.tls.cert_file"},
		"CA that is not PEM":  {config.TLSConfig{CertFile: cert, KeyFile: key, ClientCAFile: key}, "grpc.tls.client_ca_file"},
	} {
		t.Run(name, func(t *testing.T) {
			cfg := &config.Config{GRPC: config.GRPCConfig{TLS: tc.tls},
				Resources: []config.ResourceConfig{{Resource: "https://m.example/mcp", AuthorizationServers: []string{"https://as.example"}}}}
			err := cfg.Complete()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one naming %s", err, tc.want)
			}
		})
	}
}
