package authz

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/maphash"
	"math"
	"math/bits"
	"sync"
	"unicode/utf16"
	"unicode/utf8"
)

// Reading MCP JSON-RPC bodies (DESIGN §6).
//
// The decision must see a POST body exactly as the MCP server will, and the
// servers parse strictly (JSON.parse in the TypeScript SDK, pydantic in
// Python): a body that our reader understands one way and the server
// another is how an attacker would call a tool under the scopes of a
// harmless one. So parseJSONRPC validates the whole body as RFC 8259 JSON
// (RFC 7493 I-JSON strictness: valid UTF-8, no lone surrogate escapes, no
// duplicate member names) before it reports anything, and
// FuzzJSONRPC holds it to a reference built on a strict decoder
// (github.com/go-json-experiment/json).
//
// Decisions:
//   - Duplicate member names are refused anywhere in the body, not only in a
//     message object or its params: the reference decoder does the same, no
//     JSON encoder a client uses produces them, and parsers disagree on which
//     occurrence wins (JSON.parse and pydantic keep the last), so a
//     duplicate anywhere is ambiguity that a later rule on arguments or a
//     tool's own parser could trip over. Names compare after unescaping.
//   - Nesting deeper than jsonrpcMaxDepth (10000, the reference decoder's limit)
//     is unreadable.
//   - A \u escape of a lone surrogate (\ud800 alone) is unreadable, like
//     invalid UTF-8: it cannot be decoded to Unicode text (the reference
//     agrees; JSON.parse would keep it in a UTF-16 string).
//   - Error precedence, over the whole body: not JSON (syntax, UTF-8,
//     trailing data, depth) → errBodyUnreadable; else a duplicate name →
//     errBodyDuplicate; else not a message or non-empty batch of messages →
//     errBodyUnreadable.
//   - The target is read for the five methods that have one; params.name of
//     another method is not reported (it names nothing a rule matches).
//
// Strict is not the same as what every server accepts: a Node server that
// decodes the body with Buffer#toString or TextDecoder replaces invalid
// UTF-8 with U+FFFD (and TextDecoder drops a leading BOM) before JSON.parse,
// which also keeps lone surrogates and nests without limit. Such bodies are
// unreadable here, so the default unreadable_body: deny refuses them, while
// route_scopes lets the server execute them under the route's scopes only.

// jsonrpcMaxDepth is the deepest nesting of arrays and objects read, the limit
// of the reference decoder (go-json-experiment/json's jsontext).
const jsonrpcMaxDepth = 10000

var (
	// errBodyUnreadable: the body is not JSON, or is JSON but neither a
	// JSON-RPC message nor a non-empty array of them.
	errBodyUnreadable = errors.New("body is not a JSON-RPC message or batch")
	// errBodyDuplicate: an object in the body repeats a member name.
	errBodyDuplicate = errors.New("body repeats a JSON member name")
)

// jsonrpcMessage is what the decision needs from one JSON-RPC message.
type jsonrpcMessage struct {
	// Method is the request's or notification's method; "" for a response.
	Method    string
	HasMethod bool
	// Target is params.name (tools/call, prompts/get) or params.uri
	// (resources/read, resources/subscribe, resources/unsubscribe); ""
	// when absent, not a string, or the method has no target.
	Target string
	// HasTarget reports that the method has a target and params holds it as
	// a string (possibly "").
	HasTarget bool
}

// parseJSONRPC reads a POST body: one message object, or a non-empty array
// of them (a batch), and appends the messages to appendTo in body order.
//
// A message is an object with a string "method" (request or notification;
// "id" is not looked at), or an object without "method" that has "result"
// or "error" (a response). Member names are exact and case-sensitive and
// compared after decoding escapes; returned strings are decoded.
//
// Errors: errBodyUnreadable (not JSON, invalid UTF-8, trailing data, nesting
// deeper than jsonrpcMaxDepth, not a message or non-empty array of messages, a
// non-string "method") and errBodyDuplicate (a member name repeated in any
// object). On error appendTo is returned unchanged.
//
// Allocations: none but the returned strings, and none for a method of the
// MCP specification that needs no unescaping.
func parseJSONRPC(body []byte, appendTo []jsonrpcMessage) ([]jsonrpcMessage, error) {
	p := jsonrpcParsers.Get().(*jsonrpcParser)
	out, err := p.parse(body, appendTo)
	p.release()
	return out, err
}

