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
)

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
	// opens; it doubles while Redis keeps failing, up to 30 s. Zero means
	// 1 s. While the breaker is open a background ping closes it as soon as
	// Redis answers again after an outage, without waiting the period out.
	Backoff time.Duration
	// Secrets are the fleet's verdict secrets (HMAC-SHA256 keys), each at
	// least MinSecretBytes long. The first signs every verdict written;
	// each one verifies, so a secret is rotated by deploying [new, old]
	// everywhere, then [new] once every replica signs with it. Required:
	// Redis's contents are untrusted.
	Secrets [][]byte
	Logger  *slog.Logger
}

// RedisStats are cumulative counters of the Redis tier, and the state of
// its breaker.
type RedisStats struct {
	Hits, Misses, Errors, Skipped, Sets int64
	// LockWaits counts validations that found another replica holding the
	// lock and waited for its verdict.
	LockWaits int64
	// IntegrityFailures counts values read from Redis that failed their
	// integrity checks (MAC, decoding, exp, lifetime, key TTL): each was a
	// miss.
	IntegrityFailures int64
	// Up is false while the breaker is open or half-open: the tier is
	// skipped, or on probation.
	Up bool
	// Backoff is the current back-off period; zero while Redis is up.
	Backoff time.Duration
}

// Redis stores verdicts in Redis as signed cachev1.Verdict messages
// (verdict.go). It is never on the critical path for correctness: every
// error is a miss, and after repeated errors the tier is skipped until
// Redis answers again, so a Redis outage adds no per-request latency.
//
// Only verdicts are signed. The stampede lock keys hold random owner ids:
// a forged or deleted lock makes replicas wait up to LockWait or validate
// once more, never decides. A forged purge on the invalidation channel
// drops in-process copies, which costs a Redis read or a validation: no
// worse than what anyone who can write to Redis can do by deleting keys.
type Redis struct {
	opts         RedisOptions
	breaker      breaker
	signer       *signer
	integrityLog logLimiter

	hits, misses, errs, skipped, sets, lockWaits, integrity atomic.Int64
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
	signer, err := newSigner(opts.Secrets)
	if err != nil {
		return nil, err
	}
	opts.Secrets = nil // the signer keeps its own copies
	r := &Redis{opts: opts, signer: signer, integrityLog: logLimiter{period: 10 * time.Second}}
	r.breaker.threshold = int32(opts.FailureThreshold)
	r.breaker.initial = opts.Backoff
	r.breaker.log = opts.Logger
	r.breaker.interval = probeInterval
	r.breaker.ping = func() error {
		ctx, cancel := context.WithTimeout(context.Background(), opts.Timeout)
		defer cancel()
		return opts.Client.Ping(ctx).Err()
	}
	return r, nil
}

// Stats returns the counters and the breaker's state.
func (r *Redis) Stats() RedisStats {
	up, backoff := r.breaker.state()
	return RedisStats{Hits: r.hits.Load(), Misses: r.misses.Load(), Errors: r.errs.Load(), Skipped: r.skipped.Load(),
		Sets: r.sets.Load(), LockWaits: r.lockWaits.Load(), IntegrityFailures: r.integrity.Load(), Up: up, Backoff: backoff}
}

// redisKey is "<prefix>:v<schema>:<policy>:<sha256 hex>".
func (r *Redis) redisKey(k Key) string {
	return r.opts.Prefix + ":" + keyVersion + ":" + k.String()
}

// Get implements Store. It accepts verdicts that claim to live no longer
// than the Options defaults (5 min, 5 s); a caching Validator reads through
// a view bounded by its own TTLs instead (see New).
func (r *Redis) Get(ctx context.Context, k Key) (Entry, bool) {
	return r.get(ctx, k, defaultBounds)
}

// bounded implements boundable.
func (r *Redis) bounded(b bounds) Store { return &boundedRedis{Redis: r, b: b} }

// boundedRedis is the Redis tier as a Validator with its own TTLs reads it.
type boundedRedis struct {
	*Redis
	b bounds
}

func (r *boundedRedis) Get(ctx context.Context, k Key) (Entry, bool) { return r.get(ctx, k, r.b) }

func (r *Redis) get(ctx context.Context, k Key, b bounds) (Entry, bool) {
	if !r.breaker.allow(time.Now()) {
		r.skipped.Add(1)
		return Entry{}, false
	}
	ctx, cancel := context.WithTimeout(ctx, r.opts.Timeout)
	defer cancel()
	key := r.redisKey(k)
	// One round trip: the value and its TTL, since a key without one (or
	// with a longer one than any verdict gets) was not written by a replica.
	pipe := r.opts.Client.Pipeline()
	get := pipe.Get(ctx, key)
	pttl := pipe.PTTL(ctx, key)
	_, _ = pipe.Exec(ctx)
	value, err := get.Bytes()
	switch {
	case errors.Is(err, redis.Nil):
		r.breaker.success()
		r.misses.Add(1)
		return Entry{}, false
	case redis.HasErrorPrefix(err, "WRONGTYPE"):
		// Not a string: not ours, and not Redis failing.
		r.breaker.success()
		r.misses.Add(1)
		r.integrityFailure(k, reasonDecode)
		return Entry{}, false
	case err == nil:
		err = pttl.Err()
	}
	if err != nil {
		r.errs.Add(1)
		r.breaker.failure(time.Now(), err)
		return Entry{}, false
	}
	r.breaker.success()
	e, ok, reason := r.signer.openVerdict(key, value, pttl.Val(), time.Now(), b)
	if !ok {
		r.misses.Add(1)
		if reason != "" {
			r.integrityFailure(k, reason)
		}
		return Entry{}, false
	}
	r.hits.Add(1)
	return e, true
}

// Set implements Store. Every key gets a TTL: nothing is kept for ever.
func (r *Redis) Set(ctx context.Context, k Key, e Entry, ttl time.Duration) {
	if ttl <= 0 || !r.breaker.allow(time.Now()) {
		return
	}
	e.until = time.Now().Add(ttl)
	payload, err := encodeVerdict(e)
	if err != nil {
		return
	}
	key := r.redisKey(k)
	ctx, cancel := context.WithTimeout(ctx, r.opts.Timeout)
	defer cancel()
	if err := r.opts.Client.Set(ctx, key, r.signer.seal(key, payload), ttl).Err(); err != nil {
		r.errs.Add(1)
		r.breaker.failure(time.Now(), err)
		return
	}
	r.sets.Add(1)
	r.breaker.success()
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
	// v1 too: unsigned verdicts of replicas not yet upgraded.
	pattern := r.opts.Prefix + ":v[12]:*:" + hexSum
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
