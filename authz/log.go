package authz

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"sync"
	"time"

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

// tokenID is the first 8 hex digits of the token's SHA-256: enough to
// correlate log lines, useless to replay.
func tokenID(token string) string {
	if token == "" {
		return ""
	}
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:4])
}

// logDenial logs a denial at INFO: reason, resource and token hash prefix,
// never the token.
func (s *Server) logDenial(ctx context.Context, in *checkInput, req *request, o *outcome) {
	ok, suppressed := s.denials.limiter(o.reason).Allow(time.Now())
	if !ok {
		return
	}
	attrs := []any{"reason", o.reason, "status", o.status}
	if req.rt != nil {
		attrs = append(attrs, "resource", req.rt.Name)
	} else {
		// Copies: the input's strings may be the request buffer's own
		// bytes (parseCheckInput), reused once the Check has answered,
		// and a handler may keep the record longer (batching, export).
		attrs = append(attrs, "host", strings.Clone(in.host), "path", strings.Clone(pathOnly(in.path)))
	}
	if id := tokenID(req.token); id != "" {
		attrs = append(attrs, "token_sha256", id)
	}
	if suppressed > 0 {
		attrs = append(attrs, "suppressed", suppressed)
	}
	s.log.InfoContext(ctx, "deny", attrs...)
}
