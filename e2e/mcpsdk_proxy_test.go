package e2e

import "testing"

// TestMCPSDKThroughProxies: the SDK client's whole flow, from no token
// through discovery and authorization to tool calls, through a real Caddy
// and a real nginx running the shipped recipes (deploy/caddy,
// deploy/nginx), which ask mcp-authz over HTTP (/forwarded, /nginx) where
// Envoy asks over gRPC: the recipes must pass the challenge, the metadata,
// the identity, the SSE stream and the session's end as a client needs
// them.
func TestMCPSDKThroughProxies(t *testing.T) {
	for _, c := range []struct {
		name string
		fr   front
	}{{"caddy", frontCaddy}, {"nginx", frontNginx}} {
		t.Run(c.name, func(t *testing.T) {
			st, err := startMCPSDKStandBehind(t, false, c.fr)
			if err != nil {
				t.Fatal(err)
			}
			st.assertOAuthFlow(t, st.runClient(t, "basic", "alice"))
		})
	}
}
