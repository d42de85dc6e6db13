package main

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestHealthcheckProbesTheSideServer: the container probe answers 0 for a
// side server that is up, over TLS too (MCP_AUTHZ_HTTP_TLS_CERT_FILE, whose
// certificate is for the service's name, not for the loopback address the
// probe dials, or from a private CA; or set in the configuration file only,
// which the probe learns from the listener's answer), and 1 when nothing
// answers.
func TestHealthcheckProbesTheSideServer(t *testing.T) {
	healthz := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/healthz" {
			http.NotFound(w, r)
			return
		}
		_, _ = io.WriteString(w, "ok\n")
	})
	plain := httptest.NewServer(healthz)
	defer plain.Close()
	tlsSrv := httptest.NewTLSServer(healthz) // its own CA: unknown to the probe
	defer tlsSrv.Close()
	down := httptest.NewServer(healthz)
	downAddr := down.Listener.Addr().String()
	down.Close()
	hostPort := func(s *httptest.Server) string { return s.Listener.Addr().String() }

	for _, tc := range []struct {
		name string
		args []string
		env  map[string]string
		code int
	}{
		{"plain, from MCP_AUTHZ_HTTP_ADDR", nil, map[string]string{"MCP_AUTHZ_HTTP_ADDR": hostPort(plain)}, 0},
		{"plain, URL", []string{plain.URL + "/healthz"}, nil, 0},
		{"TLS, from MCP_AUTHZ_HTTP_ADDR and MCP_AUTHZ_HTTP_TLS_CERT_FILE",
			nil, map[string]string{"MCP_AUTHZ_HTTP_ADDR": hostPort(tlsSrv), "MCP_AUTHZ_HTTP_TLS_CERT_FILE": "/etc/mcp-authz/tls/tls.crt"}, 0},
		{"TLS, loopback https URL", []string{tlsSrv.URL + "/healthz"}, nil, 0},
		{"TLS, every-interface address", nil, map[string]string{
			"MCP_AUTHZ_HTTP_ADDR": ":" + tlsSrv.URL[strings.LastIndex(tlsSrv.URL, ":")+1:], "MCP_AUTHZ_HTTP_TLS_CERT_FILE": "x"}, 0},
		{"TLS set in the file only: asked again over https", nil, map[string]string{"MCP_AUTHZ_HTTP_ADDR": hostPort(tlsSrv)}, 0},
		{"an http URL to a TLS listener is not rewritten", []string{"http://" + hostPort(tlsSrv) + "/healthz"}, nil, 1},
		{"nothing listening", nil, map[string]string{"MCP_AUTHZ_HTTP_ADDR": downAddr}, 1},
		{"not the health path", []string{plain.URL + "/nope"}, nil, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, stderr, code := runArgs(append([]string{"healthcheck"}, tc.args...), tc.env)
			if code != tc.code {
				t.Fatalf("exit %d, want %d: %s", code, tc.code, stderr)
			}
		})
	}
}
