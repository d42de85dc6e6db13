package authz

import (
	"net/url"
	"strings"
)

// credentialKind classifies what a request presented.
type credentialKind int

const (
	credNone    credentialKind = iota // nothing usable: challenge without error
	credBearer                        // one well-formed bearer token
	credInvalid                       // malformed or ambiguous: invalid_request
)

// credentials is the outcome of reading a request's credentials.
type credentials struct {
	kind  credentialKind
	token string
	// reason is the error_description for credInvalid.
	reason string
}

// queryTokenParams are the query parameters that carry a token in clients
// that try RFC 6750 §2.3 (the seed rejects both names).
var queryTokenParams = [...]string{"access_token", "token"}

// extractCredentials finds the bearer token of a request. Only the
// Authorization header authenticates (bearer_methods_supported is
// ["header"]); a query-string token never does, and alongside a header
// token it makes the request ambiguous.
func extractCredentials(in *checkInput) credentials {
	var c credentials
	switch len(in.authorization) {
	case 0:
	case 1:
		c = parseAuthorization(in.authorization[0])
	default:
		c = credentials{kind: credInvalid, reason: "Multiple Authorization headers"}
	}
	if c.kind == credBearer && hasQueryToken(in.path) {
		return credentials{kind: credInvalid, reason: "Token in both the Authorization header and the query string"}
	}
	return c
}

// extractAPIKey finds the API key of a request to an API-key resource:
// X-API-Key, or Authorization: ApiKey KEY. Never the query string.
func extractAPIKey(in *checkInput) credentials {
	var fromAuth string
	switch len(in.authorization) {
	case 0:
	case 1:
		v := strings.Trim(in.authorization[0], " \t")
		if scheme, key, ok := strings.Cut(v, " "); ok && strings.EqualFold(scheme, "ApiKey") {
			fromAuth = strings.TrimLeft(key, " ")
			if fromAuth == "" {
				return credentials{kind: credInvalid, reason: "API key missing"}
			}
		}
	default:
		return credentials{kind: credInvalid, reason: "Multiple Authorization headers"}
	}
	var fromHeader string
	switch len(in.apiKey) {
	case 0:
	case 1:
		fromHeader = strings.Trim(in.apiKey[0], " \t")
	default:
		return credentials{kind: credInvalid, reason: "Multiple X-API-Key headers"}
	}
	key := fromAuth
	switch {
	case fromAuth != "" && fromHeader != "":
		return credentials{kind: credInvalid, reason: "API key in both X-API-Key and Authorization"}
	case fromHeader != "":
		key = fromHeader
	case key == "":
		return credentials{kind: credNone}
	}
	// Envoy joins repeated headers with ","; keys never contain one.
	if strings.ContainsAny(key, ", \t") {
		return credentials{kind: credInvalid, reason: "Malformed API key"}
	}
	return credentials{kind: credBearer, token: key}
}

// parseAuthorization reads one Authorization header value (RFC 7235, RFC 6750 §2.1).
func parseAuthorization(v string) credentials {
	v = strings.Trim(v, " \t")
	if strings.IndexByte(v, ',') >= 0 {
		if severalCredentials(v) {
			return credentials{kind: credInvalid, reason: "Multiple Authorization headers"}
		}
		return credentials{kind: credNone}
	}
	if !isBearerScheme(v) {
		return credentials{kind: credNone}
	}
	token := strings.TrimLeft(v[len("bearer"):], " ")
	if token == "" {
		return credentials{kind: credInvalid, reason: "Bearer token missing"}
	}
	if !isToken68(token) {
		return credentials{kind: credInvalid, reason: "Malformed Bearer token"}
	}
	return credentials{kind: credBearer, token: token}
}

