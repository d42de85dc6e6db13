package authz

// Temporary stand-in until the normalizer lands; replaced, not kept.

import (
	"errors"
	"strings"
)

var errAmbiguousPath = errors.New("ambiguous request path")

func normalizePath(p string) (string, error) {
	if !strings.HasPrefix(p, "/") || strings.ContainsAny(p, ";\\") {
		return "", errAmbiguousPath
	}
	return p, nil
}
