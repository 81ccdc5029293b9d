package client

import (
	"bytes"
	"math"
	"slices"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	ledgerv1 "github.com/ledgercore/ledger/proto/ledger/v1"
)

// sameAsProto fails t unless encodeCreateTransfers makes of ts the bytes proto.Marshal makes
// of a CreateTransfersRequest of them.
func sameAsProto(t *testing.T, ts []*ledgerv1.Transfer) {
	t.Helper()
	want, err := proto.Marshal(&ledgerv1.CreateTransfersRequest{Transfers: ts})
	if err != nil {
		t.Fatal(err)
	}
	got, ok := encodeCreateTransfers(ts)
	if !ok || !bytes.Equal(got, want) {
		t.Fatalf("encoded (%v)\n%x\nproto.Marshal\n%x", ok, got, want)
	}
	sameStreamRequestAsProto(t, ts)
}

// sameStreamRequestAsProto fails t unless AppendCreateTransfersStreamRequest makes of ts, with
// a tag of none, one byte and ten, the bytes proto.Marshal makes, after what dst held.
func sameStreamRequestAsProto(t *testing.T, ts []*ledgerv1.Transfer) {
	t.Helper()
	for _, tag := range []uint64{0, 5, math.MaxUint64} {
		want, err := proto.Marshal(&ledgerv1.CreateTransfersStreamRequest{Tag: tag, Transfers: ts})
		if err != nil {
			t.Fatal(err)
		}
		got, ok := AppendCreateTransfersStreamRequest([]byte("held"), tag, ts)
		if !ok || !bytes.Equal(got, append([]byte("held"), want...)) {
			t.Fatalf("stream request, tag %d: encoded (%v)\n%x\nproto.Marshal after \"held\"\n%x", tag, ok, got, want)
		}
	}
}

// TestEncodeCreateTransfersAsProto: every field at zero, small and largest, each flag alone
// and all, an empty flags message (present: proto writes it), a biz_id of multi-byte UTF-8,
// enums past 127 and negative, and no transfers at all.
func TestEncodeCreateTransfersAsProto(t *testing.T) {
	full := &ledgerv1.Transfer{Id: math.MaxUint64, DebitAccountId: 1, CreditAccountId: 2, Amount: 1 << 40, PendingId: 3,
		Ledger: math.MaxUint32, Code: 1 << 31, Flags: &ledgerv1.TransferFlags{Linked: true, Pending: true, PostPending: true, VoidPending: true},
		Timeout: 60, BizId: "订单-42", UserData: 5, Timestamp: 6, State: ledgerv1.TransferState_TRANSFER_STATE_FAILED,
		Result: ledgerv1.CreateTransferResult_CREATE_TRANSFER_RESULT_EXISTS}
	cases := [][]*ledgerv1.Transfer{
		nil,
		{{}},
		{full},
		{{Id: 1, Flags: &ledgerv1.TransferFlags{}}},
		{{Id: 1, State: ledgerv1.TransferState(-1), Result: ledgerv1.CreateTransferResult(300)}},
		{{Id: 7, DebitAccountId: 1, CreditAccountId: 2, Amount: 10, Ledger: 1, Code: 1}, full, {}},
	}
	for i := range 4 {
		f := &ledgerv1.TransferFlags{}
		*[]*bool{&f.Linked, &f.Pending, &f.PostPending, &f.VoidPending}[i] = true
		cases = append(cases, []*ledgerv1.Transfer{{Id: uint64(i + 1), Flags: f, Timeout: 1}})
	}
	for _, ts := range cases {
		sameAsProto(t, ts)
	}
}

// TestEncodeCreateTransfersLeavesToProto: a nil transfer, unknown fields (in a transfer or its
// flags) and a biz_id that is not UTF-8 are left to proto.Marshal, which keeps or refuses them.
func TestEncodeCreateTransfersLeavesToProto(t *testing.T) {
	unknown := &ledgerv1.Transfer{Id: 1}
	unknown.ProtoReflect().SetUnknown(protowire.AppendVarint(protowire.AppendTag(nil, 99, protowire.VarintType), 1))
	flagsUnknown := &ledgerv1.Transfer{Id: 1, Flags: &ledgerv1.TransferFlags{Linked: true}}
	flagsUnknown.Flags.ProtoReflect().SetUnknown(protowire.AppendVarint(protowire.AppendTag(nil, 9, protowire.VarintType), 1))
	for name, ts := range map[string][]*ledgerv1.Transfer{
		"nil":              {{Id: 1}, nil},
		"unknown":          {unknown},
		"flags unknown":    {flagsUnknown},
		"biz_id not UTF-8": {{Id: 1, BizId: "\xff"}},
	} {
		if b, ok := encodeCreateTransfers(ts); ok {
			t.Errorf("%s: encoded %x; want it left to proto.Marshal", name, b)
		}
		if b, ok := AppendCreateTransfersStreamRequest([]byte("held"), 9, ts); ok || string(b) != "held" {
			t.Errorf("%s: stream request encoded %x (%v); want it left to proto.Marshal, dst as it was", name, b, ok)
		}
	}
}

