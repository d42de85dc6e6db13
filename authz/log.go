package authz

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/mcp-authz/mcp-authz/internal/loglimit"
)

const (
	// unavailableLogEvery is how often an ongoing dependency failure is
	// logged per resource.
	unavailableLogEvery = 10 * time.Second
	// denialLogEvery is how often a denial is logged per reason: a flood of
	// bad tokens must not become a flood of log lines.
	denialLogEvery = time.Second
)

// denialLog rate-limits denial logs per reason.
type denialLog struct {
	byReason sync.Map // string -> *loglimit.Limiter
}

func (d *denialLog) limiter(reason string) *loglimit.Limiter {
	if l, ok := d.byReason.Load(reason); ok {
		return l.(*loglimit.Limiter)
	}
	l, _ := d.byReason.LoadOrStore(reason, &loglimit.Limiter{Every: denialLogEvery})
	return l.(*loglimit.Limiter)
}

// maxLogged bounds the host and the path of an unrouted request in its
// denial line: they are the client's, as long as the gRPC message limit
// allows (256 KiB by default).
const maxLogged = 256

// clipped returns a copy of s cut to at most maxLogged bytes (at a
// character's start), saying how many bytes were cut. A copy, since the
// input's strings may be the request buffer's own bytes
// (parseCheckInput), reused once the Check has answered, and a handler
// may keep the record longer (batching, export).
func clipped(s string) string {
	if len(s) <= maxLogged {
		return strings.Clone(s)
	}
	cut := maxLogged
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…(" + strconv.Itoa(len(s)-cut) + " more bytes)"
}

// tokenID is the first 8 hex digits of the token's SHA-256: enough to
// correlate log lines, useless to replay.
func tokenID(token string) string {
	if token == "" {
		return ""
	}
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:4])
}

// logDenial logs a denial at INFO: reason, HTTP status (when the answer
// has one), resource and token hash prefix, never the token. A 503 is a
// denial like any other here; the dependency's failure has its own WARN
// line (validationFailed).
func (s *Server) logDenial(ctx context.Context, in *checkInput, req *request, reason string, status int) {
	ok, suppressed := s.denials.limiter(reason).Allow(time.Now())
	if !ok {
		return
	}
	attrs := []any{"reason", reason}
	if status != 0 {
		attrs = append(attrs, "status", status)
	}
	if req.rt != nil {
		attrs = append(attrs, "resource", req.rt.Name)
	} else {
		attrs = append(attrs, "host", clipped(in.host), "path", clipped(pathOnly(in.path)))
	}
	if id := tokenID(req.token); id != "" {
		attrs = append(attrs, "token_sha256", id)
	}
	if suppressed > 0 {
		attrs = append(attrs, "suppressed", suppressed)
	}
	s.log.InfoContext(ctx, "deny", attrs...)
}
