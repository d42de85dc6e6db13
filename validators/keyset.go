package validators

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/MicahParks/keyfunc/v3"
	"github.com/golang-jwt/jwt/v5"
)

// errKeySetUnavailable marks a key lookup that failed because the JWKS could
// not be fetched, as opposed to a kid the issuer does not publish.
var errKeySetUnavailable = errors.New("JWKS unavailable")

// KeySetConfig configures a RemoteKeySet.
type KeySetConfig struct {
	// Issuer is used for discovery when JWKSURI is empty, and in logs.
	Issuer string
	// JWKSURI, when set, takes precedence over the discovered jwks_uri.
	JWKSURI string
	// Client performs every fetch. Required.
	Client *http.Client
	// RefreshInterval is how often the key set is fetched again (the JWKS cache TTL).
	RefreshInterval time.Duration
	// MinRefreshInterval bounds how often an unknown kid may trigger a fetch.
	MinRefreshInterval time.Duration
	// RefreshWait is how long a validation waits for a fetch triggered by an
	// unknown kid before answering "unavailable".
	RefreshWait time.Duration
	// FetchTimeout bounds one discovery+JWKS fetch.
	FetchTimeout time.Duration
	Logger       *slog.Logger
}

// RemoteKeySet is an issuer's JWKS, kept fresh in the background.
//
// keyfunc/v3 does the kid-to-key lookup and the JWK "alg" check; the refresh
// policy is ours because keyfunc's built-in one serialises unknown-kid
// refreshes behind a rate limiter that can block a caller for up to a minute
// and cannot tell "kid unknown" from "JWKS down". Here concurrent refreshes
// collapse into one, an unknown kid triggers at most one fetch per
// MinRefreshInterval, and no caller waits longer than RefreshWait.
type RemoteKeySet struct {
	cfg     KeySetConfig
	store   jwkset.Storage
	keyfunc keyfunc.Keyfunc
	ctx     context.Context // ends the background refresh

	loaded atomic.Bool
	// fetches counts attempted JWKS fetches, for tests and metrics.
	fetches atomic.Int64

	mu          sync.Mutex
	inflight    *refreshCall
	lastStart   time.Time
	lastErr     error
	resolvedURI string
}

type refreshCall struct {
	done chan struct{}
	err  error
}

