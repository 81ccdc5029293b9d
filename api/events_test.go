package api

import (
	"bytes"
	"math/rand/v2"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/ledgercore/ledger/events"
	"github.com/ledgercore/ledger/ledger"
	"github.com/ledgercore/ledger/ledger/payment"
	ledgerv1 "github.com/ledgercore/ledger/proto/ledger/v1"
)

// longBizIDs make transfer messages of every length's size: one byte, two (128 bytes and
// more) and three (16 KiB and more).
var longBizIDs = []string{"", "order-1", "", "order-2", strings.Repeat("b", 120), strings.Repeat("c", 300), strings.Repeat("d", 17000)}

// randomBatch is a seeded batch mixing every kind of event (with orders: the few kinds too;
// long: biz ids and notes of every length's size, else short ones, as most are).
func randomBatch(rng *rand.Rand, n int, orders, long bool) []events.Event {
	bizIDs, note := []string{"", "order-1"}, 1
	if long {
		bizIDs, note = longBizIDs, 300
	}
	out := make([]events.Event, n)
	for i := range out {
		e := events.Event{Seq: uint64(i + 1), Exception: -1}
		kinds := 8
		if !orders {
			kinds = 6
		}
		switch rng.IntN(kinds) {
		case 0, 1, 2:
			e.Transfer = &ledger.Transfer{ID: rng.Uint64(), DebitAccountID: rng.Uint64N(100), CreditAccountID: rng.Uint64N(100),
				Amount: rng.Uint64N(1 << 40), PendingID: rng.Uint64N(3), Ledger: 1, Code: uint32(rng.IntN(5)),
				Timeout: uint32(rng.IntN(2)), Flags: ledger.TransferFlags(rng.IntN(16)), BizID: bizIDs[rng.IntN(len(bizIDs))],
				Timestamp: rng.Uint64(), State: ledger.TransferState(1 + rng.IntN(7)), Result: ledger.TransferResult(rng.IntN(3))}
		case 3, 4, 5:
			u := func() ledger.Uint128 { return ledger.Uint128{Lo: rng.Uint64N(3) * rng.Uint64(), Hi: rng.Uint64N(2)} }
			e.Posting = &ledger.Posting{Account: rng.Uint64N(100), Timestamp: rng.Uint64(), TransferID: rng.Uint64(),
				Amount: rng.Uint64N(1000), Held: rng.Uint64N(2), Op: ledger.PostingOp(1 + rng.IntN(8)), Split: rng.IntN(2) == 0,
				After: ledger.Balance{DebitsPending: u(), DebitsPosted: u(), CreditsPending: u(), CreditsPosted: u()},
				Day:   ledger.Day(rng.Uint32N(2) * (20261101 + rng.Uint32N(30)))}
		default:
			o := &payment.Order{ID: rng.Uint64N(1000) + 1, BizID: "b", Exceptions: []payment.Exception{{Kind: 1, Note: strings.Repeat("n", rng.IntN(note))}}}
			e.Order = o
			if rng.IntN(2) == 0 {
				e.Exception = 0
			}
		}
		out[i] = e
	}
	return out
}

// TestEncodeEventsMatches: the hand-written encoding's bytes are proto.Marshal's
// (deterministic) for what EventToProto says, batch after batch with one scratch, messages of
// every length's size among them.
func TestEncodeEventsMatches(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var scratch EncodeScratch
	for range 50 {
		batch := randomBatch(rng, 1+rng.IntN(300), true, true)
		got := EncodeEvents(nil, batch, &scratch)
		want := &ledgerv1.SubscribeResponse{}
		for i := range batch {
			want.Events = append(want.Events, EventToProto(&batch[i]))
		}
		wantBytes, err := proto.MarshalOptions{Deterministic: true}.Marshal(want)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, wantBytes) {
			var back ledgerv1.SubscribeResponse
			err := proto.Unmarshal(got, &back)
			t.Fatalf("bytes differ from proto.Marshal's; read back: %v (%v)\nwant %v", &back, err, want)
		}
	}
}

func BenchmarkEncodeEvents(b *testing.B) {
	batch := randomBatch(rand.New(rand.NewPCG(1, 2)), events.BatchEventsMax, false, false)
	var scratch EncodeScratch
	buf := make([]byte, 0, 1<<20)
	b.ReportAllocs()
	for b.Loop() {
		buf = EncodeEvents(buf[:0], batch, &scratch)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(batch)), "ns/event")
}

func BenchmarkProtoMarshalEvents(b *testing.B) {
	batch := randomBatch(rand.New(rand.NewPCG(1, 2)), events.BatchEventsMax, false, false)
	resp := &ledgerv1.SubscribeResponse{}
	for i := range batch {
		resp.Events = append(resp.Events, EventToProto(&batch[i]))
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := proto.Marshal(resp); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(batch)), "ns/event")
}
