package recon

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/ledgercore/ledger/channel"
	"github.com/ledgercore/ledger/ledger"
	"github.com/ledgercore/ledger/ledger/payment"
)

func plain(id uint64, biz string, at uint64) *ledger.Transfer {
	return &ledger.Transfer{ID: id, BizID: biz, Amount: 1, Ledger: 1, Timestamp: at, State: ledger.StatePosted}
}

func kindsOf(w Window) []Kind {
	var ks []Kind
	for _, f := range w.Findings {
		ks = append(ks, f.Kind)
	}
	return ks
}

// TestPlainTransfersOpenNoWindow: plain ledger transfers with biz ids (any ledger client's)
// open no window: a flood of distinct biz ids evicts no payment window, and the payment
// window's amount mismatch is reported as such.
func TestPlainTransfersOpenNoWindow(t *testing.T) {
	sc := newScript(t)
	sc.recharge(1, "victim", 100)
	sc.at(sec)
	sc.notice(1, channel.Succeeded, "T1", 90) // amount mismatch
	m, err := New(sc.s, Config{Window: 60 * sec, BizMax: 10})
	if err != nil {
		t.Fatal(err)
	}
	feed(m, sc.events, nil, 1)
	seq := uint64(len(sc.events)) + 1
	for i := range 1000 {
		m.Transfer(seq, plain(uint64(10_000+i), fmt.Sprint("junk-", i), sc.now))
		seq++
	}
	if st := m.Stats(); st.Tracked != 1 || st.Ignored != 1000 || st.Overflow != 0 {
		t.Fatalf("stats %+v", st)
	}
	m.Advance(sc.now + 10*WindowMax)
	m.Advance(sc.now + 20*WindowMax)
	ws := m.Take()
	if len(ws) != 1 || ws[0].BizID != "victim" || fmt.Sprint(kindsOf(ws[0])) != "[amount_mismatch]" {
		t.Fatalf("windows:\n%s", summary(ws))
	}
}

// TestOverflowOnce: a window that passes its bound (payment transfers, here of orders it did
// not see) reports one overflow finding when it closes; its further events are only counted
// (none dropped silently, no finding per 3073 transfers).
func TestOverflowOnce(t *testing.T) {
	sc := newScript(t)
	sc.recharge(1, "payroll", 100)
	m, _ := New(sc.s, Config{Window: 60 * sec})
	feed(m, sc.events, nil, 1)
	seq := uint64(len(sc.events)) + 1
	const n = 20_000
	for i := range n { // payment transfers (plain ones have their own bound: PlainPerBizMax)
		pt := plain(payment.TransferID(uint64(2+i/20), 1+i%20), "payroll", sc.now)
		m.Transfer(seq, pt)
		seq++
	}
	if ws := m.Take(); len(ws) != 0 {
		t.Fatalf("closed before its time:\n%s", summary(ws))
	}
	if st := m.Stats(); st.Overflow != 1 || st.Kept != 0 || st.Dropped != n-TransfersPerBizMax {
		t.Fatalf("stats %+v", st)
	}
	m.Advance(sc.now + WindowMax)
	ws := m.Take()
	if len(ws) != 1 || fmt.Sprint(kindsOf(ws[0])) != "[overflow]" || fmt.Sprint(ws[0].Findings[0].Orders) != "[1]" ||
		!strings.Contains(ws[0].Findings[0].Differences[0].Found, fmt.Sprintf("%d later events", n-TransfersPerBizMax)) {
		t.Fatalf("windows:\n%s %v", summary(ws), ws)
	}
	if st := m.Stats(); st.Tracked != 0 || st.Unmatched[KindOverflow] != 1 {
		t.Fatalf("stats %+v", st)
	}
}

