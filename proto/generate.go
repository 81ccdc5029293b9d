// Package proto holds the wire contract of the ledger core (ledger.proto) and of its payment
// layer (payment.proto).
//
// Regenerate the Go code after editing a .proto file with:
//
//	go generate ./proto/...
//
// which needs buf and the two protoc plugins on PATH (no downloads at build time):
//
//	go install github.com/bufbuild/buf/cmd/buf@v1.75.0
//	go install google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12
//	go install google.golang.org/grpc/cmd/protoc-gen-go-grpc@v1.6.2
package proto

//go:generate buf lint
//go:generate buf generate
