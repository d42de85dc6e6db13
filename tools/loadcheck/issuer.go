package main

import (
	"bufio"
	"context"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/mcp-authz/mcp-authz/internal/devissuer"
)

// issuer runs a development issuer (internal/devissuer: an RS256 key, its
// JWKS, discovery) for the cold and fleet load runs, and mints tokens for
// them before anything is measured: signing with RSA-2048 costs about a
// millisecond per token, far more than checking one, so every token a run
// sends is minted up front, in parallel, and written to -out, one a line.
// Each token is valid, distinct (its own jti) and never seen by the server
// under test before the run sends it.
//
// It also answers RFC 7662 introspection for the tokens it minted, and
// counts the calls per token (GET /stats), so that a fleet run can count
// what the authorization server was asked.
func issuer(args []string) error {
	fs := flag.NewFlagSet("issuer", flag.ExitOnError)
	addr := fs.String("addr", "127.0.0.1:0", "listen address (loopback)")
	aud := fs.String("aud", "https://mcp.example.com/mcp", "audience of the minted tokens (the resource)")
	scope := fs.String("scope", "mcp:read mcp:write", "scopes of the minted tokens")
	n := fs.Int("n", 10000, "tokens to mint")
	out := fs.String("out", "", "file to write the minted tokens to, one a line (required)")
	ttl := fs.Duration("ttl", 2*time.Hour, "lifetime of the minted tokens")
	_ = fs.Parse(args)
	if err := loopback(*addr); err != nil {
		return err
	}
	if *out == "" || *n <= 0 || *n > 5_000_000 {
		return errors.New("-out is required and -n must be in [1, 5000000]")
	}
	iss, err := devissuer.Start(devissuer.Config{Addr: *addr, Algorithms: []string{"RS256"}, TokenTTL: *ttl})
	if err != nil {
		return err
	}
	defer iss.Close()
	in := &introspector{calls: map[string]*atomic.Int64{}}
	srv, introURL, err := in.serve()
	if err != nil {
		return err
	}
	defer srv.Close()
	fmt.Printf("ISSUER %s\nJWKS %s\nINTROSPECT %s\n", iss.URL, iss.JWKSURL(), introURL)

	start := time.Now()
	toks, err := mint(iss, *n, *aud, strings.Fields(*scope))
	if err != nil {
		return err
	}
	in.setTokens(toks, iss.URL, *aud, *scope, time.Now().Add(*ttl))
	if err := writeLines(*out, toks); err != nil {
		return err
	}
	fmt.Printf("MINTED %d in %v\nREADY\n", len(toks), time.Since(start).Round(time.Millisecond))

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	<-ctx.Done()
	return nil
}

// mint signs n distinct tokens on every core.
func mint(iss *devissuer.Issuer, n int, aud string, scopes []string) ([]string, error) {
	toks := make([]string, n)
	var next atomic.Int64
	var firstErr error
	var mu sync.Mutex
	var wg sync.WaitGroup
	for range runtime.GOMAXPROCS(0) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				tok, err := iss.Issue(devissuer.TokenRequest{Subject: fmt.Sprintf("user-%d", i), ClientID: "loadcheck-client",
					Audience: aud, Scopes: scopes})
				if err != nil {
					mu.Lock()
					firstErr = err
					mu.Unlock()
					return
				}
				toks[i] = tok
			}
		}()
	}
	wg.Wait()
	return toks, firstErr
}

func writeLines(path string, lines []string) error {
	tmp := path + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return err
	}
	w := bufio.NewWriterSize(f, 1<<20)
	for _, l := range lines {
		w.WriteString(l)
		w.WriteByte('\n')
	}
	if err := errors.Join(w.Flush(), f.Close()); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// readTokens returns lines [from, from+n) of path (n <= 0: to the end).
func readTokens(path string, from, n int) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 64<<10)
	var toks []string
	for i := 0; sc.Scan(); i++ {
		if i < from {
			continue
		}
		if n > 0 && len(toks) == n {
			break
		}
		toks = append(toks, sc.Text())
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(toks) == 0 {
		return nil, fmt.Errorf("%s: no tokens from line %d", path, from)
	}
	return toks, nil
}

// introspector answers RFC 7662 introspection for the minted tokens and
// counts the calls per token.
type introspector struct {
	mu     sync.RWMutex
	calls  map[string]*atomic.Int64
	answer map[string][]byte
	total  atomic.Int64
}

