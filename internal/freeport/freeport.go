// Package freeport picks loopback ports for the servers that tests start as
// processes of their own (mcp-authz, redis-server, nginx, Caddy), which
// cannot be handed an open listener.
package freeport

import (
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
)

// lowest is the first port tried; below it lie well-known and registered
// services a developer may run.
const lowest = 15000

// Port returns a loopback TCP port that nothing listened on a moment ago.
// It lies below the kernel's ephemeral range
// (/proc/sys/net/ipv4/ip_local_port_range): a port that the kernel handed
// out for listening on :0 and that is then closed may next be given to any
// outgoing connection as its local port (the tests make thousands), and
// the server started on it would fail to bind. Below the range only an
// explicit bind takes a port, and Port tries random ones until one is
// free.
func Port(t testing.TB) string {
	t.Helper()
	return Pair(t, 0)
}

// Pair is Port for a server that also listens on its port + offset (a
// Redis Cluster node's bus, + 10000): both are free and below the range.
func Pair(t testing.TB, offset int) string {
	t.Helper()
	if top := ephemeralLow() - offset; top > lowest+1000 {
		for range 200 {
			port := lowest + rand.IntN(top-lowest)
			if free(port) && (offset == 0 || free(port+offset)) {
				return strconv.Itoa(port)
			}
		}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	return port
}

func free(port int) bool {
	ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		return false
	}
	ln.Close()
	return true
}

// Addr is Port as a 127.0.0.1 address.
func Addr(t testing.TB) string {
	t.Helper()
	return net.JoinHostPort("127.0.0.1", Port(t))
}

// ephemeralLow is the first port of the kernel's ephemeral range, or 32768
// (Linux's default) where it cannot be read.
func ephemeralLow() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			if n, err := strconv.Atoi(f[0]); err == nil {
				return n
			}
		}
	}
	return 32768
}
