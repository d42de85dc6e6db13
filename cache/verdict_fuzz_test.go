package cache

import (
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	cachev1 "github.com/mcp-authz/mcp-authz/proto/mcpauthz/cache/v1"
	"github.com/mcp-authz/mcp-authz/validators"
)

// FuzzOpenVerdict: whatever Redis holds under a key, as it is (anyone who
// can write to Redis) or sealed with the fleet's secret (what a replica
// wrote, or a decoder's worst case), reading it never panics, and what it
// gives is within the bounds DESIGN §7 sets: a verdict that has not ended,
// lives no longer than the configured TTL (negative TTL for a refusal),
// and an active one that names its principal's exp.
func FuzzOpenVerdict(f *testing.F) {
	now := time.Unix(1_800_000_000, 0)
	b := bounds{ttl: 5 * time.Minute, negativeTTL: 5 * time.Second}
	s, err := newSigner([][]byte{[]byte("fuzz-secret-fuzz-secret-fuzz-sec")})
	if err != nil {
		f.Fatal(err)
	}
	seed := func(v *cachev1.Verdict) []byte {
		p, _ := proto.Marshal(v)
		return p
	}
	until := now.Add(time.Minute).UnixMilli()
	f.Add(seed(&cachev1.Verdict{SchemaVersion: schemaVersion, CachedUntilMs: until, Active: true, Subject: "s", Scopes: []string{"a"}, ExpiresAt: now.Add(time.Hour).Unix()}), int64(60_000), true)
	f.Add(seed(&cachev1.Verdict{SchemaVersion: schemaVersion, CachedUntilMs: until, Active: true, ClaimsInToken: 12, ClaimsDigest: 7, ExpiresAt: now.Add(time.Hour).Unix()}), int64(60_000), true)
	f.Add(seed(&cachev1.Verdict{SchemaVersion: schemaVersion, CachedUntilMs: now.Add(2 * time.Second).UnixMilli(), ErrorDescription: "Token has expired"}), int64(2_000), true)
	f.Add(seed(&cachev1.Verdict{SchemaVersion: schemaVersion, CachedUntilMs: until, Active: true, Claims: "e30", ExpIsCacheBound: true, ExpiresAt: now.Add(time.Minute).Unix()}), int64(60_000), true)
	f.Add([]byte("not a verdict"), int64(1_000), false)
	f.Fuzz(func(t *testing.T, payload []byte, pttlMs int64, sealed bool) {
		key := "p:0123"
		value := payload
		if sealed {
			value = s.seal(key, payload)
		}
		e, ok, reason := s.openVerdict(key, value, time.Duration(pttlMs)*time.Millisecond, now, b)
		if !ok {
			if e.Principal != nil || e.Err != nil {
				t.Fatalf("a miss (%q) carrying a verdict", reason)
			}
			return
		}
		if !sealed {
			t.Fatal("a value without the fleet's MAC was read as a verdict")
		}
		if !e.until.After(now) {
			t.Fatalf("a verdict that ended at %v read at %v", e.until, now)
		}
		limit := b.negativeTTL
		if e.Principal != nil {
			limit = b.ttl
		}
		if e.until.After(now.Add(limit + clockSkew)) {
			t.Fatalf("a verdict living until %v, past the bound %v", e.until, limit)
		}
		switch {
		case e.Principal != nil && e.Err != nil, e.Principal == nil && e.Err == nil:
			t.Fatalf("a verdict that is both or neither: %+v", e)
		case e.Err != nil && e.Err.Kind != validators.ErrInvalidToken:
			t.Fatalf("a cached refusal of kind %v", e.Err.Kind)
		case e.Principal != nil:
			if exp := e.Principal.ExpiresAt(); !exp.IsZero() && e.until.After(exp) {
				t.Fatalf("a verdict outliving its principal's exp: until %v, exp %v", e.until, exp)
			}
			_ = e.Principal.Claims("")
		}
	})
}

// TestOpenVerdictPastExpIsAMiss: a sealed verdict whose exp has passed
// while its entry has not is a miss, also when exp only bounds the entry
// (ExpIsCacheBound, an API key's), which the Validator's own exp check
// cannot see. Found by FuzzOpenVerdict.
func TestOpenVerdictPastExpIsAMiss(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	s, _ := newSigner([][]byte{[]byte("fuzz-secret-fuzz-secret-fuzz-sec")})
	for _, bound := range []bool{false, true} {
		p, _ := proto.Marshal(&cachev1.Verdict{SchemaVersion: schemaVersion, CachedUntilMs: now.Add(time.Minute).UnixMilli(),
			Active: true, Subject: "s", ExpiresAt: now.Add(-time.Second).Unix(), ExpIsCacheBound: bound})
		if e, ok, _ := s.openVerdict("k", s.seal("k", p), time.Minute, now, bounds{ttl: 5 * time.Minute}); ok {
			t.Fatalf("ExpIsCacheBound=%v: read as a verdict until %v", bound, e.until)
		}
	}
}
