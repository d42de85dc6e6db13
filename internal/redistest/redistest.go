// Package redistest runs a real redis-server on loopback for tests, with
// the faults tests need: kill, restart on the same port, pause.
package redistest

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/mcp-authz/mcp-authz/internal/freeport"
)

// Server is a redis-server process listening on 127.0.0.1.
type Server struct {
	Addr string
	t    testing.TB
	cmd  *exec.Cmd
	port string
	args []string // extra redis-server arguments
}

// Start runs redis-server on a free loopback port; it is stopped when the
// test ends. redis-server comes from Debian's redis-server package, which
// scripts/test.sh installs.
func Start(t testing.TB) *Server {
	t.Helper()
	return StartWith(t)
}

// StartWith is Start with extra redis-server arguments (for example
// "--requirepass", "secret"), kept across restarts.
func StartWith(t testing.TB, args ...string) *Server {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		t.Fatal("redis-server not found: run scripts/test.sh (it installs Debian's redis-server) or apt-get install redis-server")
	}
	port := freePort(t)
	s := &Server{Addr: "127.0.0.1:" + port, t: t, port: port, args: args}
	s.start()
	t.Cleanup(s.Kill)
	return s
}

func (s *Server) start() {
	s.t.Helper()
	s.cmd = exec.Command("redis-server", "--port", s.port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
		"--protected-mode", "yes", "--loglevel", "warning")
	s.cmd.Args = append(s.cmd.Args, s.args...)
	if err := s.cmd.Start(); err != nil {
		s.t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", s.Addr, 100*time.Millisecond)
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("redis-server on %s did not start: %v", s.Addr, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Kill stops the server at once, as a crash would.
func (s *Server) Kill() {
	if s.cmd == nil || s.cmd.Process == nil {
		return
	}
	_ = s.cmd.Process.Signal(syscall.SIGCONT) // a paused server cannot die
	_ = s.cmd.Process.Kill()
	_ = s.cmd.Wait()
	s.cmd = nil
}

// Restart starts a fresh, empty server on the same port.
func (s *Server) Restart() {
	s.t.Helper()
	s.Kill()
	s.start()
}

// Pause stops the process (SIGSTOP): connections stay open, nothing answers.
func (s *Server) Pause() { _ = s.cmd.Process.Signal(syscall.SIGSTOP) }

// Resume continues a paused server.
func (s *Server) Resume() { _ = s.cmd.Process.Signal(syscall.SIGCONT) }

// URL is the redis:// URL of the server.
func (s *Server) URL() string { return fmt.Sprintf("redis://%s/0", s.Addr) }

// Cluster is a three-master redis-server cluster on loopback.
type Cluster struct {
	Addrs []string
}

// StartCluster runs three cluster-enabled redis-server processes on free
// loopback ports and joins them with redis-cli (Debian's redis-tools).
func StartCluster(t testing.TB) *Cluster {
	t.Helper()
	if _, err := exec.LookPath("redis-cli"); err != nil {
		t.Fatal("redis-cli not found: run scripts/test.sh (it installs Debian's redis-server and redis-tools)")
	}
	dir := t.TempDir()
	c := &Cluster{}
	for i := range 3 {
		port := freeport.Pair(t, 10000) // the cluster bus listens on port + 10000
		c.Addrs = append(c.Addrs, spawn(t, dir, port, "--port", port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
			"--cluster-enabled", "yes", "--cluster-config-file", fmt.Sprintf("%s/nodes-%d.conf", dir, i),
			"--cluster-node-timeout", "2000", "--loglevel", "warning"))
	}
	args := append([]string{"--cluster", "create"}, c.Addrs...)
	args = append(args, "--cluster-replicas", "0", "--cluster-yes")
	if out, err := exec.Command("redis-cli", args...).CombinedOutput(); err != nil {
		t.Fatalf("redis-cli --cluster create: %v\n%s", err, out)
	}
	// Wait until every node reports the cluster ok.
	deadline := time.Now().Add(20 * time.Second)
	for _, a := range c.Addrs {
		host, port, _ := net.SplitHostPort(a)
		for {
			out, _ := exec.Command("redis-cli", "-h", host, "-p", port, "cluster", "info").Output()
			if bytes.Contains(out, []byte("cluster_state:ok")) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("cluster not ok on %s: %s", a, out)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	return c
}

func waitListening(t testing.TB, addr string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, 100*time.Millisecond)
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("redis-server on %s did not start: %v", addr, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// StartSentinel runs a Sentinel (redis-server --sentinel) on a free
// loopback port that monitors master under masterName, authenticating to
// it with password when not empty; it is stopped when the test ends. It
// returns the Sentinel's address.
func StartSentinel(t testing.TB, master *Server, masterName, password string) string {
	t.Helper()
	return StartSentinelAuth(t, master, masterName, password, "")
}

// StartSentinelAuth is StartSentinel for a Sentinel that requires its own
// password (requirepass) from its clients when sentinelPassword is not
// empty.
func StartSentinelAuth(t testing.TB, master *Server, masterName, password, sentinelPassword string) string {
	t.Helper()
	port := freePort(t)
	host, mport, _ := net.SplitHostPort(master.Addr)
	conf := fmt.Sprintf("port %s\nbind 127.0.0.1\nsentinel monitor %s %s %s 1\n", port, masterName, host, mport)
	if password != "" {
		conf += fmt.Sprintf("sentinel auth-pass %s %s\n", masterName, password)
	}
	if sentinelPassword != "" {
		conf += fmt.Sprintf("requirepass %s\n", sentinelPassword)
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "sentinel.conf")
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	return spawn(t, dir, port, path, "--sentinel", "--loglevel", "warning")
}

// freePort returns a loopback port nothing listens on at the moment.
func freePort(t testing.TB) string {
	t.Helper()
	return freeport.Port(t) // also free for Restart: no outgoing connection takes it
}

// spawn runs redis-server with args in dir until the test ends, and
// returns its address once it listens on port.
func spawn(t testing.TB, dir, port string, args ...string) string {
	t.Helper()
	cmd := exec.Command("redis-server", args...)
	cmd.Dir = dir
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	addr := "127.0.0.1:" + port
	waitListening(t, addr)
	return addr
}
