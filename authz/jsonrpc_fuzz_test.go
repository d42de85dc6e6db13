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
