package authz

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
)

// jsonrpcReference is parseJSONRPC written on a strict decoder
// (go-json-experiment/json: RFC 8259 grammar, valid UTF-8 and no lone
// surrogates, case-sensitive names, duplicate names refused, nesting limited
// to 10000), slowly and plainly, with the same error precedence: not JSON,
// then duplicate names, then not a message or batch of messages.
func jsonrpcReference(body []byte) ([]jsonrpcMessage, error) {
	if !jsontext.Value(body).IsValid(jsontext.AllowDuplicateNames(true)) {
		return nil, errBodyUnreadable
	}
	if !jsontext.Value(body).IsValid() {
		return nil, errBodyDuplicate
	}
	var elems []jsontext.Value
	switch jsontext.Value(body).Kind() {
	case '{':
		elems = []jsontext.Value{body}
	case '[':
		if err := json.Unmarshal(body, &elems); err != nil {
			return nil, fmt.Errorf("reference: %w", err)
		}
		if len(elems) == 0 {
			return nil, errBodyUnreadable
		}
	default:
		return nil, errBodyUnreadable
	}
	var out []jsonrpcMessage
	for _, e := range elems {
		if e.Kind() != '{' {
			return nil, errBodyUnreadable
		}
		var m map[string]jsontext.Value
		if err := json.Unmarshal(e, &m); err != nil {
			return nil, fmt.Errorf("reference: %w", err)
		}
		method, ok := m["method"]
		if !ok {
			_, result := m["result"]
			_, failure := m["error"]
			if !result && !failure {
				return nil, errBodyUnreadable
			}
			out = append(out, jsonrpcMessage{})
			continue
		}
		if method.Kind() != '"' {
			return nil, errBodyUnreadable
		}
		msg := jsonrpcMessage{HasMethod: true}
		if err := json.Unmarshal(method, &msg.Method); err != nil {
			return nil, fmt.Errorf("reference: %w", err)
		}
		key := ""
		switch msg.Method {
		case "tools/call", "prompts/get":
			key = "name"
		case "resources/read", "resources/subscribe", "resources/unsubscribe":
			key = "uri"
		}
		if params, ok := m["params"]; ok && key != "" && params.Kind() == '{' {
			var pm map[string]jsontext.Value
			if err := json.Unmarshal(params, &pm); err != nil {
				return nil, fmt.Errorf("reference: %w", err)
			}
			if t, ok := pm[key]; ok && t.Kind() == '"' {
				if err := json.Unmarshal(t, &msg.Target); err != nil {
					return nil, fmt.Errorf("reference: %w", err)
				}
				msg.HasTarget = true
			}
		}
		out = append(out, msg)
	}
	return out, nil
}

// checkJSONRPCAgainstReference fails t when parseJSONRPC and jsonrpcReference
// read body differently.
func checkJSONRPCAgainstReference(t *testing.T, body []byte) {
	t.Helper()
	got, gotErr := parseJSONRPC(body, nil)
	want, wantErr := jsonrpcReference(body)
	if wantErr != nil && !errors.Is(wantErr, errBodyUnreadable) && !errors.Is(wantErr, errBodyDuplicate) {
		t.Fatalf("reference failed on %s: %v", jsonrpcQuote(body), wantErr)
	}
	if gotErr != wantErr || !slices.Equal(got, want) {
		t.Fatalf("body %s:\n got  %+v, %v\n want %+v, %v", jsonrpcQuote(body), got, gotErr, want, wantErr)
	}
}

func jsonrpcQuote(b []byte) string {
	if len(b) > 300 {
		return fmt.Sprintf("%q... (%d bytes)", b[:300], len(b))
	}
	return fmt.Sprintf("%q", b)
}

