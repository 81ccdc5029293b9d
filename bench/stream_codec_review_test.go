package bench

import (
	"bytes"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	ledgerv1 "github.com/ledgercore/ledger/proto/ledger/v1"
)

// TestStreamCodecAsProto (review): the bench's stream codec sends proto.Marshal's bytes, and
// leaves to it a request with unknown fields of its own (kept, as proto.Marshal keeps them).
func TestStreamCodecAsProto(t *testing.T) {
	ts := []*ledgerv1.Transfer{{Id: 1, DebitAccountId: 2, CreditAccountId: 3, Amount: 4, Ledger: 1, Code: 1, BizId: "b"}, {Id: 9}}
	m := &ledgerv1.CreateTransfersStreamRequest{Tag: 300, Transfers: ts}
	check := func(name string) {
		want, err := proto.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		bs, err := streamCodec.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		if got := bs.Materialize(); !bytes.Equal(got, want) {
			t.Fatalf("%s: codec\n%x\nproto.Marshal\n%x", name, got, want)
		}
	}
	check("plain")
	m.ProtoReflect().SetUnknown(protowire.AppendVarint(protowire.AppendTag(nil, 9, protowire.VarintType), 7))
	check("unknown field")
}
