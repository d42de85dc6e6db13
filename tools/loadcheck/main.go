// Command loadcheck is the load client for mcp-authz's benchmarks: it drives
// envoy.service.auth.v3.Authorization/Check over real gRPC on loopback and
// reports throughput, latency percentiles and the server's CPU per Check.
// It also runs the ceiling: a trivial always-allow Check server.
//
//	loadcheck allow-server [-addr 127.0.0.1:0]
//	loadcheck run -addr HOST:PORT [-token T | -tokens FILE [-from N] [-n N]] [-c 50] [-d 10s] [-conns 2] [-pid PID]
//	loadcheck issuer -out FILE [-n 10000] [-aud URI]
//	loadcheck golang-jwt -tokens FILE -jwks URL [-n 2000]
//	loadcheck burst -addrs A,B,C -tokens FILE [-n 1000] [-copies 1]
//
// With -tokens, every Check carries a token of its own, taken in order from
// the file (a cold run: tokens the server has never seen), and the run ends
// early when they run out. issuer mints such tokens before a run and serves
// their JWKS (see issuer.go). Only loopback targets are accepted.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: loadcheck allow-server|run|issuer|golang-jwt|burst [flags]")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "allow-server":
		err = allowServer(os.Args[2:])
	case "run":
		err = run(os.Args[2:])
	case "issuer":
		err = issuer(os.Args[2:])
	case "golang-jwt":
		err = golangJWT(os.Args[2:])
	case "burst":
		err = burst(os.Args[2:])
	default:
		err = fmt.Errorf("unknown command %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "loadcheck:", err)
		os.Exit(1)
	}
}

type allowAll struct {
	authv3.UnimplementedAuthorizationServer
}

func (allowAll) Check(context.Context, *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	return &authv3.CheckResponse{Status: &rpcstatus.Status{Code: int32(codes.OK)}}, nil
}

func allowServer(args []string) error {
	fs := flag.NewFlagSet("allow-server", flag.ExitOnError)
	addr := fs.String("addr", "127.0.0.1:0", "listen address (loopback)")
	_ = fs.Parse(args)
	if err := loopback(*addr); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return err
	}
	gs := grpc.NewServer()
	authv3.RegisterAuthorizationServer(gs, allowAll{})
	fmt.Printf("LISTENING %s\n", ln.Addr())
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() { <-ctx.Done(); gs.Stop() }()
	return gs.Serve(ln)
}

func loopback(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return err
	}
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return fmt.Errorf("%s is not a loopback address", addr)
	}
	return nil
}

// cpuTicks returns utime+stime of pid in clock ticks.
func cpuTicks(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// Fields after the command name, which is parenthesised and may hold spaces.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, errors.New("unparseable /proc stat")
	}
	f := strings.Fields(s[i+2:])
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, err
	}
	return ut + st, nil
}

// clockTick is USER_HZ, 100 on Linux for every architecture Go supports here.
const clockTick = 10 * time.Millisecond

// toolCallBody is a tools/call request padded to about n bytes with a
// string argument, the shape of a typical MCP call.
func toolCallBody(n int) []byte {
	const head = `{"jsonrpc":"2.0","id":42,"method":"tools/call","params":{"name":"search_repositories","arguments":{"query":"`
	const tail = `","page":1}}}`
	pad := max(0, n-len(head)-len(tail))
	return []byte(head + strings.Repeat("x", pad) + tail)
}

