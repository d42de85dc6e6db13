package validators

import (
	"context"
	"crypto"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/MicahParks/keyfunc/v3"
	json "github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
	"github.com/golang-jwt/jwt/v5"

	"github.com/mcp-authz/mcp-authz/internal/tracing"
)

// errKeySetUnavailable marks a key lookup that failed because the JWKS could
// not be fetched, as opposed to a kid the issuer does not publish.
var errKeySetUnavailable = errors.New("JWKS unavailable")

// defaultRefreshInterval is the JWKS refresh interval (cache TTL) when none
// is configured.
const defaultRefreshInterval = 15 * time.Minute

// KeySetConfig configures a RemoteKeySet.
type KeySetConfig struct {
	// Issuer is used for discovery when JWKSURI is empty, and in logs.
	Issuer string
	// JWKSURI, when set, takes precedence over the discovered jwks_uri.
	JWKSURI string
	// Client performs every fetch. Required. Redirects are followed only
	// to URLs that CheckOutboundURL accepts (see outboundClient).
	Client *http.Client
	// RefreshInterval is how often the key set is fetched again (the JWKS
	// cache TTL); zero means 15 minutes.
	RefreshInterval time.Duration
	// MinRefreshInterval bounds how often an unknown kid may trigger a fetch.
	MinRefreshInterval time.Duration
	// RefreshWait is how long a validation waits for a fetch triggered by an
	// unknown kid before answering "unavailable".
	RefreshWait time.Duration
	// FetchTimeout bounds one discovery+JWKS fetch.
	FetchTimeout time.Duration
	Logger       *slog.Logger
	// Tracer, when set, puts a span (jwks.refresh) around each refresh;
	// the client's own spans, if it makes any, become its children.
	Tracer tracing.Tracer
}

// RemoteKeySet is an issuer's JWKS, kept fresh in the background.
//
// keyfunc/v3 does the kid-to-key lookup and the JWK "alg" check; the refresh
// policy is ours because keyfunc's built-in one serialises unknown-kid
// refreshes behind a rate limiter that can block a caller for up to a minute
// and cannot tell "kid unknown" from "JWKS down". Here concurrent refreshes
// collapse into one, an unknown kid triggers at most one fetch per
// MinRefreshInterval, and no caller waits longer than RefreshWait. Tokens
// without kid are not keyfunc's business either: keyfunc would offer them
// every key of the set; see kidlessKeys.
type RemoteKeySet struct {
	cfg     KeySetConfig
	store   jwkset.Storage
	keyfunc keyfunc.Keyfunc
	ctx     context.Context // ends the background refresh
	cancel  context.CancelFunc

	loaded atomic.Bool
	// fetches counts attempted JWKS fetches, for tests and metrics;
	// succeeded and failed count the finished ones.
	fetches, succeeded, failed atomic.Int64
	// kidless holds, per algorithm, the keys a token without kid is
	// tried against; byKID, the key of each kid. Both are replaced whole by
	// each successful fetch.
	kidless atomic.Pointer[map[string][]any]
	byKID   atomic.Pointer[map[string]kidKey]
	// interval is the refresh interval in force (a KeySets registry may
	// lower it); kick wakes the refresh loop to read it again.
	interval atomic.Int64
	kick     chan struct{}

	mu          sync.Mutex
	inflight    *refreshCall
	lastStart   time.Time
	lastErr     error
	resolvedURI string
	lastSkipped string // the last fetch's skipped keys, logged when it changes
}

type refreshCall struct {
	done chan struct{}
	err  error
}

// NewRemoteKeySet returns a key set and starts its background refresh, which
// ends with ctx. It does not wait for the first fetch: an unreachable JWKS at
// start-up is retried in the background while validations answer
// "unavailable". Validators get their key sets from a KeySets registry,
// which shares one per (issuer, JWKS URI).
func NewRemoteKeySet(ctx context.Context, cfg KeySetConfig) (*RemoteKeySet, error) {
	ks, err := newRemoteKeySet(ctx, cfg)
	if err != nil {
		return nil, err
	}
	go ks.run()
	return ks, nil
}

