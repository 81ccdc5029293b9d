package api

import (
	"bytes"
	"context"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/ledgercore/ledger/actors"
	"github.com/ledgercore/ledger/ledger"
	ledgerv1 "github.com/ledgercore/ledger/proto/ledger/v1"
)

// TestCreateTransfersDecodeEdgeShapes: shapes a fuzzer rarely reaches, checked against proto.Unmarshal.
func TestCreateTransfersDecodeEdgeShapes(t *testing.T) {
	nested := func(depth int, num protowire.Number) []byte {
		var b []byte
		for range depth {
			b = protowire.AppendTag(b, num, protowire.StartGroupType)
		}
		for range depth {
			b = protowire.AppendTag(b, num, protowire.EndGroupType)
		}
		return b
	}
	inTransfer := func(body []byte) []byte {
		return protowire.AppendBytes(protowire.AppendTag(nil, fieldRequestTransfers, protowire.BytesType), body)
	}
	inFlags := func(body []byte) []byte {
		return inTransfer(protowire.AppendBytes(protowire.AppendTag(nil, fieldTransferFlags, protowire.BytesType), body))
	}
	many := func(n int, last []byte) []byte {
		var b []byte
		for range n {
			b = append(b, inTransfer(nil)...)
		}
		return append(b, last...)
	}
	badUTF8 := protowire.AppendBytes(protowire.AppendTag(nil, fieldTransferBizID, protowire.BytesType), []byte{0xc3})
	cases := map[string][]byte{
		"groups 9999 deep":                nested(9999, 20),
		"groups 10000 deep":               nested(10000, 20),
		"groups 10001 deep":               nested(10001, 20),
		"groups 10001 deep in a transfer": inTransfer(nested(10001, 20)),
		"groups 10001 deep in flags":      inFlags(nested(10001, 9)),
		"group as transfers field":        nested(1, fieldRequestTransfers),
		"group as flags field":            inTransfer(nested(1, fieldTransferFlags)),
		"max field number":                protowire.AppendVarint(protowire.AppendTag(nil, protowire.MaxValidNumber, protowire.VarintType), 1),
		"field number past max":           protowire.AppendVarint(protowire.AppendTag(nil, protowire.MaxValidNumber+1, protowire.VarintType), 1),
		"wire type 6":                     {0x0e, 0x00},
		"wire type 7":                     {0x0f, 0x00},
		"varint 11 bytes":                 inTransfer(append([]byte{0x08}, bytes.Repeat([]byte{0xff}, 10)...)),
		"varint 10 bytes top bit 2":       inTransfer(append(append([]byte{0x08}, bytes.Repeat([]byte{0xff}, 9)...), 0x02)),
		"flags varint 10 bytes":           inFlags(append(append([]byte{0x08}, bytes.Repeat([]byte{0x80}, 9)...), 0x01)),
		"8191 then bad utf8":              many(ledger.BatchEventsMax, inTransfer(badUTF8)),
		"8191 then truncated":             many(ledger.BatchEventsMax, []byte{0x0a, 0x05, 0x08}),
		"end group at top":                protowire.AppendTag(nil, 3, protowire.EndGroupType),
		"bytes length past end":           {0x0a, 0x7f},
		"tag truncated":                   {0x80},
	}
	for name, b := range cases {
		var want ledgerv1.CreateTransfersRequest
		werr := proto.Unmarshal(b, &want)
		var got createTransfersRequest
		gerr := decodeCreateTransfersRequest(b, &got)
		if (werr == nil) != (gerr == nil) {
			t.Errorf("%s: proto.Unmarshal %v; decoded %v", name, werr, gerr)
			continue
		}
		if werr == nil {
			if got.n != len(want.GetTransfers()) {
				t.Errorf("%s: %d transfers; proto %d", name, got.n, len(want.GetTransfers()))
			}
			for i := range got.ts {
				if w := TransferFromProto(want.GetTransfers()[i]); w != got.ts[i] {
					t.Errorf("%s: transfer %d %+v; proto %+v", name, i, got.ts[i], w)
				}
			}
		}
	}
}

