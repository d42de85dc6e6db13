package cache

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mcp-authz/mcp-authz/internal/devissuer"
	"github.com/mcp-authz/mcp-authz/internal/redistest"
	"github.com/mcp-authz/mcp-authz/validators"
)

// perToken counts an inner validator's calls per token.
type perToken struct {
	inner Inner
	mu    sync.Mutex
	calls map[string]int
}

func (c *perToken) Validate(ctx context.Context, token string) (*validators.Principal, error) {
	c.mu.Lock()
	c.calls[token]++
	c.mu.Unlock()
	return c.inner.Validate(ctx, token)
}

// fleetCase is a burst: validators for replicas to wrap, and the fresh
// tokens.
type fleetCase struct {
	name   string
	inner  Inner
	tokens []string
	// calls reports the authorization server's calls, when it is asked:
	// then they are what is counted (a replica whose Check runs out of
	// time asks its validator with an expired context, which calls no
	// one).
	calls func() int64
}

// jwtFleet is a JWT validator of a development issuer and n fresh tokens.
func jwtFleet(t *testing.T, n int) fleetCase {
	iss, err := devissuer.Start(devissuer.Config{Algorithms: []string{"RS256"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { iss.Close() })
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	v, err := validators.NewJWT(ctx, validators.JWTConfig{
		Issuers: []validators.IssuerConfig{{Issuer: iss.URL, JWKSURI: iss.JWKSURL()}}, Audiences: []string{"https://mcp.example.com/mcp"},
		Client: http.DefaultClient,
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, ks := range v.KeySets() {
		for !ks.Loaded() {
			time.Sleep(time.Millisecond)
		}
	}
	toks := make([]string, n)
	var wg sync.WaitGroup
	for w := range runtime.GOMAXPROCS(0) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += runtime.GOMAXPROCS(0) {
				tok, err := iss.Issue(devissuer.TokenRequest{Subject: fmt.Sprint("user-", i), Audience: "https://mcp.example.com/mcp"})
				if err != nil {
					t.Error(err)
				}
				toks[i] = tok
			}
		}()
	}
	wg.Wait()
	return fleetCase{name: "jwt", inner: v, tokens: toks}
}

// introspectionFleet is an introspection validator of an authorization
// server on loopback that answers every token active, after a delay, and
// counts its calls.
func introspectionFleet(t *testing.T, n int, delay time.Duration) fleetCase {
	var calls atomic.Int64
	as := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		time.Sleep(delay)
		fmt.Fprintf(w, `{"active":true,"sub":%q,"aud":"https://mcp.example.com/mcp","exp":%d}`, r.PostFormValue("token"), time.Now().Add(time.Hour).Unix())
	}))
	t.Cleanup(as.Close)
	// Pooled connections, as the service's outbound client keeps them.
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	v, err := validators.NewIntrospection(context.Background(), validators.IntrospectionConfig{Endpoint: as.URL, ClientID: "rs", ClientSecret: "s",
		Audiences: []string{"https://mcp.example.com/mcp"}, Client: client, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	toks := make([]string, n)
	for i := range toks {
		toks[i] = fmt.Sprintf("opaque-%d-%d", time.Now().UnixNano(), i)
	}
	return fleetCase{name: "introspection", inner: v, tokens: toks, calls: func() int64 { return calls.Load() }}
}

// TestFleetBurst: three replicas sharing one real Redis receive a burst of
// a thousand fresh tokens at once, each token on every replica, with
// Redis timeouts and a lock TTL generous enough for a loaded machine (a
// holder slower than LockTTL loses the lock to another replica, which then
// validates too). The fleet validates
// each token once: one signature check, or one call to the authorization
// server. That holds while Redis answers within its timeouts and the
// Checks' deadlines; past them a replica validates by itself (see
// fleetTurn), which is a question of the machine's load, not of the
// algorithm this test holds to its bound. The production timeouts are
// measured by `MODE=fleet scripts/loadrun.sh` instead (docs/benchmarks.md).
func TestFleetBurst(t *testing.T) {
	if testing.Short() {
		t.Skip("a burst of a thousand fresh tokens")
	}
	const tokens, copies = 1000, 1
	deadline, opts := 10*time.Second, RedisOptions{Timeout: time.Second, FleetTimeout: 3 * time.Second}
	srv := redistest.Start(t)
	for _, fc := range []fleetCase{jwtFleet(t, tokens), introspectionFleet(t, tokens, 20*time.Millisecond)} {
		t.Run(fc.name, func(t *testing.T) {
			counted := &perToken{inner: fc.inner, calls: map[string]int{}}
			var replicas []*Validator
			var stores []*Redis
			for range 3 {
				r, _ := newRedisStoreWith(t, srv, opts)
				v, err := New(counted, &Tiered{L1: newMemory(t), L2: r}, Options{Policy: fc.name, LockTTL: deadline})
				if err != nil {
					t.Fatal(err)
				}
				replicas, stores = append(replicas, v), append(stores, r)
			}
			start := make(chan struct{})
			var wg sync.WaitGroup
			var failed atomic.Int64
			for _, tok := range fc.tokens {
				for _, v := range replicas {
					for range copies {
						wg.Add(1)
						go func() {
							defer wg.Done()
							<-start
							ctx, cancel := context.WithTimeout(context.Background(), deadline)
							defer cancel()
							if _, err := v.Validate(ctx, tok); err != nil {
								failed.Add(1)
							}
						}()
					}
				}
			}
			t0 := time.Now()
			close(start)
			wg.Wait()
			elapsed := time.Since(t0)
			hist := map[int]int{}
			most := 0
			for _, tok := range fc.tokens {
				n := counted.calls[tok]
				hist[n]++
				most = max(most, n)
			}
			var fromFleet, lockWaits, errs, skipped int64
			for i, v := range replicas {
				fromFleet += v.Stats().FromFleet
				st := stores[i].Stats()
				lockWaits, errs, skipped = lockWaits+st.LockWaits, errs+st.Errors, skipped+st.Skipped
			}
			t.Logf("%d tokens x 3 replicas x %d copies in %v: validations per token %v (most %d); %d answered by another replica's verdict, %d lock waits, %d Redis errors, %d skipped; %d Checks failed",
				tokens, copies, elapsed.Round(time.Millisecond), hist, most, fromFleet, lockWaits, errs, skipped, failed.Load())
			if fc.calls != nil {
				t.Logf("authorization server calls: %d for %d tokens", fc.calls(), tokens)
				if n := fc.calls(); n > int64(len(fc.tokens)) {
					t.Errorf("%d authorization server calls for %d tokens, want at most one each", n, len(fc.tokens))
				}
			} else if most > 1 {
				t.Errorf("a token was validated %d times across the fleet, want at most once", most)
			}
		})
	}
}
