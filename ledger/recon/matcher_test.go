package recon

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/ledgercore/ledger/channel"
	"github.com/ledgercore/ledger/ledger"
	"github.com/ledgercore/ledger/ledger/payment"
	"github.com/ledgercore/ledger/ledger/rules"
)

const sec = 1_000_000_000

// event is one event of a scripted stream.
type event struct {
	t   *ledger.Transfer
	o   *payment.Order
	exc int
	// exact: the event says whether its commit opened exception record exc (opened), as a
	// payment log record of version 3 does; legacy streams (exact false) do not.
	exact, opened bool
}

// script runs payment orders through their state machines and writes down the events the
// stream would carry, in commit order, as the engine streams them: an order's first commit
// holds it already begun (its first streamed version is past 1), and each commit of an order
// is followed by an exception event for every record new or changed since its previous commit
// (storage's changedExceptions). A test may then drop, change or reorder them.
type script struct {
	t         *testing.T
	s         *payment.Setup
	now       uint64
	events    []event
	orders    map[uint64]*payment.Order
	committed map[uint64]*payment.Order // each order as its last commit wrote it
}

func newScript(t *testing.T) *script {
	s, err := payment.NewSetup(rules.Default(), payment.DefaultCodes, []string{"bank"})
	if err != nil {
		t.Fatal(err)
	}
	return &script{t: t, s: s, now: 1000 * sec, orders: map[uint64]*payment.Order{},
		committed: map[uint64]*payment.Order{}}
}

func (sc *script) at(d uint64) { sc.now += d }

// order writes down a commit of the order: its event, then one for each exception record new
// or changed since its previous commit.
func (sc *script) order(o *payment.Order) {
	c := *o
	c.Exceptions = slices.Clone(o.Exceptions)
	prev := sc.committed[o.ID]
	sc.committed[o.ID] = &c
	sc.events = append(sc.events, event{o: &c, exc: -1, exact: true})
	for k := range o.Exceptions {
		opened := prev == nil || k >= len(prev.Exceptions)
		if opened || prev.Exceptions[k] != o.Exceptions[k] {
			sc.events = append(sc.events, event{o: &c, exc: k, exact: true, opened: opened})
		}
	}
}

// apply books the transfers in the ledger (posted, holds pending) and tells the order.
func (sc *script) apply(o *payment.Order, e payment.Effects) {
	for len(e.Transfers) > 0 {
		rs := make([]ledger.TransferResult, len(e.Transfers))
		for i := range e.Transfers {
			rs[i] = ledger.ResultOK
			t := e.Transfers[i]
			t.Timestamp, t.State = sc.now, ledger.StatePosted
			if t.Flags&ledger.TransferPending != 0 {
				t.State = ledger.StatePending
			}
			sc.events = append(sc.events, event{t: &t, exc: -1})
		}
		e = o.OnTransfers(sc.s, e.Transfers, rs, sc.now)
		sc.order(o)
	}
}

// recharge starts a recharge of amount for biz: sent to the channel, awaiting its outcome.
func (sc *script) recharge(id uint64, biz string, amount uint64) *payment.Order {
	accounts := func(a uint64) (ledger.Account, bool) { return ledger.Account{ID: a, Ledger: 1, Code: 2001}, true }
	o, res := payment.New(sc.s, &payment.Request{Key: fmt.Sprint("k", id), BizID: biz, Form: payment.Recharge, Ledger: 1,
		Amount: amount, To: 1, Channel: "bank"}, id, sc.now, accounts, nil)
	if res != payment.ResultOK {
		sc.t.Fatalf("new: %v", res)
	}
	sc.orders[id] = o
	e := o.Begin(sc.s, sc.now) // the engine begins an order before its first commit
	sc.order(o)
	sc.apply(o, e)
	return o
}

// notice is the channel's callback about order id.
func (sc *script) notice(id uint64, status channel.Status, txn string, amount uint64) {
	o := sc.orders[id]
	e, res := o.OnNotice(sc.s, &channel.Notice{Op: channel.Pay, OrderNo: payment.OrderNo(id), Txn: txn, Status: status,
		Amount: amount, BizID: o.BizID}, sc.now)
	if res != payment.ResultOK {
		sc.t.Fatalf("notice: %v", res)
	}
	sc.order(o)
	sc.apply(o, e)
}

