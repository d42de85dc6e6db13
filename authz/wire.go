package authz

import (
	"math"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"google.golang.org/protobuf/encoding/protowire"
)

// The CheckResponse an outcome stands for, written straight to the wire:
// building the generated messages (a HeaderValueOption, a HeaderValue and a
// structpb.Value per header and metadata field) and marshalling them costs
// more than the rest of a cold Check besides the signature. The bytes are
// those proto.Marshal writes for outcome.message() up to the order of map
// entries, which protobuf leaves open; TestWireMatchesMessage holds the two
// to the same message.

// Field numbers of the messages written here (envoy.service.auth.v3,
// envoy.config.core.v3, envoy.type.v3, google.rpc, google.protobuf).
const (
	fieldCheckStatus   = 1 // CheckResponse.status (google.rpc.Status)
	fieldCheckDenied   = 2 // CheckResponse.denied_response
	fieldCheckOK       = 3 // CheckResponse.ok_response
	fieldCheckMetadata = 4 // CheckResponse.dynamic_metadata (google.protobuf.Struct)

	fieldStatusCode = 1 // google.rpc.Status.code

	fieldDeniedStatus  = 1 // DeniedHttpResponse.status (envoy.type.v3.HttpStatus)
	fieldDeniedHeaders = 2 // DeniedHttpResponse.headers
	fieldDeniedBody    = 3 // DeniedHttpResponse.body

	fieldHTTPStatusCode = 1 // HttpStatus.code

	fieldOKHeaders  = 2 // OkHttpResponse.headers
	fieldOKToRemove = 5 // OkHttpResponse.headers_to_remove

	fieldOptionHeader = 1 // HeaderValueOption.header
	fieldOptionAction = 3 // HeaderValueOption.append_action
	fieldHeaderKey    = 1 // HeaderValue.key
	fieldHeaderValue  = 2 // HeaderValue.value

	fieldStructFields = 1 // Struct.fields (map<string, Value>)
	fieldEntryKey     = 1 // map entry key
	fieldEntryValue   = 2 // map entry value
	fieldValueNumber  = 2 // Value.number_value
	fieldValueString  = 3 // Value.string_value
)

const overwrite = uint64(corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD)

// wireSize returns the encoded size of o's CheckResponse.
func (o *outcome) wireSize() int {
	var status int
	if o.code != 0 {
		status = protowire.SizeTag(fieldStatusCode) + protowire.SizeVarint(uint64(o.code))
	}
	n := sizeBytes(fieldCheckStatus, status)
	headers := 0
	for _, h := range o.headers {
		headers += sizeBytes(fieldOKHeaders, headerOptionSize(h))
	}
	if !o.allow {
		httpStatus := sizeBytes(fieldDeniedStatus, protowire.SizeTag(fieldHTTPStatusCode)+protowire.SizeVarint(uint64(o.status)))
		return n + sizeBytes(fieldCheckDenied, httpStatus+headers+sizeString(fieldDeniedBody, o.body))
	}
	ok := headers
	for _, r := range o.remove {
		ok += protowire.SizeTag(fieldOKToRemove) + protowire.SizeBytes(len(r))
	}
	n += sizeBytes(fieldCheckOK, ok)
	if len(o.meta) > 0 {
		fields := 0
		for _, m := range o.meta {
			fields += sizeBytes(fieldStructFields, metaEntrySize(m))
		}
		n += sizeBytes(fieldCheckMetadata, fields)
	}
	return n
}