// newRemoteKeySet checks cfg and returns a key set that is not started.
func newRemoteKeySet(ctx context.Context, cfg KeySetConfig) (*RemoteKeySet, error) {
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
		cfg.RefreshInterval = defaultRefreshInterval
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
	ctx, cancel := context.WithCancel(ctx)
	ks := &RemoteKeySet{cfg: cfg, store: jwkset.NewMemoryStorage(), ctx: ctx, cancel: cancel, kick: make(chan struct{}, 1)}
	ks.interval.Store(int64(cfg.RefreshInterval))
	kf, err := keyfunc.New(keyfunc.Options{Ctx: ctx, Storage: refreshingStorage{Storage: ks.store, ks: ks}})
	if err != nil {
		cancel()
		return nil, fmt.Errorf("keyset: %w", err)
	}
	ks.keyfunc = kf
	return ks, nil
}

// Loaded reports whether a JWKS has been fetched successfully at least once.
func (ks *RemoteKeySet) Loaded() bool { return ks.loaded.Load() }

// lastError returns the last finished fetch's error (nil after a success).
func (ks *RemoteKeySet) lastError() error {
	ks.mu.Lock()
	defer ks.mu.Unlock()
	return ks.lastErr
}

// Fetches returns how many JWKS fetches have been attempted.
func (ks *RemoteKeySet) Fetches() int64 { return ks.fetches.Load() }

// KeySetStats are the counters of one key set.
type KeySetStats struct {
	// Issuer and JWKSURI identify the key set (JWKSURI is empty when it is
	// discovered).
	Issuer, JWKSURI string
	// Succeeded and Failed count finished refreshes (discovery and JWKS
	// fetch), whatever started them.
	Succeeded, Failed int64
	// Loaded: a JWKS has been fetched at least once.
	Loaded bool
}

// Stats returns the key set's counters.
func (ks *RemoteKeySet) Stats() KeySetStats {
	return KeySetStats{Issuer: ks.cfg.Issuer, JWKSURI: ks.cfg.JWKSURI, Succeeded: ks.succeeded.Load(), Failed: ks.failed.Load(),
		Loaded: ks.loaded.Load()}
}

// keyByKID returns the public key the JWKS publishes under kid for a
// token signed with alg, refreshing the set (bounded, see refresh) when kid
// is unknown. A JWK whose "alg" differs from alg is refused.
//
// A kid of the last fetched set is found in a map built with it, with the
// checks keyfunc makes (its "alg" against the token's; the first key of
// the set with that kid, as jwkset's storage, which scans the set, finds
// it). An unknown kid goes through keyfunc, whose storage refreshes the
// set (refreshingStorage).
func (ks *RemoteKeySet) keyByKID(ctx context.Context, kid, alg string) (any, error) {
	if m := ks.byKID.Load(); m != nil {
		if k, ok := (*m)[kid]; ok {
			if k.alg != "" && k.alg != alg {
				return nil, fmt.Errorf("%w: JWK \"alg\" parameter value %q does not match token \"alg\" parameter value %q",
					keyfunc.ErrKeyfunc, k.alg, alg)
			}
			return k.key, nil
		}
	}
	return ks.keyfunc.KeyfuncCtx(ctx)(&jwt.Token{Header: map[string]any{"kid": kid, "alg": alg}})
}

// kidKey is a JWK as keyByKID needs it: its public key and its "alg".
type kidKey struct {
	key any
	alg string
}

// kidTable maps each kid of a fetched set to its first key.
func kidTable(keys []jwkset.JWK) map[string]kidKey {
	m := make(map[string]kidKey, len(keys))
	for _, k := range keys {
		mk := k.Marshal()
		if _, dup := m[mk.KID]; dup {
			continue
		}
		m[mk.KID] = kidKey{key: publicKey(k.Key()), alg: mk.ALG.String()}
	}
	return m
}

// maxKidlessKeys bounds the signature checks one token without kid costs.
const maxKidlessKeys = 4