// jsonrpcSeeds are bodies built to make a lax reader and a strict server
// disagree; they seed FuzzJSONRPC and are checked by TestJSONRPCMatchesReference.
func jsonrpcSeeds() []string {
	seeds := []string{
		`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"get_weather","arguments":{"city":"Paris"}}}`,
		`{"params":{"name":"x"},"method":"tools/call"}`,
		`{"jsonrpc":"2.0","id":1,"method":"tools/list"}`,
		`{"jsonrpc":"2.0","method":"notifications/initialized"}`,
		`{"jsonrpc":"2.0","id":1,"result":{}}`,
		`{"jsonrpc":"2.0","id":1,"error":{"code":-32600,"message":"x"}}`,
		`{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"file:///etc/passwd","name":"n"}}`,
		`{"method":"resources/subscribe","params":{"uri":"a"}}`,
		`{"method":"resources/unsubscribe","params":{"uri":"a"}}`,
		`{"method":"prompts/get","params":{"name":"p","arguments":{}}}`,
		`{"met\u0068od":"tools/call","par\u0061ms":{"n\u0061me":"adm\u0069n"}}`,
		`{"method":"tools\/call","params":{"name":"\ud83d\ude00\u00e9\n"}}`,
		`{"Method":"tools/call","id":1}`,
		`{"Method":"x","method":"tools/list"}`,
		`{"method":"tools/list","method":"tools/call"}`,
		`{"method":"tools/list","m\u0065thod":"tools/call"}`,
		`{"method":"tools/call","params":{"name":"a","name":"admin"}}`,
		`{"method":"tools/call","params":{"name":"a","n\u0061me":"admin"}}`,
		`{"method":"tools/call","params":{"name":"a","arguments":{"x":1,"x":2}}}`,
		`{"id":1,"result":{"a":{"b":[{"c":1,"c":1}]}}}`,
		`[1,{"a":1,"a":2}]`,
		`{"a":1,"a":2,}`,
		`{"method":"tools/call","params":{"name":"x\ud800"}}`,
		`{"method":"tools/call","params":{"name":"x\udc00\ud800"}}`,
		`{"method":"tools/call","params":{"name":"x\ud800\u0041"}}`,
		`{"method":"tools/call","params":{"name":"x\uD83D\uDE00"}}`,
		"{\"method\":\"tools/call\",\"params\":{\"name\":\"x\xff\"}}",
		"{\"method\":\"tools/call\",\"params\":{\"na\xc0\xafme\":\"x\"}}",
		"{\"method\":\"tools/call\",\"params\":{\"name\":\"\xed\xa0\x80\"}}",
		"{\"method\":\"tools/call\",\"params\":{\"name\":\"\xe2\x82\"}}",
		"{\"method\":\"tools/call\",\"params\":{\"name\":\"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80\"}}",
		"\xef\xbb\xbf{\"method\":\"tools/list\"}",
		`{"method":"tools/list"}x`,
		`{"method":"tools/list"}{"method":"tools/call"}`,
		"{\"method\":\"tools/list\"}\x00",
		"{\"method\":\"tools/list\x00\"}",
		`{"method":"tools/list\u0000"}`,
		"\t\r\n {\"method\" : \"tools/list\" } \n",
		"\f{\"method\":\"tools/list\"}",
		"\u00a0{\"method\":\"tools/list\"}",
		`[{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a"}},{"jsonrpc":"2.0","method":"notifications/progress"},{"jsonrpc":"2.0","id":2,"result":{}}]`,
		`[]`, `[1]`, `[[]]`, `[{}]`, `[{"method":"ping"},]`, `[{"method":"ping"} {"method":"ping"}]`,
		`{}`, `{"jsonrpc":"2.0","id":1}`, `{"method":1}`, `{"method":null}`, `{"method":{"a":"tools/call"}}`,
		`{"method":"tools/call","result":{}}`, `{"result":null}`, `{"error":1}`,
		`{"method":"tools/call","params":["admin"]}`, `{"method":"tools/call","params":"admin"}`,
		`{"method":"tools/call","params":{"name":1}}`, `{"method":"tools/call","params":{"name":""}}`,
		`{"method":"tools/call","params":{"Name":"admin","NAME":"x"}}`,
		`{"method":"tools/call","Params":{"name":"admin"}}`,
		`{"__proto__":{"method":"tools/call"},"method":"tools/list"}`,
		`{"__proto__":{"method":"tools/call"}}`,
		`{"constructor":{"prototype":{"method":"x"}},"method":"ping"}`,
		`{"id":1e999999,"method":"ping"}`,
		`{"id":-0.0e-0,"method":"ping"}`,
		`{"id":01,"method":"ping"}`, `{"id":1.,"method":"ping"}`, `{"id":-,"method":"ping"}`,
		`{"id":+1,"method":"ping"}`, `{"id":.5,"method":"ping"}`, `{"id":1e,"method":"ping"}`,
		`{"id":NaN,"method":"ping"}`, `{"id":Infinity,"method":"ping"}`, `{"id":True,"method":"ping"}`,
		`{"id":nul,"method":"ping"}`, `{'method':'ping'}`, `{"method":"ping"/*c*/}`,
		`{"method":"ping",}`, `{"method":"ping"`, `{"method":"pi`, `{"method":`, `{"method"`, `{`, `[`,
		"{\"method\":\"ping\tpong\"}", `{"method":"\x41"}`, `{"method":"\'"}`, `{"method":"\u12"}`,
		`{"method":"\uZZZZ"}`, `{"method":"ping\"}`,
		``, ` `, `null`, `true`, `"tools/call"`, `42`, `hello`, `method=tools/call`,
		`{"method":"tools/call","params":{"name":"x","arguments":` + strings.Repeat(`[`, 100) + strings.Repeat(`]`, 100) + `}}`,
		strings.Repeat(`[`, 20) + `{"method":"ping"}` + strings.Repeat(`]`, 20),
		`{"method":"tools/call","params":{"name":"x","arguments":{"a":{"b":{"c":{"d":[1,2,{"e":null}]}}}}}}`,
		`{"":1,"method":"ping"}`,
		`{"\u0000":1,"method":"ping"}`,
		`{"method":"ping","id":"\ud83d\ude00","\ud83d\ude00":1,"😀":2}`,
	}
	// A large object, through the hashed duplicate check, with and without a repeat.
	var big strings.Builder
	big.WriteString(`{"method":"tools/call","params":{"name":"x","arguments":{`)
	for i := range 40 {
		fmt.Fprintf(&big, `"k%d":%d,`, i, i)
	}
	seeds = append(seeds, big.String()+`"k40":0}}}`, big.String()+`"k\u0031":0}}}`, big.String()+`"k7":0}}}`)
	return seeds
}