// TestKeptMax: the orders and transfers kept across windows are bounded: the window that
// would pass the bound overflows, the others are reconciled.
func TestKeptMax(t *testing.T) {
	sc := newScript(t)
	for i := uint64(1); i <= 3; i++ {
		sc.recharge(i, fmt.Sprint("b", i), 100)
	}
	sc.at(sec)
	for i := uint64(1); i <= 3; i++ {
		sc.notice(i, channel.Succeeded, fmt.Sprint("T", i), 100)
	}
	// Each window keeps 1 order and 1 transfer (the settlement): 6 in all.
	ws, m := run(t, sc, Config{Window: 60 * sec, KeptMax: 5}, sc.events)
	var overflowed []string
	for _, w := range ws {
		if slices.Contains(kindsOf(w), KindOverflow) {
			overflowed = append(overflowed, w.BizID)
		} else if !w.Matched() {
			t.Fatalf("windows:\n%s", summary(ws))
		}
	}
	if fmt.Sprint(overflowed) != "[b3]" || m.Stats().Kept != 0 {
		t.Fatalf("overflowed %v, windows:\n%s stats %+v", overflowed, summary(ws), m.Stats())
	}
}

// TestTwoExceptionsOneCommit: one commit opens two exception records (two notices taken in
// one round of the payment shard, each stamped with its own time): the window that first sees
// the order at that commit reports both (the stream's exception events name them).
func TestTwoExceptionsOneCommit(t *testing.T) {
	const window = 60 * sec
	sc := newScript(t)
	sc.recharge(1, "b1", 100)
	sc.at(sec)
	sc.unknown(1)
	n, unknownAt := len(sc.events), sc.now
	sc.at(3 * window) // the window closed (pending); the channel answers late
	o := sc.orders[1]
	for i, txn := range []string{"T1", "T2"} {
		amount := uint64(90 + 10*i)
		if _, res := o.OnNotice(sc.s, &channel.Notice{Op: channel.Pay, OrderNo: payment.OrderNo(1), Txn: txn,
			Status: channel.Succeeded, Amount: amount, BizID: "b1"}, sc.now); res != payment.ResultOK {
			t.Fatal(res)
		}
		sc.at(1000) // the next message of the round, 1µs later
	}
	sc.order(o) // the round's one commit
	if len(o.Exceptions) != 2 || o.Exceptions[0].Created == o.Updated {
		t.Fatalf("the script does not make the case: %+v", o.Exceptions)
	}
	m, _ := New(sc.s, Config{Window: window})
	feed(m, sc.events[:n], nil, 1)
	m.Advance(unknownAt + window)   // other traffic: the window extends
	m.Advance(unknownAt + 2*window) // and closes, pending
	feed(m, sc.events[n:], nil, uint64(n)+1)
	m.Advance(sc.now + 10*WindowMax)
	m.Advance(sc.now + 20*WindowMax)
	ws := m.Take()
	last := ws[len(ws)-1]
	if got := fmt.Sprint(kindsOf(last)); got != "[duplicate_payment amount_mismatch]" || !last.Partial {
		t.Fatalf("the commit opened %v; windows:\n%s", o.Exceptions, summary(ws))
	}
}

// TestLaterWindowOfAnOrder: an order whose life spans two windows (pending, then settled by a
// late answer) is not seen whole by the second: partial (the store's verdict), not a false
// ledger finding for the transfers the first window took; an exception record the first
// window reported is not reported again when it changes in a later window.
func TestLaterWindowOfAnOrder(t *testing.T) {
	const window = 60 * sec
	sc := newScript(t)
	sc.recharge(1, "b1", 100)
	sc.at(sec)
	sc.notice(1, channel.Succeeded, "T1", 90) // amount mismatch, in the first window
	sc.at(3 * window)
	sc.recharge(2, "b1", 100) // opens the second window: order 1's record changes in it
	o := sc.orders[1]
	o.Exceptions[0].Note, o.Exceptions[0].Updated = "looked at", sc.now
	sc.order(o)
	sc.at(sec)
	sc.notice(2, channel.Succeeded, "T2", 100)
	ws, _ := run(t, sc, Config{Window: window}, sc.events)
	if len(ws) != 2 || fmt.Sprint(kindsOf(ws[0])) != "[amount_mismatch]" || ws[0].Partial ||
		len(ws[1].Findings) != 0 || !ws[1].Partial {
		t.Fatalf("windows:\n%s", summary(ws))
	}
}

