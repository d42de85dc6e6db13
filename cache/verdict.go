package cache

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"log/slog"
	"sync"
	"time"
	"unsafe"

	"google.golang.org/protobuf/proto"

	cachev1 "github.com/mcp-authz/mcp-authz/proto/mcpauthz/cache/v1"
	"github.com/mcp-authz/mcp-authz/validators"
)

// Verdicts in Redis are untrusted input: anyone who can write to Redis could
// otherwise make any string an allowed token, or deny a valid one. So a
// stored value is
//
//	HMAC-SHA256(secret, label || len(key) || key || verdict) || verdict
//
// where verdict is a marshalled cachev1.Verdict and key the full Redis key,
// which holds the prefix, the schema version, the policy fingerprint and the
// token's digest: a verdict copied under another token's key, another
// policy's or another fleet's prefix fails the MAC. The MAC sits outside the
// message so that it covers the exact bytes read (protobuf encoding is not
// canonical) and nothing is parsed before it is checked.
//
// A value whose MAC fails, that does not decode, an active verdict without
// exp, one that claims to last longer than the reader's TTL (or negative
// TTL), and a key without a Redis TTL or with a longer one, are misses,
// counted as integrity failures and logged (rate-limited): never an allow or
// a denial.

// schemaVersion is written into every stored verdict and, as "v3", into the
// key. Version 1 values were unsigned; version 2 stored a JWT's claims,
// which version 3 reads from the token. Each bump keeps replicas of two
// versions from reading each other's values during a rolling upgrade.
const schemaVersion = 3

// keyVersion is the key's version segment.
const keyVersion = "v3"

// maxClaimsInToken bounds the claims a verdict says its token holds: no
// token that reaches a validator is longer than a gRPC message.
const maxClaimsInToken = 1 << 24

// MinSecretBytes is the shortest verdict secret NewRedis accepts.
const MinSecretBytes = 32

// clockSkew is the allowance for clocks: a verdict may claim to end up to
// this much later than now + the reader's TTL, since the writer's clock may
// run a little ahead of the reader's. NTP keeps hosts far closer than this;
// a second costs nothing in safety next to TTLs of minutes, and a second is
// also the rounding of an exp bound (Unix seconds).
const clockSkew = time.Second

// macLabel separates these MACs from any other use of the same secret.
const macLabel = "mcp-authz cached verdict\x00"

// bounds are the longest a verdict read from the shared tier may claim to
// live: the reading Validator's TTL and NegativeTTL.
type bounds struct {
	ttl, negativeTTL time.Duration
}

// defaultBounds are the Options defaults, for a store read directly rather
// than through a Validator.
var defaultBounds = bounds{ttl: defaultTTL, negativeTTL: defaultNegativeTTL}

// signer MACs verdicts with the fleet's secrets: the first signs, every one
// verifies. It keeps keyed HMAC states in pools, so a MAC costs the hashing
// of the message alone, without allocating.
type signer struct {
	pools []*sync.Pool // of *macState, one pool per secret
}

type macState struct {
	h   hash.Hash
	buf []byte
	out [sha256.Size]byte
}

func newSigner(secrets [][]byte) (*signer, error) {
	if len(secrets) == 0 {
		return nil, errors.New("cache: a verdict secret is required with Redis: its contents are untrusted without one")
	}
	s := &signer{}
	for i, secret := range secrets {
		if len(secret) < MinSecretBytes {
			return nil, fmt.Errorf("cache: verdict secret %d is %d bytes, want at least %d", i+1, len(secret), MinSecretBytes)
		}
		secret := append([]byte(nil), secret...)
		s.pools = append(s.pools, &sync.Pool{New: func() any {
			return &macState{h: hmac.New(sha256.New, secret), buf: make([]byte, 0, 256)}
		}})
	}
	return s, nil
}

// sum computes the MAC of (key, payload) with secret i into dst.
func (s *signer) sum(i int, dst *[sha256.Size]byte, key string, payload []byte) {
	st := s.pools[i].Get().(*macState)
	st.buf = append(st.buf[:0], macLabel...)
	st.buf = binary.BigEndian.AppendUint32(st.buf, uint32(len(key)))
	st.buf = append(st.buf, key...)
	st.h.Write(st.buf)
	st.h.Write(payload)
	*dst = [sha256.Size]byte(st.h.Sum(st.out[:0]))
	st.h.Reset()
	s.pools[i].Put(st)
}

// seal returns the stored value of payload under key.
func (s *signer) seal(key string, payload []byte) []byte {
	var mac [sha256.Size]byte
	s.sum(0, &mac, key, payload)
	return append(mac[:], payload...)
}

// open returns the payload of value if its MAC verifies under any secret.
func (s *signer) open(key string, value []byte) ([]byte, bool) {
	if len(value) < sha256.Size {
		return nil, false
	}
	mac, payload := value[:sha256.Size], value[sha256.Size:]
	var want [sha256.Size]byte
	for i := range s.pools {
		s.sum(i, &want, key, payload)
		if hmac.Equal(mac, want[:]) {
			return payload, true
		}
	}
	return nil, false
}

