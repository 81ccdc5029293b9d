package api

import (
	"testing"

	"google.golang.org/grpc/encoding"
	protoenc "google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/ledgercore/ledger/ledger"

	ledgerv1 "github.com/ledgercore/ledger/proto/ledger/v1"
)

// FuzzStreamRequestDecode: decodeStreamRequest makes of any bytes exactly what proto.Unmarshal
// and TransferFromProto make of them: the same tag and transfers (the first
// ledger.BatchEventsMax kept, all counted), or an error from both.
func FuzzStreamRequestDecode(f *testing.F) {
	addWireSeeds(f, fieldStreamTag, fieldStreamTransfers, func(ts []*ledgerv1.Transfer) proto.Message {
		return &ledgerv1.CreateTransfersStreamRequest{Tag: 1 << 63, Transfers: ts}
	})
	f.Fuzz(func(t *testing.T, b []byte) {
		var want ledgerv1.CreateTransfersStreamRequest
		werr := proto.Unmarshal(b, &want)
		var got streamRequest
		gerr := decodeStreamRequest(b, &got)
		sameAsProto(t, werr, gerr, want.GetTag(), want.GetTransfers(), &got)
	})
}

// FuzzCreateTransfersRequestDecode: decodeCreateTransfersRequest makes of any bytes exactly
// what proto.Unmarshal and TransferFromProto make of them as a CreateTransfersRequest, as
// FuzzStreamRequestDecode checks a stream's (a stream's tag, field 1 there, is here a
// transfers field of the wrong wire type: unknown, skipped).
func FuzzCreateTransfersRequestDecode(f *testing.F) {
	addWireSeeds(f, fieldStreamTransfers, fieldRequestTransfers, func(ts []*ledgerv1.Transfer) proto.Message {
		return &ledgerv1.CreateTransfersRequest{Transfers: ts}
	})
	f.Fuzz(func(t *testing.T, b []byte) {
		var want ledgerv1.CreateTransfersRequest
		werr := proto.Unmarshal(b, &want)
		var got createTransfersRequest
		gerr := decodeCreateTransfersRequest(b, &got)
		sameAsProto(t, werr, gerr, 0, want.GetTransfers(), &got.streamRequest)
	})
}