// appendWire appends o's CheckResponse, as proto.Marshal would write
// o.message().
func (o *outcome) appendWire(b []byte) []byte {
	b = protowire.AppendTag(b, fieldCheckStatus, protowire.BytesType)
	if o.code != 0 {
		b = protowire.AppendVarint(b, uint64(protowire.SizeTag(fieldStatusCode)+protowire.SizeVarint(uint64(o.code))))
		b = protowire.AppendTag(b, fieldStatusCode, protowire.VarintType)
		b = protowire.AppendVarint(b, uint64(o.code))
	} else {
		b = protowire.AppendVarint(b, 0)
	}
	if !o.allow {
		httpStatus := protowire.SizeTag(fieldHTTPStatusCode) + protowire.SizeVarint(uint64(o.status))
		denied := sizeBytes(fieldDeniedStatus, httpStatus) + sizeString(fieldDeniedBody, o.body)
		for _, h := range o.headers {
			denied += sizeBytes(fieldDeniedHeaders, headerOptionSize(h))
		}
		b = protowire.AppendTag(b, fieldCheckDenied, protowire.BytesType)
		b = protowire.AppendVarint(b, uint64(denied))
		b = protowire.AppendTag(b, fieldDeniedStatus, protowire.BytesType)
		b = protowire.AppendVarint(b, uint64(httpStatus))
		b = protowire.AppendTag(b, fieldHTTPStatusCode, protowire.VarintType)
		b = protowire.AppendVarint(b, uint64(o.status))
		for _, h := range o.headers {
			b = appendHeaderOption(b, fieldDeniedHeaders, h)
		}
		if o.body != "" {
			b = protowire.AppendTag(b, fieldDeniedBody, protowire.BytesType)
			b = protowire.AppendString(b, o.body)
		}
		return b
	}
	ok := 0
	for _, h := range o.headers {
		ok += sizeBytes(fieldOKHeaders, headerOptionSize(h))
	}
	for _, r := range o.remove {
		ok += protowire.SizeTag(fieldOKToRemove) + protowire.SizeBytes(len(r))
	}
	b = protowire.AppendTag(b, fieldCheckOK, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(ok))
	for _, h := range o.headers {
		b = appendHeaderOption(b, fieldOKHeaders, h)
	}
	for _, r := range o.remove {
		b = protowire.AppendTag(b, fieldOKToRemove, protowire.BytesType)
		b = protowire.AppendString(b, r)
	}
	if len(o.meta) > 0 {
		fields := 0
		for _, m := range o.meta {
			fields += sizeBytes(fieldStructFields, metaEntrySize(m))
		}
		b = protowire.AppendTag(b, fieldCheckMetadata, protowire.BytesType)
		b = protowire.AppendVarint(b, uint64(fields))
		for _, m := range o.meta {
			b = protowire.AppendTag(b, fieldStructFields, protowire.BytesType)
			b = protowire.AppendVarint(b, uint64(metaEntrySize(m)))
			b = protowire.AppendTag(b, fieldEntryKey, protowire.BytesType)
			b = protowire.AppendString(b, m.key)
			b = protowire.AppendTag(b, fieldEntryValue, protowire.BytesType)
			b = protowire.AppendVarint(b, uint64(metaValueSize(m)))
			if m.number {
				b = protowire.AppendTag(b, fieldValueNumber, protowire.Fixed64Type)
				b = protowire.AppendFixed64(b, math.Float64bits(m.n))
			} else {
				b = protowire.AppendTag(b, fieldValueString, protowire.BytesType)
				b = protowire.AppendString(b, m.s)
			}
		}
	}
	return b
}

// wire returns o's CheckResponse as bytes.
func (o *outcome) wire() []byte { return o.appendWire(make([]byte, 0, o.wireSize())) }

func sizeBytes(num protowire.Number, n int) int {
	return protowire.SizeTag(num) + protowire.SizeBytes(n)
}

// sizeString is the size of a proto3 string field: nothing when empty.
func sizeString(num protowire.Number, s string) int {
	if s == "" {
		return 0
	}
	return sizeBytes(num, len(s))
}

func headerValueSize(h kv) int {
	return sizeString(fieldHeaderKey, h.key) + sizeString(fieldHeaderValue, h.value)
}

func headerOptionSize(h kv) int {
	return sizeBytes(fieldOptionHeader, headerValueSize(h)) + protowire.SizeTag(fieldOptionAction) + protowire.SizeVarint(overwrite)
}

func appendHeaderOption(b []byte, num protowire.Number, h kv) []byte {
	b = protowire.AppendTag(b, num, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(headerOptionSize(h)))
	b = protowire.AppendTag(b, fieldOptionHeader, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(headerValueSize(h)))
	if h.key != "" {
		b = protowire.AppendTag(b, fieldHeaderKey, protowire.BytesType)
		b = protowire.AppendString(b, h.key)
	}
	if h.value != "" {
		b = protowire.AppendTag(b, fieldHeaderValue, protowire.BytesType)
		b = protowire.AppendString(b, h.value)
	}
	b = protowire.AppendTag(b, fieldOptionAction, protowire.VarintType)
	return protowire.AppendVarint(b, overwrite)
}

// metaValueSize is the size of a google.protobuf.Value holding m. A string
// value is written even when empty: the oneof is set.
func metaValueSize(m metaField) int {
	if m.number {
		return protowire.SizeTag(fieldValueNumber) + protowire.SizeFixed64()
	}
	return sizeBytes(fieldValueString, len(m.s))
}

func metaEntrySize(m metaField) int {
	return sizeBytes(fieldEntryKey, len(m.key)) + sizeBytes(fieldEntryValue, metaValueSize(m))
}
