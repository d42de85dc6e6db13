package validators

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// fakeAS is an introspection endpoint answering from a table keyed by token.
type fakeAS struct {
	t       *testing.T
	answers map[string]string // token -> JSON body
	calls   atomic.Int64
	status  int
	delay   time.Duration
	lastReq atomic.Pointer[http.Request]
	form    atomic.Value
}

func (f *fakeAS) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.calls.Add(1)
	if err := r.ParseForm(); err != nil {
		http.Error(w, "bad form", 400)
		return
	}
	f.lastReq.Store(r)
	f.form.Store(r.PostForm)
	if f.delay > 0 {
		time.Sleep(f.delay)
	}
	if f.status != 0 {
		w.WriteHeader(f.status)
		fmt.Fprint(w, `{"error":"x"}`)
		return
	}
	body, ok := f.answers[r.PostForm.Get("token")]
	if !ok {
		body = `{"active":false}`
	}
	w.Header().Set("Content-Type", "application/json")
	fmt.Fprint(w, body)
}

func newIntrospectionFixture(t *testing.T, mutate func(*IntrospectionConfig)) (*Introspection, *fakeAS) {
	t.Helper()
	exp := time.Now().Add(time.Hour).Unix()
	as := &fakeAS{t: t, answers: map[string]string{
		"good":        fmt.Sprintf(`{"active":true,"scope":"mcp:read mcp:write","client_id":"c1","sub":"u1","iss":"https://as.example","aud":"%s","exp":%d,"token_type":"Bearer"}`, testAudience, exp),
		"aud-array":   fmt.Sprintf(`{"active":true,"aud":["https://other.example","%s/"],"exp":%d}`, testAudience, exp),
		"no-aud":      fmt.Sprintf(`{"active":true,"sub":"u1","exp":%d}`, exp),
		"wrong-aud":   fmt.Sprintf(`{"active":true,"aud":"https://other.example/mcp","exp":%d}`, exp),
		"prefix-aud":  fmt.Sprintf(`{"active":true,"aud":"%s/x","exp":%d}`, testAudience, exp),
		"expired":     fmt.Sprintf(`{"active":true,"aud":"%s","exp":%d}`, testAudience, time.Now().Add(-2*time.Minute).Unix()),
		"nbf-future":  fmt.Sprintf(`{"active":true,"aud":"%s","exp":%d,"nbf":%d}`, testAudience, exp, time.Now().Add(5*time.Minute).Unix()),
		"wrong-iss":   fmt.Sprintf(`{"active":true,"aud":"%s","exp":%d,"iss":"https://evil.example"}`, testAudience, exp),
		"no-exp":      fmt.Sprintf(`{"active":true,"aud":"%s","username":"alice"}`, testAudience),
		"inactive":    `{"active":false}`,
		"active-str":  `{"active":"true","aud":"x"}`,
		"active-num":  `{"active":1}`,
		"no-active":   `{"aud":"x"}`,
		"not-json":    `<html>login</html>`,
		"trailing":    `{"active":true} {"active":true}`,
		"exp-string":  `{"active":true,"exp":"soon"}`,
		"aud-number":  `{"active":true,"aud":7}`,
		"array":       `[true]`,
		"exp-float":   fmt.Sprintf(`{"active":true,"aud":"%s","exp":%d.5}`, testAudience, exp),
		"scope-array": `{"active":true,"scope":["a"]}`,
	}}
	srv := httptest.NewServer(as)
	t.Cleanup(srv.Close)
	cfg := IntrospectionConfig{
		Endpoint:     srv.URL + "/introspect",
		Issuer:       "https://as.example",
		ClientID:     "rs client",
		ClientSecret: "s3cr:et&=",
		Audiences:    []string{testAudience},
		Leeway:       time.Minute,
		Client:       srv.Client(),
	}
	if mutate != nil {
		mutate(&cfg)
	}
	v, err := NewIntrospection(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	return v, as
}

func TestIntrospectionValidate(t *testing.T) {
	v, _ := newIntrospectionFixture(t, nil)
	tests := []struct {
		token string
		want  string // description, "" = valid
		kind  error
	}{
		{"good", "", nil},
		{"aud-array", "", nil},
		{"no-exp", "", nil},
		{"exp-float", "", nil},
		{"inactive", DescInactive, ErrInvalidToken},
		{"unknown", DescInactive, ErrInvalidToken},
		{"no-aud", DescAudience, ErrInvalidToken},
		{"wrong-aud", DescAudience, ErrInvalidToken},
		{"prefix-aud", DescAudience, ErrInvalidToken},
		{"expired", DescExpired, ErrInvalidToken},
		{"nbf-future", DescNotYetValid, ErrInvalidToken},
		{"wrong-iss", DescIssuer, ErrInvalidToken},
		{"active-str", DescIntrospect, ErrUnavailable},
		{"active-num", DescIntrospect, ErrUnavailable},
		{"no-active", DescIntrospect, ErrUnavailable},
		{"not-json", DescIntrospect, ErrUnavailable},
		{"trailing", DescIntrospect, ErrUnavailable},
		{"array", DescIntrospect, ErrUnavailable},
		// A member the token's answer carries that we cannot accept is
		// invalid_token, never a 503 (see ParseIntrospection).
		{"exp-string", DescMalformed, ErrInvalidToken},
		{"aud-number", DescMalformed, ErrInvalidToken},
		{"scope-array", DescMalformed, ErrInvalidToken},
	}
	for _, tt := range tests {
		t.Run(tt.token, func(t *testing.T) {
			p, err := v.Validate(context.Background(), tt.token)
			if tt.want == "" {
				if err != nil {
					t.Fatalf("want valid, got %v", err)
				}
				if p.Issuer() != "https://as.example" {
					t.Errorf("issuer %q", p.Issuer())
				}
				return
			}
			var verr *Error
			if !errors.As(err, &verr) || verr.Description != tt.want || !errors.Is(err, tt.kind) {
				t.Fatalf("got %v, want %q (%v)", err, tt.want, tt.kind)
			}
		})
	}
}

func TestIntrospectionPrincipal(t *testing.T) {
	v, as := newIntrospectionFixture(t, nil)
	p, err := v.Validate(context.Background(), "good")
	if err != nil {
		t.Fatal(err)
	}
	if p.Subject() != "u1" || p.ClientID() != "c1" || strings.Join(p.Scopes(), " ") != "mcp:read mcp:write" || p.ExpiresAt().IsZero() {
		t.Fatalf("principal %+v", p)
	}
	claims, _ := base64.RawURLEncoding.DecodeString(p.Claims(""))
	if !strings.Contains(string(claims), `"client_id":"c1"`) {
		t.Fatalf("claims %s", claims)
	}
	// RFC 7662 §2.1 request, client_secret_basic with RFC 6749 §2.3.1 encoding.
	form := as.form.Load().(url.Values)
	if form["token"][0] != "good" || form["token_type_hint"][0] != "access_token" || form["client_secret"] != nil {
		t.Fatalf("form %v", form)
	}
	id, secret, ok := as.lastReq.Load().BasicAuth()
	if !ok || id != "rs+client" || secret != "s3cr%3Aet%26%3D" {
		t.Fatalf("basic auth %q %q %v", id, secret, ok)
	}
	if p2, _ := v.Validate(context.Background(), "no-exp"); p2.Subject() != "alice" {
		t.Fatalf("username as subject: %+v", p2)
	}
}

func TestIntrospectionClientSecretPost(t *testing.T) {
	v, as := newIntrospectionFixture(t, func(c *IntrospectionConfig) { c.AuthMethod = "client_secret_post" })
	if _, err := v.Validate(context.Background(), "good"); err != nil {
		t.Fatal(err)
	}
	form := as.form.Load().(url.Values)
	if form["client_id"][0] != "rs client" || form["client_secret"][0] != "s3cr:et&=" {
		t.Fatalf("form %v", form)
	}
	if _, _, ok := as.lastReq.Load().BasicAuth(); ok {
		t.Fatal("basic auth sent with client_secret_post")
	}
}

func TestIntrospectionAllowMissingAudience(t *testing.T) {
	v, _ := newIntrospectionFixture(t, func(c *IntrospectionConfig) { c.AllowMissingAudience = true })
	if _, err := v.Validate(context.Background(), "no-aud"); err != nil {
		t.Fatalf("no aud with the switch on: %v", err)
	}
	if _, err := v.Validate(context.Background(), "wrong-aud"); !errors.Is(err, ErrInvalidToken) {
		t.Fatalf("a present wrong aud must still fail: %v", err)
	}
}

// TestIntrospectionFaults: every way the authorization server can fail is
// "unavailable" (503), never invalid_token and never an allow.
func TestIntrospectionFaults(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*fakeAS)
		cause  string
	}{
		{"500", func(a *fakeAS) { a.status = 500 }, "status 500"},
		{"401 to our credentials", func(a *fakeAS) { a.status = 401 }, "client credentials"},
		{"403 to our credentials", func(a *fakeAS) { a.status = 403 }, "client credentials"},
		{"slow beyond the timeout", func(a *fakeAS) { a.delay = 300 * time.Millisecond }, "deadline"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, as := newIntrospectionFixture(t, func(c *IntrospectionConfig) { c.Timeout = 100 * time.Millisecond })
			tt.mutate(as)
			_, err := v.Validate(context.Background(), "good")
			if !errors.Is(err, ErrUnavailable) {
				t.Fatalf("want ErrUnavailable, got %v", err)
			}
			if !strings.Contains(err.Error(), tt.cause) {
				t.Errorf("cause not named: %v", err)
			}
			if strings.Contains(err.Error(), "s3cr") || strings.Contains(err.Error(), "good") {
				t.Errorf("error leaks a secret or the token: %v", err)
			}
		})
	}
	t.Run("connection refused", func(t *testing.T) {
		srv := httptest.NewServer(http.NotFoundHandler())
		url := srv.URL
		srv.Close()
		v, err := NewIntrospection(context.Background(), IntrospectionConfig{Endpoint: url, ClientID: "a", ClientSecret: "b", Audiences: []string{testAudience}, Client: http.DefaultClient})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := v.Validate(context.Background(), "good"); !errors.Is(err, ErrUnavailable) {
			t.Fatalf("got %v", err)
		}
	})
}

