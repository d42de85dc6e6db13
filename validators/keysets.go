package validators

import (
	"context"
	"errors"
	"sync"
)

// KeySets is a registry of RemoteKeySets: one JWKS cache per (issuer, JWKS
// URI), shared by every validator that names it, so ten resources trusting
// one issuer cost one fetch per refresh, not ten.
//
// Construct one per process and pass it in every JWTConfig. It outlives
// any one set of validators: on a configuration reload, build the new
// validators first (an unchanged issuer's key set is found and retained,
// already loaded), swap them in, then Close the old ones. Key sets are
// reference counted: each JWT validator retains its issuers' key sets and
// releases them on Close, and a key set that nobody retains any more stops
// refreshing at once and is forgotten.
//
// A key set is identified by its Issuer and its configured JWKSURI (empty
// when discovered): an issuer named with its JWKS URI by one resource and
// through discovery by another has two key sets. When validators ask for
// the same key set with different settings, the shortest RefreshInterval
// applies (the freshest anyone asked for; it is not raised again while the
// key set lives); every other setting (Client, MinRefreshInterval,
// RefreshWait, FetchTimeout, Logger) is the first caller's.
type KeySets struct {
	ctx context.Context

	mu   sync.Mutex
	sets map[keySetID]*keySetEntry
	ids  map[*RemoteKeySet]keySetID
}

type keySetID struct{ issuer, jwksURI string }

type keySetEntry struct {
	ks   *RemoteKeySet
	refs int
}

// NewKeySets returns an empty registry. The key sets it starts refresh in
// the background until they are released for the last time or ctx ends.
func NewKeySets(ctx context.Context) *KeySets {
	return &KeySets{ctx: ctx, sets: map[keySetID]*keySetEntry{}, ids: map[*RemoteKeySet]keySetID{}}
}

// Get returns the key set for (cfg.Issuer, cfg.JWKSURI), starting it on
// first use, and retains it: pair each successful Get with one Release.
func (r *KeySets) Get(cfg KeySetConfig) (*RemoteKeySet, error) {
	id := keySetID{cfg.Issuer, cfg.JWKSURI}
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.ctx.Err(); err != nil {
		return nil, errors.New("keyset: the registry has stopped")
	}
	if e, ok := r.sets[id]; ok {
		e.refs++
		e.ks.setMinInterval(cfg.RefreshInterval)
		return e.ks, nil
	}
	ks, err := newRemoteKeySet(r.ctx, cfg)
	if err != nil {
		return nil, err
	}
	r.sets[id] = &keySetEntry{ks: ks, refs: 1}
	r.ids[ks] = id
	go ks.run()
	return ks, nil
}

// Release gives back one Get of ks. The last release stops its refresh and
// forgets it; a later Get starts afresh. Releasing a key set the registry
// does not hold is a no-op.
func (r *KeySets) Release(ks *RemoteKeySet) {
	r.mu.Lock()
	defer r.mu.Unlock()
	id, ok := r.ids[ks]
	if !ok {
		return
	}
	e := r.sets[id]
	if e.refs--; e.refs > 0 {
		return
	}
	delete(r.sets, id)
	delete(r.ids, ks)
	ks.cancel()
}

// Len returns how many key sets are live (retained at least once).
func (r *KeySets) Len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.sets)
}

// Stats returns the counters of every live key set.
func (r *KeySets) Stats() []KeySetStats {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]KeySetStats, 0, len(r.sets))
	for _, e := range r.sets {
		out = append(out, e.ks.Stats())
	}
	return out
}
