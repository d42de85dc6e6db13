package validators

import (
	"context"
	"errors"
	"fmt"
	"net/http/httptest"
	"testing"
	"time"
)

func TestFirstActive(t *testing.T) {
	exp := time.Now().Add(time.Hour).Unix()
	server := func(answers map[string]string, status int) *Introspection {
		as := &fakeAS{answers: answers, status: status}
		srv := httptest.NewServer(as)
		t.Cleanup(srv.Close)
		v, err := NewIntrospection(context.Background(), IntrospectionConfig{Endpoint: srv.URL, ClientID: "a", ClientSecret: "b", Audiences: []string{testAudience}, Client: srv.Client()})
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	good := fmt.Sprintf(`{"active":true,"aud":"%s","exp":%d,"sub":"%%s"}`, testAudience, exp)
	a := server(map[string]string{"t-a": fmt.Sprintf(good, "from-a"), "wrong-aud": fmt.Sprintf(`{"active":true,"aud":"x","exp":%d}`, exp)}, 0)
	b := server(map[string]string{"t-b": fmt.Sprintf(good, "from-b")}, 0)
	down := server(nil, 500)

	m, _ := NewFirstActive(a, b)
	for token, want := range map[string]string{"t-a": "from-a", "t-b": "from-b"} {
		p, err := m.Validate(context.Background(), token)
		if err != nil || p.Subject() != want {
			t.Fatalf("%s: %+v %v", token, p, err)
		}
	}
	_, err := m.Validate(context.Background(), "unknown")
	var verr *Error
	if !errors.As(err, &verr) || verr.Description != DescInactive {
		t.Fatalf("unknown everywhere: %v", err)
	}
	if _, err := m.Validate(context.Background(), "wrong-aud"); !errors.As(err, &verr) || verr.Description != DescAudience {
		t.Fatalf("known with the wrong audience: %v", err)
	}
	withDown, _ := NewFirstActive(a, down)
	if _, err := withDown.Validate(context.Background(), "unknown"); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("a server down must make an unknown token unavailable, got %v", err)
	}
	if p, err := withDown.Validate(context.Background(), "t-a"); err != nil || p.Subject() != "from-a" {
		t.Fatalf("a token known before the failed server: %v", err)
	}
}
