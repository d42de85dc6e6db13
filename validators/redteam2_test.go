package validators

import "testing"

// TestRedteamJWTUsername: red-team attacks on the JWT username check
// (31e36d5). The claim is found by its name after unescaping, so an
// escaped spelling is checked too and counts as a duplicate of the plain
// one; a control character escaped any way is refused; spellings in
// another case, values that are not strings and usernames nested in
// other claims are not the username, and pass.
func TestRedteamJWTUsername(t *testing.T) {
	f := newFixture(t, nil)
	runStrictCases(t, f, []strictCase{
		{name: "escaped name, NUL", claims: `"user\u006eame":"a\u0000b"`, want: DescMalformed},
		{name: "escaped name, raw LF", claims: "\"\\u0075sername\":\"a\nb\"", want: DescMalformed},
		{name: "C1 as raw UTF-8", claims: "\"username\":\"a\u0085b\"", want: DescMalformed},
		{name: "escaped name, DEL escaped", claims: `"username":"a\u007Fb"`, want: DescMalformed},
		{name: "plain and escaped spellings", claims: `"username":"alice","user\u006eame":"bob"`, want: DescMalformed},
		{name: "twice, the second with a control character", claims: `"username":"alice","username":"a\u0001"`, want: DescMalformed},
		{name: "surrogate pair is fine", claims: `"username":"a\ud83d\ude00b"`},
		{name: "U+2028 is not a control character", claims: `"username":"a\u2028b"`},
		{name: "another case is another claim", claims: `"Username":"a\u0000b"`},
		{name: "array of strings is not read", claims: `"username":["a\u0000b"]`},
		{name: "null is not read", claims: `"username":null`},
		{name: "nested username is not the claim", claims: `"ext":{"username":"a\u0000b"}`},
		{name: "invalid UTF-8 inside a skipped value", claims: "\"username\":{\"x\":\"a\xffb\"}", want: DescMalformed},
	})
}
