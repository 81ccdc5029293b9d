package recon

// Tests of findings of the second review: exception records told exactly by the stream, one
// ledger finding per difference, orders without a biz id, plain transfers under a payment's
// window, other forms.

import (
	"fmt"
	"slices"
	"testing"

	"github.com/ledgercore/ledger/channel"
	"github.com/ledgercore/ledger/ledger"
	"github.com/ledgercore/ledger/ledger/payment"
)

// storeView is what the store holds for biz after the script: every order as last committed
// and every transfer's last state (what engine.Reconcile reads).
func storeView(sc *script, biz string) ([]*payment.Order, []ledger.Transfer) {
	var orders []*payment.Order
	for _, o := range sc.committed {
		if o.BizID == biz {
			orders = append(orders, o)
		}
	}
	last := map[uint64]ledger.Transfer{}
	var ids []uint64
	for _, e := range sc.events {
		if e.t != nil && e.t.BizID == biz {
			if _, ok := last[e.t.ID]; !ok {
				ids = append(ids, e.t.ID)
			}
			last[e.t.ID] = *e.t
		}
	}
	var ts []ledger.Transfer
	for _, id := range ids {
		ts = append(ts, last[id])
	}
	return orders, ts
}

// A duplicate payment stamped 1 ms before its biz id's window closed, committed just after
// the close (another shard's event, or the idle clock, closed it): never reported, and the
// window that takes it counts as matched once the store's check (clean: the money is in
// suspense) confirms it.
func TestExceptionStampedBeforeCloseReported(t *testing.T) {
	const window = 60 * sec
	sc := newScript(t)
	t0 := sc.now
	sc.recharge(1, "b1", 100)
	sc.at(sec)
	sc.notice(1, channel.Succeeded, "T1", 100)
	n := len(sc.events)
	sc.now = t0 + window - 1_000_000 // the duplicate callback, stamped 1 ms before the close
	sc.notice(1, channel.Succeeded, "T2", 100)
	if len(sc.orders[1].Exceptions) != 1 {
		t.Fatal("no duplicate recorded")
	}
	m, _ := New(sc.s, Config{Window: window})
	feed(m, sc.events[:n], nil, 1)
	// Another shard's event at the deadline, sequenced before the duplicate's commit.
	m.Posting(uint64(n)+1, &ledger.Posting{Timestamp: t0 + window})
	feed(m, sc.events[n:], nil, uint64(n)+2)
	m.Advance(sc.now + 10*WindowMax)
	m.Advance(sc.now + 20*WindowMax)
	ws := m.Take()
	t.Logf("windows:\n%s", summary(ws))
	orders, ts := storeView(sc, "b1")
	diffs := payment.Reconcile(sc.s, orders, ts)
	t.Logf("store check: %v", diffs)
	found := false
	for i := range ws {
		m.Confirm(&ws[i], diffs)
		for _, f := range ws[i].Findings {
			found = found || f.Kind == KindDuplicate
		}
	}
	t.Logf("after Confirm:\n%s stats %+v", summary(ws), m.Stats())
	if !found {
		t.Errorf("the duplicate payment (txn T2) is in no finding; windows matched %d", m.Stats().Matched)
	}
}

// The same after a restart: the floor is the time of the first event read from the
// checkpoint (the oldest open window's first event). A duplicate committed after it but
// stamped 1 ms earlier (ordinary pipeline latency across shards) is dropped by the restarted
// matcher, though the uninterrupted one reports it.
func TestRestartKeepsExceptionStampedEarlier(t *testing.T) {
	const window = 60 * sec
	sc := newScript(t)
	sc.recharge(1, "b1", 100)
	sc.at(sec)
	sc.notice(1, channel.Succeeded, "T1", 100)
	sc.at(10 * window)
	stampDup := sc.now
	sc.now += 1_000_000 // b2's first commit is stamped 1 ms later but sequenced first
	n := len(sc.events)
	sc.recharge(2, "b2", 100)
	sc.now = stampDup
	sc.notice(1, channel.Succeeded, "T2", 100) // duplicate on b1
	sc.now += 2_000_000
	m1, _ := New(sc.s, Config{Window: window})
	feed(m1, sc.events[:n], nil, 1)
	m1.Advance(stampDup - 5*window) // b1's first window closed long before (idle clock)
	feed(m1, sc.events[n:], nil, uint64(n)+1)
	m1.Advance(sc.now + 10*WindowMax)
	m1.Advance(sc.now + 20*WindowMax)
	// Restart: cp = the sequence before b2's window (the oldest open one); b1's first window
	// was recorded at or below the checkpoint.
	m2, _ := New(sc.s, Config{Window: window})
	feed(m2, sc.events[n:], nil, uint64(n)+1)
	m2.Advance(sc.now + 10*WindowMax)
	m2.Advance(sc.now + 20*WindowMax)
	has := func(ws []Window) bool {
		for _, w := range ws {
			for _, f := range w.Findings {
				if f.Kind == KindDuplicate {
					return true
				}
			}
		}
		return false
	}
	w1, w2 := m1.Take(), m2.Take()
	t.Logf("uninterrupted:\n%s restarted:\n%s", summary(w1), summary(w2))
	if has(w1) && !has(w2) {
		t.Errorf("the restart lost the duplicate payment the uninterrupted run reports")
	}
}