var jsonrpcParsers = sync.Pool{New: func() any { return new(jsonrpcParser) }}

// jsonrpcKeepBytes bounds each buffer a pooled parser keeps: larger ones, grown
// for an unusually big or deep body, are left to the garbage collector.
const jsonrpcKeepBytes = 256 << 10

// jsonrpcParser is a validating scanner: no tokens, no tree, just offsets into
// the body. Its buffers are reused through jsonrpcParsers.
type jsonrpcParser struct {
	b      []byte
	frames []jsonrpcFrame // open arrays and objects, outermost first
	names  []jsonrpcName  // member names of the open objects, for duplicate checks
	decode []byte         // unescaped member names of the open objects, then decoded values
	table  []uint64       // hash table for the duplicate check of large objects
	msgs   []jsonrpcRaw   // messages found, decoded at the end
	dup    bool           // some object repeats a name
	shape  bool           // valid JSON so far, but not a message or batch of them
}

type jsonrpcFrame struct {
	names  int32 // len(names) when the object opened
	decode int32 // len(decode) when the object opened
	object bool
}

// jsonrpcName is a member name: b[off:end], or decode[off:end] when unescaped.
type jsonrpcName struct {
	off, end int32
	decoded  bool
	prefix   uint64 // jsonPrefix of the name
}

// jsonrpcSpan is a string value: the bytes between its quotes.
type jsonrpcSpan struct {
	start, end int32
	escaped    bool // holds escapes: decode before use
	ok         bool // present and a string
}

type jsonrpcRaw struct {
	method    jsonrpcSpan
	hasMethod bool // a "method" member, string or not
	name, uri jsonrpcSpan
}

func (p *jsonrpcParser) release() {
	p.b = nil
	keep := func(n, size int) bool { return n*size <= jsonrpcKeepBytes }
	if !keep(cap(p.frames), 12) {
		p.frames = nil
	}
	if !keep(cap(p.names), 24) {
		p.names = nil
	}
	if !keep(cap(p.decode), 1) {
		p.decode = nil
	}
	if !keep(cap(p.table), 8) {
		p.table = nil
	}
	if !keep(cap(p.msgs), 64) {
		p.msgs = nil
	}
	jsonrpcParsers.Put(p)
}

func (p *jsonrpcParser) parse(body []byte, appendTo []jsonrpcMessage) ([]jsonrpcMessage, error) {
	if len(body) > math.MaxInt32 {
		return appendTo, errBodyUnreadable
	}
	p.b, p.dup, p.shape = body, false, false
	p.frames, p.names, p.decode, p.msgs = p.frames[:0], p.names[:0], p.decode[:0], p.msgs[:0]
	if err := p.document(); err != nil {
		return appendTo, err
	}
	for _, m := range p.msgs {
		appendTo = append(appendTo, p.message(m))
	}
	return appendTo, nil
}

// message decodes what the decision needs from m.
func (p *jsonrpcParser) message(m jsonrpcRaw) jsonrpcMessage {
	if !m.method.ok {
		return jsonrpcMessage{} // a response
	}
	out := jsonrpcMessage{Method: jsonrpcMethodString(p.text(m.method)), HasMethod: true}
	var target jsonrpcSpan
	switch out.Method {
	case "tools/call", "prompts/get":
		target = m.name
	case "resources/read", "resources/subscribe", "resources/unsubscribe":
		target = m.uri
	}
	if target.ok {
		out.Target, out.HasTarget = string(p.text(target)), true
	}
	return out
}

