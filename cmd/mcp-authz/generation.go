package main

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/mcp-authz/mcp-authz/authz"
	"github.com/mcp-authz/mcp-authz/cache"
	"github.com/mcp-authz/mcp-authz/config"
	"github.com/mcp-authz/mcp-authz/metadata"
	"github.com/mcp-authz/mcp-authz/validators"
)

// generation is everything built from one configuration: the decision, the
// metadata documents, the validators. A reload builds a new generation
// beside the current one and swaps it in; what lives longer (the verdict
// cache, Redis, session bindings, the JWKS caches) belongs to the service,
// so unchanged issuers keep their keys and unchanged policies their
// verdicts.
type generation struct {
	cfg      *config.Config
	authz    *authz.Server
	metadata *metadata.Handler
	// forward is authz's HTTP forward-auth front end (nginx, Traefik, ...).
	forward http.Handler
	// waits are what this generation needs before it can judge tokens,
	// for readiness: JWKS loaded, introspection endpoints discovered.
	waits []readiness
	// introspections are the generation's introspection validators, whose
	// discovered endpoints the next generation starts from.
	introspections []*validators.Introspection
	// closers release what the generation holds in the service's
	// registries (JWKS caches no other generation uses stop) and stop its
	// background discoveries.
	closers []interface{ Close() }
}

// readiness is one issuer's dependency: its JWKS, or its introspection
// endpoint when discovered.
type readiness struct {
	issuer, ready, waiting string
	done                   func() bool
}

// close releases the generation's hold on shared JWKS caches and stops
// its introspection endpoint discoveries.
func (g *generation) close() {
	for _, c := range g.closers {
		c.Close()
	}
}

// discoveredEndpoint is the introspection endpoint the running
// generation discovered for issuer, which a reload's validator starts from
// while it discovers again: its first Checks need not wait for discovery.
// Empty when the endpoint is configured, or nothing was discovered.
func (s *service) discoveredEndpoint(issuer, configured string) string {
	old := s.current()
	if configured != "" || old == nil {
		return ""
	}
	for _, iv := range old.introspections {
		if e, ok := iv.DiscoveredEndpoint(); ok && iv.Issuer() == issuer {
			return e
		}
	}
	return ""
}

// buildGeneration builds the decision for cfg on the service's shared
// stores. On error it releases whatever it acquired.
func (s *service) buildGeneration(ctx context.Context, cfg *config.Config) (_ *generation, err error) {
	g := &generation{cfg: cfg}
	defer func() {
		if err != nil {
			g.close()
		}
	}()
	var resources []*authz.Resource
	var docs []metadata.Document
	for _, rc := range cfg.Resources {
		v, ttl, err := s.newValidator(ctx, cfg, g, rc)
		if err != nil {
			return nil, fmt.Errorf("resource %q: %w", rc.Name, err)
		}
		cached, err := cache.New(v, s.store, cache.Options{
			Policy:      v.Fingerprint(),
			TTL:         ttl,
			NegativeTTL: cfg.Cache.NegativeTTL.D(),
			Tracer:      s.tel.tracer(),
		})
		if err != nil {
			return nil, err
		}
		resources = append(resources, authzResource(rc, cached))
		logResource(s.log, &rc)
		if !config.Protects(rc.Endpoints.Initialize) && len(rc.Operations) == 0 {
			s.log.Warn("endpoints.initialize is false: initialize requests pass without a token only when Envoy sends the request body (with_request_body); without it every session-less POST needs one",
				"resource", rc.Name)
		}
		docs = append(docs, metadata.Document{
			Resource:               rc.Resource,
			AuthorizationServers:   rc.AuthorizationServers,
			ScopesSupported:        rc.ScopesSupported,
			BearerMethodsSupported: []string{"header"},
			ResourceName:           rc.ResourceName,
			ResourceDocumentation:  rc.ResourceDocumentation,
		})
	}
	mode := authz.UnavailableHTTP
	if cfg.Unavailable.Mode == "grpc" {
		mode = authz.UnavailableGRPC
	}
	g.authz, err = authz.NewServer(authz.Config{
		Resources:            resources,
		Unavailable:          mode,
		RetryAfter:           cfg.Unavailable.RetryAfter.D(),
		MaxTokenBytes:        cfg.MaxTokenBytes,
		IdentityHeaderPrefix: cfg.IdentityHeaders.Prefix,
		StripAuthorization:   cfg.IdentityHeaders.StripAuthorization,
		Sessions:             s.sessions,
		Logger:               s.log,
		Observer:             s.tel.metrics,
		Tracer:               s.tel.tracer(),
	})
	if err != nil {
		return nil, err
	}
	if g.metadata, err = metadata.NewHandler(docs); err != nil {
		return nil, err
	}
	g.forward = g.authz.ForwardHandler()
	return g, nil
}