// TestCreateTransfersAuthBeforeAnything: with auth on, the server's own CreateTransfers
// handler (createTransfersHandler) is behind the auth interceptor: a reader is denied a good
// request and a malformed one alike (PERMISSION_DENIED, not INVALID_ARGUMENT: nothing of the
// bytes is reported), and nothing is booked; a writer is served.
func TestCreateTransfersAuthBeforeAnything(t *testing.T) {
	readerTok, readerLine, err := NewToken(RoleReader, "dash")
	if err != nil {
		t.Fatal(err)
	}
	writerTok, writerLine, err := NewToken(RoleWriter, "app")
	if err != nil {
		t.Fatal(err)
	}
	creds, err := ParseCredentials("tokens", []byte(readerLine+"\n"+writerLine+"\n"))
	if err != nil {
		t.Fatal(err)
	}
	f := newFixtureServing(t, vfs.NewMem(), actors.Config{Shards: 2}, func(m *Metrics) []grpc.ServerOption {
		return NewAuthenticator(creds, m).ServerOptions()
	})
	c := f.client
	as := func(tok string) context.Context {
		return metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+tok)
	}
	if _, err := c.CreateAccounts(as(writerTok), &ledgerv1.CreateAccountsRequest{Accounts: []*ledgerv1.Account{
		{Id: 1, Ledger: 1, Code: 1}, {Id: 2, Ledger: 1, Code: 1}}}); err != nil {
		t.Fatal(err)
	}
	good := &ledgerv1.CreateTransfersRequest{Transfers: []*ledgerv1.Transfer{tr(7, 1, 2, 5)}}
	bad := &ledgerv1.CreateTransfersRequest{Transfers: []*ledgerv1.Transfer{tr(8, 1, 2, 5)}}
	bad.ProtoReflect().SetUnknown(protowire.AppendBytes(protowire.AppendTag(nil, fieldRequestTransfers, protowire.BytesType), []byte{0xff}))
	if _, err := c.CreateTransfers(as(readerTok), good); status.Code(err) != codes.PermissionDenied {
		t.Errorf("reader, good request: %v; want PERMISSION_DENIED", err)
	}
	if _, err := c.CreateTransfers(as(readerTok), bad); status.Code(err) != codes.PermissionDenied {
		t.Errorf("reader, malformed request: %v; want PERMISSION_DENIED", err)
	}
	if _, err := c.CreateTransfers(context.Background(), good); status.Code(err) != codes.Unauthenticated {
		t.Errorf("no token: %v; want UNAUTHENTICATED", err)
	}
	got, err := c.LookupTransfers(as(readerTok), &ledgerv1.LookupTransfersRequest{Ids: []uint64{7, 8}})
	if err != nil || len(got.GetTransfers()) != 0 {
		t.Fatalf("denied requests booked %v (%v)", got, err)
	}
	if resp, err := c.CreateTransfers(as(writerTok), good); err != nil || len(resp.GetResults()) != 0 {
		t.Fatalf("writer: %v %v", resp, err)
	}
}

// TestWireFieldsMatchProto: the hand decoders' field numbers and wire types are the .proto
// file's, and they know every field: a field added to Transfer, TransferFlags or a request
// fails here until the decoders (stream_wire.go) and TransferFromProto take it.
func TestWireFieldsMatchProto(t *testing.T) {
	checkFields(t, &ledgerv1.CreateTransfersRequest{}, map[string]wireField{"transfers": {fieldRequestTransfers, protoreflect.MessageKind}})
	checkFields(t, &ledgerv1.CreateTransfersStreamRequest{}, map[string]wireField{
		"tag": {fieldStreamTag, protoreflect.Uint64Kind}, "transfers": {fieldStreamTransfers, protoreflect.MessageKind}})
	checkFields(t, &ledgerv1.Transfer{}, map[string]wireField{
		"id": {fieldTransferID, protoreflect.Uint64Kind}, "debit_account_id": {fieldTransferDebit, protoreflect.Uint64Kind},
		"credit_account_id": {fieldTransferCredit, protoreflect.Uint64Kind}, "amount": {fieldTransferAmount, protoreflect.Uint64Kind},
		"pending_id": {fieldTransferPendingID, protoreflect.Uint64Kind}, "ledger": {fieldTransferLedger, protoreflect.Uint32Kind},
		"code": {fieldTransferCode, protoreflect.Uint32Kind}, "flags": {fieldTransferFlags, protoreflect.MessageKind},
		"timeout": {fieldTransferTimeout, protoreflect.Uint32Kind}, "biz_id": {fieldTransferBizID, protoreflect.StringKind},
		"user_data": {fieldTransferUserData, protoreflect.Uint64Kind}, "timestamp": {fieldTransferTimestamp, protoreflect.Uint64Kind},
		"state": {fieldTransferState, protoreflect.EnumKind}, "result": {fieldTransferResult, protoreflect.EnumKind}})
	checkFields(t, &ledgerv1.TransferFlags{}, map[string]wireField{
		"linked": {fieldFlagsLinked, protoreflect.BoolKind}, "pending": {fieldFlagsPending, protoreflect.BoolKind},
		"post_pending": {fieldFlagsPostPending, protoreflect.BoolKind}, "void_pending": {fieldFlagsVoidPending, protoreflect.BoolKind}})
}

type wireField struct {
	num  protowire.Number
	kind protoreflect.Kind
}

func checkFields(t *testing.T, m proto.Message, want map[string]wireField) {
	t.Helper()
	fs := m.ProtoReflect().Descriptor().Fields()
	if fs.Len() != len(want) {
		t.Errorf("%s has %d fields; the decoders know %d", m.ProtoReflect().Descriptor().FullName(), fs.Len(), len(want))
	}
	for i := range fs.Len() {
		f := fs.Get(i)
		if w, ok := want[string(f.Name())]; !ok || w.num != f.Number() || w.kind != f.Kind() || f.Cardinality() == protoreflect.Repeated && w.kind != protoreflect.MessageKind {
			t.Errorf("%s: field %d, %v; the decoders: %+v", f.FullName(), f.Number(), f.Kind(), w)
		}
	}
}