func (in *introspector) setTokens(toks []string, iss, aud, scope string, exp time.Time) {
	in.mu.Lock()
	defer in.mu.Unlock()
	in.answer = make(map[string][]byte, len(toks))
	for i, t := range toks {
		in.calls[t] = new(atomic.Int64)
		in.answer[t], _ = json.Marshal(map[string]any{
			"active": true, "iss": iss, "aud": aud, "scope": scope, "client_id": "loadcheck-client",
			"sub": fmt.Sprintf("user-%d", i), "exp": exp.Unix(), "token_type": "Bearer",
		})
	}
}

func (in *introspector) serve() (*http.Server, string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, "", err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /introspect", func(w http.ResponseWriter, r *http.Request) {
		in.total.Add(1)
		tok := r.PostFormValue("token")
		in.mu.RLock()
		c, body := in.calls[tok], in.answer[tok]
		in.mu.RUnlock()
		w.Header().Set("Content-Type", "application/json")
		if c == nil {
			_, _ = w.Write([]byte(`{"active":false}`))
			return
		}
		c.Add(1)
		_, _ = w.Write(body)
	})
	mux.HandleFunc("GET /stats", func(w http.ResponseWriter, _ *http.Request) {
		in.mu.RLock()
		defer in.mu.RUnlock()
		hist := map[int64]int{}
		for _, c := range in.calls {
			hist[c.Load()]++
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"calls": in.total.Load(), "per_token": hist})
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	return srv, "http://" + ln.Addr().String() + "/introspect", nil
}

// golangJWT is the in-process reference for a cold Check: golang-jwt's own
// parse and verify of distinct tokens from the file, the key in hand (from
// the issuer's JWKS), with the same claim checks as mcp-authz (alg, iss,
// aud, exp required, leeway). It prints the process CPU time (user+system,
// the garbage collector's included) per token, the measure the load runs
// report for servers.
func golangJWT(args []string) error {
	fs := flag.NewFlagSet("golang-jwt", flag.ExitOnError)
	tokens := fs.String("tokens", "", "token file (from loadcheck issuer)")
	from := fs.Int("from", 0, "first line of the token file to use")
	n := fs.Int("n", 2000, "tokens to parse and verify")
	jwksURL := fs.String("jwks", "", "the issuer's JWKS URL (loopback)")
	aud := fs.String("aud", "https://mcp.example.com/mcp", "audience to require")
	label := fs.String("label", "golang-jwt", "label printed with the result")
	_ = fs.Parse(args)
	toks, err := readTokens(*tokens, *from, *n)
	if err != nil {
		return err
	}
	pub, err := fetchRSAKey(*jwksURL)
	if err != nil {
		return err
	}
	var claims jwt.RegisteredClaims
	if _, _, err := jwt.NewParser().ParseUnverified(toks[0], &claims); err != nil {
		return err
	}
	p := jwt.NewParser(jwt.WithValidMethods([]string{"RS256"}), jwt.WithAudience(*aud), jwt.WithIssuer(claims.Issuer),
		jwt.WithExpirationRequired(), jwt.WithLeeway(time.Minute))
	keyfunc := func(*jwt.Token) (any, error) { return pub, nil }
	runtime.GC()
	c0, t0 := cpuSelf(), time.Now()
	for _, tok := range toks {
		if _, err := p.Parse(tok, keyfunc); err != nil {
			return err
		}
	}
	c1, wall := cpuSelf(), time.Since(t0)
	fmt.Printf("%-14s tokens=%d cpu_per_token=%.1fµs wall_per_token=%.1fµs\n", *label, len(toks),
		float64((c1-c0).Microseconds())/float64(len(toks)), float64(wall.Microseconds())/float64(len(toks)))
	return nil
}

// cpuSelf is this process's user+system CPU time.
func cpuSelf() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// fetchRSAKey returns the first RSA key of a JWKS on loopback.
func fetchRSAKey(url string) (*rsa.PublicKey, error) {
	if !strings.HasPrefix(url, "http://127.0.0.1:") && !strings.HasPrefix(url, "http://localhost:") {
		return nil, fmt.Errorf("-jwks %q is not a loopback URL", url)
	}
	resp, err := http.Get(url)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var set struct {
		Keys []struct{ Kty, N, E string }
	}
	if err := json.NewDecoder(resp.Body).Decode(&set); err != nil {
		return nil, err
	}
	for _, k := range set.Keys {
		if k.Kty != "RSA" {
			continue
		}
		n, err1 := base64.RawURLEncoding.DecodeString(k.N)
		e, err2 := base64.RawURLEncoding.DecodeString(k.E)
		if err := errors.Join(err1, err2); err != nil {
			return nil, err
		}
		return &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: int(new(big.Int).SetBytes(e).Int64())}, nil
	}
	return nil, errors.New("no RSA key in the JWKS")
}
