package authz_test

import (
	"context"
	"net/http/httptest"
	"strings"
	"testing"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/protobuf/proto"

	"github.com/mcp-authz/mcp-authz/authz"
)

// TestKeptAllowAnswersAsRendered: the allow kept with a cached principal
// (its wire form alone, from the principal's second Check on) answers
// exactly as the allow rendered for its first Check, on the wire, as a
// generated message, through forward auth, and with removals added for a
// request that carries identity-like headers; the claims forwarded are
// the token's payload segment every time.
func TestKeptAllowAnswersAsRendered(t *testing.T) {
	s, _, _ := stubServer(t, 0)
	ctx := context.Background()
	tok := stubToken(42)
	payload := strings.Split(tok, ".")[1]
	req := checkRequest("Bearer " + tok)
	wireReq, _ := proto.Marshal(req)

	var first []byte
	for i := range 4 { // rendered, then kept, then shared
		resp, err := s.CheckWire(ctx, wireReq)
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			first = resp
			continue
		}
		if string(resp) != string(first) {
			t.Fatalf("Check %d answered otherwise than the first", i+1)
		}
	}
	var want authv3.CheckResponse
	if err := proto.Unmarshal(first, &want); err != nil {
		t.Fatal(err)
	}
	claims := ""
	for _, h := range want.GetOkResponse().GetHeaders() {
		if h.GetHeader().GetKey() == "x-mcp-auth-claims" {
			claims = h.GetHeader().GetValue()
		}
	}
	if claims != payload {
		t.Fatalf("claims header %q, want the token's payload segment", claims)
	}

	// The generated message (Server.Check, interceptors) of the kept allow.
	msg, err := s.Check(ctx, req)
	if err != nil || !proto.Equal(msg, &want) {
		t.Fatalf("Check's message differs from the wire answer: %v\n%v", err, msg)
	}

	// A request with an identity-like header: the kept allow plus a removal.
	withCopy := checkRequest("Bearer " + tok)
	withCopy.Attributes.Request.Http.Headers["x-mcp-auth-role"] = "admin"
	msg, err = s.Check(ctx, withCopy)
	if err != nil {
		t.Fatal(err)
	}
	ok := msg.GetOkResponse()
	if !strings.Contains(strings.Join(ok.GetHeadersToRemove(), ","), "x-mcp-auth-role") ||
		!proto.Equal(&authv3.OkHttpResponse{Headers: ok.GetHeaders()}, &authv3.OkHttpResponse{Headers: want.GetOkResponse().GetHeaders()}) {
		t.Fatalf("allow with a removal: %v", ok)
	}

	// Forward auth, twice (rendered for it once, then shared).
	h := s.ForwardHandler()
	for range 2 {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, forwardRequest(authz.ForwardPathEnvoy, "Bearer "+tok))
		if w.Code != 200 || w.Header().Get("X-Mcp-Auth-Claims") != payload || w.Header().Get("X-Mcp-Auth-Subject") == "" {
			t.Fatalf("forward auth: %d %v", w.Code, w.Header())
		}
	}
}