// One ledger difference, one finding: a window that saw the whole life reports the ledger
// difference; a later partial window of the biz id (here a duplicate callback) asks the
// store, which reports the same difference. Both name it by the digest of its differences,
// so the store records one finding (a finding's identity is its biz id, kind and First).
func TestStreamAndStoreLedgerFindingOnce(t *testing.T) {
	const window = 60 * sec
	sc := newScript(t)
	sc.recharge(1, "b1", 100)
	sc.at(sec)
	sc.notice(1, channel.Succeeded, "T1", 100)
	for _, e := range sc.events {
		if e.t != nil {
			e.t.Amount = 99 // the ledger holds another amount: the store holds it so too
		}
	}
	sc.at(10 * window)
	sc.notice(1, channel.Succeeded, "T2", 100) // a later duplicate callback: a partial window
	m, _ := New(sc.s, Config{Window: window})
	feed(m, sc.events, nil, 1)
	m.Advance(sc.now + 10*WindowMax)
	m.Advance(sc.now + 20*WindowMax)
	ws := m.Take()
	orders, ts := storeView(sc, "b1")
	diffs := payment.Reconcile(sc.s, orders, ts)
	ids := map[string]bool{}
	n := 0
	for i := range ws {
		m.Confirm(&ws[i], diffs)
		for _, f := range ws[i].Findings {
			if f.Kind == KindLedger {
				n++
				ids[fmt.Sprintf("%d/%s/%s", f.First, f.Kind, f.BizID)] = true
			}
		}
	}
	t.Logf("ledger findings: %v", ids)
	if n != 2 {
		t.Fatalf("%d ledger findings made, want 2 (the stream's and the store's)", n)
	}
	if len(ids) != 1 {
		t.Errorf("one ledger difference recorded as %d findings", len(ids))
	}
}

// applyLedger is script.apply with the ledger's hold states: a post or void of a hold writes
// the hold again (pending_posted / pending_voided), as Book.resolvePending does.
func (sc *script) applyLedger(o *payment.Order, e payment.Effects, holds map[uint64]*ledger.Transfer) {
	for len(e.Transfers) > 0 {
		rs := make([]ledger.TransferResult, len(e.Transfers))
		for i := range e.Transfers {
			rs[i] = ledger.ResultOK
			t := e.Transfers[i]
			t.Timestamp, t.State = sc.now, ledger.StatePosted
			if t.Flags&ledger.TransferPending != 0 {
				t.State = ledger.StatePending
				c := t
				holds[t.ID] = &c
			}
			if t.Flags&(ledger.TransferPostPending|ledger.TransferVoidPending) != 0 {
				h := *holds[t.PendingID]
				h.State = ledger.StatePendingPosted
				if t.Flags&ledger.TransferVoidPending != 0 {
					h.State = ledger.StatePendingVoided
					t.Amount = h.Amount
				}
				sc.events = append(sc.events, event{t: &h, exc: -1})
			}
			sc.events = append(sc.events, event{t: &t, exc: -1})
		}
		e = o.OnTransfers(sc.s, e.Transfers, rs, sc.now)
		sc.order(o)
	}
}

