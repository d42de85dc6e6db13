// Package cachev1 holds the protobuf schema of the verdicts mcp-authz stores
// in Redis, and its generated Go.
//
// Regenerate with `go generate ./proto/...`; it needs protoc (Debian package
// protobuf-compiler) and protoc-gen-go
// (go install google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12).
package cachev1

//go:generate protoc --go_out=. --go_opt=paths=source_relative verdict.proto
