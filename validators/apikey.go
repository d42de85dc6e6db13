package validators

import (
	"bufio"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
)

// APIKey is one accepted key, stored only as its SHA-256 digest.
type APIKey struct {
	Name   string
	SHA256 [sha256.Size]byte
	Scopes []string
}

// APIKeys validates static API keys, for migrating from the seed's
// APIKeyAuthProvider. Keys are held as digests and compared in constant time.
type APIKeys struct {
	keys        []APIKey
	fingerprint string
}

// NewAPIKeys returns a validator for keys; names must be unique.
func NewAPIKeys(keys []APIKey) (*APIKeys, error) {
	if len(keys) == 0 {
		return nil, errors.New("apikey: no keys")
	}
	h := sha256.New()
	seen := map[string]bool{}
	for _, k := range keys {
		if k.Name == "" {
			return nil, errors.New("apikey: every key needs a name")
		}
		if seen[k.Name] {
			return nil, fmt.Errorf("apikey: name %q used twice", k.Name)
		}
		seen[k.Name] = true
		fmt.Fprintf(h, "%s\x00%x\x00%s\x00", k.Name, k.SHA256, strings.Join(k.Scopes, " "))
	}
	return &APIKeys{keys: slices.Clone(keys), fingerprint: hex.EncodeToString(h.Sum(nil)[:16])}, nil
}

// Fingerprint identifies the key set for the verdict cache.
func (v *APIKeys) Fingerprint() string { return v.fingerprint }

// Validate looks key up. Every stored digest is compared, so the time taken
// does not depend on which key (if any) matched.
func (v *APIKeys) Validate(_ context.Context, key string) (*Principal, error) {
	sum := sha256.Sum256([]byte(key))
	match := -1
	for i := range v.keys {
		if subtle.ConstantTimeCompare(sum[:], v.keys[i].SHA256[:]) == 1 {
			match = i
		}
	}
	if match < 0 {
		return nil, invalid(DescAPIKey, errors.New("no configured key matches"))
	}
	k := &v.keys[match]
	return NewPrincipal(Identity{Subject: k.Name, ClientID: k.Name, Scopes: k.Scopes}), nil
}

// HashAPIKey returns the digest under which a plaintext key is stored.
func HashAPIKey(key string) [sha256.Size]byte { return sha256.Sum256([]byte(key)) }

// ParseAPIKeyDigest reads a hex SHA-256 digest, with or without a
// "sha256:" prefix.
func ParseAPIKeyDigest(s string) ([sha256.Size]byte, error) {
	var d [sha256.Size]byte
	b, err := hex.DecodeString(strings.TrimPrefix(strings.TrimSpace(s), "sha256:"))
	if err != nil || len(b) != sha256.Size {
		return d, errors.New("not a hex SHA-256 digest (64 hex characters)")
	}
	copy(d[:], b)
	return d, nil
}

// ParseAPIKeyFile reads keys, one per line: "NAME SHA256-HEX [SCOPE ...]".
// Blank lines and lines starting with # are skipped.
func ParseAPIKeyFile(r io.Reader) ([]APIKey, error) {
	var keys []APIKey
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Fields(line)
		if len(f) < 2 {
			return nil, fmt.Errorf("line %d: want NAME SHA256-HEX [SCOPE ...]", n)
		}
		d, err := ParseAPIKeyDigest(f[1])
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", n, err)
		}
		keys = append(keys, APIKey{Name: f[0], SHA256: d, Scopes: f[2:]})
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return keys, nil
}
