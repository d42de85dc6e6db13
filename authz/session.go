package authz

import (
	"context"
	"crypto/sha256"
	"net/http"
	"net/url"
	"strings"

	"google.golang.org/grpc/codes"

	"github.com/mcp-authz/mcp-authz/validators"
)

// sessionKey identifies a session of a resource in the session store: the
// raw session id never leaves the process.
func sessionKey(resource, id string) [sha256.Size]byte {
	h := sha256.New()
	h.Write([]byte(resource))
	h.Write([]byte{0})
	h.Write([]byte(id))
	return [sha256.Size]byte(h.Sum(nil))
}

// principalID names who a session belongs to: issuer and subject, or the
// client id for tokens without a subject (client credentials at some
// authorization servers).
func principalID(p *validators.Principal) string {
	id := p.Issuer() + "\x00" + p.Subject()
	if p.Subject() == "" {
		id += "\x00client:" + p.ClientID()
	}
	return id
}

// sessionID returns the session a request belongs to: Mcp-Session-Id, or
// the legacy SSE transport's ?sessionId= on its messages path.
func (req *request) sessionID(in *checkInput) (id string, ok bool) {
	if len(in.sessionID) > 0 {
		if len(in.sessionID) > 1 {
			return "", false
		}
		return in.sessionID[0], true
	}
	if req.path == req.rt.messagesPath {
		if i := strings.IndexByte(in.path, '?'); i >= 0 {
			q, err := url.ParseQuery(in.path[i+1:])
			if err != nil || len(q["sessionId"]) > 1 {
				return "", false
			}
			if v := q.Get("sessionId"); v != "" {
				return v, true
			}
		}
	}
	return "", true
}

// bindSession binds the request's session to p, or refuses the request
// when the session belongs to another principal: a stolen session id is
// useless under a different token.
func (s *Server) bindSession(ctx context.Context, in *checkInput, req *request, p *validators.Principal) (result, bool) {
	id, ok := req.sessionID(in)
	switch {
	case !ok:
		return s.invalidRequest(req.rt, "Multiple session ids"), true
	case id == "":
		return result{}, false
	case !validSessionID(id):
		return s.invalidRequest(req.rt, "Malformed session id"), true
	}
	who := principalID(p)
	if bound := s.cfg.Sessions.Bind(ctx, sessionKey(req.rt.URI, id), who, req.rt.sessionTTL); bound != who {
		return rendered(denied(http.StatusForbidden, codes.PermissionDenied, "", reasonSessionMismatch,
			"Session belongs to another principal")), true
	}
	return result{}, false
}