// severalCredentials reports whether an Authorization value that holds a
// comma is more than one credential: Envoy joins repeated headers with ",".
// One credential of another scheme may hold commas too, between its
// auth-params (RFC 7235 §2.1: credentials = auth-scheme [ 1*SP ( token68 /
// #auth-param ) ]), so what follows a comma outside a quoted string is an
// auth-param (token "=" ...) or an empty list element; anything else starts
// a second credential. A bearer credential never contains a comma, so one
// next to a comma means several credentials were sent.
func severalCredentials(v string) bool {
	n := 0
	for {
		end := listElementEnd(v)
		elem := strings.Trim(v[:end], " \t")
		switch {
		case elem == "":
		case isBearerScheme(elem):
			return true
		case n > 0 && isAuthParam(elem):
		default:
			if n++; n > 1 {
				return true
			}
		}
		if end == len(v) {
			return false
		}
		v = v[end+1:]
	}
}

// listElementEnd returns the index of the first comma of v outside a
// quoted string, or len(v). A quoted string is an auth-param's value
// (RFC 7235: token BWS "=" BWS quoted-string) that closes: a quote
// anywhere else, or one that never closes, quotes nothing, so that a
// stray quote in one header cannot hide the next one Envoy joined to it.
func listElementEnd(v string) int {
	quoted, afterEq, open := false, false, 0
	for i := 0; i < len(v); i++ {
		c := v[i]
		switch {
		case quoted && c == '\\':
			i++ // quoted-pair
		case quoted && c == '"':
			quoted = false
		case quoted:
		case c == '"' && afterEq:
			quoted, open = true, i
		case c == ',':
			return i
		}
		if !quoted && c != ' ' && c != '\t' {
			afterEq = c == '='
		}
	}
	if quoted {
		// No quote follows open (escaped ones aside), so what follows the
		// comma holds no quoted string: the rest of the value is read once.
		if j := strings.IndexByte(v[open:], ','); j >= 0 {
			return open + j
		}
	}
	return len(v)
}

// isAuthParam reports whether elem starts as an RFC 7235 auth-param: a
// token, optional whitespace, then "=".
func isAuthParam(elem string) bool {
	i := 0
	for i < len(elem) && tchars[elem[i]] {
		i++
	}
	if i == 0 {
		return false
	}
	for i < len(elem) && (elem[i] == ' ' || elem[i] == '\t') {
		i++
	}
	return i < len(elem) && elem[i] == '='
}

// tchars marks the RFC 9110 tchar characters, of which tokens are made.
var tchars = alnumAnd("!#$%&'*+-.^_`|~")

// alnumAnd marks ASCII letters and digits, and the characters of extra.
func alnumAnd(extra string) (t [256]bool) {
	for c := 'a'; c <= 'z'; c++ {
		t[c] = true
	}
	for c := 'A'; c <= 'Z'; c++ {
		t[c] = true
	}
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for i := range len(extra) {
		t[extra[i]] = true
	}
	return t
}

// isBearerScheme reports whether v starts with the Bearer scheme name,
// matched case-insensitively, followed by the end or a space.
func isBearerScheme(v string) bool {
	const scheme = "bearer"
	if len(v) < len(scheme) || !strings.EqualFold(v[:len(scheme)], scheme) {
		return false
	}
	return len(v) == len(scheme) || v[len(scheme)] == ' '
}

// token68Chars marks the RFC 7235 token68 characters other than "=".
var token68Chars = alnumAnd("-._~+/")

// isToken68 reports whether s matches RFC 7235 token68:
// 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"=".
func isToken68(s string) bool {
	i := 0
	for i < len(s) && token68Chars[s[i]] {
		i++
	}
	if i == 0 {
		return false
	}
	for ; i < len(s); i++ {
		if s[i] != '=' {
			return false
		}
	}
	return true
}

// hasQueryToken reports whether the request target carries access_token or
// token in its query string.
func hasQueryToken(path string) bool {
	q := strings.IndexByte(path, '?')
	if q < 0 {
		return false
	}
	if query := path[q:]; !strings.Contains(query, "token") && strings.IndexByte(query, '%') < 0 {
		return false // fast path: both names contain "token"; a percent-encoded name is decoded below
	}
	// ParseQuery keeps the pairs it could parse even when it reports an error.
	values, _ := url.ParseQuery(path[q+1:])
	for _, name := range queryTokenParams {
		if values.Has(name) {
			return true
		}
	}
	return false
}
