package cache

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/mcp-authz/mcp-authz/internal/loglimit"

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
	// FleetTimeout bounds each call a replica makes while a fresh token
	// waits for the fleet's verdict (the lock and the looks at it): the
	// alternative to waiting is a validation, and under a burst of fresh
	// tokens calls take longer than Timeout. Zero means the larger of
	// Timeout and 100 ms.
	FleetTimeout time.Duration
	// FailureThreshold consecutive errors open the breaker. Zero means 3.
	FailureThreshold int
	// Backoff is the first period the tier is skipped once the breaker
	// opens; it doubles while Redis keeps failing, up to MaxBackoff. Zero
	// means 1 s. While the breaker is open a background ping closes it as
	// soon as Redis answers again after an outage, without waiting the
	// period out.
	Backoff time.Duration
	// MaxBackoff caps the back-off. Zero means 30 s.
	MaxBackoff time.Duration
	// ProbeInterval is how often the open breaker pings Redis. Zero means
	// 250 ms.
	ProbeInterval time.Duration
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
	opts                          RedisOptions
	batch                         *batcher
	breaker                       breaker
	signer                        *signer
	integrityLog, invalidationLog loglimit.Limiter

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
	if opts.FleetTimeout <= 0 {
		opts.FleetTimeout = max(opts.Timeout, 100*time.Millisecond)
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
	r := &Redis{opts: opts, signer: signer, integrityLog: loglimit.Limiter{Every: 10 * time.Second},
		invalidationLog: loglimit.Limiter{Every: 10 * time.Second},
		batch:           newBatcher(opts.Client, max(10*opts.Timeout, time.Second))}
	// Redis answering a pipeline is a success, whether or not the callers
	// whose calls it carried were still waiting.
	r.batch.answered = r.breaker.success
	if opts.ProbeInterval <= 0 {
		opts.ProbeInterval = probeInterval
	}
	r.breaker.threshold = int32(opts.FailureThreshold)
	r.breaker.initial = opts.Backoff
	r.breaker.max = opts.MaxBackoff
	r.breaker.quiet = max(5*opts.Timeout, time.Second)
	r.breaker.log = opts.Logger
	r.breaker.interval = opts.ProbeInterval
	// A new client has not failed yet: its first timeouts are treated as
	// a busy Redis's, like any others within quiet of an answer.
	r.breaker.lastSuccess.Store(time.Now().UnixNano())
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
	key, _ := r.keys(k)
	return key
}

// keys returns k's verdict key (redisKey) and the key of the lock on
// validating k, "{<verdict key>}:lock", whose hash tag puts it in the
// verdict's Cluster slot, so that a pipeline touching both runs in order
// on one node. Both come from one allocation: the verdict key is part of
// the lock key's bytes. Every fresh token needs both, twice.
func (r *Redis) keys(k Key) (key, lockKey string) {
	const lockSuffix = "}:lock"
	b := make([]byte, 0, 1+len(r.opts.Prefix)+1+len(keyVersion)+1+len(k.Policy)+1+2*len(k.Token)+len(lockSuffix))
	b = append(b, '{')
	b = append(b, r.opts.Prefix...)
	b = append(b, ':')
	b = append(b, keyVersion...)
	b = append(b, ':')
	b = append(b, k.Policy...)
	b = append(b, ':')
	b = hex.AppendEncode(b, k.Token[:])
	b = append(b, lockSuffix...)
	// b is never written again: the strings may share its bytes.
	lockKey = unsafe.String(unsafe.SliceData(b), len(b))
	return lockKey[1 : len(lockKey)-len(lockSuffix)], lockKey
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
	key := r.redisKey(k)
	// One round trip: the value and its TTL, since a key without one (or
	// with a longer one than any verdict gets) was not written by a replica.
	var get *redis.StringCmd
	var pttl *redis.DurationCmd
	if err := r.batch.run(ctx, r.opts.Timeout, func(ctx context.Context, p redis.Pipeliner) {
		get, pttl = p.Get(ctx, key), p.PTTL(ctx, key)
	}); err != nil {
		r.noAnswer(err)
		return Entry{}, false
	}
	return r.open(k, key, get, pttl, b, true)
}

// noAnswer counts a call that got no answer in time.
func (r *Redis) noAnswer(err error) {
	r.errs.Add(1)
	r.breaker.failure(time.Now(), err)
}

