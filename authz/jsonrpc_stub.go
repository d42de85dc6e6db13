package authz

// Temporary stand-in until the fast scanner lands; replaced, not kept.

import (
	"bytes"
	"encoding/json"
	"errors"
)

type jsonrpcMessage struct {
	Method    string
	HasMethod bool
	Target    string
	HasTarget bool
}

var (
	errBodyUnreadable = errors.New("body is not a JSON-RPC message")
	errBodyDuplicate  = errors.New("duplicate member name")
)

func parseJSONRPC(body []byte, out []jsonrpcMessage) ([]jsonrpcMessage, error) {
	var raws []map[string]json.RawMessage
	t := bytes.TrimSpace(body)
	if len(t) > 0 && t[0] == '[' {
		if json.Unmarshal(t, &raws) != nil || len(raws) == 0 {
			return out, errBodyUnreadable
		}
	} else {
		var one map[string]json.RawMessage
		if json.Unmarshal(t, &one) != nil || one == nil {
			return out, errBodyUnreadable
		}
		raws = append(raws, one)
	}
	for _, r := range raws {
		var m jsonrpcMessage
		if raw, ok := r["method"]; ok {
			if json.Unmarshal(raw, &m.Method) != nil {
				return out, errBodyUnreadable
			}
			m.HasMethod = true
			var params map[string]json.RawMessage
			_ = json.Unmarshal(r["params"], &params)
			key := ""
			switch m.Method {
			case "tools/call", "prompts/get":
				key = "name"
			case "resources/read", "resources/subscribe", "resources/unsubscribe":
				key = "uri"
			}
			if v, ok := params[key]; ok && key != "" {
				m.HasTarget = json.Unmarshal(v, &m.Target) == nil
			}
		} else if _, ok := r["result"]; !ok {
			if _, ok := r["error"]; !ok {
				return out, errBodyUnreadable
			}
		}
		out = append(out, m)
	}
	return out, nil
}
