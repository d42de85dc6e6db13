package authz

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"sync"
	"sync/atomic"
	"time"
)

// logLimiter passes one event per interval and counts the rest.
type logLimiter struct {
	next       atomic.Int64 // unix nanoseconds before which events are suppressed
	suppressed atomic.Int64
}

// allow reports whether to log now, and how many events were suppressed
// since the last one logged.
func (l *logLimiter) allow(now time.Time, every time.Duration) (bool, int64) {
	next := l.next.Load()
	if now.UnixNano() < next || !l.next.CompareAndSwap(next, now.Add(every).UnixNano()) {
		l.suppressed.Add(1)
		return false, 0
	}
	return true, l.suppressed.Swap(0)
}

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
	byReason sync.Map // string -> *logLimiter
}

func (d *denialLog) limiter(reason string) *logLimiter {
	if l, ok := d.byReason.Load(reason); ok {
		return l.(*logLimiter)
	}
	l, _ := d.byReason.LoadOrStore(reason, new(logLimiter))
	return l.(*logLimiter)
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
	ok, suppressed := s.denials.limiter(o.reason).allow(time.Now(), denialLogEvery)
	if !ok {
		return
	}
	attrs := []any{"reason", o.reason, "status", o.status}
	if req.rt != nil {
		attrs = append(attrs, "resource", req.rt.Name)
	} else {
		attrs = append(attrs, "host", in.host, "path", pathOnly(in.path))
	}
	if id := tokenID(req.token); id != "" {
		attrs = append(attrs, "token_sha256", id)
	}
	if suppressed > 0 {
		attrs = append(attrs, "suppressed", suppressed)
	}
	s.log.InfoContext(ctx, "deny", attrs...)
}
