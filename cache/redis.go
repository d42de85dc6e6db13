package cache

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"google.golang.org/protobuf/proto"

	cachev1 "github.com/mcp-authz/mcp-authz/proto/mcpauthz/cache/v1"
	"github.com/mcp-authz/mcp-authz/validators"
)

// schemaVersion is written into every stored verdict and into the key;
// a reader treats any other version as a miss.
const schemaVersion = 1

// RedisOptions configures the shared Redis tier.
type RedisOptions struct {
	// Client is a go-redis UniversalClient: standalone, Sentinel or Cluster.
	// Build it with ContextTimeoutEnabled, or go-redis waits its own read
	// timeout (seconds) instead of Timeout.
	Client redis.UniversalClient
	// Prefix starts every key. Zero means "mcp-authz".
	Prefix string
	// Timeout bounds each cache call; Redis is never worth waiting for.
	// Zero means 10 ms.
	Timeout time.Duration
	// FailureThreshold consecutive errors open the breaker. Zero means 3.
	FailureThreshold int
	// Backoff is the first period the tier is skipped once the breaker
	// opens; it doubles while Redis stays down, up to 30 s. Zero means 1 s.
	Backoff time.Duration
	Logger  *slog.Logger
}

// RedisStats are cumulative counters of the Redis tier.
type RedisStats struct {
	Hits, Misses, Errors, Skipped, Sets int64
	// LockWaits counts validations that found another replica holding the
	// lock and waited for its verdict.
	LockWaits int64
}

// Redis stores verdicts in Redis as cachev1.Verdict messages. It is never
// on the critical path for correctness: every error is a miss, and after
// repeated errors the tier is skipped for a back-off period, so a Redis
// outage adds no per-request latency.
type Redis struct {
	opts    RedisOptions
	breaker breaker

	hits, misses, errs, skipped, sets, lockWaits atomic.Int64
}