// text is the decoded content of s, valid until the next call.
func (p *jsonrpcParser) text(s jsonrpcSpan) []byte {
	raw := p.b[s.start:s.end]
	if !s.escaped {
		return raw
	}
	p.decode = jsonGrow(p.decode[:0], len(raw))
	return p.decode[:jsonUnescape(p.decode[:len(raw)], raw)]
}

// jsonrpcMethodString returns a constant for the methods of the MCP
// specification (2025-11-25), so the common case allocates nothing.
func jsonrpcMethodString(b []byte) string {
	switch string(b) {
	case "initialize":
		return "initialize"
	case "ping":
		return "ping"
	case "tools/list":
		return "tools/list"
	case "tools/call":
		return "tools/call"
	case "resources/list":
		return "resources/list"
	case "resources/templates/list":
		return "resources/templates/list"
	case "resources/read":
		return "resources/read"
	case "resources/subscribe":
		return "resources/subscribe"
	case "resources/unsubscribe":
		return "resources/unsubscribe"
	case "prompts/list":
		return "prompts/list"
	case "prompts/get":
		return "prompts/get"
	case "completion/complete":
		return "completion/complete"
	case "logging/setLevel":
		return "logging/setLevel"
	case "tasks/get":
		return "tasks/get"
	case "tasks/result":
		return "tasks/result"
	case "tasks/list":
		return "tasks/list"
	case "tasks/cancel":
		return "tasks/cancel"
	case "notifications/initialized":
		return "notifications/initialized"
	case "notifications/cancelled":
		return "notifications/cancelled"
	case "notifications/progress":
		return "notifications/progress"
	case "notifications/roots/list_changed":
		return "notifications/roots/list_changed"
	case "notifications/tasks/status":
		return "notifications/tasks/status"
	}
	return string(b)
}

// Positions: every reading function below takes the index where its part of
// the body starts and returns the index after it, so the hot loops keep the
// body and the position in registers.

// document reads the whole body.
func (p *jsonrpcParser) document() error {
	b := p.b
	i := jsonSkipSpace(b, 0)
	var err error
	switch {
	case i < len(b) && b[i] == '{':
		i, err = p.messageObject(i)
	case i < len(b) && b[i] == '[':
		i, err = p.batch(i)
	default:
		p.shape = true
		i, err = p.value(i)
	}
	switch {
	case err != nil:
		return err
	case jsonSkipSpace(b, i) != len(b):
		return errBodyUnreadable
	case p.dup:
		return errBodyDuplicate
	case p.shape:
		return errBodyUnreadable
	}
	return nil
}

// batch reads the array at b[i].
func (p *jsonrpcParser) batch(i int) (int, error) {
	b := p.b
	if err := p.push(false); err != nil {
		return i, err
	}
	i = jsonSkipSpace(b, i+1)
	if i < len(b) && b[i] == ']' {
		p.pop()
		p.shape = true // an empty batch
		return i + 1, nil
	}
	for {
		var err error
		if i < len(b) && b[i] == '{' {
			i, err = p.messageObject(i)
		} else {
			p.shape = true
			i, err = p.value(i)
		}
		if err != nil {
			return i, err
		}
		i = jsonSkipSpace(b, i)
		switch {
		case i < len(b) && b[i] == ',':
			i = jsonSkipSpace(b, i+1)
		case i < len(b) && b[i] == ']':
			p.pop()
			return i + 1, nil
		default:
			return i, errBodyUnreadable
		}
	}
}