// unknown makes order id's outcome unknown (a query timed out).
func (sc *script) unknown(id uint64) {
	o := sc.orders[id]
	c := payment.Call{Request: channel.Request{Op: channel.Pay, OrderNo: payment.OrderNo(id)}}
	e := o.OnChannel(sc.s, c, payment.Unanswered, channel.Result{}, sc.now)
	sc.order(o)
	sc.apply(o, e)
}

// feed gives the matcher the events from the script (ticks carry the time they were made).
func feed(m *Matcher, evs []event, times []uint64, first uint64) {
	for i, e := range evs {
		seq := first + uint64(i)
		switch {
		case e.t != nil:
			m.Transfer(seq, e.t)
		case e.o != nil && e.exact:
			m.OrderExact(seq, e.o, e.exc, e.opened)
		case e.o != nil:
			m.Order(seq, e.o, e.exc)
		default:
			m.Posting(seq, &ledger.Posting{Timestamp: times[i]})
		}
	}
}

// run feeds the events and then moves time past every window; it returns the closed windows.
func run(t *testing.T, sc *script, cfg Config, evs []event) ([]Window, *Matcher) {
	t.Helper()
	m, err := New(sc.s, cfg)
	if err != nil {
		t.Fatal(err)
	}
	times := make([]uint64, len(evs))
	for i := range times {
		times[i] = sc.now
	}
	feed(m, evs, times, 1)
	var out []Window
	out = append(out, m.Take()...)
	m.Advance(sc.now + 10*WindowMax)
	m.Advance(sc.now + 20*WindowMax) // past the extensions too
	return append(out, m.Take()...), m
}

func summary(ws []Window) string {
	var b strings.Builder
	for _, w := range ws {
		fmt.Fprintf(&b, "%s first=%d closed=%d matched=%v partial=%v", w.BizID, w.First, w.Closed, w.Matched(), w.Partial)
		for _, f := range w.Findings {
			fmt.Fprintf(&b, " %s%v", f.Kind, f.Orders)
		}
		b.WriteString("\n")
	}
	return b.String()
}

