package validators

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	json "github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
)

// IntrospectionConfig configures an RFC 7662 token introspection validator.
// The zero value of every optional field is the strict behaviour.
type IntrospectionConfig struct {
	// Endpoint is the introspection URL. When empty it is discovered from
	// Issuer (OIDC discovery, then RFC 8414).
	Endpoint string
	// Issuer, when set, must equal the response's iss if it has one, and
	// is where the endpoint is discovered.
	Issuer string
	// SeedEndpoint, without Endpoint, is one discovered earlier for Issuer
	// (by the validator this one replaces on a reload): used until this
	// validator's own discovery, which starts at once, answers.
	SeedEndpoint string
	// ClientID and ClientSecret authenticate this service to the
	// authorization server.
	ClientID, ClientSecret string
	// AuthMethod is "client_secret_basic" (default) or "client_secret_post".
	AuthMethod string
	// Audiences: the response's aud must contain one of them (one
	// trailing-slash difference tolerated). Required.
	Audiences []string
	// AllowMissingAudience accepts responses without aud, for
	// authorization servers that omit it. A present aud is still checked.
	AllowMissingAudience bool
	// Leeway for exp and nbf.
	Leeway time.Duration
	// Timeout bounds one introspection call; keep it well under Envoy's
	// ext_authz timeout. Zero means 1 s (a first introspection at a real
	// provider takes 200-300 ms); each call is also bounded by the deadline
	// of the Check that needs it.
	Timeout time.Duration
	// Client performs the calls; its transport's connection reuse matters.
	// Introspection follows no redirects whatever its CheckRedirect says
	// (the POST carries the token and, with client_secret_basic or
	// client_secret_post, the client secret); discovery follows them only
	// under CheckOutboundURL.
	Client *http.Client
	Logger *slog.Logger
	// Observe, when set, is called after each validation with its result
	// (IntrospectionActive, IntrospectionInactive, IntrospectionInvalid or
	// IntrospectionError) and duration (including any wait for the first
	// discovery), for metrics.
	Observe func(result string, d time.Duration)
	// Now overrides the clock, for tests.
	Now func() time.Time
}

// Results of an introspection, as IntrospectionConfig.Observe reports them.
const (
	// IntrospectionActive: the token is active and acceptable.
	IntrospectionActive = "active"
	// IntrospectionInactive: the authorization server says active: false.
	IntrospectionInactive = "inactive"
	// IntrospectionInvalid: active, but refused (exp, aud, iss, or an
	// answer describing a token this service cannot accept).
	IntrospectionInvalid = "invalid"
	// IntrospectionError: no usable answer (unreachable, timeout, 5xx,
	// not JSON, our credentials refused): the token may be fine.
	IntrospectionError = "error"
)

// Introspection validates opaque tokens by asking the authorization server.
type Introspection struct {
	cfg         IntrospectionConfig
	fingerprint string
	// post is a copy of cfg.Client that never follows a redirect.
	post *http.Client
	// disc finds the endpoint when none is configured.
	disc *endpointDiscovery
}