// kidlessKeys returns the keys a token without kid and signed with alg is
// tried against: the first maxKidlessKeys keys of the JWKS, in document
// order, whose type fits alg (see keyFits). A JWKS of thousands of keys
// then costs a forged kid-less token at most four signature checks, where
// trying every key cost one with a 4,800-key set 400 ms of CPU.
func (ks *RemoteKeySet) kidlessKeys(alg string) []any {
	m := ks.kidless.Load()
	if m == nil {
		return nil
	}
	return (*m)[alg]
}

// kidlessTable computes kidlessKeys for every asymmetric algorithm, once
// per fetch.
func kidlessTable(keys []jwkset.JWK) map[string][]any {
	table := make(map[string][]any, len(asymmetricAlgorithms))
	for _, alg := range asymmetricAlgorithms {
		for _, k := range keys {
			if len(table[alg]) == maxKidlessKeys {
				break
			}
			if keyFits(k.Marshal(), alg) {
				table[alg] = append(table[alg], publicKey(k.Key()))
			}
		}
	}
	return table
}

// keyFits reports whether a JWK can verify a JWS signed with alg: RSA for
// RS* and PS*, EC on the algorithm's curve for ES*, OKP Ed25519 for EdDSA,
// and, when the JWK names an "alg", that very algorithm.
func keyFits(m jwkset.JWKMarshal, alg string) bool {
	if m.ALG != "" && string(m.ALG) != alg {
		return false
	}
	switch alg {
	case "RS256", "RS384", "RS512", "PS256", "PS384", "PS512":
		return m.KTY == jwkset.KtyRSA
	case "ES256":
		return m.KTY == jwkset.KtyEC && m.CRV == jwkset.CrvP256
	case "ES384":
		return m.KTY == jwkset.KtyEC && m.CRV == jwkset.CrvP384
	case "ES512":
		return m.KTY == jwkset.KtyEC && m.CRV == jwkset.CrvP521
	case "EdDSA":
		return m.KTY == jwkset.KtyOKP && m.CRV == jwkset.CrvEd25519
	}
	return false
}

// publicKey returns the public half of key, as keyfunc does.
func publicKey(key any) any {
	if pk, ok := key.(interface{ Public() crypto.PublicKey }); ok {
		return pk.Public()
	}
	return key
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
	var span tracing.Span
	if ks.cfg.Tracer != nil {
		ctx, span = ks.cfg.Tracer.Start(ctx, "jwks.refresh")
		span.Set(tracing.AttrIssuer, ks.cfg.Issuer)
	}
	err := ks.fetch(ctx)
	if err != nil {
		ks.failed.Add(1)
	} else {
		ks.succeeded.Add(1)
	}
	if span != nil {
		if err != nil {
			span.Fail(err)
		}
		span.End()
	}
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
	keys, skipped, err := fetchJWKS(ctx, ks.cfg.Client, uri)
	ks.logSkipped(uri, skipped)
	if err != nil {
		if ks.cfg.JWKSURI == "" {
			// The issuer may have moved its keys: discover again next time.
			ks.mu.Lock()
			ks.resolvedURI = ""
			ks.mu.Unlock()
		}
		return err
	}
	table, byKID := kidlessTable(keys), kidTable(keys)
	if err := ks.store.KeyReplaceAll(ctx, keys); err != nil {
		return fmt.Errorf("storing JWKS: %w", err)
	}
	ks.kidless.Store(&table)
	ks.byKID.Store(&byKID)
	ks.loaded.Store(true)
	return nil
}

// logSkipped reports the keys a fetch had to skip, once per change: an
// unknown kid may refetch every second, and the same bad key must not log
// every second.
func (ks *RemoteKeySet) logSkipped(uri string, skipped []skippedKey) {
	summary := fmt.Sprint(skipped)
	ks.mu.Lock()
	changed := summary != ks.lastSkipped
	ks.lastSkipped = summary
	ks.mu.Unlock()
	if !changed {
		return
	}
	for _, k := range skipped {
		ks.cfg.Logger.Warn("ignoring an unusable JWKS key; the other keys are used", "issuer", ks.cfg.Issuer,
			"jwks_uri", uri, "index", k.index, "kid", k.kid, "error", k.err)
	}
}

