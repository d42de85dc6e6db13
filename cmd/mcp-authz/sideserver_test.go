package main

import (
	"bytes"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestSideServerLimitsAreTheDesignedOnes pins DESIGN §7's numbers.
func TestSideServerLimitsAreTheDesignedOnes(t *testing.T) {
	hs := newSideServer(http.NotFoundHandler(), sideServerLimits, slog.New(slog.DiscardHandler))
	if hs.ReadHeaderTimeout != 5*time.Second || hs.ReadTimeout != 10*time.Second || hs.WriteTimeout != 10*time.Second ||
		hs.IdleTimeout != 60*time.Second || sideServerLimits.body != 64<<10 {
		t.Fatalf("limits %+v", sideServerLimits)
	}
}

// TestSideServerDropsSlowClients: connections that drip headers or a body
// are closed once their time is up, and an oversized body is refused; the
// server keeps answering others. (Shortened limits; the production ones
// are pinned above.)
func TestSideServerDropsSlowClients(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if _, err := io.Copy(io.Discard, r.Body); err != nil {
			http.Error(w, "too large", http.StatusRequestEntityTooLarge)
			return
		}
		fmt.Fprint(w, "ok")
	})
	limits := sideLimits{readHeader: 300 * time.Millisecond, read: 600 * time.Millisecond, write: time.Second, idle: time.Second, body: 1024}
	hs := newSideServer(mux, limits, slog.New(slog.DiscardHandler))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = hs.Serve(ln) }()
	t.Cleanup(func() { hs.Close() })
	addr := ln.Addr().String()

	const slow = 100
	var wg sync.WaitGroup
	closed := make(chan time.Duration, slow)
	for i := range slow {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Error(err)
				return
			}
			defer c.Close()
			start := time.Now()
			if i%2 == 0 {
				_, _ = io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n") // headers never end
			} else {
				_, _ = io.WriteString(c, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n")
			}
			// Drip a byte every 50 ms until the server hangs up.
			for time.Since(start) < 5*time.Second {
				time.Sleep(50 * time.Millisecond)
				if _, err := c.Write([]byte("a")); err != nil {
					break
				}
				_ = c.SetReadDeadline(time.Now().Add(time.Millisecond))
				if _, err := c.Read(make([]byte, 512)); err == io.EOF {
					break
				}
			}
			closed <- time.Since(start)
		}()
	}
	wg.Wait()
	close(closed)
	for d := range closed {
		if d >= 5*time.Second {
			t.Fatalf("a slow client was held for %v", d)
		}
	}
	resp, err := http.Post("http://"+addr+"/", "text/plain", strings.NewReader(strings.Repeat("x", 4096)))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Fatalf("oversized body: %d", resp.StatusCode)
	}
	resp, err = http.Get("http://" + addr + "/")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("server not answering after the attack: %v", err)
	}
	resp.Body.Close()
}

// TestSideServersLogAsJSON: what net/http itself reports about a
// connection (a failed TLS handshake: a scanner, a probe speaking the wrong
// protocol) goes into the service's logger, as one rate-limited WARN line,
// and never to the standard logger, whose plain-text lines would break
// the JSON log stream (README "Logs").
func TestSideServersLogAsJSON(t *testing.T) {
	ca := newTestCA(t)
	certFile, keyFile := ca.issue(t, t.TempDir(), "side", 2, false)
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	var std bytes.Buffer
	log.SetOutput(&std)
	t.Cleanup(func() { log.SetOutput(os.Stderr) })

	for _, tc := range []struct {
		name   string
		limits sideLimits
	}{
		{"side server", sideServerLimits},
		{"forward-auth listener", forwardLimits},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out syncBuffer
			hs := newSideServer(http.NotFoundHandler(), tc.limits, slog.New(slog.NewJSONHandler(&out, nil)))
			hs.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}}
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			go func() { _ = hs.ServeTLS(ln, "", "") }()
			t.Cleanup(func() { hs.Close() })
			for range 3 { // not TLS, and not HTTP either
				c, err := net.Dial("tcp", ln.Addr().String())
				if err != nil {
					t.Fatal(err)
				}
				_, _ = c.Write([]byte("\x00\x01garbage\r\n\r\n"))
				_, _ = io.Copy(io.Discard, c)
				c.Close()
			}
			deadline := time.Now().Add(2 * time.Second)
			for out.Len() == 0 && time.Now().Before(deadline) {
				time.Sleep(10 * time.Millisecond)
			}
			lines := strings.Split(strings.TrimSpace(out.String()), "\n")
			if len(lines) != 1 {
				t.Fatalf("want one line (the others within the interval suppressed), got %q", out.String())
			}
			var rec map[string]any
			if err := json.Unmarshal([]byte(lines[0]), &rec); err != nil {
				t.Fatalf("not a JSON line: %q", lines[0])
			}
			if rec["level"] != "WARN" || rec["msg"] != "http server" || !strings.Contains(fmt.Sprint(rec["detail"]), "TLS handshake error") {
				t.Fatalf("record %v", rec)
			}
			if std.Len() != 0 {
				t.Fatalf("net/http wrote to the standard logger: %q", std.String())
			}
		})
	}
}

// syncBuffer is a bytes.Buffer safe for the server's goroutines and the test.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) Len() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Len()
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