// messageObject reads the object at b[i], which should be a message.
func (p *jsonrpcParser) messageObject(i int) (int, error) {
	b := p.b
	if err := p.push(true); err != nil {
		return i, err
	}
	var m jsonrpcRaw
	response := false
	i = jsonSkipSpace(b, i+1)
	for more := i >= len(b) || b[i] != '}'; more; {
		var key []byte
		var err error
		if key, i, err = p.name(i); err != nil {
			return i, err
		}
		switch string(key) {
		case "method":
			m.hasMethod = true
			m.method, i, err = p.stringValue(i)
		case "params":
			m.name, m.uri = jsonrpcSpan{}, jsonrpcSpan{}
			if i < len(b) && b[i] == '{' {
				i, err = p.params(i, &m)
			} else {
				i, err = p.value(i)
			}
		case "result", "error":
			response = true
			i, err = p.value(i)
		default:
			i, err = p.value(i)
		}
		if err != nil {
			return i, err
		}
		if more, i, err = p.nextMember(i); err != nil {
			return i, err
		}
	}
	p.pop()
	switch {
	case m.hasMethod && !m.method.ok, !m.hasMethod && !response:
		p.shape = true
	default:
		p.msgs = append(p.msgs, m)
	}
	return i + 1, nil
}

// params reads the params object at b[i], keeping name and uri.
func (p *jsonrpcParser) params(i int, m *jsonrpcRaw) (int, error) {
	b := p.b
	if err := p.push(true); err != nil {
		return i, err
	}
	i = jsonSkipSpace(b, i+1)
	for more := i >= len(b) || b[i] != '}'; more; {
		var key []byte
		var err error
		if key, i, err = p.name(i); err != nil {
			return i, err
		}
		switch string(key) {
		case "name":
			m.name, i, err = p.stringValue(i)
		case "uri":
			m.uri, i, err = p.stringValue(i)
		default:
			i, err = p.value(i)
		}
		if err != nil {
			return i, err
		}
		if more, i, err = p.nextMember(i); err != nil {
			return i, err
		}
	}
	p.pop()
	return i + 1, nil
}

// nextMember reads what follows a member: a comma and whitespace (more),
// or the object's closing brace (not more; i is at the brace).
func (p *jsonrpcParser) nextMember(i int) (more bool, next int, err error) {
	b := p.b
	i = jsonSkipSpace(b, i)
	switch {
	case i < len(b) && b[i] == ',':
		return true, jsonSkipSpace(b, i+1), nil
	case i < len(b) && b[i] == '}':
		return false, i, nil
	}
	return false, i, errBodyUnreadable
}

// stringValue reads a value, and returns it when it is a string.
func (p *jsonrpcParser) stringValue(i int) (jsonrpcSpan, int, error) {
	b := p.b
	if i < len(b) && b[i] == '"' {
		end, escaped, ok := jsonString(b, i+1)
		if !ok {
			return jsonrpcSpan{}, i, errBodyUnreadable
		}
		return jsonrpcSpan{start: int32(i + 1), end: int32(end), escaped: escaped, ok: true}, end + 1, nil
	}
	i, err := p.value(i)
	return jsonrpcSpan{}, i, err
}

// jsonSkipSpace returns the index of the first byte at or after i that is
// not RFC 8259 whitespace.
func jsonSkipSpace(b []byte, i int) int {
	for i < len(b) && jsonSpace[b[i]] {
		i++
	}
	return i
}

var jsonSpace = [256]bool{' ': true, '\t': true, '\n': true, '\r': true}

func (p *jsonrpcParser) push(object bool) error {
	if len(p.frames) >= jsonrpcMaxDepth {
		return errBodyUnreadable
	}
	p.frames = append(p.frames, jsonrpcFrame{names: int32(len(p.names)), decode: int32(len(p.decode)), object: object})
	return nil
}

// pop closes the innermost array or object, checking an object's names.
func (p *jsonrpcParser) pop() {
	f := p.frames[len(p.frames)-1]
	p.frames = p.frames[:len(p.frames)-1]
	if !f.object {
		return
	}
	if len(p.names)-int(f.names) > 1 && !p.dup && p.duplicateIn(p.names[f.names:]) {
		p.dup = true
	}
	p.names, p.decode = p.names[:f.names], p.decode[:f.decode]
}