func TestMatcher(t *testing.T) {
	const window = 60 * sec
	cases := []struct {
		name  string
		build func(sc *script) []event
		want  string
		// diff, when set, must appear in a finding's differences.
		diff string
	}{
		{name: "matched", build: func(sc *script) []event {
			sc.recharge(1, "b1", 100)
			sc.at(sec)
			sc.notice(1, channel.Succeeded, "T1", 100)
			return sc.events
		}, want: "b1 first=1 closed=4 matched=true partial=false\n"},
		{name: "matched just before the window closes", build: func(sc *script) []event {
			sc.recharge(1, "b1", 100)
			sc.at(window - 1)
			sc.notice(1, channel.Succeeded, "T1", 100)
			return sc.events
		}, want: "b1 first=1 closed=4 matched=true partial=false\n"},
		{name: "out of order within the window", build: func(sc *script) []event {
			sc.recharge(1, "b1", 100)
			sc.at(sec)
			sc.notice(1, channel.Succeeded, "T1", 100)
			evs := slices.Clone(sc.events)
			slices.Reverse(evs[1:]) // after the first commit, the transfers and the final order first
			return evs
		}, want: "b1 first=1 closed=4 matched=true partial=false\n"},
		{name: "amount mismatch", build: func(sc *script) []event {
			sc.recharge(1, "b1", 100)
			sc.at(sec)
			sc.notice(1, channel.Succeeded, "T1", 90)
			return sc.events
		}, want: "b1 first=1 closed=6 matched=false partial=false amount_mismatch[1]\n", diff: "txn T1 amount 90"},
		{name: "duplicate payment", build: func(sc *script) []event {
			sc.recharge(1, "b1", 100)
			sc.at(sec)
			sc.notice(1, channel.Succeeded, "T1", 100)
			sc.at(sec)
			sc.notice(1, channel.Succeeded, "T2", 100)
			return sc.events
		}, want: "b1 first=1 closed=9 matched=false partial=false duplicate_payment[1]\n", diff: "txn T2 amount 100"},
		{name: "ledger transfer missing", build: func(sc *script) []event {
			sc.recharge(1, "b1", 100)
			sc.at(sec)
			sc.notice(1, channel.Succeeded, "T1", 100)
			return slices.DeleteFunc(sc.events, func(e event) bool { return e.t != nil })
		}, want: "b1 first=1 closed=3 matched=false partial=false ledger[1]\n", diff: "no transfer in the ledger"},
		{name: "ledger amount differs", build: func(sc *script) []event {
			sc.recharge(1, "b1", 100)
			sc.at(sec)
			sc.notice(1, channel.Succeeded, "T1", 100)
			for _, e := range sc.events {
				if e.t != nil {
					e.t.Amount = 99
				}
			}
			return sc.events
		}, want: "b1 first=1 closed=4 matched=false partial=false ledger[1]\n", diff: "amount=100"},
		{name: "plain transfer with no window: ignored", build: func(sc *script) []event {
			sc.events = append(sc.events, event{t: &ledger.Transfer{ID: 7, BizID: "b9", Amount: 5, Ledger: 1,
				Timestamp: sc.now, State: ledger.StatePosted}, exc: -1})
			return sc.events
		}, want: ""},
		{name: "plain transfer joins an order's window", build: func(sc *script) []event {
			sc.recharge(1, "b1", 100)
			sc.at(sec)
			sc.events = append(sc.events, event{t: &ledger.Transfer{ID: 7, BizID: "b1", Amount: 5, Ledger: 1,
				Timestamp: sc.now, State: ledger.StatePosted}, exc: -1})
			sc.notice(1, channel.Succeeded, "T1", 100)
			return sc.events
		}, want: "b1 first=1 closed=5 matched=false partial=false ledger[1]\n", diff: "a transfer with no order's id"},
		{name: "pending: unknown outcome", build: func(sc *script) []event {
			sc.recharge(1, "b1", 100)
			sc.at(sec)
			sc.unknown(1)
			return sc.events
		}, want: "b1 first=1 closed=2 matched=false partial=false pending[1]\n", diff: "unknown"},
		{name: "pending resolved in the extension", build: func(sc *script) []event {
			sc.recharge(1, "b1", 100)
			sc.at(sec)
			sc.unknown(1)
			sc.at(window + sec) // past the first close: extended once
			sc.notice(1, channel.Succeeded, "T1", 100)
			return sc.events
		}, want: "b1 first=1 closed=5 matched=true partial=false\n"},
		{name: "partial view: order first seen late", build: func(sc *script) []event {
			sc.recharge(1, "b1", 100)
			sc.at(sec)
			sc.notice(1, channel.Succeeded, "T1", 100)
			return sc.events[3:] // from the notice on: the creation is before the window
		}, want: "b1 first=1 closed=1 matched=false partial=true\n"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			sc := newScript(t)
			evs := c.build(sc)
			ws, _ := run(t, sc, Config{Window: window}, evs)
			if got := summary(ws); got != c.want {
				t.Fatalf("got\n%s\nwant\n%s", got, c.want)
			}
			if c.diff != "" && !strings.Contains(fmt.Sprint(ws[0].Findings), c.diff) {
				t.Fatalf("no difference says %q: %v", c.diff, ws[0].Findings)
			}
		})
	}
}

