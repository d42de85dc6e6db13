package validators

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"
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
	// ext_authz timeout. Zero means 150 ms.
	Timeout time.Duration
	// Client performs the calls; its transport's connection reuse matters.
	Client *http.Client
	Logger *slog.Logger
	// Now overrides the clock, for tests.
	Now func() time.Time
}

// Introspection validates opaque tokens by asking the authorization server.
type Introspection struct {
	cfg         IntrospectionConfig
	fingerprint string

	mu       sync.Mutex
	endpoint string // resolved
}

// NewIntrospection checks cfg and returns the validator. Discovery, when
// needed, happens on first use, so an unreachable authorization server at
// start-up is not fatal.
func NewIntrospection(cfg IntrospectionConfig) (*Introspection, error) {
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
		cfg.Timeout = 150 * time.Millisecond
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	v := &Introspection{cfg: cfg, endpoint: cfg.Endpoint}
	h := sha256.New()
	aud := slices.Clone(cfg.Audiences)
	slices.Sort(aud)
	// The secret is left out: rotating it does not change what a verdict means.
	fmt.Fprintf(h, "introspection\x00%s\x00%s\x00%s\x00%s\x00%t\x00%d\x00", cfg.Endpoint, cfg.Issuer, cfg.ClientID,
		strings.Join(aud, " "), cfg.AllowMissingAudience, cfg.Leeway)
	v.fingerprint = hex.EncodeToString(h.Sum(nil)[:16])
	return v, nil
}

// Fingerprint identifies the validation policy for the verdict cache.
func (v *Introspection) Fingerprint() string { return v.fingerprint }

// Validate introspects token and checks the answer.
func (v *Introspection) Validate(ctx context.Context, token string) (*Principal, error) {
	endpoint, err := v.resolve(ctx)
	if err != nil {
		return nil, unavailable(DescIntrospect, err)
	}
	body, err := v.call(ctx, endpoint, token)
	if err != nil {
		if v.cfg.Endpoint == "" {
			// The endpoint came from discovery: look again next time, in
			// case the server moved it.
			v.mu.Lock()
			v.endpoint = ""
			v.mu.Unlock()
		}
		return nil, err
	}
	resp, err := ParseIntrospection(body)
	if err != nil {
		return nil, unavailable(DescIntrospect, err)
	}
	return v.check(resp)
}

func (v *Introspection) resolve(ctx context.Context) (string, error) {
	v.mu.Lock()
	endpoint := v.endpoint
	v.mu.Unlock()
	if endpoint != "" {
		return endpoint, nil
	}
	md, err := Discover(ctx, v.cfg.Client, v.cfg.Issuer)
	if err != nil {
		return "", err
	}
	if md.IntrospectionEndpoint == "" {
		return "", fmt.Errorf("discovery for issuer %q: no introspection_endpoint", v.cfg.Issuer)
	}
	v.mu.Lock()
	v.endpoint = md.IntrospectionEndpoint
	v.mu.Unlock()
	return md.IntrospectionEndpoint, nil
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
	resp, err := v.cfg.Client.Do(req)
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
	// Raw is the response as received, forwarded upstream as the claims.
	Raw []byte
}

type introspectionWire struct {
	Active    json.RawMessage `json:"active"`
	Scope     *string         `json:"scope"`
	ClientID  *string         `json:"client_id"`
	Username  *string         `json:"username"`
	Subject   *string         `json:"sub"`
	Issuer    *string         `json:"iss"`
	Audience  audienceClaim   `json:"aud"`
	TokenType *string         `json:"token_type"`
	Exp       *json.Number    `json:"exp"`
	Nbf       *json.Number    `json:"nbf"`
}

// audienceClaim accepts a string or an array of strings.
type audienceClaim []string

func (a *audienceClaim) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		*a = nil
		return nil
	}
	if len(b) > 0 && b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		*a = []string{s}
		return nil
	}
	var list []string
	if err := json.Unmarshal(b, &list); err != nil {
		return errors.New("aud must be a string or an array of strings")
	}
	*a = list
	return nil
}

// ParseIntrospection decodes an introspection response. active must be the
// JSON boolean true or false: "true" as a string, a number, or its absence
// is an error, never a pass.
func ParseIntrospection(body []byte) (*IntrospectionResponse, error) {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var w introspectionWire
	if err := dec.Decode(&w); err != nil {
		return nil, fmt.Errorf("introspection response is not a JSON object: %w", err)
	}
	if dec.More() {
		return nil, errors.New("introspection response has trailing data")
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
	str := func(p *string) string {
		if p == nil {
			return ""
		}
		return *p
	}
	r.ClientID, r.Username, r.Subject = str(w.ClientID), str(w.Username), str(w.Subject)
	r.Issuer, r.TokenType = str(w.Issuer), str(w.TokenType)
	r.Scope = splitScopes(str(w.Scope))
	r.Audience = w.Audience
	var err error
	if r.ExpiresAt, err = numericDate(w.Exp, "exp"); err != nil {
		return nil, err
	}
	if r.NotBefore, err = numericDate(w.Nbf, "nbf"); err != nil {
		return nil, err
	}
	return r, nil
}

func numericDate(n *json.Number, name string) (time.Time, error) {
	if n == nil {
		return time.Time{}, nil
	}
	f, err := n.Float64()
	if err != nil || f < 0 || f > 1e11 {
		return time.Time{}, fmt.Errorf("introspection response %q is not a NumericDate", name)
	}
	sec := int64(f)
	return time.Unix(sec, int64((f-float64(sec))*1e9)), nil
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
	return &Principal{
		Subject:   sub,
		ClientID:  r.ClientID,
		Issuer:    iss,
		Audience:  r.Audience,
		Scopes:    r.Scope,
		ExpiresAt: r.ExpiresAt,
		Claims:    base64.RawURLEncoding.EncodeToString(compactJSON(r.Raw)),
	}, nil
}

func compactJSON(b []byte) []byte {
	var buf bytes.Buffer
	if err := json.Compact(&buf, b); err != nil {
		return b
	}
	return buf.Bytes()
}
