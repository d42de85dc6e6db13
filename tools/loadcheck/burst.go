package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"
)

// burst sends fresh tokens to every replica of a fleet at once: each
// token -copies times to each address, all Checks started together. It
// reports how they were answered; what the fleet did to answer them is
// counted outside (loadrun.sh: the authorization server's calls, or the
// verdicts written to Redis).
func burst(args []string) error {
	fs := flag.NewFlagSet("burst", flag.ExitOnError)
	addrs := fs.String("addrs", "", "comma-separated gRPC addresses of the replicas (loopback)")
	tokenFile := fs.String("tokens", "", "token file (from loadcheck issuer)")
	from := fs.Int("from", 0, "first line of the token file to use")
	n := fs.Int("n", 1000, "tokens in the burst")
	copies := fs.Int("copies", 1, "Checks of each token sent to each replica")
	timeout := fs.Duration("timeout", time.Second, "deadline of each Check (Envoy's ext_authz timeout)")
	label := fs.String("label", "burst", "label printed with the result")
	_ = fs.Parse(args)
	list := strings.Split(*addrs, ",")
	for _, a := range list {
		if err := loopback(a); err != nil {
			return err
		}
	}
	if *n*len(list)**copies > 100_000 {
		return errors.New("bursts are bounded: at most 100,000 Checks")
	}
	toks, err := readTokens(*tokenFile, *from, *n)
	if err != nil {
		return err
	}
	// A few connections per replica: a server takes 1,000 concurrent
	// streams on each.
	const connsPerReplica = 4
	clients := make([][]authv3.AuthorizationClient, len(list))
	for i, a := range list {
		for range connsPerReplica {
			cc, err := grpc.NewClient(a, grpc.WithTransportCredentials(insecure.NewCredentials()))
			if err != nil {
				return err
			}
			defer cc.Close()
			cc.Connect()
			clients[i] = append(clients[i], authv3.NewAuthorizationClient(cc))
		}
	}
	base := &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{
		Http: &authv3.AttributeContext_HttpRequest{Method: "POST", Host: "mcp.example.com", Path: "/mcp", Scheme: "https", Protocol: "HTTP/2",
			Headers: map[string]string{":authority": "mcp.example.com", ":path": "/mcp", ":method": "POST", ":scheme": "https",
				"content-type": "application/json", "accept": "application/json, text/event-stream", "mcp-protocol-version": "2025-06-18"}},
	}}}
	// Warm the connections, so that the burst is Checks, not handshakes.
	for _, cs := range clients {
		for _, c := range cs {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			_, _ = c.Check(ctx, base)
			cancel()
		}
	}
	start := make(chan struct{})
	var wg sync.WaitGroup
	var allowed, denied, failed atomic.Int64
	var firstErr atomic.Value
	var mu sync.Mutex
	var lat []time.Duration
	for i, tok := range toks {
		req := proto.Clone(base).(*authv3.CheckRequest)
		req.Attributes.Request.Http.Headers["authorization"] = "Bearer " + tok
		for r := range list {
			for c := range *copies {
				client := clients[r][(i+c)%connsPerReplica]
				wg.Add(1)
				go func() {
					defer wg.Done()
					<-start
					ctx, cancel := context.WithTimeout(context.Background(), *timeout)
					defer cancel()
					t0 := time.Now()
					resp, err := client.Check(ctx, req)
					d := time.Since(t0)
					switch {
					case err != nil:
						failed.Add(1)
						firstErr.CompareAndSwap(nil, err.Error())
					case codes.Code(resp.GetStatus().GetCode()) == codes.OK:
						allowed.Add(1)
					default:
						denied.Add(1)
					}
					mu.Lock()
					lat = append(lat, d)
					mu.Unlock()
				}()
			}
		}
	}
	t0 := time.Now()
	close(start)
	wg.Wait()
	elapsed := time.Since(t0)
	slices.Sort(lat)
	fmt.Printf("%-14s %d tokens x %d replicas x %d: %d Checks in %v, allowed=%d denied=%d failed=%d p50=%v p99=%v\n",
		*label, len(toks), len(list), *copies, len(lat), elapsed.Round(time.Millisecond), allowed.Load(), denied.Load(), failed.Load(),
		lat[len(lat)/2].Round(time.Microsecond), lat[len(lat)*99/100].Round(time.Microsecond))
	if e := firstErr.Load(); e != nil {
		fmt.Printf("%-14s first error: %s\n", *label, e)
	}
	return nil
}
