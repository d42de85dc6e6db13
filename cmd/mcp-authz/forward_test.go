package main

import (
	"net/http"
	"testing"
	"time"

	"github.com/mcp-authz/mcp-authz/authz"
)

// TestForwardListenerLimits: the forward-auth listener is bounded like the
// side server (DESIGN §7), with room for a 16 KiB token in its headers and
// for the body Envoy's http_service may send.
func TestForwardListenerLimits(t *testing.T) {
	hs := newSideServer(http.NotFoundHandler(), forwardLimits)
	if hs.ReadHeaderTimeout != 5*time.Second || hs.ReadTimeout != 10*time.Second || hs.WriteTimeout != 10*time.Second ||
		hs.IdleTimeout != 60*time.Second || forwardLimits.body != authz.ForwardMaxBody+1 || forwardMaxHeaderBytes < 32<<10 {
		t.Fatalf("limits %+v, headers %d", forwardLimits, forwardMaxHeaderBytes)
	}
}
