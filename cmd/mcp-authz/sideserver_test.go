package main

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestSideServerLimitsAreTheDesignedOnes pins DESIGN §7's numbers.
func TestSideServerLimitsAreTheDesignedOnes(t *testing.T) {
	hs := newSideServer(http.NotFoundHandler(), sideServerLimits)
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
	hs := newSideServer(mux, limits)
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