// setMinInterval lowers the refresh interval to d if d is shorter, and
// wakes the refresh loop so the new interval counts from the last fetch.
func (ks *RemoteKeySet) setMinInterval(d time.Duration) {
	if d <= 0 {
		d = defaultRefreshInterval
	}
	for {
		cur := ks.interval.Load()
		if int64(d) >= cur {
			return
		}
		if ks.interval.CompareAndSwap(cur, int64(d)) {
			select {
			case ks.kick <- struct{}{}:
			default:
			}
			return
		}
	}
}

// run refreshes every refresh interval, and retries with back-off while
// the last attempt failed.
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
		done := time.Now()
		retry := time.Duration(0)
		if err != nil {
			retry = backoff
			backoff = min(backoff*2, time.Minute)
		} else {
			backoff = time.Second
		}
		if !ks.sleep(done, retry) {
			return
		}
	}
}

// sleep waits until the refresh interval (or retry, when set and shorter)
// has passed since from, reading the interval again when it is lowered. It
// reports false when the key set is stopped.
func (ks *RemoteKeySet) sleep(from time.Time, retry time.Duration) bool {
	for {
		wait := time.Duration(ks.interval.Load())
		if retry > 0 {
			wait = min(wait, retry)
		}
		wait -= time.Since(from)
		if wait <= 0 {
			return true
		}
		t := time.NewTimer(wait)
		select {
		case <-t.C:
			return true
		case <-ks.kick:
			t.Stop()
		case <-ks.ctx.Done():
			t.Stop()
			return false
		}
	}
}

// skippedKey is a JWK that fetchJWKS could not use.
type skippedKey struct {
	index int
	kid   string
	err   error
}

func (k skippedKey) String() string { return fmt.Sprintf("%d/%q: %v", k.index, k.kid, k.err) }

// fetchJWKS downloads a JWK Set and keeps the keys fit for verifying
// signatures. Each key is decoded on its own: a key this code cannot read
// (a typo, garbage, a member of the wrong type, a duplicate member) is
// skipped and reported, and the rest of the set is used, so one bad key
// cannot take an issuer down. Symmetric ("oct") and encryption keys, and
// key types jwkset does not support, are dropped silently: a public
// document can never hold a verification secret. A set with no usable key
// at all is an error.
func fetchJWKS(ctx context.Context, client *http.Client, uri string) ([]jwkset.JWK, []skippedKey, error) {
	body, err := getJSON(ctx, client, uri)
	if err != nil {
		return nil, nil, err
	}
	keys, skipped, err := parseJWKS(body)
	if err != nil {
		return nil, skipped, fmt.Errorf("GET %s: %w", uri, err)
	}
	return keys, skipped, nil
}

// parseJWKS is fetchJWKS's reading of the document body.
func parseJWKS(body []byte) ([]jwkset.JWK, []skippedKey, error) {
	var set struct {
		Keys []jsontext.Value `json:"keys"`
	}
	// Lenient about the envelope, the issuer's own document; each key is
	// decoded strictly below.
	if err := json.Unmarshal(body, &set, jsontext.AllowDuplicateNames(true), jsontext.AllowInvalidUTF8(true)); err != nil {
		return nil, nil, fmt.Errorf("decoding JWKS: %w", jsonError("JWKS", err))
	}
	keys := make([]jwkset.JWK, 0, len(set.Keys))
	var skipped []skippedKey
	for i, raw := range set.Keys {
		var m jwkset.JWKMarshal
		if err := json.Unmarshal(raw, &m); err != nil {
			skipped = append(skipped, skippedKey{index: i, err: jsonError("JWK", err)})
			continue
		}
		if m.KTY == jwkset.KtyOct || m.USE == jwkset.UseEnc {
			continue
		}
		k, err := jwkset.NewJWKFromMarshal(m, jwkset.JWKMarshalOptions{}, jwkset.JWKValidateOptions{})
		if err != nil {
			if !errors.Is(err, jwkset.ErrUnsupportedKey) {
				skipped = append(skipped, skippedKey{index: i, kid: m.KID, err: err})
			}
			continue
		}
		keys = append(keys, k)
	}
	if len(keys) == 0 {
		return nil, skipped, errors.New("JWKS has no usable signing keys")
	}
	return keys, skipped, nil
}