// open checks and decodes the answers to GET and PTTL of a verdict's key.
// report counts and logs a value that fails its checks (a caller that has
// just read it, and reported it, reads it again without).
func (r *Redis) open(k Key, key string, get *redis.StringCmd, pttl *redis.DurationCmd, b bounds, report bool) (Entry, bool) {
	value, err := get.Bytes()
	if err == nil {
		err = pttl.Err()
	}
	return r.openValue(k, key, value, err, pttl.Val(), b, report)
}

// openValue is open with the answers as values: the verdict's bytes or
// the error reading them, and its PTTL.
func (r *Redis) openValue(k Key, key string, value []byte, err error, pttl time.Duration, b bounds, report bool) (Entry, bool) {
	switch {
	case errors.Is(err, redis.Nil):
		r.breaker.success()
		r.misses.Add(1)
		return Entry{}, false
	case redis.HasErrorPrefix(err, "WRONGTYPE"):
		// Not a string: not ours, and not Redis failing.
		r.breaker.success()
		r.misses.Add(1)
		if report {
			r.integrityFailure(k, reasonDecode)
		}
		return Entry{}, false
	}
	if err != nil {
		r.errs.Add(1)
		r.breaker.failure(time.Now(), err)
		return Entry{}, false
	}
	r.breaker.success()
	e, ok, reason := r.signer.openVerdict(key, value, pttl, time.Now(), b)
	if !ok {
		r.misses.Add(1)
		if reason != "" && report {
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
	value := r.signer.seal(key, payload)
	var set *redis.StatusCmd
	err = r.batch.run(ctx, r.opts.Timeout, func(ctx context.Context, p redis.Pipeliner) { set = p.Set(ctx, key, value, ttl) })
	if err == nil {
		err = set.Err()
	}
	if err != nil {
		r.noAnswer(err)
		return
	}
	r.sets.Add(1)
	r.breaker.success()
}

// acquireScript is a fresh token's turn in one round trip: the verdict if
// there is one (with its PTTL); else the lock for ARGV[1] (for ARGV[2]
// milliseconds) if it is free or already ARGV[1]'s; else who holds it.
// ARGV[3] "1" takes the lock whatever the verdict (the caller found it
// unusable). It answers {1, verdict, pttl}, {2} (the lock is the
// caller's), {3, holder}, or {4} when the verdict's key holds something
// other than a string; with {2} and {3} the verdict's key was empty.
// Scripts must name every key they touch, and both keys share a Cluster
// slot (lockKey). Sent whole (EVAL): a pipeline cannot retry an EVALSHA
// that Redis does not know, and Redis caches the compiled script anyway.
const acquireScript = `local v = redis.pcall("GET", KEYS[1])
if type(v) == "string" and ARGV[3] ~= "1" then
  return {1, v, redis.call("PTTL", KEYS[1])}
end
if type(v) == "table" and v.err and ARGV[3] ~= "1" then
  return {4}
end
local h = redis.call("GET", KEYS[2])
if h == ARGV[1] then
  return {2}
end
if not h then
  redis.call("SET", KEYS[2], ARGV[1], "PX", ARGV[2])
  return {2}
end
return {3, h}`

// fleetAcquire takes a fresh token's turn (acquireScript): the fleet's
// verdict (found), or the lock for owner (LockHeld), or who holds it
// (LockBusy), or no answer in time (LockUnknown, and the error), or
// nothing because the tier is being skipped (LockSkipped). A second call
// with the same owner after an unanswered one finds out whether the first
// took the lock. It waits for Redis for FleetTimeout. The lock only saves
// calls: it never decides.
//
// The Redis tier is a Locker behind an in-process tier (Tiered), whose
// methods call this; alone, it is a plain Store.
func (r *Redis) fleetAcquire(ctx context.Context, k Key, owner string, ttl time.Duration, force bool) (LockState, Entry, bool, error) {
	return r.acquire(ctx, k, owner, ttl, force, defaultBounds)
}

func (r *boundedRedis) fleetAcquire(ctx context.Context, k Key, owner string, ttl time.Duration, force bool) (LockState, Entry, bool, error) {
	return r.acquire(ctx, k, owner, ttl, force, r.b)
}

func (r *Redis) acquire(ctx context.Context, k Key, owner string, ttl time.Duration, force bool, b bounds) (LockState, Entry, bool, error) {
	if !r.breaker.allow(time.Now()) {
		r.skipped.Add(1)
		return LockSkipped, Entry{}, false, errSkipped
	}
	key, lockKey := r.keys(k)
	forced := "0"
	if force {
		forced = "1"
	}
	var cmd *redis.Cmd
	err := r.batch.run(ctx, r.opts.FleetTimeout, func(ctx context.Context, p redis.Pipeliner) {
		cmd = p.Eval(ctx, acquireScript, []string{key, lockKey}, owner, max(ttl.Milliseconds(), 1), forced)
	})
	var reply []any
	if err == nil {
		reply, err = cmd.Slice()
	}
	if err == nil && len(reply) == 0 {
		err = errors.New("redis: empty answer to the acquire script")
	}
	if err != nil {
		r.noAnswer(err)
		return LockUnknown, Entry{}, false, err
	}
	r.breaker.success()
	kind, _ := reply[0].(int64)
	switch {
	case kind == 1 && len(reply) == 3:
		value, _ := reply[1].(string)
		pttl, _ := reply[2].(int64)
		// A verdict that fails its checks is a miss: the caller asks
		// again, forcing the lock.
		e, ok := r.openValue(k, key, []byte(value), nil, time.Duration(pttl)*time.Millisecond, b, true)
		return LockUnknown, e, ok, nil
	case kind == 4:
		r.misses.Add(1)
		r.integrityFailure(k, reasonDecode)
		return LockUnknown, Entry{}, false, nil
	case kind == 2:
		r.misses.Add(1)
		return LockHeld, Entry{}, false, nil
	case kind == 3:
		r.misses.Add(1)
		r.lockWaits.Add(1)
		holder, _ := reply[1].(string)
		if holder == "" {
			return LockUnknown, Entry{}, false, nil
		}
		return LockBusy, Entry{}, false, nil
	}
	err = fmt.Errorf("redis: unexpected answer %v to the acquire script", reply)
	r.noAnswer(err)
	return LockUnknown, Entry{}, false, err
}

// releaseScript deletes a lock only if this caller still holds it. It is
// sent whole (EVAL, not EVALSHA): in a pipeline there is no retrying
// after NOSCRIPT, and it is short.
const releaseScript = `if redis.call("get", KEYS[1]) == ARGV[1] then return redis.call("del", KEYS[1]) else return 0 end`

// fleetRelease stores e for ttl (when ttl > 0) and gives the lock on k
// back if owner still holds it, in one pipeline sent in the background:
// the verdict is written before the lock goes, so a replica that finds
// the lock free finds the verdict too.
func (r *Redis) fleetRelease(_ context.Context, k Key, owner string, e Entry, ttl time.Duration) {
	if !r.breaker.allow(time.Now()) {
		return // the lock expires on its own
	}
	key, lockKey := r.keys(k)
	var value []byte
	if ttl > 0 {
		e.until = time.Now().Add(ttl)
		if payload, err := encodeVerdict(e); err == nil {
			value = r.signer.seal(key, payload)
		}
	}
	r.batch.send(func(ctx context.Context, p redis.Pipeliner) {
		if value != nil {
			p.Set(ctx, key, value, ttl)
		}
		p.Eval(ctx, releaseScript, []string{lockKey}, owner)
	}, func(cmds []redis.Cmder) {
		for _, c := range cmds {
			if err := c.Err(); err != nil && !errors.Is(err, redis.Nil) {
				r.noAnswer(err)
				return
			}
		}
		if value != nil {
			r.sets.Add(1)
		}
		r.breaker.success()
	})
}

// errSkipped: the tier is being skipped (the breaker is open).
var errSkipped = errors.New("redis tier skipped")

// invalidationChannel carries the hex SHA-256 of purged tokens.
func (r *Redis) invalidationChannel() string { return r.opts.Prefix + ":invalidate" }

// Purge removes every verdict about the token with digest sum, under every
// policy, and tells every replica to drop its in-process copy. It returns
// how many keys were deleted.
func (r *Redis) Purge(ctx context.Context, sum [sha256.Size]byte) (int, error) {
	hexSum := hex.EncodeToString(sum[:])
	// Every version's: the verdicts of replicas not yet upgraded too.
	pattern := r.opts.Prefix + ":v[0-9]*:" + hexSum
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
					// Anyone who can publish on the channel can send these:
					// one line per interval, not one per message.
					if ok, suppressed := r.invalidationLog.Allow(time.Now()); ok {
						r.opts.Logger.Warn("ignoring a malformed cache invalidation", "suppressed", suppressed)
					}
					continue
				}
				drop([sha256.Size]byte(b))
			}
		}
	}()
}