func TestJSONRPCMatchesReference(t *testing.T) {
	for _, s := range jsonrpcSeeds() {
		checkJSONRPCAgainstReference(t, []byte(s))
	}
	for _, c := range jsonrpcCases(t) {
		checkJSONRPCAgainstReference(t, c.body)
	}
}

// FuzzJSONRPC holds parseJSONRPC to the strict reference decoder: same
// error, same messages, for every input.
func FuzzJSONRPC(f *testing.F) {
	for _, s := range jsonrpcSeeds() {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		checkJSONRPCAgainstReference(t, body)
		// Appending keeps what the caller had.
		prefix := []jsonrpcMessage{{Method: "keep"}}
		got, err := parseJSONRPC(body, prefix)
		if len(got) == 0 || got[0] != prefix[0] || (err != nil && len(got) != 1) {
			t.Fatalf("appendTo not kept: %+v, %v", got, err)
		}
		// Whitespace around the body changes nothing.
		padded := bytes.Join([][]byte{[]byte(" \n"), body, []byte("\r\t")}, nil)
		got2, err2 := parseJSONRPC(padded, nil)
		if err2 != err || !slices.Equal(got2, got[1:]) {
			t.Fatalf("padding changed the reading of %s: %+v %v vs %+v %v", jsonrpcQuote(body), got2, err2, got[1:], err)
		}
	})
}

// FuzzJSONRPCGenerated is FuzzJSONRPC on bodies built from the fuzzer's
// bytes out of the names and values that matter (escaped, case-changed and
// invalid variants of method, params, name, uri...), so that most inputs
// are JSON and the search spends its time on meaning rather than syntax.
func FuzzJSONRPCGenerated(f *testing.F) {
	f.Add([]byte{0, 5, 0, 1, 4, 2})
	f.Add([]byte{0, 3, 0, 1, 16, 1, 0, 2, 0, 0, 4, 0})
	f.Add([]byte{3, 3, 0, 2, 0, 1, 0, 3, 0, 20, 40, 0, 30, 1, 5, 60, 2})
	f.Add(bytes.Repeat([]byte{0, 23, 7, 4}, 30))
	f.Fuzz(func(t *testing.T, program []byte) {
		g := jsonrpcGen{program: program}
		g.body()
		checkJSONRPCAgainstReference(t, g.out)
	})
}

// The generator's vocabulary: valid pieces, and rarer invalid ones.
var (
	jsonrpcGenNames = []string{
		`method`, `Method`, `m\u0065thod`, `params`, `p\u0061rams`, `name`, `n\u0061me`, `NAME`,
		`uri`, `\u0075ri`, `result`, `error`, `id`, `jsonrpc`, `__proto__`, `arguments`, `k1`,
		`k\u0031`, ``, `\u00e9`, "\xc3\xa9", `\ud83d\ude00`, "\xf0\x9f\x98\x80", `\/`, `/`,
		`a\"`, `a\u0000`, `me\thod`,
	}
	jsonrpcGenBadNames = []string{`x\ud800`, "x\xff", `a"`, "a\x00", `\x`, "\xed\xa0\x80"}
	jsonrpcGenValues   = []string{
		`"tools/call"`, `"tools\/call"`, `"prompts/get"`, `"resources/read"`, `"resources/subscribe"`,
		`"resources/unsubscribe"`, `"tools/list"`, `"initialize"`, `"admin"`, `"adm\u0069n"`,
		`"\ud83d\ude00"`, "\"caf\xc3\xa9\"", `""`, `"2.0"`, `0`, `-1.5e3`, `1e999`, `true`, `false`,
		`null`, `[]`, `{}`,
	}
	jsonrpcGenBadValues = []string{`"\ud800"`, `"\udc00\ud800"`, "\"\xff\"", `01`, `nul`, `"a`, `.5`}
	jsonrpcGenSpace     = []string{" ", "\n", "\t", "\r\n  "}
	jsonrpcGenBadSpace  = []string{"\f", "\xc2\xa0", "\x00", ","}
)