// name reads the member name at b[i], the colon and the whitespace after
// it, records the name in the innermost object and returns it decoded
// (valid until the object closes) with the index of the member's value.
func (p *jsonrpcParser) name(i int) ([]byte, int, error) {
	b := p.b
	if i >= len(b) || b[i] != '"' {
		return nil, i, errBodyUnreadable
	}
	end, escaped, ok := jsonString(b, i+1)
	if !ok {
		return nil, i, errBodyUnreadable
	}
	key := b[i+1 : end]
	n := jsonrpcName{off: int32(i + 1), end: int32(end)}
	if i = end + 1; i >= len(b) || b[i] != ':' {
		if i = jsonSkipSpace(b, i); i >= len(b) || b[i] != ':' {
			return nil, i, errBodyUnreadable
		}
	}
	i = jsonSkipSpace(b, i+1)
	if escaped {
		off := len(p.decode)
		p.decode = jsonGrow(p.decode, len(key))
		end := off + jsonUnescape(p.decode[off:off+len(key)], key)
		p.decode = p.decode[:end]
		n = jsonrpcName{off: int32(off), end: int32(end), decoded: true}
		key = p.decode[off:end]
	}
	n.prefix = jsonPrefix(key)
	p.names = append(p.names, n)
	return key, i, nil
}

// jsonPrefix is the first eight bytes of a name (fewer, zero-padded, for a
// shorter one): names of equal length and prefix are compared whole.
func jsonPrefix(k []byte) uint64 {
	if len(k) >= 8 {
		return binary.LittleEndian.Uint64(k)
	}
	var x uint64
	for j := len(k) - 1; j >= 0; j-- {
		x = x<<8 | uint64(k[j])
	}
	return x
}

func (p *jsonrpcParser) nameBytes(n jsonrpcName) []byte {
	if n.decoded {
		return p.decode[n.off:n.end]
	}
	return p.b[n.off:n.end]
}

// duplicateIn reports whether two of an object's names are equal: pairwise
// for the few members of a typical object, through a hash table for more,
// so a large object costs linear time. The hash is seeded per process, so a
// body cannot be built to collide.
func (p *jsonrpcParser) duplicateIn(names []jsonrpcName) bool {
	n := len(names)
	if n <= 16 {
		for i := 1; i < n; i++ {
			a := &names[i]
			for j := range i {
				c := &names[j]
				if a.prefix == c.prefix && a.end-a.off == c.end-c.off &&
					(a.end-a.off <= 8 || bytes.Equal(p.nameBytes(*a), p.nameBytes(*c))) {
					return true
				}
			}
		}
		return false
	}
	size := 64
	for size < 2*n {
		size <<= 1
	}
	if cap(p.table) < size {
		p.table = make([]uint64, size)
	}
	table := p.table[:size]
	clear(table)
	mask := uint64(size - 1)
	for i, name := range names {
		b := p.nameBytes(name)
		h := maphash.Bytes(jsonrpcNameSeed, b)
		tag := h &^ math.MaxUint32
		for slot := h & mask; ; slot = (slot + 1) & mask {
			e := table[slot]
			if e == 0 {
				table[slot] = tag | uint64(i+1)
				break
			}
			if e&^math.MaxUint32 == tag && bytes.Equal(p.nameBytes(names[uint32(e)-1]), b) {
				return true
			}
		}
	}
	return false
}

var jsonrpcNameSeed = maphash.MakeSeed()

