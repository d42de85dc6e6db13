package validators

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/mcp-authz/mcp-authz/internal/devissuer"
)

// Claim shapes recorded from each provider's documentation. Tokens are
// signed by a local key standing in for the provider's, served as the
// issuer's JWKS from loopback.
const (
	auth0Issuer   = "https://dev-abc123.us.auth0.com/"
	oktaIssuer    = "https://dev-123456.okta.com/oauth2/default"
	cognitoIssuer = "https://cognito-idp.us-east-1.amazonaws.com/us-east-1_AbCdEf123"
	azureTenant   = "72f988bf-86f1-41af-91ab-2d7cd011db47"
	azureV2Issuer = "https://login.microsoftonline.com/" + azureTenant + "/v2.0"
	azureV1Issuer = "https://sts.windows.net/" + azureTenant + "/"
	azureAppID    = "6e74172b-be56-4843-9ff4-e66a39bb12e3"
	cognitoClient = "7abcdefghijklmnopqrstuvwx1"
)

func providerClaims(now time.Time) map[string]jwt.MapClaims {
	iat, exp := now.Unix(), now.Add(time.Hour).Unix()
	return map[string]jwt.MapClaims{
		"auth0": {
			"iss": auth0Issuer, "sub": "auth0|5f7c8ec7c33c6c004bbafe82",
			"aud": []string{testAudience, auth0Issuer + "userinfo"},
			"iat": iat, "exp": exp, "azp": "my-client-id", "scope": "openid profile mcp:read",
			"permissions": []string{"mcp:read"},
		},
		"okta": {
			"ver": 1, "jti": "AT.0mP4JKAZX1iACIT4vbEDF7LpvDVjxypPMf0D7uX39RE", "iss": oktaIssuer,
			"aud": "api://default", "iat": iat, "exp": exp, "cid": "0oa1a2b3c4d5e6f7g8h9",
			"uid": "00uid4BxXw6I6TV4m0g3", "scp": []string{"mcp:read", "openid"}, "sub": "user@example.com",
		},
		"cognito access": {
			"sub": "aaaaaaaa-bbbb-cccc-dddd-example", "cognito:groups": []string{"admin"},
			"token_use": "access", "scope": "mcp/read", "auth_time": iat, "iss": cognitoIssuer,
			"exp": exp, "iat": iat, "version": 2, "jti": "abcd", "client_id": cognitoClient, "username": "alice",
		},
		"cognito id token": {
			"sub": "aaaaaaaa-bbbb-cccc-dddd-example", "aud": cognitoClient, "token_use": "id",
			"iss": cognitoIssuer, "exp": exp, "iat": iat, "email": "alice@example.com",
		},
		"cognito other client": {
			"sub": "x", "token_use": "access", "scope": "mcp/read", "iss": cognitoIssuer,
			"exp": exp, "iat": iat, "client_id": "someotherclient",
		},
		"azure v2": {
			"aud": azureAppID, "iss": azureV2Issuer, "iat": iat, "nbf": iat, "exp": exp,
			"azp": "f1a2b3c4-0000-1111-2222-333344445555", "azpacr": "0", "name": "Alice",
			"oid": "00000000-0000-0000-66f3-3332eca7ea81", "scp": "mcp.read mcp.write",
			"sub": "AAAAAAAAAAAAAAAAAAAAAIkzqFVrSaSaFHy782bbtaQ", "tid": azureTenant, "ver": "2.0",
		},
		"azure v1": {
			"aud": "api://" + azureAppID, "iss": azureV1Issuer, "iat": iat, "nbf": iat, "exp": exp,
			"appid": "f1a2b3c4-0000-1111-2222-333344445555", "scp": "mcp.read", "sub": "v1-subject",
			"tid": azureTenant, "ver": "1.0",
		},
	}
}

