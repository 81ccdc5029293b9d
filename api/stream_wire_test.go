package api

import (
	"testing"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/ledgercore/ledger/ledger"

	ledgerv1 "github.com/ledgercore/ledger/proto/ledger/v1"
)

// FuzzStreamRequestDecode: decodeStreamRequest makes of any bytes exactly what proto.Unmarshal
// and TransferFromProto make of them: the same tag and transfers (the first
// ledger.BatchEventsMax kept, all counted), or an error from both.
func FuzzStreamRequestDecode(f *testing.F) {
	full := &ledgerv1.Transfer{Id: 9, DebitAccountId: 1, CreditAccountId: 2, Amount: 1 << 40, PendingId: 3, Ledger: 7,
		Code: 1 << 31, Flags: &ledgerv1.TransferFlags{Linked: true, Pending: true, PostPending: true, VoidPending: true},
		Timeout: 60, BizId: "订单-42", UserData: 5, Timestamp: 6, State: ledgerv1.TransferState_TRANSFER_STATE_FAILED,
		Result: ledgerv1.CreateTransferResult_CREATE_TRANSFER_RESULT_EXISTS}
	for _, m := range []*ledgerv1.CreateTransfersStreamRequest{
		{Tag: 1, Transfers: []*ledgerv1.Transfer{tr(1, 1, 2, 10)}},
		{Tag: 1 << 63, Transfers: []*ledgerv1.Transfer{full, tr(2, 3, 4, 5), {}}},
		{},
	} {
		b, err := proto.Marshal(m)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	// Hand-made shapes proto.Marshal never writes: a flags message twice (they merge, a false
	// overriding a true), a field of the wrong wire type (unknown, skipped), an enum past 255
	// and negative, a uint32 field past 32 bits, a group, invalid UTF-8, a field number 0.
	var t []byte
	t = protowire.AppendTag(t, fieldTransferFlags, protowire.BytesType)
	t = protowire.AppendBytes(t, []byte{0x08, 0x01, 0x10, 0x01})
	t = protowire.AppendTag(t, fieldTransferFlags, protowire.BytesType)
	t = protowire.AppendBytes(t, []byte{0x08, 0x00, 0x18, 0x01})
	t = protowire.AppendTag(t, fieldTransferID, protowire.Fixed64Type)
	t = protowire.AppendFixed64(t, 7)
	t = protowire.AppendTag(t, fieldTransferState, protowire.VarintType)
	t = protowire.AppendVarint(t, 300)
	t = protowire.AppendTag(t, fieldTransferResult, protowire.VarintType)
	t = protowire.AppendVarint(t, 1<<64-1)
	t = protowire.AppendTag(t, fieldTransferLedger, protowire.VarintType)
	t = protowire.AppendVarint(t, 1<<33+5)
	t = protowire.AppendTag(t, 20, protowire.StartGroupType)
	t = protowire.AppendTag(t, 1, protowire.VarintType)
	t = protowire.AppendVarint(t, 1)
	t = protowire.AppendTag(t, 20, protowire.EndGroupType)
	var req []byte
	req = protowire.AppendTag(req, fieldStreamTransfers, protowire.BytesType)
	req = protowire.AppendBytes(req, t)
	req = protowire.AppendTag(req, fieldStreamTag, protowire.BytesType)
	req = protowire.AppendBytes(req, []byte("x"))
	f.Add(req)
	bad := protowire.AppendTag(nil, fieldTransferBizID, protowire.BytesType)
	bad = protowire.AppendBytes(bad, []byte{0xff, 0xfe})
	f.Add(protowire.AppendBytes(protowire.AppendTag(nil, fieldStreamTransfers, protowire.BytesType), bad))
	f.Add([]byte{0x00, 0x01})
	f.Fuzz(func(t *testing.T, b []byte) {
		var want ledgerv1.CreateTransfersStreamRequest
		werr := proto.Unmarshal(b, &want)
		var got streamRequest
		gerr := decodeStreamRequest(b, &got)
		if (werr == nil) != (gerr == nil) {
			t.Fatalf("proto.Unmarshal: %v; decodeStreamRequest: %v", werr, gerr)
		}
		if werr != nil {
			return
		}
		if got.tag != want.GetTag() || got.n != len(want.GetTransfers()) || len(got.ts) != min(got.n, ledger.BatchEventsMax) {
			t.Fatalf("tag %d, %d transfers (%d kept); proto: tag %d, %d transfers", got.tag, got.n, len(got.ts), want.GetTag(), len(want.GetTransfers()))
		}
		for i, p := range want.GetTransfers()[:len(got.ts)] {
			if w := TransferFromProto(p); got.ts[i] != w {
				t.Fatalf("transfer %d: %+v; proto: %+v", i, got.ts[i], w)
			}
		}
	})
}

// BenchmarkStreamRequestDecode: a one-transfer request read by decodeStreamRequest against
// proto.Unmarshal and TransferFromProto (what the stream's reader did before).
func BenchmarkStreamRequestDecode(b *testing.B) {
	t := tr(123456789, 4321, 8765, 999)
	t.BizId = "order-000042"
	data, err := proto.Marshal(&ledgerv1.CreateTransfersStreamRequest{Tag: 77, Transfers: []*ledgerv1.Transfer{t}})
	if err != nil {
		b.Fatal(err)
	}
	b.Run("wire", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var r streamRequest
			if err := decodeStreamRequest(data, &r); err != nil || len(r.ts) != 1 {
				b.Fatal(err)
			}
		}
	})
	b.Run("proto", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var r ledgerv1.CreateTransfersStreamRequest
			if err := proto.Unmarshal(data, &r); err != nil {
				b.Fatal(err)
			}
			if _, err := transfersFromProto(r.GetTransfers()); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// TestStreamRequestDecodeKeepsBounded: a message of more than ledger.BatchEventsMax (empty)
// transfers keeps that many and counts all (from the review: 4 MiB of empty transfers decoded
// to two million, 240 MB held while the request waited to be refused).
func TestStreamRequestDecodeKeepsBounded(t *testing.T) {
	var b []byte
	const n = 3 * ledger.BatchEventsMax
	for range n {
		b = protowire.AppendTag(b, fieldStreamTransfers, protowire.BytesType)
		b = protowire.AppendBytes(b, nil)
	}
	var r streamRequest
	if err := decodeStreamRequest(b, &r); err != nil || r.n != n || len(r.ts) != ledger.BatchEventsMax {
		t.Fatalf("%d counted, %d kept, %v; want %d and %d", r.n, len(r.ts), err, n, ledger.BatchEventsMax)
	}
}
