package validators

import (
	"encoding/base64"
	"strings"
	"sync"
	"testing"
	"unsafe"
)

// Red-team attacks on the principal of a JWT that keeps no claims
// (f2daad1) and on its memo (c089c38). A test that passes documents a
// defence.

// TestRedteamClaimsOfOddTokens: Claims of a principal whose claims are in
// the token, given tokens of every odd shape: it never panics, returns the
// payload segment only when it is the token's own (its length and
// digest), and never returns a part of the token itself (a copy: keeping
// it must not pin, or alias, the request buffer).
func TestRedteamClaimsOfOddTokens(t *testing.T) {
	json := `{"sub":"alice","iss":"https://as.example"}`
	seg := base64.RawURLEncoding.EncodeToString([]byte(json))
	p := NewPrincipal(Identity{Subject: "alice", Issuer: "https://as.example", ClaimsInToken: len(json), ClaimsDigest: PayloadDigest(seg)})
	other := strings.Repeat("A", len(seg)) // the right length, another token's bytes
	tests := []struct {
		name, token, want string
	}{
		{"the token", "h." + seg + ".s", seg},
		{"empty", "", ""},
		{"no dot", seg, ""},
		{"one dot, payload last", "h." + seg, seg}, // Claims only splits; the validator refused this token
		{"empty payload", "h..s", ""},
		{"leading dot", "." + seg + ".", seg},
		{"four segments", "h." + seg + ".s.x", seg},
		{"payload one byte short", "h." + seg[1:] + ".s", ""},
		{"payload one byte long", "h." + seg + "A.s", ""},
		{"multi-byte runes", "h." + strings.Repeat("é", len(seg)/2) + ".s", ""},
		// Whatever token a caller passes, only the principal's own
		// token's claims come back (authz passes the token the verdict
		// was found by, its SHA-256; the digest makes it not matter).
		{"another token of the same length", "h." + other + ".s", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := p.Claims(tt.token)
			if got != tt.want {
				t.Fatalf("Claims(%q) = %q, want %q", tt.token, got, tt.want)
			}
			if got != "" {
				start := uintptr(unsafe.Pointer(unsafe.StringData(tt.token)))
				at := uintptr(unsafe.Pointer(unsafe.StringData(got)))
				if at >= start && at < start+uintptr(len(tt.token)) {
					t.Fatal("Claims returned a part of the token, not a copy")
				}
			}
		})
	}
}

// TestRedteamClaimsWithoutToken: principals that keep their claims, or
// have none, answer alike whatever token they are given, and a principal
// given both ClaimsJSON and ClaimsInToken keeps neither the JSON nor
// anything pointing into it.
func TestRedteamClaimsWithoutToken(t *testing.T) {
	for _, tt := range []struct {
		name string
		id   Identity
		want string
	}{
		{"no claims", Identity{Subject: "s"}, ""},
		{"nothing at all", Identity{}, ""},
		{"kept claims", Identity{Subject: "s", ClaimsJSON: `{"sub":"s"}`}, base64.RawURLEncoding.EncodeToString([]byte(`{"sub":"s"}`))},
	} {
		p := NewPrincipal(tt.id)
		for _, tok := range []string{"", "a.b.c", "h." + strings.Repeat("x", 100) + ".s"} {
			if got := p.Claims(tok); got != tt.want {
				t.Errorf("%s: Claims(%q) = %q, want %q", tt.name, tok, got, tt.want)
			}
		}
	}
	json := `{"sub":"s","iss":"i"}`
	p := NewPrincipal(Identity{Subject: "s", Issuer: "i", ClaimsJSON: json, ClaimsInToken: len(json)})
	if p.ClaimsJSON() != "" {
		t.Fatalf("ClaimsJSON kept beside ClaimsInToken: %q", p.ClaimsJSON())
	}
	if _, data := p.Size(); data != len("si") {
		t.Fatalf("principal data is %d bytes, want the identity values alone", data)
	}
	if p.Subject() != "s" || p.Issuer() != "i" {
		t.Fatalf("identity %q %q", p.Subject(), p.Issuer())
	}
}

// TestRedteamMemoUnderConcurrentKeys: two routes share a principal (two
// resources with one validation policy share cached verdicts) and a
// reload swaps keys, all at once: whatever the interleaving, Memo returns
// a value computed for the key asked, never another key's.
func TestRedteamMemoUnderConcurrentKeys(t *testing.T) {
	type val struct {
		Kept
		key string
	}
	p := NewPrincipal(Identity{Subject: "s"})
	keys := []string{"route-a", "route-b", "reloaded-a", "reloaded-b"}
	var values sync.Map // *Kept -> the *val it heads
	var wg sync.WaitGroup
	errs := make(chan string, len(keys))
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 2000 {
				k := keys[(g+i)%len(keys)]
				v := p.Memo(k, func() *Kept {
					made := &val{key: k}
					values.Store(&made.Kept, made)
					return &made.Kept
				})
				if v == nil {
					continue // a first use
				}
				got := "an unknown value"
				if made, ok := values.Load(v); ok {
					got = made.(*val).key
				}
				if got != k {
					select {
					case errs <- "Memo(" + k + ") returned " + got + "'s value":
					default:
					}
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
}