func TestProviderShapes(t *testing.T) {
	iss, err := devissuer.Start(devissuer.Config{Algorithms: []string{"RS256"}})
	if err != nil {
		t.Fatal(err)
	}
	defer iss.Close()
	key := iss.Keys()[0]
	jwks := iss.JWKSURL()
	claims := providerClaims(time.Now())

	tests := []struct {
		name      string
		issuers   []IssuerConfig
		audiences []string
		token     string
		want      string // "" = valid
		client    string
	}{
		{"Auth0: issuer with trailing slash, aud array", []IssuerConfig{{Issuer: auth0Issuer, JWKSURI: jwks}}, []string{testAudience}, "auth0", "", "my-client-id"},
		{"Auth0: without the trailing slash the issuer differs", []IssuerConfig{{Issuer: strings.TrimSuffix(auth0Issuer, "/"), JWKSURI: jwks}}, []string{testAudience}, "auth0", DescIssuer, ""},
		{"Okta: api://default audience, cid, scp array", []IssuerConfig{{Issuer: oktaIssuer, JWKSURI: jwks}}, []string{testAudience, "api://default"}, "okta", "", "0oa1a2b3c4d5e6f7g8h9"},
		{"Okta: api://default refused unless configured", []IssuerConfig{{Issuer: oktaIssuer, JWKSURI: jwks}}, []string{testAudience}, "okta", DescAudience, ""},
		{"Cognito: no aud, listed client", []IssuerConfig{{Issuer: cognitoIssuer, JWKSURI: jwks, ClientIDs: []string{cognitoClient}, RequireTokenUse: "access"}}, []string{testAudience}, "cognito access", "", cognitoClient},
		{"Cognito: no aud and no client list", []IssuerConfig{{Issuer: cognitoIssuer, JWKSURI: jwks}}, []string{testAudience}, "cognito access", DescAudience, ""},
		{"Cognito: wrong client_id", []IssuerConfig{{Issuer: cognitoIssuer, JWKSURI: jwks, ClientIDs: []string{cognitoClient}, RequireTokenUse: "access"}}, []string{testAudience}, "cognito other client", DescAudience, ""},
		{"Cognito: ID token refused", []IssuerConfig{{Issuer: cognitoIssuer, JWKSURI: jwks, ClientIDs: []string{cognitoClient}, RequireTokenUse: "access"}}, []string{testAudience, cognitoClient}, "cognito id token", DescType, ""},
		{"Azure v2: aud is the application id GUID", []IssuerConfig{{Issuer: azureV2Issuer, JWKSURI: jwks}}, []string{"api://" + azureAppID, azureAppID}, "azure v2", "", "f1a2b3c4-0000-1111-2222-333344445555"},
		{"Azure v1: refused unless its issuer is configured", []IssuerConfig{{Issuer: azureV2Issuer, JWKSURI: jwks}}, []string{"api://" + azureAppID, azureAppID}, "azure v1", DescIssuer, ""},
		{"Azure v1: sts.windows.net issuer configured, appid", []IssuerConfig{{Issuer: azureV2Issuer, JWKSURI: jwks}, {Issuer: azureV1Issuer, JWKSURI: jwks}}, []string{"api://" + azureAppID, azureAppID}, "azure v1", "", "f1a2b3c4-0000-1111-2222-333344445555"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			v, err := NewJWT(ctx, JWTConfig{Issuers: tt.issuers, Audiences: tt.audiences, Leeway: time.Minute, Client: http.DefaultClient})
			if err != nil {
				t.Fatal(err)
			}
			waitLoaded(t, v)
			tok, err := key.Sign(claims[tt.token], map[string]any{"typ": "JWT"})
			if err != nil {
				t.Fatal(err)
			}
			p, err := v.Validate(ctx, tok)
			if tt.want == "" {
				if err != nil {
					t.Fatalf("want valid, got %v", err)
				}
				if p.ClientID() != tt.client {
					t.Errorf("client id %q, want %q", p.ClientID(), tt.client)
				}
				return
			}
			var verr *Error
			if !errors.As(err, &verr) || verr.Description != tt.want {
				t.Fatalf("got %v, want %q", err, tt.want)
			}
		})
	}
}
