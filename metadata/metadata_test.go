package metadata

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
)

func TestWellKnownURL(t *testing.T) {
	tests := []struct{ resource, want string }{
		{"https://h.example/mcp", "https://h.example/.well-known/oauth-protected-resource/mcp"},
		{"https://h.example", "https://h.example/.well-known/oauth-protected-resource"},
		{"https://h.example/", "https://h.example/.well-known/oauth-protected-resource"},
		{"https://h.example:8443/a/b", "https://h.example:8443/.well-known/oauth-protected-resource/a/b"},
		{"https://h.example/mcp?tenant=1", "https://h.example/.well-known/oauth-protected-resource/mcp?tenant=1"},
		{"http://127.0.0.1:9192/mcp", "http://127.0.0.1:9192/.well-known/oauth-protected-resource/mcp"},
	}
	for _, tt := range tests {
		got, err := WellKnownURL(tt.resource)
		if err != nil || got != tt.want {
			t.Errorf("WellKnownURL(%q) = %q, %v; want %q", tt.resource, got, err, tt.want)
		}
	}
	for _, bad := range []string{"", "mcp", "ftp://h/x", "https://h/x#frag", "https://u:p@h/x", "https:///x"} {
		if _, err := WellKnownURL(bad); err == nil {
			t.Errorf("WellKnownURL(%q) accepted", bad)
		}
	}
}

func TestHandler(t *testing.T) {
	doc := Document{
		Resource:               "https://h.example/mcp",
		AuthorizationServers:   []string{"https://as.example"},
		ScopesSupported:        []string{"mcp:read"},
		BearerMethodsSupported: []string{"header"},
	}
	h, err := NewHandler([]Document{doc})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		method, path string
		status       int
	}{
		{"GET", "/.well-known/oauth-protected-resource/mcp", 200},
		{"GET", "/.well-known/oauth-protected-resource", 200},
		{"HEAD", "/.well-known/oauth-protected-resource/mcp", 200},
		{"OPTIONS", "/.well-known/oauth-protected-resource/mcp", 204},
		{"POST", "/.well-known/oauth-protected-resource/mcp", 405},
		{"DELETE", "/.well-known/oauth-protected-resource/mcp", 405},
		{"GET", "/.well-known/oauth-protected-resource/other", 404},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.path, func(t *testing.T) {
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest(tt.method, tt.path, nil))
			if rec.Code != tt.status {
				t.Fatalf("status %d, want %d", rec.Code, tt.status)
			}
			if tt.status == 404 {
				return
			}
			if rec.Header().Get("Access-Control-Allow-Origin") != "*" {
				t.Error("no CORS header")
			}
			switch tt.status {
			case 405:
				if rec.Header().Get("Allow") == "" {
					t.Error("405 without Allow")
				}
			case 204:
				if rec.Header().Get("Access-Control-Allow-Methods") == "" {
					t.Error("preflight without Allow-Methods")
				}
			case 200:
				if rec.Header().Get("Content-Type") != "application/json" || rec.Header().Get("Cache-Control") == "" {
					t.Errorf("headers %v", rec.Header())
				}
				if tt.method == "GET" {
					var got map[string]any
					if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil {
						t.Fatal(err)
					}
					if got["resource"] != doc.Resource {
						t.Errorf("resource %v", got["resource"])
					}
					for k, v := range got {
						if v == nil {
							t.Errorf("field %s is null", k)
						}
					}
					if _, ok := got["resource_name"]; ok {
						t.Error("empty resource_name sent")
					}
				}
			}
		})
	}
}

func TestResourceByteIdentical(t *testing.T) {
	res := "https://h.example/mcp?a=1&b=<2>"
	h, err := NewHandler([]Document{{Resource: res}})
	if err != nil {
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/.well-known/oauth-protected-resource/mcp", nil))
	var got Document
	if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil || got.Resource != res {
		t.Fatalf("resource %q, %v", got.Resource, err)
	}
}

// TestHandlerRejectsSharedPath: two resources with one metadata path on
// one host cannot both be served; on different hosts they are told apart
// by Host (DESIGN §6).
func TestHandlerRejectsSharedPath(t *testing.T) {
	for _, pair := range [][2]string{
		{"https://a.example/mcp", "https://a.example/mcp/"},
		{"https://a.example/mcp", "https://A.example/mcp"},
	} {
		if _, err := NewHandler([]Document{{Resource: pair[0]}, {Resource: pair[1]}}); err == nil {
			t.Fatalf("%v: two resources with one metadata path on one host accepted", pair)
		}
	}
}

func TestHandlerTellsHostsApart(t *testing.T) {
	h, err := NewHandler([]Document{{Resource: "https://a.example/mcp"}, {Resource: "https://b.example:8443/mcp"}})
	if err != nil {
		t.Fatal(err)
	}
	for host, want := range map[string]string{
		"a.example":      "https://a.example/mcp",
		"A.EXAMPLE:443":  "https://a.example/mcp",
		"b.example:8443": "https://b.example:8443/mcp",
		"b.example":      "https://b.example:8443/mcp",
		"c.example":      "",
	} {
		r := httptest.NewRequest(http.MethodGet, "/.well-known/oauth-protected-resource/mcp", nil)
		r.Host = host
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, r)
		if want == "" {
			if rec.Code != http.StatusNotFound {
				t.Errorf("%s: %d, want 404", host, rec.Code)
			}
			continue
		}
		var got Document
		if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil || got.Resource != want {
			t.Errorf("%s: resource %q (%v), want %q", host, got.Resource, err, want)
		}
	}
}