// FuzzEncodeCreateTransfers: any transfer's encoding is proto.Marshal's.
func FuzzEncodeCreateTransfers(f *testing.F) {
	f.Add(uint64(1), uint64(2), uint64(3), uint64(4), uint32(5), uint32(6), uint8(0xff), "biz", int32(2), int32(-1))
	f.Add(uint64(0), uint64(0), uint64(0), uint64(0), uint32(0), uint32(0), uint8(0x10), "", int32(0), int32(0))
	f.Fuzz(func(t *testing.T, id, debit, amount, user uint64, ledger, timeout uint32, flags uint8, biz string, state, result int32) {
		tr := &ledgerv1.Transfer{Id: id, DebitAccountId: debit, CreditAccountId: ^debit, Amount: amount, PendingId: amount >> 3,
			Ledger: ledger, Code: ledger ^ timeout, Timeout: timeout, BizId: biz, UserData: user, Timestamp: id ^ user,
			State: ledgerv1.TransferState(state), Result: ledgerv1.CreateTransferResult(result)}
		if flags&0x10 != 0 {
			tr.Flags = &ledgerv1.TransferFlags{Linked: flags&1 != 0, Pending: flags&2 != 0, PostPending: flags&4 != 0, VoidPending: flags&8 != 0}
		}
		ts := []*ledgerv1.Transfer{tr, {Id: id + 1}}
		want, err := proto.Marshal(&ledgerv1.CreateTransfersRequest{Transfers: ts})
		got, ok := encodeCreateTransfers(ts)
		if err != nil || !ok {
			if ok || err == nil {
				t.Fatalf("proto.Marshal: %v; encoded: %v", err, ok)
			}
			return
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("encoded\n%x\nproto.Marshal\n%x", got, want)
		}
		sameStreamRequestAsProto(t, ts)
	})
}

// BenchmarkEncodeCreateTransfers: a request of 8,190 transfers encoded by
// encodeCreateTransfers against proto.Marshal.
func BenchmarkEncodeCreateTransfers(b *testing.B) {
	ts := make([]*ledgerv1.Transfer, 8190)
	for i := range ts {
		ts[i] = &ledgerv1.Transfer{Id: uint64(1_000_000 + i), DebitAccountId: uint64(1 + i%10_000),
			CreditAccountId: uint64(1 + (i+1)%10_000), Amount: uint64(1 + i%1000), Ledger: 1, Code: 1}
	}
	b.Run("wire", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, ok := encodeCreateTransfers(ts); !ok {
				b.Fatal("not encoded")
			}
		}
	})
	b.Run("proto", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := proto.Marshal(&ledgerv1.CreateTransfersRequest{Transfers: ts}); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// TestWireFieldsKnown: the encoder writes every field of a Transfer, its flags and the request:
// a field added to them fails here until encodeCreateTransfers writes it (it would drop it).
func TestWireFieldsKnown(t *testing.T) {
	for m, want := range map[proto.Message][]protowire.Number{
		&ledgerv1.CreateTransfersRequest{}: {fieldRequestTransfers},
		&ledgerv1.Transfer{}: {fieldID, fieldDebit, fieldCredit, fieldAmount, fieldPendingID, fieldLedger, fieldCode,
			fieldFlags, fieldTimeout, fieldBizID, fieldUserData, fieldTimestamp, fieldState, fieldResult},
		&ledgerv1.TransferFlags{}: {fieldLinked, fieldLinked + 1, fieldLinked + 2, fieldLinked + 3},
	} {
		fs := m.ProtoReflect().Descriptor().Fields()
		var got []protowire.Number
		for i := range fs.Len() {
			got = append(got, fs.Get(i).Number())
		}
		if !slices.Equal(got, want) {
			t.Errorf("%s: fields %v; the encoder writes %v", m.ProtoReflect().Descriptor().FullName(), got, want)
		}
	}
}