// authzResource is the decision's view of a configured resource.
func authzResource(rc config.ResourceConfig, v authz.Validator) *authz.Resource {
	r := &authz.Resource{
		Name:                      rc.Name,
		URI:                       rc.Resource,
		ScopesSupported:           rc.ScopesSupported,
		RequiredScopes:            rc.RequiredScopes,
		Hosts:                     rc.Hosts,
		PathPrefixes:              rc.Prefixes(),
		APIKeys:                   rc.Validation == "apikey",
		Validator:                 v,
		UnprotectedInitialize:     !config.Protects(rc.Endpoints.Initialize),
		UnprotectedMessages:       !config.Protects(rc.Endpoints.Messages),
		LegacySSE:                 authz.LegacySSE{SSEPath: rc.LegacySSE.SSEPath, MessagesPath: rc.LegacySSE.MessagesPath},
		ScopeImplies:              rc.ScopeImplies,
		UnreadableBodyRouteScopes: rc.UnreadableBody == "route_scopes",
		AllowedOrigins:            rc.AllowedOrigins,
		SessionBinding:            rc.SessionBinding,
		SessionTTL:                rc.SessionTTL.D(),
	}
	for _, op := range rc.Operations {
		r.Operations = append(r.Operations, authz.Operation{Method: op.Method, Name: op.Name, Scopes: op.Scopes})
	}
	return r
}

// policyValidator is a validator whose verdicts can be cached.
type policyValidator interface {
	authz.Validator
	Fingerprint() string
}

// newValidator builds a resource's validation strategy and the TTL that
// caps its cached verdicts.
func (s *service) newValidator(ctx context.Context, cfg *config.Config, g *generation, rc config.ResourceConfig) (policyValidator, time.Duration, error) {
	client := s.client
	switch rc.Validation {
	case "apikey":
		keys, err := rc.LoadAPIKeys()
		if err != nil {
			return nil, 0, err
		}
		v, err := validators.NewAPIKeys(keys)
		return v, cfg.Cache.TTL.D(), err
	case "hmac":
		h := rc.HMAC
		v, err := validators.NewHMAC(validators.HMACConfig{
			Secret:             []byte(h.Secret),
			Algorithms:         h.Algorithms,
			Issuer:             h.Issuer,
			Audiences:          h.Audiences,
			AllowMissingExpiry: h.AllowMissingExpiry,
			Leeway:             rc.Leeway.D(),
		})
		return v, cfg.Cache.TTL.D(), err
	}
	var jv *validators.JWT
	if rc.Validation == "jwt" || rc.Validation == "auto" {
		issuers := make([]validators.IssuerConfig, 0, len(rc.Issuers))
		for _, ic := range rc.Issuers {
			issuers = append(issuers, validators.IssuerConfig{
				Issuer:          ic.Issuer,
				JWKSURI:         ic.JWKSURI,
				Algorithms:      ic.Algorithms,
				RequireATJWT:    ic.RequireATJWT,
				JWKSCacheTTL:    ic.JWKSCacheTTL.D(),
				ClientIDs:       ic.ClientIDs,
				RequireTokenUse: ic.RequireTokenUse,
			})
		}
		var err error
		jv, err = validators.NewJWT(ctx, validators.JWTConfig{
			KeySets:            s.jwks,
			Issuers:            issuers,
			Audiences:          rc.Audiences,
			Leeway:             rc.Leeway.D(),
			Client:             client,
			RefreshWait:        cfg.JWKS.RefreshWait.D(),
			MinRefreshInterval: cfg.JWKS.MinRefreshInterval.D(),
			Logger:             s.log,
			Tracer:             s.tel.tracer(),
		})
		if err != nil {
			return nil, 0, err
		}
		g.closers = append(g.closers, jv)
		for iss, ks := range jv.KeySets() {
			g.waits = append(g.waits, readiness{issuer: iss, ready: "jwks loaded", waiting: "waiting for jwks", done: ks.Loaded})
		}
		if rc.Validation == "jwt" {
			return jv, cfg.Cache.TTL.D(), nil
		}
	}
	var servers []*validators.Introspection
	ttl := cfg.Cache.TTL.D()
	list := rc.Introspections()
	for k, in := range list {
		iv, err := validators.NewIntrospection(ctx, validators.IntrospectionConfig{
			Endpoint:             in.Endpoint,
			SeedEndpoint:         s.discoveredEndpoint(in.Issuer, in.Endpoint),
			Issuer:               in.Issuer,
			ClientID:             in.ClientID,
			ClientSecret:         in.ClientSecret,
			AuthMethod:           in.AuthMethod,
			Audiences:            rc.Audiences,
			AllowMissingAudience: in.AllowMissingAudience,
			Leeway:               rc.Leeway.D(),
			Timeout:              in.Timeout.D(),
			Client:               client,
			Logger:               s.log,
			Observe:              s.tel.introspection(in),
		})
		if err != nil {
			return nil, 0, err
		}
		g.closers = append(g.closers, iv)
		g.introspections = append(g.introspections, iv)
		if in.Endpoint == "" {
			g.waits = append(g.waits, readiness{issuer: in.Issuer, ready: "introspection endpoint discovered",
				waiting: "waiting for introspection endpoint discovery", done: iv.Ready})
		}
		servers = append(servers, iv)
		// Revocation shows within the shortest cache TTL of any server.
		if k == 0 || in.CacheTTL.D() < ttl {
			ttl = in.CacheTTL.D()
		}
	}
	var intro policyValidator = servers[0]
	if len(servers) > 1 {
		multi, err := validators.NewFirstActive(servers...)
		if err != nil {
			return nil, 0, err
		}
		intro = multi
	}
	if jv != nil {
		return validators.NewAuto(jv, intro), ttl, nil // jv is closed with the generation
	}
	return intro, ttl, nil
}