func run(args []string) error {
	fs := flag.NewFlagSet("run", flag.ExitOnError)
	addr := fs.String("addr", "", "mcp-authz (or allow-server) gRPC address")
	token := fs.String("token", "", "bearer token sent with every Check")
	conc := fs.Int("c", 50, "concurrent callers")
	dur := fs.Duration("d", 10*time.Second, "measured duration")
	warm := fs.Duration("warmup", time.Second, "unmeasured warm-up")
	conns := fs.Int("conns", 2, "gRPC connections (Envoy keeps one per worker)")
	pid := fs.Int("pid", 0, "server process to measure CPU of")
	label := fs.String("label", "", "label printed with the result")
	bodyBytes := fs.Int("body-bytes", 0, "send a JSON-RPC tools/call body of about this size with every Check (as Envoy's with_request_body does), 0 for none")
	decode := fs.String("decode", "status", "response decoding: status (read only the gRPC status code, the way a C++ Envoy pays little for it) or full (unmarshal the whole CheckResponse)")
	tokenFile := fs.String("tokens", "", "token file (from loadcheck issuer): every Check carries the next token, and the run ends when they run out")
	tokensFrom := fs.Int("from", 0, "with -tokens: the first line to use")
	tokensN := fs.Int("n", 0, "with -tokens: how many lines to use (0: to the end)")
	cycle := fs.Bool("cycle", false, "with -tokens: start again from the first token instead of ending the run (for the ceiling, which caches nothing)")
	_ = fs.Parse(args)
	if err := loopback(*addr); err != nil {
		return err
	}
	if *dur > 5*time.Minute || *conc > 1000 {
		return errors.New("runs are bounded: at most 5m and 1000 callers")
	}
	if *decode != "status" && *decode != "full" {
		return fmt.Errorf("-decode must be status or full")
	}
	ccs := make([]*grpc.ClientConn, *conns)
	for i := range ccs {
		cc, err := grpc.NewClient(*addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			return err
		}
		defer cc.Close()
		ccs[i] = cc
	}
	headers := map[string]string{
		":authority": "mcp.example.com", ":path": "/mcp", ":method": "POST", ":scheme": "https",
		"content-type": "application/json", "accept": "application/json, text/event-stream",
		"mcp-protocol-version": "2025-06-18", "user-agent": "loadcheck", "x-request-id": "00000000-0000-0000-0000-000000000000",
	}
	if *token != "" {
		headers["authorization"] = "Bearer " + *token
	}
	req := &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{
		Http: &authv3.AttributeContext_HttpRequest{Method: "POST", Host: "mcp.example.com", Path: "/mcp", Scheme: "https", Protocol: "HTTP/2", Headers: headers},
	}}}
	if *bodyBytes > 0 {
		headers["mcp-session-id"] = "5c8b2f0e-loadcheck"
		req.Attributes.Request.Http.RawBody = toolCallBody(*bodyBytes)
	}
	// cold: each worker sends its own copy of the request, with the next
	// unused token of the file.
	var cold []string
	var nextToken atomic.Int64
	if *tokenFile != "" {
		var err error
		if cold, err = readTokens(*tokenFile, *tokensFrom, *tokensN); err != nil {
			return err
		}
	}
	workerRequest := func() (*authv3.CheckRequest, func() bool) {
		if cold == nil {
			return req, func() bool { return true }
		}
		r := proto.Clone(req).(*authv3.CheckRequest)
		h := r.Attributes.Request.Http.Headers
		return r, func() bool {
			i := nextToken.Add(1) - 1
			if i >= int64(len(cold)) {
				if !*cycle {
					return false
				}
				i %= int64(len(cold))
			}
			h["authorization"] = "Bearer " + cold[i]
			return true
		}
	}

	var measuring atomic.Bool
	var errs, denied atomic.Int64
	var firstErr atomic.Value
	lat := make([][]time.Duration, *conc)
	ctx, cancel := context.WithTimeout(context.Background(), *warm+*dur)
	defer cancel()
	var wg sync.WaitGroup
	for w := range *conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cc := ccs[w%len(ccs)]
			full := authv3.NewAuthorizationClient(cc)
			req, next := workerRequest()
			for ctx.Err() == nil && next() {
				t0 := time.Now()
				var code int32
				var err error
				if *decode == "full" {
					var resp *authv3.CheckResponse
					if resp, err = full.Check(ctx, req); err == nil {
						code = resp.GetStatus().GetCode()
					}
				} else {
					var raw statusOnly
					err = cc.Invoke(ctx, authv3.Authorization_Check_FullMethodName, req, &raw, grpc.ForceCodecV2(statusCodec{}))
					code = raw.code
				}
				d := time.Since(t0)
				if !measuring.Load() {
					continue
				}
				switch {
				case err != nil:
					// The run's deadline ends calls in flight; those are not errors.
					if c := status.Code(err); ctx.Err() == nil && c != codes.DeadlineExceeded && c != codes.Canceled {
						errs.Add(1)
						firstErr.CompareAndSwap(nil, err.Error())
					}
					continue
				case code != int32(codes.OK):
					denied.Add(1)
				}
				lat[w] = append(lat[w], d)
			}
		}()
	}
	time.Sleep(*warm)
	var t0 int64
	if *pid > 0 {
		var err error
		if t0, err = cpuTicks(*pid); err != nil {
			return err
		}
	}
	start := time.Now()
	measuring.Store(true)
	warmedUp := min(nextToken.Load(), int64(len(cold)))
	wg.Wait()
	elapsed := time.Since(start)
	var t1 int64
	if *pid > 0 {
		var err error
		if t1, err = cpuTicks(*pid); err != nil {
			return err
		}
	}
	var all []time.Duration
	for _, l := range lat {
		all = append(all, l...)
	}
	slices.Sort(all)
	n := len(all)
	if n == 0 {
		return errors.New("no successful checks")
	}
	pct := func(p float64) time.Duration { return all[min(n-1, int(float64(n)*p))] }
	if cold != nil && !*cycle {
		fmt.Printf("%-14s cold: %d fresh tokens, %d used before the measured window, %v measured\n", *label, len(cold), warmedUp, elapsed.Round(time.Millisecond))
		if n < 1000 {
			return fmt.Errorf("only %d measured checks: mint more tokens (they ran out)", n)
		}
	}
	fmt.Printf("%-14s decode=%s checks=%d rps=%.0f p50=%v p99=%v denied=%d errors=%d", *label, *decode, n, float64(n)/elapsed.Seconds(),
		pct(0.50).Round(time.Microsecond), pct(0.99).Round(time.Microsecond), denied.Load(), errs.Load())
	if *pid > 0 {
		cpu := time.Duration(t1-t0) * clockTick
		fmt.Printf(" server_cpu=%v cpu_per_check=%.1fµs", cpu, float64(cpu.Microseconds())/float64(n))
	}
	fmt.Println()
	if e := firstErr.Load(); e != nil {
		fmt.Printf("%-14s first error: %s\n", *label, e)
	}
	return nil
}