// encodeVerdict marshals e, which ends at e.until. A principal without exp
// (an API key) gets the end of the cache entry as its exp bound, so that
// every active verdict carries one, and the flag that says so.
func encodeVerdict(e Entry) ([]byte, error) {
	v := &cachev1.Verdict{SchemaVersion: schemaVersion, CachedUntilMs: e.until.UnixMilli()}
	if p := e.Principal; p != nil {
		v.Active = true
		v.Subject, v.ClientId, v.Issuer = p.Subject(), p.ClientID(), p.Issuer()
		if n, inToken := p.ClaimsSize(); inToken {
			v.ClaimsInToken, v.ClaimsDigest = uint32(n), p.ClaimsDigest()
		} else {
			v.Claims = p.Claims("")
		}
		v.Scopes = p.Scopes()
		if exp := p.ExpiresAt(); exp.IsZero() {
			v.ExpiresAt = (v.CachedUntilMs + 999) / 1000 // rounded up: never earlier than the entry's end
			v.ExpIsCacheBound = true
		} else {
			v.ExpiresAt = exp.Unix()
		}
	} else if e.Err != nil {
		v.ErrorDescription = e.Err.Description
	}
	return proto.Marshal(v)
}

// Integrity failure reasons, for the log.
const (
	reasonNoTTL     = "key has no TTL"
	reasonLongTTL   = "key TTL longer than the configured TTL"
	reasonMAC       = "MAC does not verify"
	reasonDecode    = "value does not decode"
	reasonNoExp     = "active verdict without exp"
	reasonLongLived = "verdict claims to live longer than the configured TTL"
)

// openVerdict checks and decodes the value stored under key, whose Redis
// TTL is pttl (as PTTL reports it), at now. It returns the entry, or a miss
// with the reason when the value fails an integrity check; a miss without
// a reason is an ordinary one (the entry ended, or the key went away).
// Cheap checks come before the MAC, and the MAC before any parsing.
func (s *signer) openVerdict(key string, value []byte, pttl time.Duration, now time.Time, b bounds) (Entry, bool, string) {
	switch {
	case pttl == -2: // deleted between GET and PTTL
		return Entry{}, false, ""
	case pttl < 0:
		return Entry{}, false, reasonNoTTL
	case pttl > max(b.ttl, b.negativeTTL)+clockSkew:
		return Entry{}, false, reasonLongTTL
	}
	payload, ok := s.open(key, value)
	if !ok {
		return Entry{}, false, reasonMAC
	}
	var v cachev1.Verdict
	if err := proto.Unmarshal(payload, &v); err != nil || v.SchemaVersion != schemaVersion {
		return Entry{}, false, reasonDecode
	}
	until := time.UnixMilli(v.CachedUntilMs)
	if !now.Before(until) {
		return Entry{}, false, ""
	}
	limit := max(b.negativeTTL, 0)
	if v.Active {
		limit = b.ttl
	}
	if pttl > limit+clockSkew {
		return Entry{}, false, reasonLongTTL
	}
	if until.After(now.Add(limit + clockSkew)) {
		return Entry{}, false, reasonLongLived
	}
	if !v.Active {
		return Entry{until: until, Err: &validators.Error{Kind: validators.ErrInvalidToken, Description: v.ErrorDescription}}, true, ""
	}
	if v.ExpiresAt <= 0 {
		return Entry{}, false, reasonNoExp
	}
	exp := time.Unix(v.ExpiresAt, 0)
	id := validators.Identity{Subject: v.Subject, ClientID: v.ClientId, Issuer: v.Issuer, Scopes: v.Scopes}
	if v.ClaimsInToken > 0 {
		if v.Claims != "" || v.ClaimsInToken > maxClaimsInToken || v.ClaimsDigest == 0 {
			return Entry{}, false, reasonDecode
		}
		id.ClaimsInToken, id.ClaimsDigest = int(v.ClaimsInToken), v.ClaimsDigest
	} else {
		claims, err := base64.RawURLEncoding.DecodeString(v.Claims)
		if err != nil {
			return Entry{}, false, reasonDecode
		}
		id.ClaimsJSON = unsafe.String(unsafe.SliceData(claims), len(claims)) // claims is this decoding's own
	}
	if !v.ExpIsCacheBound {
		id.ExpiresAt = exp
	}
	if exp.Before(until) {
		until = exp
		if !now.Before(until) {
			// Its principal's exp has passed. A replica never stores one
			// (its entry ends by exp), but a verdict whose exp only bounds
			// the entry (an API key's) would otherwise be read as one that
			// never expires (FuzzOpenVerdict).
			return Entry{}, false, ""
		}
	}
	return Entry{until: until, Principal: validators.NewPrincipal(id)}, true, ""
}

// integrityFailure counts and logs a value that failed its checks. The log
// names the policy and the first 8 hex digits of the token's digest, as
// denials do; never the value or the token.
func (r *Redis) integrityFailure(k Key, reason string) {
	r.integrity.Add(1)
	if ok, suppressed := r.integrityLog.Allow(time.Now()); ok {
		r.opts.Logger.Warn("ignoring a cached verdict in Redis that fails its integrity check",
			slog.String("reason", reason), slog.String("policy", k.Policy),
			slog.String("token_sha256", fmt.Sprintf("%x", k.Token[:4])), slog.Int64("suppressed", suppressed))
	}
}