// value reads the JSON value at b[i], iteratively: nesting costs frames,
// not Go stack.
func (p *jsonrpcParser) value(i int) (int, error) {
	b := p.b
	base := len(p.frames)
	for {
		// A value starts at b[i].
		if i >= len(b) {
			return i, errBodyUnreadable
		}
		switch b[i] {
		case '{':
			if err := p.push(true); err != nil {
				return i, err
			}
			if i = jsonSkipSpace(b, i+1); i < len(b) && b[i] == '}' {
				i++
				p.pop()
				break
			}
			var err error
			if _, i, err = p.name(i); err != nil {
				return i, err
			}
			continue
		case '[':
			if err := p.push(false); err != nil {
				return i, err
			}
			if i = jsonSkipSpace(b, i+1); i < len(b) && b[i] == ']' {
				i++
				p.pop()
				break
			}
			continue
		case '"':
			end, _, ok := jsonString(b, i+1)
			if !ok {
				return i, errBodyUnreadable
			}
			i = end + 1
		case 't':
			if !jsonLiteral(b, i, "true") {
				return i, errBodyUnreadable
			}
			i += len("true")
		case 'f':
			if !jsonLiteral(b, i, "false") {
				return i, errBodyUnreadable
			}
			i += len("false")
		case 'n':
			if !jsonLiteral(b, i, "null") {
				return i, errBodyUnreadable
			}
			i += len("null")
		default:
			var ok bool
			if i, ok = jsonNumber(b, i); !ok {
				return i, errBodyUnreadable
			}
		}
		// A value ended: close what it ends, up to where another starts.
	next:
		for {
			if len(p.frames) == base {
				return i, nil
			}
			if i = jsonSkipSpace(b, i); i >= len(b) {
				return i, errBodyUnreadable
			}
			object := p.frames[len(p.frames)-1].object
			switch c := b[i]; {
			case c == ',':
				i = jsonSkipSpace(b, i+1)
				if object {
					var err error
					if _, i, err = p.name(i); err != nil {
						return i, err
					}
				}
				break next
			case object && c == '}', !object && c == ']':
				i++
				p.pop()
			default:
				return i, errBodyUnreadable
			}
		}
	}
}

func jsonLiteral(b []byte, i int, lit string) bool {
	return i+len(lit) <= len(b) && string(b[i:i+len(lit)]) == lit
}

// jsonNumber reads the number -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
// at b[i], of any length, and returns the index after it.
func jsonNumber(b []byte, i int) (int, bool) {
	if i < len(b) && b[i] == '-' {
		i++
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case i < len(b) && '1' <= b[i] && b[i] <= '9':
		i = jsonDigits(b, i+1)
	default:
		return i, false
	}
	if i < len(b) && b[i] == '.' {
		j := jsonDigits(b, i+1)
		if j == i+1 {
			return i, false
		}
		i = j
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		j := jsonDigits(b, i)
		if j == i {
			return i, false
		}
		i = j
	}
	return i, true
}

func jsonDigits(b []byte, i int) int {
	for i < len(b) && '0' <= b[i] && b[i] <= '9' {
		i++
	}
	return i
}

const (
	jsonLSB = 0x0101010101010101
	jsonMSB = 0x8080808080808080
)

// jsonStringSpecial has bit 7 of each byte of w set that is '"', '\\' or a
// control character, the bytes that end a run of string content; bits above
// the lowest set one may be spurious.
func jsonStringSpecial(w uint64) uint64 {
	q := w ^ (jsonLSB * '"')
	s := w ^ (jsonLSB * '\\')
	return (((q - jsonLSB) &^ q) | ((s - jsonLSB) &^ s) | ((w - jsonLSB*0x20) &^ w)) & jsonMSB
}

// jsonString reads the content of the string whose opening quote is at
// b[i-1], validating escapes and UTF-8, and returns the index of its closing
// quote. Runs of plain content are scanned eight bytes at a time; their
// UTF-8 is checked once per run, and only when a byte of it is not ASCII.
func jsonString(b []byte, i int) (end int, escaped, ok bool) {
	run := i        // start of the current run without escapes
	var high uint64 // the run's bytes or-ed together: bit 7 of a byte set when one is not ASCII
	for {
		// Find the next '"', '\\' or control character.
		for {
			if i+8 > len(b) {
				for i < len(b) && jsonPlain[b[i]] {
					high |= uint64(b[i])
					i++
				}
				break
			}
			w := binary.LittleEndian.Uint64(b[i:])
			if m := jsonStringSpecial(w); m != 0 {
				high |= w & (m&-m - 1) // the bytes before it
				i += bits.TrailingZeros64(m) >> 3
				break
			}
			high |= w
			i += 8
		}
		if i >= len(b) {
			return i, false, false
		}
		if high&jsonMSB != 0 && !utf8.Valid(b[run:i]) {
			return i, false, false
		}
		switch b[i] {
		case '"':
			return i, escaped, true
		case '\\':
			if i+1 < len(b) && jsonShortEscape[b[i+1]] {
				i += 2
			} else if n := jsonEscapeLen(b[i:]); n > 0 {
				i += n
			} else {
				return i, false, false
			}
			run, high, escaped = i, 0, true
		default: // a control character
			return i, false, false
		}
	}
}