// TestWindowCloses: an event past the window closes it first and opens a window of its own;
// events within it join it.
func TestWindowCloses(t *testing.T) {
	const window = 60 * sec
	sc := newScript(t)
	sc.recharge(1, "b1", 100)
	sc.at(window) // exactly at the deadline: the window has closed
	sc.notice(1, channel.Succeeded, "T1", 100)
	ws, _ := run(t, sc, Config{Window: window}, sc.events)
	// The first window extends (not final), and the notice at its first deadline joins it.
	if got, want := summary(ws), "b1 first=1 closed=4 matched=true partial=false\n"; got != want {
		t.Fatalf("got\n%s\nwant\n%s", got, want)
	}
	sc = newScript(t)
	sc.recharge(1, "b1", 100)
	sc.at(sec)
	sc.notice(1, channel.Succeeded, "T1", 100)
	sc.at(window)
	sc.notice(1, channel.Succeeded, "T2", 100) // a duplicate after the window: a window of its own
	ws, _ = run(t, sc, Config{Window: window}, sc.events)
	want := "b1 first=1 closed=4 matched=true partial=false\n" +
		"b1 first=5 closed=9 matched=false partial=true duplicate_payment[1]\n"
	if got := summary(ws); got != want {
		t.Fatalf("got\n%s\nwant\n%s", got, want)
	}
}

// TestConfirm: a partial window takes its three-way verdict from the store.
func TestConfirm(t *testing.T) {
	sc := newScript(t)
	sc.recharge(1, "b1", 100)
	sc.at(sec)
	sc.notice(1, channel.Succeeded, "T1", 100)
	for _, diffs := range [][]payment.Difference{nil, {{Kind: payment.DiffMissing, Order: 1, Step: 13}}} {
		ws, m := run(t, sc, Config{Window: 60 * sec}, sc.events[3:])
		w := ws[0]
		m.Confirm(&w, diffs)
		st := m.Stats()
		if len(diffs) == 0 && (!w.Matched() || st.Matched != 1) {
			t.Fatalf("store agrees: want matched, got %+v %+v", w, st)
		}
		if len(diffs) > 0 && (w.Matched() || len(w.Findings) != 1 || w.Findings[0].Kind != KindLedger ||
			st.Unmatched[KindLedger] != 1 || st.Matched != 0) {
			t.Fatalf("store disagrees: want a ledger finding, got %+v %+v", w, st)
		}
	}
}

// TestBound: beyond BizMax the oldest window is evicted as an overflow finding, counted.
func TestBound(t *testing.T) {
	sc := newScript(t)
	for i := uint64(1); i <= 5; i++ {
		sc.recharge(i, fmt.Sprint("b", i), 100)
	}
	m, err := New(sc.s, Config{Window: 60 * sec, BizMax: 3})
	if err != nil {
		t.Fatal(err)
	}
	feed(m, sc.events, nil, 1)
	ws := m.Take()
	if got, want := summary(ws), "b1 first=1 closed=1 matched=false partial=false overflow[1]\n"+
		"b2 first=2 closed=2 matched=false partial=false overflow[2]\n"; got != want {
		t.Fatalf("got\n%s\nwant\n%s", got, want)
	}
	st := m.Stats()
	if st.Overflow != 2 || st.Tracked != 3 || st.Unmatched[KindOverflow] != 2 {
		t.Fatalf("stats %+v", st)
	}
	if m.Oldest() != 3 {
		t.Fatalf("oldest open window starts at %d, want 3", m.Oldest())
	}
}

// TestSkip: events of a window a previous run closed are not joined again.
func TestSkip(t *testing.T) {
	sc := newScript(t)
	sc.recharge(1, "b1", 100)
	sc.at(sec)
	sc.notice(1, channel.Succeeded, "T1", 90)
	m, _ := New(sc.s, Config{Window: 60 * sec})
	if err := m.Skip("b1", 1, 6); err != nil {
		t.Fatal(err)
	}
	feed(m, sc.events, nil, 1)
	m.Advance(sc.now + WindowMax)
	if ws := m.Take(); len(ws) != 0 || m.Stats().Skipped != 6 {
		t.Fatalf("windows %v, stats %+v", summary(ws), m.Stats())
	}
}

func TestConfig(t *testing.T) {
	for _, c := range []Config{{Window: 1}, {Window: WindowMax + 1}, {BizMax: -1}, {BizMax: BizMaxLimit + 1}} {
		if _, err := New(newScript(t).s, c); err == nil {
			t.Fatalf("%+v: no error", c)
		}
	}
	if _, err := New(nil, Config{}); err == nil {
		t.Fatal("no setup: no error")
	}
}
