package validators

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// Discovery of an introspection endpoint runs in the background, as the
// JWKS refresh does (DESIGN §3): from start-up, so that the first Check
// does not pay a discovery on top of its introspection within Envoy's
// 200 ms; again every rediscoverEvery, so that a moved endpoint is found;
// and sooner when a Check finds no endpoint or a call to the known one
// failed, at most once per minRediscovery, so that a flood of Checks
// against a failing authorization server costs it one discovery a second,
// not one per Check. A failed discovery never forgets an endpoint that
// worked.
const (
	rediscoverEvery   = 15 * time.Minute
	minRediscovery    = time.Second
	maxDiscoveryRetry = time.Minute
	discoveryTimeout  = 10 * time.Second
)

// endpointDiscovery finds and keeps an issuer's introspection endpoint.
type endpointDiscovery struct {
	client *http.Client
	issuer string
	log    *slog.Logger

	endpoint atomic.Pointer[string]
	mu       sync.Mutex
	lastErr  error
	attempts atomic.Int64

	first     chan struct{} // closed when the first attempt has ended
	kick      chan struct{}
	ctx       context.Context
	stop      context.CancelFunc
	closeOnce sync.Once
	done      chan struct{}
}

func newEndpointDiscovery(ctx context.Context, client *http.Client, issuer string, log *slog.Logger) *endpointDiscovery {
	// The service's end stops discovery too, not only Close: a generation
	// serving at shutdown is never closed.
	ctx, stop := context.WithCancel(ctx)
	return &endpointDiscovery{
		client: client, issuer: issuer, log: log,
		first: make(chan struct{}), kick: make(chan struct{}, 1),
		ctx: ctx, stop: stop, done: make(chan struct{}),
	}
}

// get returns the endpoint. Before one is known it waits for the first
// discovery to end (or ctx), then asks for another attempt and reports
// the last failure: the Check answers 503 rather than waiting for a
// retry.
func (d *endpointDiscovery) get(ctx context.Context) (string, error) {
	if e := d.endpoint.Load(); e != nil {
		return *e, nil
	}
	select {
	case <-d.first:
	case <-ctx.Done():
		return "", fmt.Errorf("discovery for issuer %q: still running: %w", d.issuer, ctx.Err())
	}
	if e := d.endpoint.Load(); e != nil {
		return *e, nil
	}
	d.poke()
	// attempt sets lastErr and the endpoint under mu together: read both
	// under it, since another attempt may have succeeded meanwhile. With
	// no endpoint after the first attempt, lastErr holds its failure.
	d.mu.Lock()
	defer d.mu.Unlock()
	if e := d.endpoint.Load(); e != nil {
		return *e, nil
	}
	return "", d.lastErr
}

// poke asks for a discovery soon (see minRediscovery) without waiting.
func (d *endpointDiscovery) poke() {
	select {
	case d.kick <- struct{}{}:
	default:
	}
}

// known reports whether an endpoint has been discovered.
func (d *endpointDiscovery) known() bool { return d.endpoint.Load() != nil }

func (d *endpointDiscovery) run() {
	defer close(d.done)
	var firstOnce sync.Once
	backoff := time.Second
	failing := false
	for {
		err := d.attempt()
		firstOnce.Do(func() { close(d.first) })
		wait := rediscoverEvery
		switch {
		case err != nil && d.ctx.Err() != nil:
			return
		case err != nil:
			wait, backoff = backoff, min(backoff*2, maxDiscoveryRetry)
			if !failing {
				// Once per failure streak: the retries say nothing new.
				d.log.Warn("introspection endpoint discovery failed; retrying in the background",
					"issuer", d.issuer, "error", err, "known_endpoint", d.known())
			}
			failing = true
		default:
			backoff = time.Second
			if failing {
				d.log.Info("introspection endpoint discovered", "issuer", d.issuer, "endpoint", *d.endpoint.Load())
			}
			failing = false
		}
		if !d.sleep(time.Now(), wait) {
			return
		}
	}
}

func (d *endpointDiscovery) attempt() error {
	d.attempts.Add(1)
	ctx, cancel := context.WithTimeout(d.ctx, discoveryTimeout)
	defer cancel()
	md, err := Discover(ctx, d.client, d.issuer)
	if err == nil && md.IntrospectionEndpoint == "" {
		err = fmt.Errorf("discovery for issuer %q: no introspection_endpoint", d.issuer)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.lastErr = err
	if err != nil {
		return err
	}
	if old := d.endpoint.Load(); old == nil || *old != md.IntrospectionEndpoint {
		e := md.IntrospectionEndpoint
		d.endpoint.Store(&e)
		if old != nil {
			d.log.Info("introspection endpoint moved", "issuer", d.issuer, "endpoint", e)
		}
	}
	return nil
}

// sleep waits until wait has passed since from, or until a poke, but never
// less than minRediscovery since from. It reports false once the discovery is
// closed.
func (d *endpointDiscovery) sleep(from time.Time, wait time.Duration) bool {
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-d.ctx.Done():
		return false
	case <-d.kick:
	}
	if rest := minRediscovery - time.Since(from); rest > 0 {
		t.Reset(rest)
		select {
		case <-t.C:
		case <-d.ctx.Done():
			return false
		}
	}
	return true
}

// close stops the background discovery and waits for it to end.
func (d *endpointDiscovery) close() {
	d.closeOnce.Do(d.stop)
	<-d.done
}