// jsonPlain tells the bytes that may stand unescaped in a string and do
// not end it: all but '"', '\\' and the control characters.
var jsonPlain = func() (t [256]bool) {
	for c := 0x20; c < 256; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

// jsonShortEscape tells the characters of two-character escapes (\n...).
var jsonShortEscape = [256]bool{'"': true, '\\': true, '/': true, 'b': true, 'f': true, 'n': true, 'r': true, 't': true}

// jsonEscapeLen is the length of the valid escape sequence at the start of b
// (b[0] == '\\'), or 0. A \u escape of a surrogate is valid only as a
// high-low pair.
func jsonEscapeLen(b []byte) int {
	if len(b) < 2 {
		return 0
	}
	switch b[1] {
	case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
		return 2
	case 'u':
		r := jsonHex4(b[2:])
		switch {
		case r < 0:
			return 0
		case r < 0xD800 || r > 0xDFFF:
			return 6
		case r >= 0xDC00:
			return 0 // a low surrogate first
		case len(b) < 12 || b[6] != '\\' || b[7] != 'u':
			return 0
		}
		if r2 := jsonHex4(b[8:]); r2 < 0xDC00 || r2 > 0xDFFF {
			return 0
		}
		return 12
	}
	return 0
}

// jsonHex4 decodes four hexadecimal digits, or returns -1.
func jsonHex4(b []byte) rune {
	if len(b) < 4 {
		return -1
	}
	var r rune
	for _, c := range b[:4] {
		switch {
		case '0' <= c && c <= '9':
			c -= '0'
		case 'a' <= c && c <= 'f':
			c -= 'a' - 10
		case 'A' <= c && c <= 'F':
			c -= 'A' - 10
		default:
			return -1
		}
		r = r<<4 | rune(c)
	}
	return r
}

// jsonUnescape decodes the validated string content raw into dst, which
// has room for len(raw) bytes (decoding never lengthens), and returns the
// decoded length.
func jsonUnescape(dst, raw []byte) int {
	n := 0
	for len(raw) > 0 {
		i := bytes.IndexByte(raw, '\\')
		if i < 0 {
			return n + copy(dst[n:], raw)
		}
		n += copy(dst[n:], raw[:i])
		raw = raw[i:]
		switch raw[1] {
		case 'u':
			r := jsonHex4(raw[2:])
			raw = raw[6:]
			if utf16.IsSurrogate(r) {
				r = utf16.DecodeRune(r, jsonHex4(raw[2:]))
				raw = raw[6:]
			}
			n += utf8.EncodeRune(dst[n:], r)
			continue
		case 'b':
			dst[n] = '\b'
		case 'f':
			dst[n] = '\f'
		case 'n':
			dst[n] = '\n'
		case 'r':
			dst[n] = '\r'
		case 't':
			dst[n] = '\t'
		default: // '"', '\\', '/'
			dst[n] = raw[1]
		}
		n++
		raw = raw[2:]
	}
	return n
}

// jsonGrow returns b with room for n more bytes.
func jsonGrow(b []byte, n int) []byte {
	if cap(b)-len(b) >= n {
		return b
	}
	nb := make([]byte, len(b), 2*cap(b)+n)
	copy(nb, b)
	return nb
}
