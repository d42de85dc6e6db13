package validators

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
)

// ServerMetadata is the part of an OpenID Connect discovery document or RFC
// 8414 authorization server metadata that mcp-authz uses.
type ServerMetadata struct {
	Issuer                string `json:"issuer"`
	JWKSURI               string `json:"jwks_uri"`
	IntrospectionEndpoint string `json:"introspection_endpoint"`
}

// maxDocumentBytes bounds what is read from a discovery or JWKS endpoint.
const maxDocumentBytes = 1 << 20

// DiscoveryURLs returns the metadata locations tried for issuer, in order:
// OpenID Connect discovery, then RFC 8414 (path-inserted well-known URI).
func DiscoveryURLs(issuer string) ([]string, error) {
	u, err := url.Parse(issuer)
	if err != nil {
		return nil, fmt.Errorf("issuer %q: %w", issuer, err)
	}
	oidc := strings.TrimSuffix(issuer, "/") + "/.well-known/openid-configuration"
	path := strings.TrimSuffix(u.EscapedPath(), "/")
	rfc8414 := u.Scheme + "://" + u.Host + "/.well-known/oauth-authorization-server" + path
	return []string{oidc, rfc8414}, nil
}

// Discover fetches the authorization server metadata for issuer. The
// document's issuer must equal the configured one exactly (RFC 8414 §3.3),
// and every endpoint it names must pass CheckOutboundURL.
func Discover(ctx context.Context, client *http.Client, issuer string) (*ServerMetadata, error) {
	urls, err := DiscoveryURLs(issuer)
	if err != nil {
		return nil, err
	}
	var errs []error
	for _, u := range urls {
		md, err := fetchMetadata(ctx, client, u)
		if err != nil {
			errs = append(errs, err)
			if ctx.Err() != nil {
				break
			}
			continue
		}
		if err := md.check(issuer); err != nil {
			return nil, fmt.Errorf("discovery at %s: %w", u, err)
		}
		return md, nil
	}
	return nil, fmt.Errorf("discovery for issuer %q failed: %w", issuer, errors.Join(errs...))
}

// check holds a discovered document to what DESIGN §3 asks: the issuer
// it names is the one configured, exactly (RFC 8414 §3.3), and every
// endpoint it names passes CheckOutboundURL.
func (md *ServerMetadata) check(issuer string) error {
	if md.Issuer != issuer {
		return fmt.Errorf("expected issuer %q got %q", issuer, md.Issuer)
	}
	for _, e := range []string{md.JWKSURI, md.IntrospectionEndpoint} {
		if e == "" {
			continue
		}
		if err := CheckOutboundURL(e); err != nil {
			return err
		}
	}
	return nil
}

func fetchMetadata(ctx context.Context, client *http.Client, u string) (*ServerMetadata, error) {
	body, err := getJSON(ctx, client, u)
	if err != nil {
		return nil, err
	}
	var md ServerMetadata
	if err := json.Unmarshal(body, &md); err != nil {
		return nil, fmt.Errorf("GET %s: decoding metadata: %w", u, err)
	}
	return &md, nil
}

// maxRedirects bounds the redirects one discovery or JWKS fetch follows.
const maxRedirects = 5

// outboundClient returns a copy of client whose redirects are followed
// only to URLs that CheckOutboundURL accepts, at most maxRedirects, and
// then only if client's own CheckRedirect agrees. The validators apply it
// themselves, so no caller can hand in a client that follows a JWKS or
// discovery redirect to plain http off loopback.
func outboundClient(client *http.Client) *http.Client {
	c := *client
	own := client.CheckRedirect
	c.CheckRedirect = func(req *http.Request, via []*http.Request) error {
		if err := CheckOutboundURL(req.URL.String()); err != nil {
			return fmt.Errorf("redirect refused: %w", err)
		}
		if len(via) >= maxRedirects {
			return fmt.Errorf("stopped after %d redirects", maxRedirects)
		}
		if own != nil {
			return own(req, via)
		}
		return nil
	}
	return &c
}

// getJSON performs a bounded GET and returns the body of a 200 answer. u
// and every redirect must pass CheckOutboundURL.
func getJSON(ctx context.Context, client *http.Client, u string) ([]byte, error) {
	if err := CheckOutboundURL(u); err != nil {
		return nil, fmt.Errorf("GET %s: %w", u, err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", u, err)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := outboundClient(client).Do(req)
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", u, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxDocumentBytes))
		return nil, fmt.Errorf("GET %s: unexpected status %d", u, resp.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxDocumentBytes+1))
	if err != nil {
		return nil, fmt.Errorf("GET %s: reading body: %w", u, err)
	}
	if len(body) > maxDocumentBytes {
		return nil, fmt.Errorf("GET %s: document larger than %d bytes", u, maxDocumentBytes)
	}
	return body, nil
}