// Normal traffic of other forms: a withdrawal paid out and one declined (holds posted and
// voided), a combined payment (balance + card): each window seen whole must match.
func TestOtherFormsMatch(t *testing.T) {
	for _, tc := range []struct {
		name   string
		form   payment.Form
		status channel.Status
	}{{"withdraw paid", payment.Withdraw, channel.Succeeded}, {"withdraw declined", payment.Withdraw, channel.Failed},
		{"pay combined", payment.Pay, channel.Succeeded}, {"pay combined declined", payment.Pay, channel.Failed}} {
		t.Run(tc.name, func(t *testing.T) {
			sc := newScript(t)
			holds := map[uint64]*ledger.Transfer{}
			accounts := func(a uint64) (ledger.Account, bool) { return ledger.Account{ID: a, Ledger: 1, Code: 2001}, true }
			req := &payment.Request{Key: "k1", BizID: "b1", Form: tc.form, Ledger: 1, Amount: 100, From: 1, To: 2,
				Channel: "bank", ChannelAccount: "acct"}
			if tc.form == payment.Pay {
				req.Instruments = []payment.Instrument{{Kind: payment.Balance, Amount: 40}, {Kind: payment.Card, Amount: 60}}
			}
			o, res := payment.New(sc.s, req, 1, sc.now, accounts, nil)
			for code := uint32(1); res == payment.ResultAccountWrongSubject && code < 10000; code++ {
				accounts = func(a uint64) (ledger.Account, bool) {
					if a == 2 {
						return ledger.Account{ID: a, Ledger: 1, Code: code}, true
					}
					return ledger.Account{ID: a, Ledger: 1, Code: 2001}, true
				}
				o, res = payment.New(sc.s, req, 1, sc.now, accounts, nil)
			}
			if res != payment.ResultOK {
				t.Skipf("new: %v", res)
			}
			sc.orders[1] = o
			e := o.Begin(sc.s, sc.now)
			sc.order(o)
			sc.applyLedger(o, e, holds)
			sc.at(sec)
			op := channel.Pay
			if tc.form == payment.Withdraw {
				op = channel.Payout
			}
			amount := uint64(100)
			if tc.form == payment.Pay {
				amount = 60
			}
			e2, r := o.OnNotice(sc.s, &channel.Notice{Op: op, OrderNo: payment.OrderNo(1), Txn: "T1", Status: tc.status,
				Amount: amount, BizID: "b1"}, sc.now)
			if r != payment.ResultOK {
				t.Skipf("notice: %v", r)
			}
			sc.order(o)
			sc.applyLedger(o, e2, holds)
			ws, _ := run(t, sc, Config{Window: 60 * sec}, sc.events)
			t.Logf("order %v %v; windows:\n%s", o.State, o.Result, summary(ws))
			for _, w := range ws {
				if !w.Matched() {
					t.Errorf("normal traffic not matched: %+v", w.Findings)
				}
			}
		})
	}
}

// A duplicate payment is reported by the window in which its record was opened, and not by a
// later window of the biz id that sees the order again: told exactly by the stream (events
// of payment log version 3), and by the timestamp rule for a stream that does not say
// (versions 1 and 2, or a client of the wire stream).
func TestExceptionReportedOnceExactAndLegacy(t *testing.T) {
	const window = 60 * sec
	for _, exact := range []bool{true, false} {
		t.Run(fmt.Sprint("exact=", exact), func(t *testing.T) {
			sc := newScript(t)
			sc.recharge(1, "b1", 100)
			sc.at(sec)
			sc.notice(1, channel.Succeeded, "T1", 100)
			sc.at(sec)
			sc.notice(1, channel.Succeeded, "T2", 100) // duplicate
			sc.at(10 * window)
			o := sc.orders[1]
			o.Version++
			o.Updated = sc.now
			sc.order(o) // a later commit of the order: its record unchanged
			evs := sc.events
			if !exact {
				evs = nil
				for _, e := range sc.events {
					e.exact, e.opened = false, false
					evs = append(evs, e)
				}
			}
			ws, _ := run(t, sc, Config{Window: window}, evs)
			var got []string
			for _, w := range ws {
				for _, f := range w.Findings {
					got = append(got, fmt.Sprintf("%d:%s", w.First, f.Kind))
				}
			}
			t.Logf("windows:\n%s", summary(ws))
			if len(ws) != 2 || fmt.Sprint(got) != "[1:duplicate_payment]" {
				t.Errorf("findings %v, want the duplicate once, in the first of two windows", got)
			}
		})
	}
}

