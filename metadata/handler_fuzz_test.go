package metadata

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
)

// FuzzHandler: whatever path, Host and method a client sends the side
// server, the handler never panics and serves only a configured document:
// at a path that is one document's (its trailing "/" ignored), the first
// resource's at the bare well-known path, and, where two hosts share a path,
// the one of the request's host (with its port, else by name).
func FuzzHandler(f *testing.F) {
	docs := []Document{{Resource: "https://a.example/mcp"}, {Resource: "https://b.example:8443/mcp"}, {Resource: "https://a.example/other"}}
	h, err := NewHandler(docs)
	if err != nil {
		f.Fatal(err)
	}
	f.Add("/.well-known/oauth-protected-resource/mcp", "a.example", "GET")
	f.Add("/.well-known/oauth-protected-resource/mcp/", "B.EXAMPLE:8443", "HEAD")
	f.Add("/.well-known/oauth-protected-resource", "c.example", "OPTIONS")
	f.Add("/.well-known/oauth-protected-resource/other", "a.example:443", "POST")
	f.Add("/.well-known/oauth-protected-resource/mcp", "b.example", "GET")
	f.Fuzz(func(t *testing.T, path, host, method string) {
		if !strings.HasPrefix(path, "/") || strings.ContainsAny(path, "?#") {
			return
		}
		req := &http.Request{Method: method, URL: &url.URL{Path: path}, Host: host, Header: http.Header{}}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != http.StatusOK || method != http.MethodGet {
			return
		}
		var got Document
		if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil {
			t.Fatalf("served a body that is not a document: %q", rec.Body.String())
		}
		p := strings.TrimSuffix(path, "/")
		switch {
		case p == WellKnownPrefix:
			if got.Resource != docs[0].Resource {
				t.Fatalf("the bare well-known path served %s", got.Resource)
			}
		case p == WellKnownPrefix+"/other":
			if got.Resource != docs[2].Resource {
				t.Fatalf("%s served %s", path, got.Resource)
			}
		case p == WellKnownPrefix+"/mcp":
			want := map[string]string{"a.example": docs[0].Resource, "b.example:8443": docs[1].Resource, "b.example": docs[1].Resource}[strings.ToLower(host)]
			if name, _, ok := strings.Cut(strings.ToLower(host), ":"); ok && want == "" {
				want = map[string]string{"a.example": docs[0].Resource, "b.example": docs[1].Resource}[name]
			}
			if got.Resource != want {
				t.Fatalf("%s for host %q served %s, want %q", path, host, got.Resource, want)
			}
		default:
			t.Fatalf("%s served %s", path, got.Resource)
		}
	})
}