// statusOnly receives a CheckResponse of which only status.code is read.
type statusOnly struct{ code int32 }

// statusCodec marshals requests as protobuf and reads only field 1
// (google.rpc.Status) field 1 (code) of the response: the decision, without
// paying to decode headers and metadata the load client does not use.
type statusCodec struct{}

func (statusCodec) Name() string { return "proto" }

func (statusCodec) Marshal(v any) (mem.BufferSlice, error) {
	b, err := proto.Marshal(v.(proto.Message))
	if err != nil {
		return nil, err
	}
	return mem.BufferSlice{mem.SliceBuffer(b)}, nil
}

func (statusCodec) Unmarshal(data mem.BufferSlice, v any) error {
	out := v.(*statusOnly)
	b := data.Materialize()
	status, err := field(b, 1)
	if err != nil || status == nil {
		return err // an absent status is code 0, OK
	}
	for len(status) > 0 {
		num, typ, n := protowire.ConsumeTag(status)
		if n < 0 {
			return protowire.ParseError(n)
		}
		status = status[n:]
		if num == 1 && typ == protowire.VarintType {
			c, n := protowire.ConsumeVarint(status)
			if n < 0 {
				return protowire.ParseError(n)
			}
			out.code = int32(c)
			return nil
		}
		n = protowire.ConsumeFieldValue(num, typ, status)
		if n < 0 {
			return protowire.ParseError(n)
		}
		status = status[n:]
	}
	return nil
}

// field returns the bytes of the first length-delimited field num of b.
func field(b []byte, num protowire.Number) ([]byte, error) {
	for len(b) > 0 {
		n2, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return nil, protowire.ParseError(n)
		}
		b = b[n:]
		if n2 == num && typ == protowire.BytesType {
			v, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return nil, protowire.ParseError(n)
			}
			return v, nil
		}
		n = protowire.ConsumeFieldValue(n2, typ, b)
		if n < 0 {
			return nil, protowire.ParseError(n)
		}
		b = b[n:]
	}
	return nil, nil
}
