package cache

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/mcp-authz/mcp-authz/internal/loglimit"

	"github.com/redis/go-redis/v9"
)

// redisLogEvery is how often go-redis's own lines are let through: a Redis
// outage makes it log every failed dial.
const redisLogEvery = 10 * time.Second

// SetRedisLogger routes go-redis's own log lines (connection pool,
// Sentinel and Cluster topology messages), which it otherwise prints to
// stderr as plain text, into logger at WARN, at most one per 10 seconds,
// each with the number of lines suppressed before it. go-redis has one
// logger per process.
func SetRedisLogger(logger *slog.Logger) {
	redis.SetLogger(NewRedisLogger(logger))
}

// RedisLogger adapts a *slog.Logger to go-redis's logging interface; see
// SetRedisLogger.
type RedisLogger struct {
	log   *slog.Logger
	limit loglimit.Limiter
}

// NewRedisLogger returns the adapter SetRedisLogger installs.
func NewRedisLogger(logger *slog.Logger) *RedisLogger {
	return &RedisLogger{log: logger, limit: loglimit.Limiter{Every: redisLogEvery}}
}

// Printf implements go-redis's internal.Logging.
func (l *RedisLogger) Printf(ctx context.Context, format string, v ...any) {
	ok, suppressed := l.limit.Allow(time.Now())
	if !ok {
		return
	}
	if ctx == nil {
		ctx = context.Background()
	}
	l.log.WarnContext(ctx, "redis client", slog.String("detail", strings.TrimSpace(fmt.Sprintf(format, v...))),
		slog.Int64("suppressed", suppressed))
}