func TestIntrospectionDiscovery(t *testing.T) {
	as := &fakeAS{answers: map[string]string{"good": fmt.Sprintf(`{"active":true,"aud":"%s"}`, testAudience)}}
	mux := http.NewServeMux()
	var issuer string
	mux.HandleFunc("/.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, `{"issuer":%q,"introspection_endpoint":%q}`, issuer, issuer+"/introspect")
	})
	mux.Handle("/introspect", as)
	srv := httptest.NewServer(mux)
	defer srv.Close()
	issuer = srv.URL
	v, err := NewIntrospection(context.Background(), IntrospectionConfig{Issuer: issuer, ClientID: "a", ClientSecret: "b", Audiences: []string{testAudience}, Client: srv.Client()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.Validate(context.Background(), "good"); err != nil {
		t.Fatalf("discovered endpoint: %v", err)
	}
}

func TestNewIntrospectionRejectsBadConfig(t *testing.T) {
	base := func() IntrospectionConfig {
		return IntrospectionConfig{Endpoint: "https://as.example/introspect", ClientID: "a", ClientSecret: "b", Audiences: []string{"x"}, Client: http.DefaultClient}
	}
	for name, m := range map[string]func(*IntrospectionConfig){
		"no endpoint or issuer": func(c *IntrospectionConfig) { c.Endpoint = "" },
		"http endpoint":         func(c *IntrospectionConfig) { c.Endpoint = "http://as.example/introspect" },
		"no secret":             func(c *IntrospectionConfig) { c.ClientSecret = "" },
		"bad auth method":       func(c *IntrospectionConfig) { c.AuthMethod = "private_key_jwt" },
		"no audience":           func(c *IntrospectionConfig) { c.Audiences = nil },
	} {
		c := base()
		m(&c)
		if _, err := NewIntrospection(context.Background(), c); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func FuzzParseIntrospection(f *testing.F) {
	for _, s := range []string{
		`{"active":true}`, `{"active":false}`, `{"active":"true"}`, `{}`, `[]`, `null`,
		`{"active":true,"exp":1e300}`, `{"active":true,"aud":["a",1]}`, `{"active":true,"scope":"a b"}`,
		`{"active":true,"exp":-1}`, `{"active":true}garbage`, `{"active":true,"active":false}`,
		`{"active":false,"Active":true}`, `{"active":true,"exp":1e19}`, `{"active":true,"iat":"x"}`,
		`{"active":true,"scope":"x\u2003mcp:read"}`, `{"active":true,"scope":" a  b "}`,
		`{"active":true,"username":"a\u0000"}`, `{"active":true,"sub":"\ud800"}`, "{\"active\":true,\"sub\":\"\xff\"}",
		`{"active":true,"x":{"y":1,"y":2}}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := ParseIntrospection(b)
		if err != nil {
			if len(b) > 16 && strings.Contains(err.Error(), string(b)) {
				t.Fatalf("error echoes the response: %v", err)
			}
			return
		}
		if r.Active && !strings.Contains(string(b), "true") {
			t.Fatalf("active without a true in %q", b)
		}
		if !r.Active {
			return
		}
		for _, id := range []string{r.Subject, r.Username, r.ClientID, r.Issuer} {
			if checkIdentity("id", id) != nil {
				t.Fatalf("identity %q accepted", id)
			}
		}
		for _, s := range r.Scope {
			if !IsScopeToken(s) {
				t.Fatalf("scope %q accepted", s)
			}
		}
	})
}

// TestIntrospectionFollowsNoRedirect: the introspection POST carries the
// token and the client credentials, so a redirect is never followed, to
// any host: it is "unavailable", with the cause in the log.
func TestIntrospectionFollowsNoRedirect(t *testing.T) {
	target := &fakeAS{answers: map[string]string{
		"good": fmt.Sprintf(`{"active":true,"aud":%q,"exp":%d}`, testAudience, time.Now().Add(time.Hour).Unix()),
	}}
	targetSrv := httptest.NewServer(target) // another loopback port
	defer targetSrv.Close()
	for _, status := range []int{301, 302, 303, 307, 308} {
		t.Run(fmt.Sprint(status), func(t *testing.T) {
			redirector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				http.Redirect(w, r, targetSrv.URL+"/introspect", status)
			}))
			defer redirector.Close()
			for _, method := range []string{"client_secret_basic", "client_secret_post"} {
				v, err := NewIntrospection(context.Background(), IntrospectionConfig{Endpoint: redirector.URL, ClientID: "rs", ClientSecret: "s3cret",
					AuthMethod: method, Audiences: []string{testAudience}, Client: http.DefaultClient, Timeout: 5 * time.Second})
				if err != nil {
					t.Fatal(err)
				}
				_, err = v.Validate(context.Background(), "good")
				var verr *Error
				if !errors.As(err, &verr) || !errors.Is(err, ErrUnavailable) || verr.Description != DescIntrospect {
					t.Fatalf("%s: got %v, want unavailable %q", method, err, DescIntrospect)
				}
				if !strings.Contains(err.Error(), "redirect") || !strings.Contains(err.Error(), fmt.Sprint(status)) {
					t.Errorf("the cause does not name the redirect: %v", err)
				}
				if strings.Contains(err.Error(), "s3cret") || strings.Contains(err.Error(), "good") {
					t.Errorf("error leaks a secret or the token: %v", err)
				}
			}
			if n := target.calls.Load(); n != 0 {
				t.Fatalf("the redirect target was asked %d times", n)
			}
		})
	}
}
