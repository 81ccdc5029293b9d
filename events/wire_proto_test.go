package events_test

import (
	"bytes"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/ledgercore/ledger/api"
	"github.com/ledgercore/ledger/events"
	"github.com/ledgercore/ledger/ledger"
	ledgerv1 "github.com/ledgercore/ledger/proto/ledger/v1"
)

// edges are values at each varint length's edges.
var edges = []uint64{0, 1, 127, 128, 16383, 16384, 1<<21 - 1, 1 << 21, 1<<28 - 1, 1 << 28, math.MaxUint32,
	1 << 32, 1<<35 - 1, 1 << 35, 1<<56 - 1, 1 << 56, 1<<63 - 1, 1 << 63, math.MaxUint64}

// edgyRound is a seeded ledger round whose every field takes edge values, random ones, or
// zero; with biz ids up to BizIDBytesMax and beyond (encoding does not check them); some
// records all zero or all at their maximum.
func edgyRound(rng *rand.Rand) ([]ledger.Transfer, []ledger.Posting) {
	val := func() uint64 {
		switch rng.IntN(3) {
		case 0:
			return edges[rng.IntN(len(edges))]
		case 1:
			return rng.Uint64() >> rng.IntN(64)
		}
		return rng.Uint64()
	}
	bizIDs := []string{"", "b", strings.Repeat("x", ledger.BizIDBytesMax), strings.Repeat("y", 127),
		strings.Repeat("z", 300)}
	ts := make([]ledger.Transfer, rng.IntN(30))
	for i := range ts {
		switch rng.IntN(8) {
		case 0:
		case 1:
			ts[i] = ledger.Transfer{ID: math.MaxUint64, DebitAccountID: math.MaxUint64, CreditAccountID: math.MaxUint64,
				Amount: math.MaxUint64, PendingID: math.MaxUint64, UserData: math.MaxUint64, Ledger: math.MaxUint32,
				Code: math.MaxUint32, Timeout: math.MaxUint32, Flags: 15, BizID: bizIDs[rng.IntN(len(bizIDs))],
				Timestamp: math.MaxUint64, State: math.MaxUint8, Result: math.MaxUint8}
		default:
			ts[i] = ledger.Transfer{ID: val(), DebitAccountID: val(), CreditAccountID: val(), Amount: val(),
				PendingID: val(), UserData: val(), Ledger: uint32(val()), Code: uint32(val()), Timeout: uint32(val()),
				Flags: ledger.TransferFlags(rng.IntN(16)), BizID: bizIDs[rng.IntN(len(bizIDs))], Timestamp: val(),
				State: ledger.TransferState(val()), Result: ledger.TransferResult(val())}
		}
	}
	ps := make([]ledger.Posting, rng.IntN(60))
	u := func() ledger.Uint128 { return ledger.Uint128{Lo: val(), Hi: val()} }
	for i := range ps {
		switch rng.IntN(8) {
		case 0:
			ps[i] = ledger.Posting{History: rng.IntN(2) == 0}
		case 1:
			m := ledger.Uint128{Lo: math.MaxUint64, Hi: math.MaxUint64}
			ps[i] = ledger.Posting{Account: math.MaxUint64, Timestamp: math.MaxUint64, TransferID: math.MaxUint64,
				Amount: math.MaxUint64, Held: math.MaxUint64, Day: math.MaxUint32, Op: math.MaxUint8, Split: true,
				History: true, After: ledger.Balance{DebitsPending: m, DebitsPosted: m, CreditsPending: m, CreditsPosted: m}}
		default:
			ps[i] = ledger.Posting{Account: val(), Timestamp: val(), TransferID: val(), Amount: val(), Held: val(),
				Day: ledger.Day(val()), Op: ledger.PostingOp(val()), Split: rng.IntN(2) == 0, History: rng.IntN(3) == 0,
				After: ledger.Balance{DebitsPending: u(), DebitsPosted: u(), CreditsPending: u(), CreditsPosted: u()}}
		}
	}
	return ts, ps
}

// TestRoundEncodingIsProtoMarshal: a ledger round as the stream sends it (encoded by its
// committer with any width left for the sequences, right or wrong, then numbered) is, event
// by event, what proto.Marshal makes of api's conversion of the same event, at every varint
// length of every field and of the sequences (rounds crossing each length's edge).
func TestRoundEncodingIsProtoMarshal(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 12))
	marshal := proto.MarshalOptions{Deterministic: true}
	for range 2000 {
		ts, ps := edgyRound(rng)
		n := len(ts) + len(ps)
		if n == 0 {
			continue
		}
		first := 1 + rng.Uint64N(1<<rng.IntN(64))
		if rng.IntN(2) == 0 { // crossing a varint length
			first = max(1, uint64(1)<<(7*(1+rng.IntN(9)))-uint64(rng.IntN(n)))
		}
		width := 1 + rng.IntN(10)
		b, off, history := events.EncodeRoundNumbered(ts, ps, width, first)
		if len(off) != n+1 || off[0] != 0 || int(off[n]) != len(b) {
			t.Fatalf("%d offsets for %d events over %d bytes", len(off), n, len(b))
		}
		var wantHistory []uint32
		for k := range n {
			e := events.Event{Seq: first + uint64(k), Exception: -1}
			if k < len(ts) {
				e.Transfer = &ts[k]
			} else if e.Posting = &ps[k-len(ts)]; e.Posting.History {
				wantHistory = append(wantHistory, uint32(k))
			}
			want, err := marshal.Marshal(&ledgerv1.SubscribeResponse{Events: []*ledgerv1.Event{api.EventToProto(&e)}})
			if err != nil {
				t.Fatal(err)
			}
			if got := b[off[k]:off[k+1]]; !bytes.Equal(got, want) {
				t.Fatalf("event %d (sequence %d, width %d):\n%x\nwant\n%x", k, e.Seq, width, got, want)
			}
		}
		if !slices.Equal(history, wantHistory) {
			t.Fatalf("history %v, want %v", history, wantHistory)
		}
	}
}

// TestAppendWireIntoAUsedBuffer: AppendWire writes every byte of what it appends, whatever
// the spare capacity it appends into held (the NATS publisher reuses its buffers).
func TestAppendWireIntoAUsedBuffer(t *testing.T) {
	rng := rand.New(rand.NewPCG(13, 14))
	marshal := proto.MarshalOptions{Deterministic: true}
	dirty := bytes.Repeat([]byte{0xff}, 1<<16)
	for range 500 {
		ts, ps := edgyRound(rng)
		for k := range len(ts) + len(ps) {
			e := events.Event{Seq: 1 + rng.Uint64N(1<<rng.IntN(64)), Exception: -1}
			if k < len(ts) {
				e.Transfer = &ts[k]
			} else {
				e.Posting = &ps[k-len(ts)]
			}
			got, _ := events.AppendWire(dirty[:0], &e)
			want, err := marshal.Marshal(&ledgerv1.SubscribeResponse{Events: []*ledgerv1.Event{api.EventToProto(&e)}})
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("event %d (sequence %d):\n%x\nwant\n%x", k, e.Seq, got, want)
			}
			dirty = dirty[:cap(dirty)]
			for i := range dirty {
				dirty[i] = 0xff
			}
		}
	}
}
