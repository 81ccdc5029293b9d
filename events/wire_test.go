package events

import (
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/ledgercore/ledger/ledger"
	"github.com/ledgercore/ledger/storage"
)

// randomRound is a seeded ledger round: transfer records and postings with every field set
// or zero, values of every varint length, biz ids up to 17,000 bytes, History on some
// postings.
func randomRound(rng *rand.Rand, nt, np int) *storage.RoundEvents {
	val := func() uint64 {
		switch rng.IntN(4) {
		case 0:
			return 0
		case 1:
			return math.MaxUint64
		}
		return rng.Uint64() >> rng.IntN(64)
	}
	bizIDs := []string{"", "order-1", strings.Repeat("b", 200), strings.Repeat("d", 17000)}
	ev := &storage.RoundEvents{Transfers: make([]ledger.Transfer, nt), Postings: make([]ledger.Posting, np)}
	for i := range ev.Transfers {
		ev.Transfers[i] = ledger.Transfer{ID: val(), DebitAccountID: val(), CreditAccountID: val(), Amount: val(),
			PendingID: val(), UserData: val(), Ledger: uint32(val()), Code: uint32(val()), Timeout: uint32(val()),
			Flags: ledger.TransferFlags(rng.IntN(16)), BizID: bizIDs[rng.IntN(len(bizIDs))], Timestamp: val(),
			State: ledger.TransferState(rng.IntN(8)), Result: ledger.TransferResult(rng.IntN(40))}
	}
	u := func() ledger.Uint128 { return ledger.Uint128{Lo: val(), Hi: val()} }
	for i := range ev.Postings {
		ev.Postings[i] = ledger.Posting{Account: val(), Timestamp: val(), TransferID: val(), Amount: val(), Held: val(),
			Day: ledger.Day(val()), Op: ledger.PostingOp(rng.IntN(9)), Split: rng.IntN(2) == 0, History: rng.IntN(3) == 0,
			After: ledger.Balance{DebitsPending: u(), DebitsPosted: u(), CreditsPending: u(), CreditsPosted: u()}}
	}
	return ev
}

// TestWindowDecodesToItsStructs: a ledger round encoded into the window reads back, in any
// span of it, as the very structs it was made of (History too, which the wire lacks), with
// their sequences.
func TestWindowDecodesToItsStructs(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	var d decoded
	for range 200 {
		ev := randomRound(rng, rng.IntN(50), rng.IntN(100))
		n := ev.Count()
		if n == 0 {
			continue
		}
		first := 1 + rng.Uint64N(1<<40)
		w := encodeNumbered(first, ev)
		if w == nil || len(w.off) != n+1 || int(w.off[n]) != len(w.b) {
			t.Fatalf("encoded %d events: offsets %d, bytes %d", n, len(w.off), len(w.b))
		}
		c := chunk{IndexEntry: storage.IndexEntry{First: first, LogRound: storage.LogRound{Events: uint32(n)}}, w: w}
		from := rng.IntN(n)
		to := from + 1 + rng.IntN(n-from)
		want := appendStructs(nil, chunk{IndexEntry: c.IndexEntry, ev: ev}, from, to)
		d.t, d.p = d.t[:0], d.p[:0]
		sp := span{c: c, from: from, to: to}
		got, err := sp.appendEvents(nil, &d)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != len(want) {
			t.Fatalf("%d events, want %d", len(got), len(want))
		}
		for i := range want {
			g, e := got[i], want[i]
			switch {
			case g.Seq != e.Seq, (g.Transfer == nil) != (e.Transfer == nil), (g.Posting == nil) != (e.Posting == nil),
				g.Exception != -1, g.Order != nil:
				t.Fatalf("event %d: %+v, want %+v", i, g, e)
			case g.Transfer != nil && *g.Transfer != *e.Transfer:
				t.Fatalf("transfer %d:\n%+v\nwant\n%+v", i, *g.Transfer, *e.Transfer)
			case g.Posting != nil && *g.Posting != *e.Posting:
				t.Fatalf("posting %d:\n%+v\nwant\n%+v", i, *g.Posting, *e.Posting)
			}
		}
	}
}

// encodeNumbered is a ledger round encoded as its committer does and numbered from first as
// the sequencer does.
func encodeNumbered(first uint64, ev *storage.RoundEvents) *wireRound {
	w := encodeRound(ev.Transfers, ev.Postings, sizeVarint(first))
	if w == nil {
		return nil
	}
	return w.number(first)
}

// BenchmarkWindowEncode: what a captured round costs: its committer encodes it for the
// window (once for every follower), and the sequencer writes its sequences in.
func BenchmarkWindowEncode(b *testing.B) {
	ev := benchRound()
	b.ReportAllocs()
	for b.Loop() {
		_ = encodeRound(ev.Transfers, ev.Postings, 3).number(1 << 14)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*ev.Count()), "ns/event")
}

// benchRound is a round of the uniform bench's shape: 2,730 transfers and their postings.
func benchRound() *storage.RoundEvents {
	rng := rand.New(rand.NewPCG(1, 2))
	ev := &storage.RoundEvents{}
	ts := uint64(1_795_000_000_000_000_000)
	for i := range 2730 {
		ts++
		tr := ledger.Transfer{ID: 1_000_000 + uint64(i), DebitAccountID: 1 + rng.Uint64N(10000), CreditAccountID: 1 + rng.Uint64N(10000),
			Amount: 1 + rng.Uint64N(1000), Ledger: 1, Code: 1, Timestamp: ts, State: ledger.StatePosted}
		ev.Transfers = append(ev.Transfers, tr)
		tot := func() ledger.Uint128 { return ledger.Uint128{Lo: rng.Uint64N(1 << 24)} }
		for _, side := range []struct {
			acct uint64
			op   ledger.PostingOp
		}{{tr.DebitAccountID, ledger.OpDebitPost}, {tr.CreditAccountID, ledger.OpCreditPost}} {
			ev.Postings = append(ev.Postings, ledger.Posting{Account: side.acct, Timestamp: ts, TransferID: tr.ID,
				Amount: tr.Amount, Op: side.op, After: ledger.Balance{DebitsPosted: tot(), CreditsPosted: tot()}})
		}
	}
	return ev
}

// BenchmarkWindowDecode: what an in-process follower that wants structs (Follow) pays for
// the ring's ledger rounds being kept encoded.
func BenchmarkWindowDecode(b *testing.B) {
	ev := benchRound()
	w := encodeNumbered(1, ev)
	n := ev.Count()
	c := chunk{IndexEntry: storage.IndexEntry{First: 1, LogRound: storage.LogRound{Events: uint32(n)}}, w: w}
	var d decoded
	buf := make([]Event, 0, BatchEventsMax)
	b.ReportAllocs()
	for b.Loop() {
		for from := 0; from < n; from += BatchEventsMax {
			d.t, d.p = d.t[:0], d.p[:0]
			sp := span{c: c, from: from, to: min(n, from+BatchEventsMax)}
			var err error
			if buf, err = sp.appendEvents(buf[:0], &d); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/event")
}
