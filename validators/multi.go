package validators

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
)

// FirstActive introspects an opaque token at each authorization server in
// turn, for resources that trust several: the first that knows the token
// decides. A failed server makes an unknown token "unavailable" rather
// than invalid, since that server might have known it.
type FirstActive struct {
	servers     []*Introspection
	fingerprint string
}

// NewFirstActive combines introspection validators, tried in order.
func NewFirstActive(servers ...*Introspection) (*FirstActive, error) {
	if len(servers) == 0 {
		return nil, errors.New("introspection: no servers")
	}
	h := sha256.New()
	for _, s := range servers {
		h.Write([]byte(s.Fingerprint()))
	}
	return &FirstActive{servers: servers, fingerprint: hex.EncodeToString(h.Sum(nil)[:16])}, nil
}

// Fingerprint identifies the combined policy for the verdict cache.
func (m *FirstActive) Fingerprint() string { return m.fingerprint }

// Validate returns the first principal; otherwise the most telling failure:
// unavailable if any server failed, else an answer from a server that knew
// the token (wrong audience, expired), else "not active".
func (m *FirstActive) Validate(ctx context.Context, token string) (*Principal, error) {
	var unavailableErr, knownErr, inactiveErr error
	for _, s := range m.servers {
		p, err := s.Validate(ctx, token)
		if err == nil {
			return p, nil
		}
		var verr *Error
		switch {
		case errors.Is(err, ErrUnavailable):
			unavailableErr = err
		case errors.As(err, &verr) && verr.Description == DescInactive:
			inactiveErr = err
		default:
			knownErr = err
		}
	}
	switch {
	case unavailableErr != nil:
		return nil, unavailableErr
	case knownErr != nil:
		return nil, knownErr
	default:
		return nil, inactiveErr
	}
}