// NewRemoteKeySet returns a key set and starts its background refresh, which
// ends with ctx. It does not wait for the first fetch: an unreachable JWKS at
// start-up is retried in the background while validations answer
// "unavailable".
func NewRemoteKeySet(ctx context.Context, cfg KeySetConfig) (*RemoteKeySet, error) {
	if cfg.Client == nil {
		return nil, errors.New("keyset: Client is required")
	}
	if cfg.JWKSURI == "" && cfg.Issuer == "" {
		return nil, errors.New("keyset: JWKSURI or Issuer is required")
	}
	if cfg.JWKSURI != "" {
		if err := CheckOutboundURL(cfg.JWKSURI); err != nil {
			return nil, fmt.Errorf("keyset: jwks_uri: %w", err)
		}
	}
	if cfg.RefreshInterval <= 0 {
		cfg.RefreshInterval = 15 * time.Minute
	}
	if cfg.MinRefreshInterval <= 0 {
		cfg.MinRefreshInterval = time.Second
	}
	if cfg.RefreshWait <= 0 {
		cfg.RefreshWait = 50 * time.Millisecond
	}
	if cfg.FetchTimeout <= 0 {
		cfg.FetchTimeout = 10 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	ks := &RemoteKeySet{cfg: cfg, store: jwkset.NewMemoryStorage(), ctx: ctx}
	kf, err := keyfunc.New(keyfunc.Options{Ctx: ctx, Storage: refreshingStorage{Storage: ks.store, ks: ks}})
	if err != nil {
		return nil, fmt.Errorf("keyset: %w", err)
	}
	ks.keyfunc = kf
	go ks.run()
	return ks, nil
}

// Loaded reports whether a JWKS has been fetched successfully at least once.
func (ks *RemoteKeySet) Loaded() bool { return ks.loaded.Load() }

// Fetches returns how many JWKS fetches have been attempted.
func (ks *RemoteKeySet) Fetches() int64 { return ks.fetches.Load() }

// KeyfuncCtx returns the golang-jwt key function bound to ctx.
func (ks *RemoteKeySet) KeyfuncCtx(ctx context.Context) jwt.Keyfunc {
	return ks.keyfunc.KeyfuncCtx(ctx)
}

// refreshingStorage is the jwkset.Storage handed to keyfunc: a memory store
// whose KeyRead triggers a bounded refresh on an unknown kid.
type refreshingStorage struct {
	jwkset.Storage
	ks *RemoteKeySet
}

func (s refreshingStorage) KeyRead(ctx context.Context, kid string) (jwkset.JWK, error) {
	jwk, err := s.Storage.KeyRead(ctx, kid)
	if !errors.Is(err, jwkset.ErrKeyNotFound) {
		return jwk, err
	}
	call, lastErr := s.ks.refresh()
	if call == nil {
		// Rate limited: the last fetch decides whether this kid is unknown
		// or merely unknowable right now.
		if lastErr != nil {
			return jwkset.JWK{}, fmt.Errorf("%w: %w", errKeySetUnavailable, lastErr)
		}
		return jwkset.JWK{}, err
	}
	timer := time.NewTimer(s.ks.cfg.RefreshWait)
	defer timer.Stop()
	select {
	case <-call.done:
	case <-timer.C:
		return jwkset.JWK{}, fmt.Errorf("%w: refresh still running after %v", errKeySetUnavailable, s.ks.cfg.RefreshWait)
	case <-ctx.Done():
		return jwkset.JWK{}, fmt.Errorf("%w: %w", errKeySetUnavailable, ctx.Err())
	}
	if call.err != nil {
		return jwkset.JWK{}, fmt.Errorf("%w: %w", errKeySetUnavailable, call.err)
	}
	return s.Storage.KeyRead(ctx, kid)
}

// refresh starts a fetch unless one is running (which is joined) or one
// started less than MinRefreshInterval ago (nil is returned with that
// fetch's error, if it has finished).
func (ks *RemoteKeySet) refresh() (*refreshCall, error) {
	ks.mu.Lock()
	defer ks.mu.Unlock()
	if ks.inflight != nil {
		return ks.inflight, nil
	}
	if !ks.lastStart.IsZero() && time.Since(ks.lastStart) < ks.cfg.MinRefreshInterval {
		return nil, ks.lastErr
	}
	call := &refreshCall{done: make(chan struct{})}
	ks.inflight = call
	ks.lastStart = time.Now()
	go ks.doRefresh(call)
	return call, nil
}

func (ks *RemoteKeySet) doRefresh(call *refreshCall) {
	// Detached from any caller: a Check that stops waiting must not cancel
	// the fetch that the next Check will want.
	ctx, cancel := context.WithTimeout(ks.ctx, ks.cfg.FetchTimeout)
	defer cancel()
	err := ks.fetch(ctx)
	ks.mu.Lock()
	call.err = err
	ks.lastErr = err
	ks.inflight = nil
	ks.mu.Unlock()
	close(call.done)
	// A fetch cut short because the service is stopping did not fail: it
	// was abandoned, and saying otherwise misleads whoever reads why the
	// service stopped.
	if err != nil && ks.ctx.Err() == nil {
		ks.cfg.Logger.Warn("JWKS refresh failed", "issuer", ks.cfg.Issuer, "error", err)
	}
}

func (ks *RemoteKeySet) fetch(ctx context.Context) error {
	ks.fetches.Add(1)
	uri := ks.cfg.JWKSURI
	if uri == "" {
		ks.mu.Lock()
		uri = ks.resolvedURI
		ks.mu.Unlock()
		if uri == "" {
			md, err := Discover(ctx, ks.cfg.Client, ks.cfg.Issuer)
			if err != nil {
				return err
			}
			if md.JWKSURI == "" {
				return fmt.Errorf("discovery for issuer %q: no jwks_uri", ks.cfg.Issuer)
			}
			uri = md.JWKSURI
			ks.mu.Lock()
			ks.resolvedURI = uri
			ks.mu.Unlock()
		}
	}
	keys, err := fetchJWKS(ctx, ks.cfg.Client, uri, ks.cfg.Logger)
	if err != nil {
		if ks.cfg.JWKSURI == "" {
			// The issuer may have moved its keys: discover again next time.
			ks.mu.Lock()
			ks.resolvedURI = ""
			ks.mu.Unlock()
		}
		return err
	}
	if err := ks.store.KeyReplaceAll(ctx, keys); err != nil {
		return fmt.Errorf("storing JWKS: %w", err)
	}
	ks.loaded.Store(true)
	return nil
}

// run refreshes every RefreshInterval, and retries with back-off while the
// last attempt failed.
func (ks *RemoteKeySet) run() {
	backoff := time.Second
	for {
		call, err := ks.refresh()
		if call != nil {
			select {
			case <-call.done:
				err = call.err
			case <-ks.ctx.Done():
				return
			}
		}
		wait := ks.cfg.RefreshInterval
		if err != nil {
			wait = min(backoff, ks.cfg.RefreshInterval)
			backoff = min(backoff*2, time.Minute)
		} else {
			backoff = time.Second
		}
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-ks.ctx.Done():
			t.Stop()
			return
		}
	}
}

// fetchJWKS downloads a JWK Set and keeps the keys fit for verifying
// signatures: symmetric ("oct") and encryption keys are dropped, since a
// public document can never hold a verification secret.
func fetchJWKS(ctx context.Context, client *http.Client, uri string, log *slog.Logger) ([]jwkset.JWK, error) {
	body, err := getJSON(ctx, client, uri)
	if err != nil {
		return nil, err
	}
	var set jwkset.JWKSMarshal
	if err := json.Unmarshal(body, &set); err != nil {
		return nil, fmt.Errorf("GET %s: decoding JWKS: %w", uri, err)
	}
	keys := make([]jwkset.JWK, 0, len(set.Keys))
	for _, m := range set.Keys {
		if m.KTY == jwkset.KtyOct || m.USE == jwkset.UseEnc {
			continue
		}
		k, err := jwkset.NewJWKFromMarshal(m, jwkset.JWKMarshalOptions{}, jwkset.JWKValidateOptions{})
		if err != nil {
			if !errors.Is(err, jwkset.ErrUnsupportedKey) {
				log.Warn("ignoring unusable JWKS key", "jwks_uri", uri, "kid", m.KID, "error", err)
			}
			continue
		}
		keys = append(keys, k)
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("GET %s: JWKS has no usable signing keys", uri)
	}
	return keys, nil
}