// NewIntrospection checks cfg and returns the validator. Without an
// Endpoint, it starts discovering one from Issuer in the background (see
// endpointDiscovery) until ctx ends or Close: an unreachable authorization
// server at start-up is not fatal.
func NewIntrospection(ctx context.Context, cfg IntrospectionConfig) (*Introspection, error) {
	if cfg.Endpoint == "" && cfg.Issuer == "" {
		return nil, errors.New("introspection: an endpoint or an issuer to discover it from is required")
	}
	for _, u := range []string{cfg.Endpoint, cfg.Issuer} {
		if u == "" {
			continue
		}
		if err := CheckOutboundURL(u); err != nil {
			return nil, fmt.Errorf("introspection: %w", err)
		}
	}
	if cfg.ClientID == "" || cfg.ClientSecret == "" {
		return nil, errors.New("introspection: client id and client secret are required")
	}
	switch cfg.AuthMethod {
	case "":
		cfg.AuthMethod = "client_secret_basic"
	case "client_secret_basic", "client_secret_post":
	default:
		return nil, fmt.Errorf("introspection: auth method %q is not client_secret_basic or client_secret_post", cfg.AuthMethod)
	}
	if len(cfg.Audiences) == 0 {
		return nil, errors.New("introspection: an audience is required")
	}
	if cfg.Client == nil {
		return nil, errors.New("introspection: Client is required")
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	post := *cfg.Client
	post.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	v := &Introspection{cfg: cfg, post: &post}
	h := sha256.New()
	aud := slices.Clone(cfg.Audiences)
	slices.Sort(aud)
	// The secret is left out: rotating it does not change what a verdict means.
	fmt.Fprintf(h, "introspection\x00%s\x00%s\x00%s\x00%s\x00%t\x00%d\x00", cfg.Endpoint, cfg.Issuer, cfg.ClientID,
		strings.Join(aud, " "), cfg.AllowMissingAudience, cfg.Leeway)
	v.fingerprint = hex.EncodeToString(h.Sum(nil)[:16])
	if cfg.Endpoint == "" {
		v.disc = newEndpointDiscovery(ctx, cfg.Client, cfg.Issuer, cfg.Logger)
		if cfg.SeedEndpoint != "" {
			if err := CheckOutboundURL(cfg.SeedEndpoint); err != nil {
				return nil, fmt.Errorf("introspection: seed endpoint: %w", err)
			}
			e := cfg.SeedEndpoint
			v.disc.endpoint.Store(&e)
		}
		go v.disc.run()
	}
	return v, nil
}

// Close stops the background discovery, if any. Validations after Close
// use the endpoint found so far.
func (v *Introspection) Close() {
	if v.disc != nil {
		v.disc.close()
	}
}

// Issuer is the configured issuer, if any.
func (v *Introspection) Issuer() string { return v.cfg.Issuer }

// DiscoveredEndpoint is the endpoint discovery found, if it found one.
func (v *Introspection) DiscoveredEndpoint() (string, bool) {
	if v.disc == nil {
		return "", false
	}
	e := v.disc.endpoint.Load()
	if e == nil {
		return "", false
	}
	return *e, true
}

// Ready reports whether the endpoint is known: configured, or discovered.
func (v *Introspection) Ready() bool { return v.disc == nil || v.disc.known() }

// Fingerprint identifies the validation policy for the verdict cache.
func (v *Introspection) Fingerprint() string { return v.fingerprint }

// Validate introspects token and checks the answer.
func (v *Introspection) Validate(ctx context.Context, token string) (*Principal, error) {
	if v.cfg.Observe == nil {
		return v.validate(ctx, token)
	}
	start := time.Now()
	p, err := v.validate(ctx, token)
	v.cfg.Observe(introspectionResult(err), time.Since(start))
	return p, err
}

func introspectionResult(err error) string {
	var verr *Error
	switch {
	case err == nil:
		return IntrospectionActive
	case !errors.As(err, &verr) || !errors.Is(verr.Kind, ErrInvalidToken):
		return IntrospectionError
	case verr.Description == DescInactive:
		return IntrospectionInactive
	default:
		return IntrospectionInvalid
	}
}

func (v *Introspection) validate(ctx context.Context, token string) (*Principal, error) {
	endpoint, err := v.resolve(ctx)
	if err != nil {
		return nil, unavailable(DescIntrospect, err)
	}
	body, err := v.call(ctx, endpoint, token)
	if err != nil {
		if v.disc != nil {
			// The server may have moved it: look again soon, and keep
			// using it meanwhile.
			v.disc.poke()
		}
		return nil, err
	}
	resp, err := ParseIntrospection(body)
	if err != nil {
		var verr *Error
		if errors.As(err, &verr) {
			return nil, verr
		}
		return nil, unavailable(DescIntrospect, err)
	}
	return v.check(resp)
}

func (v *Introspection) resolve(ctx context.Context) (string, error) {
	if v.disc == nil {
		return v.cfg.Endpoint, nil
	}
	return v.disc.get(ctx)
}

// call POSTs the token and returns a 200 answer's body. Every failure is
// "unavailable": the token may be fine.
func (v *Introspection) call(ctx context.Context, endpoint, token string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, v.cfg.Timeout)
	defer cancel()
	form := url.Values{"token": {token}, "token_type_hint": {"access_token"}}
	if v.cfg.AuthMethod == "client_secret_post" {
		form.Set("client_id", v.cfg.ClientID)
		form.Set("client_secret", v.cfg.ClientSecret)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, strings.NewReader(form.Encode()))
	if err != nil {
		return nil, unavailable(DescIntrospect, err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	if v.cfg.AuthMethod == "client_secret_basic" {
		// RFC 6749 §2.3.1: form-encode before Basic.
		req.SetBasicAuth(url.QueryEscape(v.cfg.ClientID), url.QueryEscape(v.cfg.ClientSecret))
	}
	resp, err := v.post.Do(req)
	if err != nil {
		// url.Error names the URL and the cause, never the form body.
		return nil, unavailable(DescIntrospect, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxDocumentBytes+1))
	if err != nil {
		return nil, unavailable(DescIntrospect, fmt.Errorf("POST %s: reading body: %w", endpoint, err))
	}
	switch {
	case resp.StatusCode >= 300 && resp.StatusCode < 400:
		return nil, unavailable(DescIntrospect, fmt.Errorf("POST %s: status %d: the authorization server redirects, and introspection follows no redirects (the request carries the token and client credentials): configure the final endpoint URL", endpoint, resp.StatusCode))
	case resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden:
		return nil, unavailable(DescIntrospect, fmt.Errorf("POST %s: status %d: the authorization server rejected this service's client credentials (check the client id and secret)", endpoint, resp.StatusCode))
	case resp.StatusCode != http.StatusOK:
		return nil, unavailable(DescIntrospect, fmt.Errorf("POST %s: unexpected status %d", endpoint, resp.StatusCode))
	case len(body) > maxDocumentBytes:
		return nil, unavailable(DescIntrospect, fmt.Errorf("POST %s: response larger than %d bytes", endpoint, maxDocumentBytes))
	}
	return body, nil
}

// IntrospectionResponse is an RFC 7662 §2.2 response as mcp-authz reads it.
type IntrospectionResponse struct {
	Active    bool
	Scope     []string
	ClientID  string
	Username  string
	Subject   string
	Issuer    string
	Audience  []string
	TokenType string
	ExpiresAt time.Time
	NotBefore time.Time
	IssuedAt  time.Time
	// Raw is the response as received, forwarded upstream as the claims.
	Raw []byte
}

type introspectionWire struct {
	Active    jsontext.Value `json:"active"`
	Scope     scopeString    `json:"scope"`
	ClientID  string         `json:"client_id"`
	Username  string         `json:"username"`
	Subject   string         `json:"sub"`
	Issuer    string         `json:"iss"`
	Audience  audienceClaim  `json:"aud"`
	TokenType string         `json:"token_type"`
	Exp       numericDate    `json:"exp"`
	Nbf       numericDate    `json:"nbf"`
	Iat       numericDate    `json:"iat"`
}

// scopeString is the scope of an introspection response: a string of
// space-separated scope tokens (RFC 7662 §2.2); see parseScopes.
type scopeString []string

func (c *scopeString) UnmarshalJSONFrom(d *jsontext.Decoder) error {
	s, _, _, err := readStringOrList(d, false, "scope must be a string")
	if err != nil {
		return err
	}
	*c, err = parseScopes(s)
	return err
}

// ParseIntrospection decodes an introspection response strictly (exact
// member names, no duplicate names, valid UTF-8; see claims.go).
//
// It sorts failures in two. A body that is no answer at all — not a JSON
// object, trailing data, active absent or not a JSON boolean — is an
// error: the authorization server is broken or we asked the wrong URL, and
// the token may be fine (Validate: "unavailable", 503). A JSON object whose
// members describe a token we cannot accept is an *Error of kind
// ErrInvalidToken (401): duplicate member names, invalid UTF-8, a member of
// the wrong type, exp/nbf/iat outside [0, 9999-12-31], a scope that is not
// scope-tokens, an identity value with a control character. Those members
// can carry data the token's user or client chose (usernames, requested
// scopes, attributes an authorization server maps into its answer), and
// some deployments let Envoy allow requests on a 503 (failure_mode_allow):
// what a token can provoke must never become a 503. The same holds for
// duplicate names even in "active": an ambiguous answer is a refusal, and
// the 401 is cached briefly, which shields the authorization server from a
// client retrying a 503 forever.
func ParseIntrospection(body []byte) (*IntrospectionResponse, error) {
	if trimmed := bytes.TrimLeft(body, " \t\r\n"); len(trimmed) == 0 || trimmed[0] != '{' {
		return nil, errors.New("introspection response is not a JSON object")
	}
	var w introspectionWire
	if err := json.Unmarshal(body, &w); err != nil {
		var syn *jsontext.SyntacticError
		if errors.As(err, &syn) {
			// Syntax errors that leniency forgives are duplicate names and
			// bad UTF-8: token content. The rest is a broken answer.
			var lenient introspectionWire
			lerr := json.Unmarshal(body, &lenient, jsontext.AllowDuplicateNames(true), jsontext.AllowInvalidUTF8(true))
			if !errors.As(lerr, &syn) {
				return nil, invalid(DescMalformed, jsonError("introspection response", err))
			}
			return nil, fmt.Errorf("introspection response: %w", jsonError("body", err))
		}
		return nil, invalid(DescMalformed, jsonError("introspection response", err))
	}
	r := &IntrospectionResponse{Raw: body}
	switch string(w.Active) {
	case "true":
		r.Active = true
	case "false":
		return r, nil
	case "":
		return nil, errors.New(`introspection response has no "active" member`)
	default:
		return nil, errors.New(`introspection response "active" is not a JSON boolean`)
	}
	for _, id := range []struct{ name, value string }{
		{"sub", w.Subject}, {"username", w.Username}, {"client_id", w.ClientID}, {"iss", w.Issuer},
	} {
		if err := checkIdentity(id.name, id.value); err != nil {
			return nil, invalid(DescMalformed, fmt.Errorf("introspection response: %w", err))
		}
	}
	r.ClientID, r.Username, r.Subject = w.ClientID, w.Username, w.Subject
	r.Issuer, r.TokenType = w.Issuer, w.TokenType
	r.Scope = w.Scope
	r.Audience = w.Audience
	r.ExpiresAt, r.NotBefore, r.IssuedAt = w.Exp.t, w.Nbf.t, w.Iat.t
	return r, nil
}

func (v *Introspection) check(r *IntrospectionResponse) (*Principal, error) {
	if !r.Active {
		return nil, invalid(DescInactive, errors.New("introspection: active is false"))
	}
	now := v.cfg.Now()
	if !r.ExpiresAt.IsZero() && !now.Before(r.ExpiresAt.Add(v.cfg.Leeway)) {
		return nil, invalid(DescExpired, errors.New("introspection: exp has passed"))
	}
	if !r.NotBefore.IsZero() && now.Add(v.cfg.Leeway).Before(r.NotBefore) {
		return nil, invalid(DescNotYetValid, errors.New("introspection: nbf is in the future"))
	}
	if v.cfg.Issuer != "" && r.Issuer != "" && r.Issuer != v.cfg.Issuer {
		return nil, invalid(DescIssuer, fmt.Errorf("introspection: expected issuer %q", v.cfg.Issuer))
	}
	switch {
	case len(r.Audience) == 0 && v.cfg.AllowMissingAudience:
	case !audienceMatches(r.Audience, v.cfg.Audiences):
		return nil, invalid(DescAudience, fmt.Errorf("introspection: expected audience %q", v.cfg.Audiences))
	}
	sub := r.Subject
	if sub == "" {
		sub = r.Username
	}
	iss := r.Issuer
	if iss == "" {
		iss = v.cfg.Issuer
	}
	return NewPrincipal(Identity{
		Subject:    sub,
		ClientID:   r.ClientID,
		Issuer:     iss,
		Scopes:     r.Scope,
		ExpiresAt:  r.ExpiresAt,
		ClaimsJSON: string(compactJSON(r.Raw)),
	}), nil
}

func compactJSON(b []byte) []byte {
	v := jsontext.Value(bytes.Clone(b))
	if err := v.Compact(); err != nil {
		return b
	}
	return v
}