// TestNoBizIDJoinedByOrder: a payment order without a biz id (the API allows it) is joined by
// its order key with its transfers: its amount mismatch and duplicate payment are reported
// under the key; plain transfers without a biz id, or carrying the key as their biz id, stay
// unjoined (ignored).
func TestNoBizIDJoinedByOrder(t *testing.T) {
	sc := newScript(t)
	sc.recharge(1, "", 100)
	sc.at(sec)
	sc.notice(1, channel.Succeeded, "T1", 90) // amount mismatch
	sc.at(sec)
	sc.notice(1, channel.Succeeded, "T2", 100) // duplicate payment
	evs := append(slices.Clone(sc.events), event{t: plain(10_001, "", sc.now), exc: -1},
		event{t: plain(10_002, OrderKey(1), sc.now), exc: -1})
	ws, m := run(t, sc, Config{Window: 60 * sec}, evs)
	t.Logf("exceptions on the order: %d; windows:\n%s stats %+v", len(sc.orders[1].Exceptions), summary(ws), m.Stats())
	if len(ws) != 1 || ws[0].BizID != OrderKey(1) || ws[0].Partial || ws[0].Transfers == 0 {
		t.Fatalf("windows %+v", ws)
	}
	var kinds []Kind
	for _, f := range ws[0].Findings {
		kinds = append(kinds, f.Kind)
	}
	if fmt.Sprint(kinds) != "[duplicate_payment amount_mismatch]" || m.Stats().Ignored != 1 {
		t.Fatalf("findings %v, ignored %d", kinds, m.Stats().Ignored)
	}
}

func TestOrderKey(t *testing.T) {
	for _, id := range []uint64{1, 42, payment.OrderIDMax} {
		if got, ok := OrderOfKey(OrderKey(id)); !ok || got != id {
			t.Errorf("%d: %d %v", id, got, ok)
		}
	}
	for _, s := range []string{"", "order:1", "order\x1f", "order\x1f01", "order\x1f1x", "xorder\x1f1", "order\x1f-1",
		"order\x1f99999999999999999999"} {
		if id, ok := OrderOfKey(s); ok {
			t.Errorf("%q read as order %d", s, id)
		}
	}
	// No payment order's biz id is a key: the payment layer refuses a biz id not printable.
	accounts := func(a uint64) (ledger.Account, bool) { return ledger.Account{ID: a, Ledger: 1, Code: 2001}, true }
	sc := newScript(t)
	if _, res := payment.New(sc.s, &payment.Request{Key: "k", BizID: OrderKey(7), Form: payment.Recharge, Ledger: 1,
		Amount: 1, To: 1, Channel: "bank"}, 1, sc.now, accounts, nil); res != payment.ResultBizIDNotPrintable {
		t.Fatalf("a biz id that is an order key: %v", res)
	}
}

// TestPlainTransfersDoNotMaskAnomaly: a ledger client's plain transfers with a payment's biz
// id (client-chosen), more than a window may track, do not overflow the payment's window:
// past PlainPerBizMax the window stops tracking them and is Partial (the store's verdict),
// and the payment's amount mismatch is still reported.
func TestPlainTransfersDoNotMaskAnomaly(t *testing.T) {
	sc := newScript(t)
	sc.recharge(1, "shop-7", 100)
	sc.at(sec)
	sc.notice(1, channel.Succeeded, "T1", 90) // amount mismatch
	m, _ := New(sc.s, Config{Window: 60 * sec})
	feed(m, sc.events[:1], nil, 1)
	seq := uint64(2)
	for i := range TransfersPerBizMax + 1 {
		m.Transfer(seq, plain(uint64(10_000+i), "shop-7", sc.now))
		seq++
	}
	feed(m, sc.events[1:], nil, seq)
	m.Advance(sc.now + 10*WindowMax)
	m.Advance(sc.now + 20*WindowMax)
	ws := m.Take()
	t.Logf("windows:\n%s", summary(ws))
	if st := m.Stats(); st.Overflow != 0 || st.PlainDropped != TransfersPerBizMax+1-PlainPerBizMax || st.Kept != 0 {
		t.Errorf("stats %+v", st)
	}
	if len(ws) != 1 || !ws[0].Partial || len(ws[0].Findings) != 1 || ws[0].Findings[0].Kind != KindAmount {
		t.Errorf("the amount mismatch is masked by another client's plain transfers: %+v", ws)
	}
}