type jsonrpcGen struct {
	program []byte
	out     []byte
}

// next is the program's next byte, or -1 at its end.
func (g *jsonrpcGen) next() int {
	if len(g.program) == 0 {
		return -1
	}
	c := g.program[0]
	g.program = g.program[1:]
	return int(c)
}

// pick chooses from good, or from bad for the highest few byte values.
func (g *jsonrpcGen) pick(good, bad []string) string {
	switch c := g.next(); {
	case c < 0:
		return good[0]
	case c >= 250:
		return bad[c%len(bad)]
	default:
		return good[c%len(good)]
	}
}

// body is mostly a message or a batch of them, sometimes any value.
func (g *jsonrpcGen) body() {
	switch c := g.next(); {
	case c == 255:
		g.value(0)
	case c >= 0 && c%4 == 0:
		g.out = append(g.out, '[')
		for k := range 1 + max(g.next(), 0)%3 {
			if k > 0 {
				g.out = append(g.out, ',')
			}
			g.message()
		}
		g.out = append(g.out, ']')
	default:
		g.message()
	}
}

// message is an object whose members are mostly a method, params with a
// name or uri, or the members of a response.
func (g *jsonrpcGen) message() {
	g.space()
	g.out = append(g.out, '{')
	for k := range 1 + max(g.next(), 0)%4 {
		if k > 0 {
			g.out = append(g.out, ',')
		}
		g.space()
		switch max(g.next(), 0) % 5 {
		case 0, 1:
			g.member(g.pick([]string{`method`, `m\u0065thod`, `Method`}, jsonrpcGenBadNames))
			g.out = append(g.out, g.pick(jsonrpcGenValues[:10], jsonrpcGenBadValues)...)
		case 2:
			g.member(g.pick([]string{`params`, `p\u0061rams`, `Params`}, jsonrpcGenBadNames))
			g.out = append(g.out, '{')
			for k := range max(g.next(), 0) % 4 {
				if k > 0 {
					g.out = append(g.out, ',')
				}
				g.member(g.pick([]string{`name`, `uri`, `n\u0061me`, `\u0075ri`, `arguments`, `Name`}, jsonrpcGenBadNames))
				g.value(2)
			}
			g.out = append(g.out, '}')
		case 3:
			g.member(g.pick([]string{`result`, `error`, `id`, `jsonrpc`}, jsonrpcGenBadNames))
			g.value(1)
		default:
			g.member(g.pick(jsonrpcGenNames, jsonrpcGenBadNames))
			g.value(1)
		}
		g.space()
	}
	g.out = append(g.out, '}')
	g.space()
}

// member writes "name": .
func (g *jsonrpcGen) member(name string) {
	g.out = append(g.out, '"')
	g.out = append(g.out, name...)
	g.out = append(g.out, '"', ':')
}

func (g *jsonrpcGen) space() {
	if c := g.next(); c >= 224 {
		g.out = append(g.out, g.pick(jsonrpcGenSpace, jsonrpcGenBadSpace)...)
	}
}

func (g *jsonrpcGen) value(depth int) {
	g.space()
	switch c := g.next(); {
	case c < 0:
		g.out = append(g.out, '0')
	case depth < 8 && c%8 < 4: // object
		g.out = append(g.out, '{')
		n := max(g.next(), 0)
		if n < 240 {
			n %= 5 // mostly a few members; sometimes more than duplicateIn checks pairwise
		} else {
			n = 17 + n%8
		}
		for k := range n {
			if k > 0 {
				g.out = append(g.out, ',')
			}
			g.space()
			g.out = append(g.out, '"')
			g.out = append(g.out, g.pick(jsonrpcGenNames, jsonrpcGenBadNames)...)
			g.out = append(g.out, '"')
			g.space()
			g.out = append(g.out, ':')
			g.value(depth + 1)
		}
		g.space()
		g.out = append(g.out, '}')
	case depth < 8 && c%8 == 4: // array
		g.out = append(g.out, '[')
		n := max(g.next(), 0) % 4
		for k := range n {
			if k > 0 {
				g.out = append(g.out, ',')
			}
			g.value(depth + 1)
		}
		g.out = append(g.out, ']')
	case c == 255: // any byte
		g.out = append(g.out, byte(g.next()))
	default:
		g.out = append(g.out, g.pick(jsonrpcGenValues, jsonrpcGenBadValues)...)
	}
	g.space()
}
