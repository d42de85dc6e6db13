// Package devissuer is a small OAuth 2.0 authorization server for development
// and tests: ephemeral signing keys, a JWKS, OIDC/RFC 8414 discovery and a
// client_credentials token endpoint issuing RFC 9068 JWT access tokens. It
// listens on loopback only.
package devissuer

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Key is a signing key with its JWS algorithm and key id.
type Key struct {
	KID    string
	Alg    string
	Signer crypto.Signer
}

// NewKey generates an ephemeral key for alg (RS256/384/512, PS256, ES256/384, EdDSA).
func NewKey(alg string) (*Key, error) {
	var signer crypto.Signer
	var err error
	switch alg {
	case "RS256", "RS384", "RS512", "PS256", "PS384", "PS512":
		signer, err = rsa.GenerateKey(rand.Reader, 2048)
	case "ES256":
		signer, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case "ES384":
		signer, err = ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	case "ES512":
		signer, err = ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
	case "EdDSA":
		_, signer, err = ed25519.GenerateKey(rand.Reader)
	default:
		return nil, fmt.Errorf("devissuer: unsupported algorithm %q", alg)
	}
	if err != nil {
		return nil, fmt.Errorf("devissuer: generating %s key: %w", alg, err)
	}
	kid := make([]byte, 8)
	_, _ = rand.Read(kid)
	return &Key{KID: hex.EncodeToString(kid), Alg: alg, Signer: signer}, nil
}

// JWK returns the public JWK of k.
func (k *Key) JWK() map[string]any {
	b64 := base64.RawURLEncoding.EncodeToString
	m := map[string]any{"kid": k.KID, "alg": k.Alg, "use": "sig"}
	switch pub := k.Signer.Public().(type) {
	case *rsa.PublicKey:
		m["kty"] = "RSA"
		m["n"] = b64(pub.N.Bytes())
		m["e"] = b64(big.NewInt(int64(pub.E)).Bytes())
	case *ecdsa.PublicKey:
		m["kty"] = "EC"
		m["crv"] = pub.Curve.Params().Name
		size := (pub.Curve.Params().BitSize + 7) / 8
		ecdh, _ := pub.ECDH()
		raw := ecdh.Bytes() // 0x04 || X || Y
		m["x"] = b64(raw[1 : 1+size])
		m["y"] = b64(raw[1+size:])
	case ed25519.PublicKey:
		m["kty"] = "OKP"
		m["crv"] = "Ed25519"
		m["x"] = b64(pub)
	}
	return m
}

// Sign signs claims with k, adding kid and the given extra header parameters.
func (k *Key) Sign(claims jwt.MapClaims, header map[string]any) (string, error) {
	t := jwt.NewWithClaims(jwt.GetSigningMethod(k.Alg), claims)
	t.Header["kid"] = k.KID
	for name, v := range header {
		if v == nil {
			delete(t.Header, name)
			continue
		}
		t.Header[name] = v
	}
	return t.SignedString(k.Signer)
}

// Config configures an Issuer. Zero values give a usable development issuer.
type Config struct {
	// Addr to listen on; it must be a loopback address. Default "127.0.0.1:0".
	Addr string
	// Algorithms of the initial keys, the first one signing. Default RS256 then ES256.
	Algorithms []string
	// Clients maps client_id to client_secret for the token endpoint.
	Clients map[string]string
	// Scopes granted when a token request names none.
	DefaultScopes []string
	// DefaultAudience is the aud when a token request names no resource.
	DefaultAudience string
	// TokenTTL of issued tokens. Default one hour.
	TokenTTL time.Duration
}

// Issuer is a running development authorization server.
type Issuer struct {
	URL string

	cfg      Config
	ln       net.Listener
	srv      *http.Server
	mu       sync.RWMutex
	keys     []*Key
	jwksHits atomic.Int64
}

// Start listens on cfg.Addr (loopback only) and serves the issuer.
func Start(cfg Config) (*Issuer, error) {
	if cfg.Addr == "" {
		cfg.Addr = "127.0.0.1:0"
	}
	host, _, err := net.SplitHostPort(cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("devissuer: addr: %w", err)
	}
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return nil, fmt.Errorf("devissuer: addr %q is not a loopback address", cfg.Addr)
	}
	if len(cfg.Algorithms) == 0 {
		cfg.Algorithms = []string{"RS256", "ES256"}
	}
	if cfg.TokenTTL <= 0 {
		cfg.TokenTTL = time.Hour
	}
	iss := &Issuer{cfg: cfg}
	for _, alg := range cfg.Algorithms {
		k, err := NewKey(alg)
		if err != nil {
			return nil, err
		}
		iss.keys = append(iss.keys, k)
	}
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("devissuer: %w", err)
	}
	iss.ln = ln
	iss.URL = "http://" + ln.Addr().String()
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/openid-configuration", iss.serveMetadata)
	mux.HandleFunc("GET /.well-known/oauth-authorization-server", iss.serveMetadata)
	mux.HandleFunc("GET /jwks", iss.serveJWKS)
	mux.HandleFunc("POST /token", iss.serveToken)
	iss.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = iss.srv.Serve(ln) }()
	return iss, nil
}

// Close stops the server.
func (i *Issuer) Close() error { return i.srv.Close() }

