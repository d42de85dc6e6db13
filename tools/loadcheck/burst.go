package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"slices"
	"strconv"
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

// burst sends fresh tokens to every replica of a fleet: each token
// -copies times to each address, all Checks started together (-order
// together), or each token's Checks one replica after another, the next
// sent when the last is answered, the tokens all at once (-order spread:
// a client whose requests Envoy spreads over the fleet). It reports how
// they were answered and, given -pids, the CPU the fleet used per token;
// what the fleet did to answer them is counted outside (loadrun.sh: the
// authorization server's calls, or the verdicts written to Redis).
func burst(args []string) error {
	fs := flag.NewFlagSet("burst", flag.ExitOnError)
	addrs := fs.String("addrs", "", "comma-separated gRPC addresses of the replicas (loopback)")
	tokenFile := fs.String("tokens", "", "token file (from loadcheck issuer)")
	from := fs.Int("from", 0, "first line of the token file to use")
	n := fs.Int("n", 1000, "tokens in the burst")
	copies := fs.Int("copies", 1, "Checks of each token sent to each replica")
	timeout := fs.Duration("timeout", time.Second, "deadline of each Check (Envoy's ext_authz timeout)")
	label := fs.String("label", "burst", "label printed with the result")
	order := fs.String("order", "together", "together: every Check of a token at once; spread: one replica after another")
	pidList := fs.String("pids", "", "comma-separated pids whose CPU use (utime+stime) is reported per token")
	_ = fs.Parse(args)
	if *order != "together" && *order != "spread" {
		return fmt.Errorf("-order must be together or spread, not %q", *order)
	}
	var pids []int
	for _, f := range strings.FieldsFunc(*pidList, func(r rune) bool { return r == ',' }) {
		pid, err := strconv.Atoi(f)
		if err != nil {
			return fmt.Errorf("-pids: %w", err)
		}
		pids = append(pids, pid)
	}
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
	check := func(client authv3.AuthorizationClient, req *authv3.CheckRequest) {
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
	}
	for i, tok := range toks {
		req := proto.Clone(base).(*authv3.CheckRequest)
		req.Attributes.Request.Http.Headers["authorization"] = "Bearer " + tok
		for c := range *copies {
			if *order == "spread" {
				wg.Add(1)
				go func() {
					defer wg.Done()
					<-start
					for r := range list {
						check(clients[r][(i+c)%connsPerReplica], req)
					}
				}()
				continue
			}
			for r := range list {
				client := clients[r][(i+c)%connsPerReplica]
				wg.Add(1)
				go func() {
					defer wg.Done()
					<-start
					check(client, req)
				}()
			}
		}
	}
	cpu0, err := sumTicks(pids)
	if err != nil {
		return err
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
	if len(pids) > 0 {
		// What the fleet does after answering (verdicts written in the
		// background) is part of the cost.
		time.Sleep(200 * time.Millisecond)
		cpu1, err := sumTicks(pids)
		if err != nil {
			return err
		}
		fmt.Printf("%-14s CPU of pids %s: %v per token (%d ticks)\n", *label, *pidList,
			(time.Duration(cpu1-cpu0) * clockTick / time.Duration(len(toks))).Round(100*time.Nanosecond), cpu1-cpu0)
	}
	return nil
}

// sumTicks is the CPU pids have used, in clock ticks.
func sumTicks(pids []int) (int64, error) {
	var total int64
	for _, pid := range pids {
		t, err := cpuTicks(pid)
		if err != nil {
			return 0, err
		}
		total += t
	}
	return total, nil
}
