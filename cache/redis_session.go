package cache

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"time"

	"github.com/redis/go-redis/v9"
)

// Session bindings in Redis are signed like verdicts: a binding an attacker
// wrote (to hand themselves a session, or to lock a user out of theirs)
// fails its MAC and is replaced by the principal actually using the
// session. The value is MAC || until (unix ms, 8 bytes) || principal.

func (r *Redis) sessionKey(key [sha256.Size]byte) string {
	return r.opts.Prefix + ":session:v1:" + hex.EncodeToString(key[:])
}

func (r *Redis) sessionValue(rk, principal string, until time.Time) []byte {
	payload := binary.BigEndian.AppendUint64(make([]byte, 0, 8+len(principal)), uint64(until.UnixMilli()))
	return r.signer.seal(rk, append(payload, principal...))
}

// openSession returns the principal of a stored binding, or false when the
// value is not one this fleet wrote for rk, has expired, or claims to live
// longer than ttl.
func (r *Redis) openSession(rk string, value []byte, ttl time.Duration, now time.Time) (string, bool) {
	payload, ok := r.signer.open(rk, value)
	if !ok || len(payload) < 8 {
		return "", false
	}
	until := time.UnixMilli(int64(binary.BigEndian.Uint64(payload[:8])))
	if !now.Before(until) || until.After(now.Add(ttl+clockSkew)) {
		return "", false
	}
	return string(payload[8:]), true
}

// BindShared implements SharedSessions: SET NX, and on a taken key the
// stored binding.
func (r *Redis) BindShared(ctx context.Context, key [sha256.Size]byte, principal string, ttl time.Duration) (string, bool) {
	now := time.Now()
	if !r.breaker.allow(now) {
		r.skipped.Add(1)
		return "", false
	}
	ctx, cancel := context.WithTimeout(ctx, r.opts.Timeout)
	defer cancel()
	rk := r.sessionKey(key)
	value := r.sessionValue(rk, principal, now.Add(ttl))
	set, err := r.opts.Client.SetNX(ctx, rk, value, ttl).Result()
	if err != nil {
		r.errs.Add(1)
		r.breaker.failure(time.Now(), err)
		return "", false
	}
	if set {
		r.breaker.success()
		return principal, true
	}
	stored, err := r.opts.Client.Get(ctx, rk).Bytes()
	switch {
	case errors.Is(err, redis.Nil):
		return "", false // expired in between: let this replica decide
	case err != nil:
		r.errs.Add(1)
		r.breaker.failure(time.Now(), err)
		return "", false
	}
	r.breaker.success()
	if bound, ok := r.openSession(rk, stored, ttl, now); ok {
		return bound, true
	}
	// Not a binding of this fleet: replace it with the principal using the
	// session now.
	r.integrity.Add(1)
	if ok, suppressed := r.integrityLog.Allow(time.Now()); ok {
		r.opts.Logger.Warn("replacing a session binding in Redis that fails its integrity check", "suppressed", suppressed)
	}
	if err := r.opts.Client.Set(ctx, rk, value, ttl).Err(); err != nil {
		r.errs.Add(1)
		r.breaker.failure(time.Now(), err)
		return "", false
	}
	return principal, true
}

// RenewShared implements SharedSessions: the binding, which this replica
// knows to be principal's, lives ttl from now.
func (r *Redis) RenewShared(ctx context.Context, key [sha256.Size]byte, principal string, ttl time.Duration) {
	now := time.Now()
	if !r.breaker.allow(now) {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, r.opts.Timeout)
	defer cancel()
	rk := r.sessionKey(key)
	if err := r.opts.Client.Set(ctx, rk, r.sessionValue(rk, principal, now.Add(ttl)), ttl).Err(); err != nil {
		r.errs.Add(1)
		r.breaker.failure(time.Now(), err)
	}
}