// addWireSeeds adds the seeds of a transfers message: some made by proto.Marshal (message
// wraps a request's transfers), and hand-made shapes, with the transfers in field transfers
// and something other in field other.
func addWireSeeds(f *testing.F, other, transfers protowire.Number, message func([]*ledgerv1.Transfer) proto.Message) {
	full := &ledgerv1.Transfer{Id: 9, DebitAccountId: 1, CreditAccountId: 2, Amount: 1 << 40, PendingId: 3, Ledger: 7,
		Code: 1 << 31, Flags: &ledgerv1.TransferFlags{Linked: true, Pending: true, PostPending: true, VoidPending: true},
		Timeout: 60, BizId: "订单-42", UserData: 5, Timestamp: 6, State: ledgerv1.TransferState_TRANSFER_STATE_FAILED,
		Result: ledgerv1.CreateTransferResult_CREATE_TRANSFER_RESULT_EXISTS}
	for _, m := range []proto.Message{
		message([]*ledgerv1.Transfer{tr(1, 1, 2, 10)}),
		message([]*ledgerv1.Transfer{full, tr(2, 3, 4, 5), {}}),
		message(nil),
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
	req = protowire.AppendTag(req, transfers, protowire.BytesType)
	req = protowire.AppendBytes(req, t)
	req = protowire.AppendTag(req, other, protowire.BytesType)
	req = protowire.AppendBytes(req, []byte("x"))
	f.Add(req)
	bad := protowire.AppendTag(nil, fieldTransferBizID, protowire.BytesType)
	bad = protowire.AppendBytes(bad, []byte{0xff, 0xfe})
	f.Add(protowire.AppendBytes(protowire.AppendTag(nil, transfers, protowire.BytesType), bad))
	f.Add([]byte{0x00, 0x01})
}

// sameAsProto fails t unless the decoding got (error gerr) is proto.Unmarshal's (error werr,
// tag wantTag and transfers want) converted by TransferFromProto, the first
// ledger.BatchEventsMax transfers kept and all counted.
func sameAsProto(t *testing.T, werr, gerr error, wantTag uint64, want []*ledgerv1.Transfer, got *streamRequest) {
	t.Helper()
	if (werr == nil) != (gerr == nil) {
		t.Fatalf("proto.Unmarshal: %v; decoded: %v", werr, gerr)
	}
	if werr != nil {
		return
	}
	if got.tag != wantTag || got.n != len(want) || len(got.ts) != min(got.n, ledger.BatchEventsMax) {
		t.Fatalf("tag %d, %d transfers (%d kept); proto: tag %d, %d transfers", got.tag, got.n, len(got.ts), wantTag, len(want))
	}
	for i, p := range want[:len(got.ts)] {
		if w := TransferFromProto(p); got.ts[i] != w {
			t.Fatalf("transfer %d: %+v; proto: %+v", i, got.ts[i], w)
		}
	}
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

// TestCreateTransfersRequestDecodeKeepsBounded: a CreateTransfersRequest of more than
// ledger.BatchEventsMax transfers keeps that many and counts all, as a stream's request.
func TestCreateTransfersRequestDecodeKeepsBounded(t *testing.T) {
	var b []byte
	const n = 3 * ledger.BatchEventsMax
	for range n {
		b = protowire.AppendTag(b, fieldRequestTransfers, protowire.BytesType)
		b = protowire.AppendBytes(b, nil)
	}
	var r createTransfersRequest
	if err := decodeCreateTransfersRequest(b, &r); err != nil || r.n != n || len(r.ts) != ledger.BatchEventsMax || cap(r.ts) != ledger.BatchEventsMax {
		t.Fatalf("%d counted, %d kept (room for %d), %v; want %d and %d", r.n, len(r.ts), cap(r.ts), err, n, ledger.BatchEventsMax)
	}
}

// BenchmarkCreateTransfersRequestDecode: a request of 8,190 transfers read by
// decodeCreateTransfersRequest against proto.Unmarshal and TransferFromProto (what the server
// did before).
func BenchmarkCreateTransfersRequestDecode(b *testing.B) {
	pb := make([]*ledgerv1.Transfer, ledger.BatchEventsMax)
	for i := range pb {
		pb[i] = tr(uint64(1_000_000+i), uint64(1+i%10_000), uint64(1+(i+1)%10_000), uint64(1+i%1000))
	}
	data, err := proto.Marshal(&ledgerv1.CreateTransfersRequest{Transfers: pb})
	if err != nil {
		b.Fatal(err)
	}
	b.Run("wire", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var r createTransfersRequest
			if err := decodeCreateTransfersRequest(data, &r); err != nil || len(r.ts) != len(pb) {
				b.Fatal(err)
			}
		}
	})
	b.Run("proto", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var r ledgerv1.CreateTransfersRequest
			if err := proto.Unmarshal(data, &r); err != nil {
				b.Fatal(err)
			}
			if _, err := transfersFromProto(r.GetTransfers()); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// TestCodecJoinsFramesPooled: a request past 16 KiB arrives in several buffers (HTTP/2
// frames); serverCodec decodes it as from one, joining them in a buffer of its pool that it
// gives back, not a fresh copy of the message each call (from the review: +271,664 bytes a
// decode of 8,190 transfers); a request in one buffer takes none.
func TestCodecJoinsFramesPooled(t *testing.T) {
	pb := make([]*ledgerv1.Transfer, ledger.BatchEventsMax)
	for i := range pb {
		pb[i] = tr(uint64(i+1), 1, 2, 5)
		pb[i].BizId = "order-0000000042"
	}
	data, err := proto.Marshal(&ledgerv1.CreateTransfersRequest{Transfers: pb})
	if err != nil {
		t.Fatal(err)
	}
	var frames mem.BufferSlice
	for b := data; len(b) > 0; {
		n := min(len(b), 16<<10)
		frames = append(frames, mem.SliceBuffer(b[:n]))
		b = b[n:]
	}
	pool := &countingPool{BufferPool: mem.DefaultBufferPool()}
	c := serverCodec{proto: encoding.GetCodecV2(protoenc.Name), pool: pool}
	for _, in := range []struct {
		name  string
		data  mem.BufferSlice
		takes int
	}{{"one buffer", mem.BufferSlice{mem.SliceBuffer(data)}, 0}, {"16 KiB frames", frames, 1}} {
		pool.gets, pool.puts = 0, 0
		var r createTransfersRequest
		if err := c.Unmarshal(in.data, &r); err != nil || r.err != nil || len(r.ts) != len(pb) || r.ts[len(pb)-1] != TransferFromProto(pb[len(pb)-1]) {
			t.Fatal(in.name, err, r.err)
		}
		if pool.gets != in.takes || pool.puts != pool.gets {
			t.Fatalf("%s: %d buffers taken from the pool, %d given back; want %d, all given back", in.name, pool.gets, pool.puts, in.takes)
		}
	}
}

// countingPool counts the buffers taken from and given back to a pool.
type countingPool struct {
	mem.BufferPool
	gets, puts int
}

func (p *countingPool) Get(n int) *[]byte { p.gets++; return p.BufferPool.Get(n) }
func (p *countingPool) Put(b *[]byte)     { p.puts++; p.BufferPool.Put(b) }