// JWKSURL is the issuer's jwks_uri.
func (i *Issuer) JWKSURL() string { return i.URL + "/jwks" }

// TokenURL is the issuer's token endpoint.
func (i *Issuer) TokenURL() string { return i.URL + "/token" }

// JWKSHits counts JWKS requests served.
func (i *Issuer) JWKSHits() int64 { return i.jwksHits.Load() }

// Keys returns the published keys; the first one signs.
func (i *Issuer) Keys() []*Key {
	i.mu.RLock()
	defer i.mu.RUnlock()
	return append([]*Key(nil), i.keys...)
}

// Rotate publishes a new key for alg and makes it the signing key. The old
// keys stay published so tokens they signed still verify.
func (i *Issuer) Rotate(alg string) (*Key, error) {
	k, err := NewKey(alg)
	if err != nil {
		return nil, err
	}
	i.mu.Lock()
	i.keys = append([]*Key{k}, i.keys...)
	i.mu.Unlock()
	return k, nil
}

// KeyFor returns the newest published key for alg.
func (i *Issuer) KeyFor(alg string) (*Key, error) {
	i.mu.RLock()
	defer i.mu.RUnlock()
	for _, k := range i.keys {
		if k.Alg == alg {
			return k, nil
		}
	}
	return nil, fmt.Errorf("devissuer: no %s key", alg)
}

// TokenRequest describes an access token to mint.
type TokenRequest struct {
	Subject  string
	ClientID string
	Audience string
	Scopes   []string
	Alg      string // default: the signing key's
	TTL      time.Duration
}

// Issue mints an RFC 9068 JWT access token.
func (i *Issuer) Issue(r TokenRequest) (string, error) {
	var k *Key
	var err error
	if r.Alg == "" {
		k = i.Keys()[0]
	} else if k, err = i.KeyFor(r.Alg); err != nil {
		return "", err
	}
	ttl := r.TTL
	if ttl <= 0 {
		ttl = i.cfg.TokenTTL
	}
	aud := r.Audience
	if aud == "" {
		aud = i.cfg.DefaultAudience
	}
	scopes := r.Scopes
	if scopes == nil {
		scopes = i.cfg.DefaultScopes
	}
	now := time.Now()
	jti := make([]byte, 12)
	_, _ = rand.Read(jti)
	claims := jwt.MapClaims{
		"iss":       i.URL,
		"sub":       r.Subject,
		"aud":       aud,
		"client_id": r.ClientID,
		"iat":       now.Unix(),
		"exp":       now.Add(ttl).Unix(),
		"jti":       hex.EncodeToString(jti),
	}
	if len(scopes) > 0 {
		claims["scope"] = strings.Join(scopes, " ")
	}
	return k.Sign(claims, map[string]any{"typ": "at+jwt"})
}

func (i *Issuer) serveMetadata(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{
		"issuer":                                i.URL,
		"jwks_uri":                              i.JWKSURL(),
		"token_endpoint":                        i.TokenURL(),
		"grant_types_supported":                 []string{"client_credentials"},
		"token_endpoint_auth_methods_supported": []string{"client_secret_basic", "client_secret_post"},
	})
}

func (i *Issuer) serveJWKS(w http.ResponseWriter, _ *http.Request) {
	i.jwksHits.Add(1)
	keys := i.Keys()
	set := make([]map[string]any, 0, len(keys))
	for _, k := range keys {
		set = append(set, k.JWK())
	}
	writeJSON(w, http.StatusOK, map[string]any{"keys": set})
}

func (i *Issuer) serveToken(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	if err := r.ParseForm(); err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "invalid_request"})
		return
	}
	if r.PostForm.Get("grant_type") != "client_credentials" {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "unsupported_grant_type"})
		return
	}
	id, secret, ok := r.BasicAuth()
	if !ok {
		id, secret = r.PostForm.Get("client_id"), r.PostForm.Get("client_secret")
	}
	want, known := i.cfg.Clients[id]
	if !known || subtle.ConstantTimeCompare([]byte(secret), []byte(want)) != 1 {
		w.Header().Set("WWW-Authenticate", `Basic realm="token"`)
		writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "invalid_client"})
		return
	}
	var scopes []string
	if s := r.PostForm.Get("scope"); s != "" {
		scopes = strings.Fields(s)
	}
	tok, err := i.Issue(TokenRequest{Subject: id, ClientID: id, Audience: r.PostForm.Get("resource"), Scopes: scopes})
	if err != nil {
		writeJSON(w, http.StatusInternalServerError, map[string]string{"error": "server_error"})
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, map[string]any{
		"access_token": tok,
		"token_type":   "Bearer",
		"expires_in":   int(i.cfg.TokenTTL.Seconds()),
	})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// SignRaw signs the given JOSE header and payload JSON exactly as written,
// for tests of what a JSON-object API cannot express (duplicate or
// differently cased member names).
func (k *Key) SignRaw(header, payload string) (string, error) {
	b64 := base64.RawURLEncoding.EncodeToString
	signing := b64([]byte(header)) + "." + b64([]byte(payload))
	sig, err := jwt.GetSigningMethod(k.Alg).Sign(signing, k.Signer)
	if err != nil {
		return "", err
	}
	return signing + "." + b64(sig), nil
}