// TestSkipOnlyRecorded: Skip names the closed windows exactly: the events of a window that was
// not recorded (its store check failed) are taken again though a later window of the biz id
// was recorded.
func TestSkipOnlyRecorded(t *testing.T) {
	sc := newScript(t)
	sc.recharge(1, "b1", 100)
	sc.at(sec)
	sc.notice(1, channel.Succeeded, "T1", 90)
	n := uint64(len(sc.events))
	m, _ := New(sc.s, Config{Window: 60 * sec})
	if err := m.Skip("b1", n+10, n+20); err != nil { // a later window of b1, recorded
		t.Fatal(err)
	}
	feed(m, sc.events, nil, 1)
	m.Advance(sc.now + WindowMax)
	ws := m.Take()
	if len(ws) != 1 || fmt.Sprint(kindsOf(ws[0])) != "[amount_mismatch]" || m.Stats().Skipped != 0 {
		t.Fatalf("windows:\n%s stats %+v", summary(ws), m.Stats())
	}
	for range SkipMax - 1 {
		if err := m.Skip("x", 1, 1); err != nil {
			t.Fatal(err)
		}
	}
	if err := m.Skip("x", 1, 1); err == nil {
		t.Fatal("more than SkipMax windows to skip: no error")
	}
}

// TestGap: a gap in the stream makes every open window partial and counts it.
func TestGap(t *testing.T) {
	sc := newScript(t)
	sc.recharge(1, "b1", 100)
	sc.at(sec)
	sc.notice(1, channel.Succeeded, "T1", 100)
	m, _ := New(sc.s, Config{Window: 60 * sec})
	feed(m, sc.events[:2], nil, 1)
	m.Gap()
	feed(m, sc.events[2:], nil, 3)
	m.Advance(sc.now + WindowMax)
	ws := m.Take()
	if len(ws) != 1 || !ws[0].Partial || m.Stats().Gaps != 1 {
		t.Fatalf("windows:\n%s stats %+v", summary(ws), m.Stats())
	}
}

// TestConfirmDigest: the store's ledger finding is named by its differences: the same
// differences (in any order) the same finding, others another; it names the orders.
func TestConfirmDigest(t *testing.T) {
	d1 := payment.Difference{Kind: payment.DiffMissing, Order: 7, Step: 13, Expected: "x", Found: "y"}
	d2 := payment.Difference{Kind: payment.DiffUnmatched, Transfer: 5000, Expected: "a transfer with no order's id"}
	a, b, c := DiffDigest([]payment.Difference{d1, d2}), DiffDigest([]payment.Difference{d2, d1}), DiffDigest([]payment.Difference{d1})
	if a != b || a == c || a&StoreFindingBit == 0 {
		t.Fatalf("digests %x %x %x", a, b, c)
	}
	m, _ := New(nil, Config{StoreVerdict: true})
	for _, first := range []uint64{10, 90} { // two windows, the same differences: one id
		w := Window{BizID: "b", First: first, Closed: first + 3, Partial: true, Final: true, OrderIDs: []uint64{8}}
		m.Confirm(&w, []payment.Difference{d2, d1})
		if len(w.Findings) != 1 || w.Findings[0].First != a || fmt.Sprint(w.Findings[0].Orders) != "[7]" {
			t.Fatalf("findings %+v", w.Findings)
		}
	}
	w := Window{BizID: "b", First: 5, Partial: true, OrderIDs: []uint64{8}}
	m.Unverifiable(&w, "too large")
	if len(w.Findings) != 1 || w.Findings[0].Kind != KindUnverifiable || w.Findings[0].First != 5 ||
		!strings.Contains(w.Findings[0].Differences[0].Found, "too large") {
		t.Fatalf("findings %+v", w.Findings)
	}
}
