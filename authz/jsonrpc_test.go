package authz

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"fmt"
	"math/bits"
	"slices"
	"strings"
	"testing"
)

type jsonrpcCase struct {
	name string
	body []byte
	want []jsonrpcMessage
	err  error
}

func jsonrpcRequest(method string) jsonrpcMessage {
	return jsonrpcMessage{Method: method, HasMethod: true}
}

func jsonrpcCall(method, target string) jsonrpcMessage {
	return jsonrpcMessage{Method: method, HasMethod: true, Target: target, HasTarget: true}
}

var jsonrpcResponse = jsonrpcMessage{}

// toolsCall is a tools/call body whose arguments hold args (JSON).
func jsonrpcToolsCall(name, args string) string {
	return `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"` + name + `","arguments":` + args + `}}`
}

// nested is a tools/call whose arguments nest depth arrays: the body's
// depth is depth+2 (message, params).
func jsonrpcNested(depth int) []byte {
	return []byte(jsonrpcToolsCall("x", strings.Repeat("[", depth)+strings.Repeat("]", depth)))
}

func jsonrpcGzip(t *testing.T, s string) []byte {
	var buf bytes.Buffer
	w := gzip.NewWriter(&buf)
	if _, err := w.Write([]byte(s)); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// manyMembers is an object of n members "k0".."k<n-1>", then extra.
func jsonrpcMembers(n int, extra string) string {
	var b strings.Builder
	b.WriteString("{")
	for i := range n {
		fmt.Fprintf(&b, `"k%d":%d,`, i, i)
	}
	b.WriteString(extra + "}")
	return b.String()
}

func jsonrpcCases(t *testing.T) []jsonrpcCase {
	u, d := errBodyUnreadable, errBodyDuplicate
	megabyteString := jsonrpcToolsCall("upload", `{"data":"`+strings.Repeat("abcdefgh", 1<<17)+`"}`)
	var megabyteRecords strings.Builder
	megabyteRecords.WriteString(`[{"jsonrpc":"2.0","id":0,"method":"tools/call","params":{"name":"bulk","arguments":{"rows":[`)
	for i := 0; megabyteRecords.Len() < 1<<20; i++ {
		fmt.Fprintf(&megabyteRecords, `{"id":%d,"name":"row %d","tags":["a","b"],"ok":true,"score":%d.5e-3},`, i, i, i)
	}
	megabyteRecords.WriteString(`null]}}},{"jsonrpc":"2.0","method":"notifications/progress"}]`)

	cases := []jsonrpcCase{
		// Messages.
		{"tools call", []byte(jsonrpcToolsCall("get_weather", `{"city":"Paris"}`)), []jsonrpcMessage{jsonrpcCall("tools/call", "get_weather")}, nil},
		{"params before method", []byte(`{"params":{"name":"x"},"method":"tools/call"}`), []jsonrpcMessage{jsonrpcCall("tools/call", "x")}, nil},
		{"tools list", []byte(`{"jsonrpc":"2.0","id":1,"method":"tools/list"}`), []jsonrpcMessage{jsonrpcRequest("tools/list")}, nil},
		{"no target for other methods", []byte(`{"method":"tools/list","params":{"name":"x","uri":"y"}}`), []jsonrpcMessage{jsonrpcRequest("tools/list")}, nil},
		{"prompts get", []byte(`{"method":"prompts/get","params":{"name":"p","uri":"u"}}`), []jsonrpcMessage{jsonrpcCall("prompts/get", "p")}, nil},
		{"resources read takes uri", []byte(`{"method":"resources/read","params":{"name":"n","uri":"file:///etc/passwd"}}`), []jsonrpcMessage{jsonrpcCall("resources/read", "file:///etc/passwd")}, nil},
		{"resources subscribe", []byte(`{"method":"resources/subscribe","params":{"uri":"a"}}`), []jsonrpcMessage{jsonrpcCall("resources/subscribe", "a")}, nil},
		{"resources unsubscribe", []byte(`{"method":"resources/unsubscribe","params":{"uri":"a"}}`), []jsonrpcMessage{jsonrpcCall("resources/unsubscribe", "a")}, nil},
		{"tools call with uri only", []byte(`{"method":"tools/call","params":{"uri":"a"}}`), []jsonrpcMessage{jsonrpcRequest("tools/call")}, nil},
		{"unknown method kept", []byte(`{"method":"x/y","params":{}}`), []jsonrpcMessage{jsonrpcRequest("x/y")}, nil},
		{"notification without id", []byte(`{"jsonrpc":"2.0","method":"notifications/initialized"}`), []jsonrpcMessage{jsonrpcRequest("notifications/initialized")}, nil},
		{"response result", []byte(`{"jsonrpc":"2.0","id":1,"result":{"content":[]}}`), []jsonrpcMessage{jsonrpcResponse}, nil},
		{"response error", []byte(`{"jsonrpc":"2.0","id":1,"error":{"code":-32601,"message":"no"}}`), []jsonrpcMessage{jsonrpcResponse}, nil},
		{"jsonrpcResponse null result", []byte(`{"id":1,"result":null}`), []jsonrpcMessage{jsonrpcResponse}, nil},
		{"method and result is a request", []byte(`{"method":"tools/call","result":{},"params":{"name":"a"}}`), []jsonrpcMessage{jsonrpcCall("tools/call", "a")}, nil},
		{"batch", []byte(`[{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a"}},` +
			`{"jsonrpc":"2.0","method":"notifications/progress"},{"jsonrpc":"2.0","id":2,"result":{}},` +
			`{"id":3,"method":"resources/read","params":{"uri":"r"}}]`),
			[]jsonrpcMessage{jsonrpcCall("tools/call", "a"), jsonrpcRequest("notifications/progress"), jsonrpcResponse, jsonrpcCall("resources/read", "r")}, nil},
		{"batch of one", []byte(` [ {"method":"ping"} ] `), []jsonrpcMessage{jsonrpcRequest("ping")}, nil},
		{"whitespace", []byte("\t\r\n {\"method\" : \"tools/list\" } \n"), []jsonrpcMessage{jsonrpcRequest("tools/list")}, nil},

		// Names and values are read exactly, after unescaping.
		{"escaped member names", []byte(`{"met\u0068od":"tools/call","par\u0061ms":{"n\u0061me":"adm\u0069n"}}`), []jsonrpcMessage{jsonrpcCall("tools/call", "admin")}, nil},
		{"escaped values", []byte(`{"method":"tools\/call","params":{"name":"\ud83d\ude00\u00e9\n\"\\"}}`), []jsonrpcMessage{jsonrpcCall("tools/call", "😀é\n\"\\")}, nil},
		{"escaped method", []byte(`{"method":"tools\u002fcall","params":{"name":"a"}}`), []jsonrpcMessage{jsonrpcCall("tools/call", "a")}, nil},
		{"non-ASCII target", []byte("{\"method\":\"tools/call\",\"params\":{\"name\":\"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80\"}}"), []jsonrpcMessage{jsonrpcCall("tools/call", "café € 😀")}, nil},
		{"Method is not method", []byte(`{"Method":"tools/call","id":1}`), nil, u},
		{"Method beside method", []byte(`{"Method":"tools/call","method":"tools/list"}`), []jsonrpcMessage{jsonrpcRequest("tools/list")}, nil},
		{"Params is not params", []byte(`{"method":"tools/call","Params":{"name":"admin"}}`), []jsonrpcMessage{jsonrpcRequest("tools/call")}, nil},
		{"Name is not name", []byte(`{"method":"tools/call","params":{"Name":"admin"}}`), []jsonrpcMessage{jsonrpcRequest("tools/call")}, nil},
		{"proto is a member like any other", []byte(`{"__proto__":{"method":"tools/call"},"method":"tools/list"}`), []jsonrpcMessage{jsonrpcRequest("tools/list")}, nil},
		{"proto only", []byte(`{"__proto__":{"method":"tools/call"}}`), nil, u},
		{"NUL escape", []byte(`{"method":"tools/list\u0000"}`), []jsonrpcMessage{jsonrpcRequest("tools/list\x00")}, nil},
		{"empty name", []byte(`{"method":"tools/call","params":{"name":""}}`), []jsonrpcMessage{jsonrpcCall("tools/call", "")}, nil},
		{"name not a string", []byte(`{"method":"tools/call","params":{"name":1}}`), []jsonrpcMessage{jsonrpcRequest("tools/call")}, nil},
		{"params not an object", []byte(`{"method":"tools/call","params":["admin"]}`), []jsonrpcMessage{jsonrpcRequest("tools/call")}, nil},
		{"params a string", []byte(`{"method":"tools/call","params":"admin"}`), []jsonrpcMessage{jsonrpcRequest("tools/call")}, nil},
		{"overlong numbers", []byte(`{"id":1e999999,"n":` + strings.Repeat("9", 5000) + `.5,"method":"ping"}`), []jsonrpcMessage{jsonrpcRequest("ping")}, nil},

		// Duplicates, after unescaping, at any depth.
		{"duplicate method", []byte(`{"method":"tools/list","method":"tools/call"}`), nil, d},
		{"duplicate escaped method", []byte(`{"method":"tools/list","m\u0065thod":"tools/call"}`), nil, d},
		{"duplicate params", []byte(`{"method":"tools/call","params":{"name":"a"},"params":{"name":"b"}}`), nil, d},
		{"duplicate params name", []byte(`{"method":"tools/call","params":{"name":"a","name":"admin"}}`), nil, d},
		{"duplicate escaped params name", []byte(`{"method":"tools/call","params":{"name":"a","n\u0061me":"admin"}}`), nil, d},
		{"duplicate in arguments", []byte(jsonrpcToolsCall("a", `{"x":1,"x":2}`)), nil, d},
		{"duplicate deep in a jsonrpcResponse", []byte(`{"id":1,"result":{"a":{"b":[{"c":1,"c":1}]}}}`), nil, d},
		{"duplicate in a batch's second message", []byte(`[{"method":"ping"},{"method":"ping","id":1,"id":2}]`), nil, d},
		{"duplicate before not a message", []byte(`[1,{"a":1,"a":2}]`), nil, d},
		{"duplicate in a large object", []byte(jsonrpcToolsCall("a", jsonrpcMembers(200, `"k\u0031\u0039\u0039":0`))), nil, d},
		{"large object without duplicates", []byte(jsonrpcToolsCall("a", jsonrpcMembers(200, `"k200":0`))), []jsonrpcMessage{jsonrpcCall("tools/call", "a")}, nil},
		{"same name in sibling objects", []byte(jsonrpcToolsCall("a", `[{"x":1},{"x":2}]`)), []jsonrpcMessage{jsonrpcCall("tools/call", "a")}, nil},
		{"same name at two depths", []byte(`{"method":"tools/call","params":{"name":"a","params":{"name":"b","method":"c"}}}`), []jsonrpcMessage{jsonrpcCall("tools/call", "a")}, nil},
		{"not JSON beats duplicate", []byte(`{"method":"ping","method":"ping",}`), nil, u},

		// Depth.
		{"depth 10000", jsonrpcNested(jsonrpcMaxDepth - 2), []jsonrpcMessage{jsonrpcCall("tools/call", "x")}, nil},
		{"depth 10001", jsonrpcNested(jsonrpcMaxDepth - 1), nil, u},
		{"deep batch", []byte(strings.Repeat("[", jsonrpcMaxDepth+1) + strings.Repeat("]", jsonrpcMaxDepth+1)), nil, u},
		{"deep objects", []byte(`{"id":1,"result":` + strings.Repeat(`{"a":`, jsonrpcMaxDepth) + "1" + strings.Repeat("}", jsonrpcMaxDepth) + "}"), nil, u},

		// Size.
		{"1 MB string", []byte(megabyteString), []jsonrpcMessage{jsonrpcCall("tools/call", "upload")}, nil},
		{"1 MB of records", []byte(megabyteRecords.String()), []jsonrpcMessage{jsonrpcCall("tools/call", "bulk"), jsonrpcRequest("notifications/progress")}, nil},

		// Not UTF-8, or not Unicode.
		{"invalid UTF-8 in a value", []byte("{\"method\":\"tools/call\",\"params\":{\"name\":\"x\xff\"}}"), nil, u},
		{"invalid UTF-8 in a name", []byte("{\"method\":\"tools/call\",\"params\":{\"na\xffme\":\"x\"}}"), nil, u},
		{"invalid UTF-8 in arguments", []byte(jsonrpcToolsCall("a", "\"\xfe\"")), nil, u},
		{"overlong UTF-8", []byte("{\"method\":\"tools/call\",\"params\":{\"name\":\"\xc0\xaf\"}}"), nil, u},
		{"UTF-8 surrogate", []byte("{\"method\":\"tools/call\",\"params\":{\"name\":\"\xed\xa0\x80\"}}"), nil, u},
		{"truncated UTF-8", []byte("{\"method\":\"tools/call\",\"params\":{\"name\":\"\xe2\x82\"}}"), nil, u},
		{"lone high surrogate", []byte(`{"method":"tools/call","params":{"name":"x\ud800"}}`), nil, u},
		{"lone low surrogate", []byte(`{"method":"tools/call","params":{"name":"x\udc00"}}`), nil, u},
		{"reversed surrogates", []byte(`{"method":"tools/call","params":{"name":"\udc00\ud800"}}`), nil, u},
		{"high surrogate then letter", []byte(`{"method":"tools/call","params":{"name":"\ud800\u0041"}}`), nil, u},
		{"lone surrogate in arguments", []byte(jsonrpcToolsCall("a", `"\ud800"`)), nil, u},

		// Not JSON.
		{"empty", nil, nil, u},
		{"whitespace only", []byte(" \n"), nil, u},
		{"not JSON", []byte("method=tools/call"), nil, u},
		{"gzip bytes", jsonrpcGzip(t, jsonrpcToolsCall("a", "{}")), nil, u},
		{"truncated", []byte(jsonrpcToolsCall("a", "{}"))[:40], nil, u},
		{"truncated string", []byte(`{"method":"pi`), nil, u},
		{"truncated after name", []byte(`{"method"`), nil, u},
		{"BOM", []byte("\xef\xbb\xbf{\"method\":\"tools/list\"}"), nil, u},
		{"trailing garbage", []byte(`{"method":"tools/list"}x`), nil, u},
		{"two messages", []byte(`{"method":"tools/list"}{"method":"tools/call"}`), nil, u},
		{"trailing NUL", []byte("{\"method\":\"tools/list\"}\x00"), nil, u},
		{"raw NUL in a string", []byte("{\"method\":\"tools/list\x00\"}"), nil, u},
		{"raw tab in a string", []byte("{\"method\":\"ping\tpong\"}"), nil, u},
		{"form feed is not whitespace", []byte("\f{\"method\":\"tools/list\"}"), nil, u},
		{"NBSP is not whitespace", []byte("\u00a0{\"method\":\"tools/list\"}"), nil, u},
		{"single quotes", []byte(`{'method':'ping'}`), nil, u},
		{"comment", []byte(`{"method":"ping"/*c*/}`), nil, u},
		{"trailing comma", []byte(`{"method":"ping",}`), nil, u},
		{"bad escape", []byte(`{"method":"\x41"}`), nil, u},
		{"short unicode escape", []byte(`{"method":"\u12"}`), nil, u},
		{"leading zero", []byte(`{"id":01,"method":"ping"}`), nil, u},
		{"bare minus", []byte(`{"id":-,"method":"ping"}`), nil, u},
		{"fraction without digits", []byte(`{"id":1.,"method":"ping"}`), nil, u},
		{"exponent without digits", []byte(`{"id":1e+,"method":"ping"}`), nil, u},
		{"NaN", []byte(`{"id":NaN,"method":"ping"}`), nil, u},
		{"True", []byte(`{"id":True,"method":"ping"}`), nil, u},
		{"truncated literal", []byte(`{"id":nul`), nil, u},

		// JSON, but not a message or a batch of messages.
		{"empty object", []byte(`{}`), nil, u},
		{"neither request nor jsonrpcResponse", []byte(`{"jsonrpc":"2.0","id":1}`), nil, u},
		{"method a number", []byte(`{"method":1}`), nil, u},
		{"method null", []byte(`{"method":null}`), nil, u},
		{"method an object", []byte(`{"method":{"a":"tools/call"}}`), nil, u},
		{"string", []byte(`"tools/call"`), nil, u},
		{"null", []byte(`null`), nil, u},
		{"empty batch", []byte(`[]`), nil, u},
		{"batch of numbers", []byte(`[1,2]`), nil, u},
		{"nested batch", []byte(`[[{"method":"ping"}]]`), nil, u},
		{"batch with a non-message", []byte(`[{"method":"ping"},{"id":1}]`), nil, u},
		{"batch with a trailing comma", []byte(`[{"method":"ping"},]`), nil, u},
	}
	return cases
}

func TestJSONRPC(t *testing.T) {
	for _, c := range jsonrpcCases(t) {
		t.Run(c.name, func(t *testing.T) {
			got, err := parseJSONRPC(c.body, nil)
			if err != c.err || !slices.Equal(got, c.want) {
				t.Fatalf("parseJSONRPC(%s) = %+v, %v; want %+v, %v", jsonrpcQuote(c.body), got, err, c.want, c.err)
			}
			ref, refErr := jsonrpcReference(c.body)
			if refErr != c.err || !slices.Equal(ref, c.want) {
				t.Fatalf("reference disagrees with the case: %+v, %v", ref, refErr)
			}
		})
	}
}

func TestJSONRPCAppends(t *testing.T) {
	buf := []jsonrpcMessage{jsonrpcRequest("earlier")}
	got, err := parseJSONRPC([]byte(`[{"method":"ping"},{"id":1,"result":{}}]`), buf)
	if err != nil || !slices.Equal(got, []jsonrpcMessage{jsonrpcRequest("earlier"), jsonrpcRequest("ping"), jsonrpcResponse}) {
		t.Fatalf("got %+v, %v", got, err)
	}
	got, err = parseJSONRPC([]byte(`[{"method":"ping"},{"id":1}]`), buf)
	if err != errBodyUnreadable || !slices.Equal(got, buf) {
		t.Fatalf("on error: got %+v, %v", got, err)
	}
}

// TestJSONRPCAllocations: nothing but the returned strings is allocated,
// once the parser's buffers have grown (parseJSONRPC pools them).
func TestJSONRPCAllocations(t *testing.T) {
	for _, c := range []struct {
		name string
		body string
		want float64
	}{
		{"tools list", `{"jsonrpc":"2.0","id":1,"method":"tools/list"}`, 0},
		{"escaped known method", `{"jsonrpc":"2.0","id":1,"method":"tools\/list"}`, 0},
		{"tools call", jsonrpcToolsCall("get_weather", `{"city":"Paris","days":[1,2,3]}`), 1},
		{"escaped target", jsonrpcToolsCall(`get\u005fweather`, `{}`), 1},
		{"batch", `[` + jsonrpcToolsCall("tool_a", "{}") + `,` + jsonrpcToolsCall("tool_b", "{}") + `,{"method":"notifications/progress"}]`, 2},
		{"large object", jsonrpcToolsCall("tool_a", jsonrpcMembers(100, `"z":1`)), 1},
	} {
		t.Run(c.name, func(t *testing.T) {
			var p jsonrpcParser
			body := []byte(c.body)
			buf := make([]jsonrpcMessage, 0, 4)
			got := testing.AllocsPerRun(100, func() {
				if _, err := p.parse(body, buf[:0]); err != nil {
					t.Fatal(err)
				}
			})
			if got != c.want {
				t.Fatalf("%v allocations, want %v", got, c.want)
			}
		})
	}
}

// TestJSONStringSpecial: the lowest flagged byte of a word is exactly its
// first '"', '\\' or control character, for every pair of adjacent bytes
// (the borrow that makes higher flags spurious only crosses to a neighbour).
func TestJSONStringSpecial(t *testing.T) {
	for pos := range 7 {
		for pair := range 1 << 16 {
			word := []byte("xxxxxxxx")
			word[pos], word[pos+1] = byte(pair), byte(pair>>8)
			want := 8
			for k, c := range word {
				if c == '"' || c == '\\' || c < 0x20 {
					want = k
					break
				}
			}
			m := jsonStringSpecial(binary.LittleEndian.Uint64(word))
			if got := bits.TrailingZeros64(m) >> 3; got != want {
				t.Fatalf("%q: first special byte at %d, want %d", word, got, want)
			}
		}
	}
}

// jsonrpcBenchBodies: a typical 1 KB tools/call, 64 KB bodies of structured
// arguments and of one long string, and the costly shapes.
func jsonrpcBenchBodies() []struct {
	name string
	body []byte
} {
	typical := `{"jsonrpc":"2.0","id":42,"method":"tools/call","params":{"name":"search_issues","arguments":{` +
		`"query":"label:bug state:open sort:updated-desc repo:example/project","limit":25,"include_closed":false,` +
		`"fields":["id","title","state","labels","assignees","created_at","updated_at","comments"],` +
		`"filters":{"author":"octocat","milestone":null,"since":"2026-01-01T00:00:00Z","labels":["bug","p1","regression"]},` +
		`"context":"The user asked: \"which open bugs changed this week?\" Summarise the most recent ones first, with links.\n` +
		`Prefer issues with reproduction steps; skip duplicates and anything marked wontfix or needs-info."},` +
		`"_meta":{"progressToken":"4f1c2e9a-6b7d-4c3e-9f21-8a5b6c7d8e9f"}}}`
	for i := 0; len(typical) < 1000; i++ {
		typical = strings.Replace(typical, `"limit":25`, fmt.Sprintf(`"limit":25,"note%d":"padding to a kilobyte"`, i), 1)
	}
	var records strings.Builder
	records.WriteString(`{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"import_rows","arguments":{"rows":[`)
	for i := 0; records.Len() < 64<<10-200; i++ {
		fmt.Fprintf(&records, `{"id":%d,"name":"row number %d","email":"user%d@example.com","tags":["alpha","beta"],"active":true,"score":%d.25},`, i, i, i, i)
	}
	records.WriteString(`null]}}}`)
	text := jsonrpcToolsCall("write_file", `{"path":"/tmp/notes.txt","content":"`+strings.Repeat(`Lorem ipsum dolor sit amet, consectetur adipiscing elit. `, 64<<10/57)+`"}`)
	unicode := jsonrpcToolsCall("write_file", `{"content":"`+strings.Repeat("日本語のテキスト、", 64<<10/27)+`"}`)
	escapes := jsonrpcToolsCall("write_file", `{"content":"`+strings.Repeat(`{\"a\":\"b\\n\"},`, 64<<10/16)+`"}`)
	var batch strings.Builder
	batch.WriteString("[")
	for i := range 20 {
		fmt.Fprintf(&batch, `{"jsonrpc":"2.0","id":%d,"method":"tools/call","params":{"name":"tool_%d","arguments":{"i":%d}}},`, i, i, i)
	}
	batch.WriteString(`{"jsonrpc":"2.0","method":"notifications/initialized"}]`)
	return []struct {
		name string
		body []byte
	}{
		{"tools_list", []byte(`{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{}}`)},
		{"tools_call_1KB", []byte(typical)},
		{"batch_21", []byte(batch.String())},
		{"records_64KB", []byte(records.String())},
		{"string_64KB", []byte(text)},
		{"unicode_64KB", []byte(unicode)},
		{"escapes_64KB", []byte(escapes)},
		{"members_64KB", []byte(jsonrpcToolsCall("x", jsonrpcMembers(6000, `"end":0`)))},
		{"depth_10000", jsonrpcNested(jsonrpcMaxDepth - 2)},
	}
}

func BenchmarkJSONRPC(b *testing.B) {
	for _, c := range jsonrpcBenchBodies() {
		b.Run(fmt.Sprintf("%s_%dB", c.name, len(c.body)), func(b *testing.B) {
			if _, err := parseJSONRPC(c.body, nil); err != nil {
				b.Fatal(err)
			}
			buf := make([]jsonrpcMessage, 0, 32)
			b.SetBytes(int64(len(c.body)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := parseJSONRPC(c.body, buf[:0]); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkJSONRPCReference is the strict reference decoder on the same
// bodies, for scale.
func BenchmarkJSONRPCReference(b *testing.B) {
	for _, c := range jsonrpcBenchBodies() {
		b.Run(fmt.Sprintf("%s_%dB", c.name, len(c.body)), func(b *testing.B) {
			b.SetBytes(int64(len(c.body)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := jsonrpcReference(c.body); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