// NewRedis returns a Redis store.
func NewRedis(opts RedisOptions) (*Redis, error) {
	if opts.Client == nil {
		return nil, errors.New("cache: redis client is required")
	}
	if opts.Prefix == "" {
		opts.Prefix = "mcp-authz"
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 10 * time.Millisecond
	}
	if opts.FailureThreshold <= 0 {
		opts.FailureThreshold = 3
	}
	if opts.Backoff <= 0 {
		opts.Backoff = time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	r := &Redis{opts: opts}
	r.breaker.threshold = int32(opts.FailureThreshold)
	r.breaker.initial = opts.Backoff
	r.breaker.log = opts.Logger
	return r, nil
}

// Stats returns the counters.
func (r *Redis) Stats() RedisStats {
	return RedisStats{Hits: r.hits.Load(), Misses: r.misses.Load(), Errors: r.errs.Load(), Skipped: r.skipped.Load(),
		Sets: r.sets.Load(), LockWaits: r.lockWaits.Load()}
}

// redisKey is "<prefix>:v<schema>:<policy>:<sha256 hex>".
func (r *Redis) redisKey(k Key) string {
	return r.opts.Prefix + ":v1:" + k.String()
}

// Get implements Store.
func (r *Redis) Get(ctx context.Context, k Key) (Entry, bool) {
	if !r.breaker.allow(time.Now()) {
		r.skipped.Add(1)
		return Entry{}, false
	}
	ctx, cancel := context.WithTimeout(ctx, r.opts.Timeout)
	defer cancel()
	b, err := r.opts.Client.Get(ctx, r.redisKey(k)).Bytes()
	switch {
	case errors.Is(err, redis.Nil):
		r.breaker.success()
		r.misses.Add(1)
		return Entry{}, false
	case err != nil:
		r.errs.Add(1)
		r.breaker.failure(time.Now(), err)
		return Entry{}, false
	}
	r.breaker.success()
	e, ok := decodeEntry(b)
	if !ok || !time.Now().Before(e.until) {
		r.misses.Add(1)
		return Entry{}, false
	}
	r.hits.Add(1)
	return e, true
}

// Set implements Store.
func (r *Redis) Set(ctx context.Context, k Key, e Entry, ttl time.Duration) {
	if ttl <= 0 || !r.breaker.allow(time.Now()) {
		return
	}
	e.until = time.Now().Add(ttl)
	b, err := proto.Marshal(encodeEntry(e))
	if err != nil {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, r.opts.Timeout)
	defer cancel()
	if err := r.opts.Client.Set(ctx, r.redisKey(k), b, ttl).Err(); err != nil {
		r.errs.Add(1)
		r.breaker.failure(time.Now(), err)
		return
	}
	r.sets.Add(1)
	r.breaker.success()
}

func encodeEntry(e Entry) *cachev1.Verdict {
	v := &cachev1.Verdict{SchemaVersion: schemaVersion, CachedUntilMs: e.until.UnixMilli()}
	if p := e.Principal; p != nil {
		v.Active = true
		v.Subject, v.ClientId, v.Issuer, v.Claims = p.Subject, p.ClientID, p.Issuer, p.Claims
		v.Scopes, v.Audience = p.Scopes, p.Audience
		if !p.ExpiresAt.IsZero() {
			v.ExpiresAt = p.ExpiresAt.Unix()
		}
	} else if e.Err != nil {
		v.ErrorDescription = e.Err.Description
	}
	return v
}

func decodeEntry(b []byte) (Entry, bool) {
	var v cachev1.Verdict
	if err := proto.Unmarshal(b, &v); err != nil || v.SchemaVersion != schemaVersion {
		return Entry{}, false
	}
	e := Entry{until: time.UnixMilli(v.CachedUntilMs)}
	if !v.Active {
		e.Err = &validators.Error{Kind: validators.ErrInvalidToken, Description: v.ErrorDescription}
		return e, true
	}
	p := &validators.Principal{
		Subject: v.Subject, ClientID: v.ClientId, Issuer: v.Issuer, Claims: v.Claims,
		Scopes: v.Scopes, Audience: v.Audience,
	}
	if v.ExpiresAt != 0 {
		p.ExpiresAt = time.Unix(v.ExpiresAt, 0)
	}
	e.Principal = p
	return e, true
}

// breaker skips Redis after repeated errors. The fast path is one atomic
// load; state changes take the mutex.
type breaker struct {
	openUntil atomic.Int64 // unix nanoseconds
	failures  atomic.Int32
	threshold int32
	initial   time.Duration
	log       *slog.Logger

	mu      sync.Mutex
	backoff time.Duration
}

func (b *breaker) allow(now time.Time) bool {
	return now.UnixNano() >= b.openUntil.Load()
}

func (b *breaker) success() {
	if b.failures.Load() == 0 && b.openUntil.Load() == 0 {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.openUntil.Load() != 0 {
		b.log.Info("redis cache tier recovered")
	}
	b.failures.Store(0)
	b.openUntil.Store(0)
	b.backoff = 0
}

func (b *breaker) failure(now time.Time, err error) {
	// After a back-off period one failed probe reopens the breaker at once.
	halfOpen := b.openUntil.Load() != 0
	if b.failures.Add(1) < b.threshold && !halfOpen {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if now.UnixNano() < b.openUntil.Load() {
		return // another caller opened it
	}
	if b.backoff == 0 {
		b.backoff = b.initial
	} else {
		b.backoff = min(2*b.backoff, 30*time.Second)
	}
	b.openUntil.Store(now.Add(b.backoff).UnixNano())
	b.failures.Store(0)
	b.log.Warn("redis cache tier failing: skipping it", "for", b.backoff, "error", err)
}

// releaseScript deletes a lock only if this caller still holds it.
var releaseScript = redis.NewScript(`if redis.call("get", KEYS[1]) == ARGV[1] then return redis.call("del", KEYS[1]) else return 0 end`)

// Lock tries to take the fleet-wide lock on validating k, so that one
// replica validates a fresh token while the others wait for its verdict.
// When Redis cannot say, the caller validates itself: the lock only saves
// calls, it never decides.
func (r *Redis) Lock(ctx context.Context, k Key, ttl time.Duration) (LockState, func()) {
	none := func() {}
	if !r.breaker.allow(time.Now()) {
		return LockUnknown, none
	}
	var id [16]byte
	_, _ = rand.Read(id[:])
	owner := hex.EncodeToString(id[:])
	lockKey := r.redisKey(k) + ":lock"
	cctx, cancel := context.WithTimeout(ctx, r.opts.Timeout)
	defer cancel()
	ok, err := r.opts.Client.SetNX(cctx, lockKey, owner, ttl).Result()
	if err != nil {
		r.errs.Add(1)
		r.breaker.failure(time.Now(), err)
		return LockUnknown, none
	}
	if !ok {
		r.lockWaits.Add(1)
		return LockBusy, none
	}
	return LockHeld, func() {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.opts.Timeout)
		defer cancel()
		_ = releaseScript.Run(rctx, r.opts.Client, []string{lockKey}, owner).Err()
	}
}

// invalidationChannel carries the hex SHA-256 of purged tokens.
func (r *Redis) invalidationChannel() string { return r.opts.Prefix + ":invalidate" }

// Purge removes every verdict about the token with digest sum, under every
// policy, and tells every replica to drop its in-process copy. It returns
// how many keys were deleted.
func (r *Redis) Purge(ctx context.Context, sum [sha256.Size]byte) (int, error) {
	hexSum := hex.EncodeToString(sum[:])
	pattern := r.opts.Prefix + ":v1:*:" + hexSum
	deleted := 0
	scan := func(ctx context.Context, c redis.UniversalClient) error {
		iter := c.Scan(ctx, 0, pattern, 500).Iterator()
		for iter.Next(ctx) {
			n, err := c.Del(ctx, iter.Val()).Result()
			if err != nil {
				return err
			}
			deleted += int(n)
		}
		return iter.Err()
	}
	var err error
	if cc, ok := r.opts.Client.(*redis.ClusterClient); ok {
		var mu sync.Mutex
		err = cc.ForEachMaster(ctx, func(ctx context.Context, node *redis.Client) error {
			mu.Lock()
			defer mu.Unlock()
			return scan(ctx, node)
		})
	} else {
		err = scan(ctx, r.opts.Client)
	}
	if err != nil {
		return deleted, fmt.Errorf("purging verdicts: %w", err)
	}
	if err := r.opts.Client.Publish(ctx, r.invalidationChannel(), hexSum).Err(); err != nil {
		return deleted, fmt.Errorf("publishing the invalidation: %w", err)
	}
	return deleted, nil
}

// Subscribe calls drop with the digest of every token purged anywhere in
// the fleet, until ctx ends. It returns once Redis has confirmed the
// subscription, or after a second if it has not (go-redis keeps trying, and
// re-subscribes after a lost connection).
func (r *Redis) Subscribe(ctx context.Context, drop func(sum [sha256.Size]byte)) {
	ps := r.opts.Client.Subscribe(ctx, r.invalidationChannel())
	confirmCtx, cancel := context.WithTimeout(ctx, time.Second)
	if _, err := ps.Receive(confirmCtx); err != nil {
		r.opts.Logger.Warn("cache invalidations not subscribed yet; retrying in the background", "error", err)
	}
	cancel()
	go func() {
		defer ps.Close()
		ch := ps.Channel()
		for {
			select {
			case <-ctx.Done():
				return
			case m, ok := <-ch:
				if !ok {
					return
				}
				b, err := hex.DecodeString(m.Payload)
				if err != nil || len(b) != sha256.Size {
					r.opts.Logger.Warn("ignoring a malformed cache invalidation")
					continue
				}
				drop([sha256.Size]byte(b))
			}
		}
	}()
}
