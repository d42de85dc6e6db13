package freeport

import (
	"net"
	"strconv"
	"testing"
)

// TestPortsLieBelowTheEphemeralRange: ports and pairs are free and outside
// the range the kernel gives outgoing connections, so none of those can
// take one before the server binds it.
func TestPortsLieBelowTheEphemeralRange(t *testing.T) {
	low := ephemeralLow()
	for range 20 {
		p, _ := strconv.Atoi(Port(t))
		if p < lowest || p >= low {
			t.Fatalf("port %d outside [%d, %d)", p, lowest, low)
		}
		q, _ := strconv.Atoi(Pair(t, 10000))
		if q < lowest || q+10000 >= low {
			t.Fatalf("pair %d, %d: the second reaches the ephemeral range from %d", q, q+10000, low)
		}
		for _, port := range []int{p, q, q + 10000} {
			ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
			if err != nil {
				t.Fatalf("port %d is not free: %v", port, err)
			}
			ln.Close()
		}
	}
}
