package payment

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/ledgercore/ledger/channel"
	"github.com/ledgercore/ledger/ledger"
)

// ledgerOf is the miniLedger's transfers as the ledger stores them: with their states.
func ledgerOf(l *miniLedger) []ledger.Transfer {
	var out []ledger.Transfer
	for _, id := range slices.Sorted(maps.Keys(l.transfers)) {
		t := l.transfers[id]
		switch {
		case l.results[id] != ledger.ResultOK:
			t.State, t.Result = ledger.StateFailed, l.results[id]
		case t.Flags&ledger.TransferPending != 0:
			t.State = ledger.StatePending
			for pid, p := range l.transfers {
				if p.PendingID == id && l.results[pid] == ledger.ResultOK {
					t.State = ledger.StatePendingVoided
					if p.Flags&ledger.TransferPostPending != 0 {
						t.State = ledger.StatePendingPosted
					}
				}
			}
		default:
			t.State = ledger.StatePosted
		}
		out = append(out, t)
	}
	return out
}

// reconWorld is one biz id's orders, run to their end through the miniLedger and a channel
// that answers by order number.
type reconWorld struct {
	*world
	led     *miniLedger
	answers map[string]channel.Result // by order number; absent: the call is unanswered
}

func (w *reconWorld) run(t *testing.T, id uint64, e Effects) {
	t.Helper()
	for n := 0; len(e.Transfers) > 0 || len(e.Calls) > 0; n++ {
		if n > 50 {
			t.Fatalf("order %d does not settle", id)
		}
		o := w.orders[id]
		var next Effects
		if len(e.Transfers) > 0 {
			next.add(o.OnTransfers(w.s, e.Transfers, w.led.applyAll(e.Transfers), w.now))
		}
		for _, c := range e.Calls {
			r, ok := w.answers[c.Request.OrderNo]
			if !ok {
				next.add(o.OnChannel(w.s, c, Unanswered, channel.Result{}, w.now))
				continue
			}
			next.add(o.OnChannel(w.s, c, Answered, r, w.now))
		}
		if next.Release {
			w.orders[o.Original].Release(o, w.now)
		}
		e = next
	}
}

func (w *reconWorld) create(t *testing.T, id uint64, r *Request) *Order {
	t.Helper()
	var orig *Order
	if r.Original != 0 {
		orig = w.orders[r.Original]
	}
	o, res := New(w.s, r, id, w.now, func(id uint64) (ledger.Account, bool) { a, ok := w.accounts[id]; return a, ok }, orig)
	if res != ResultOK {
		t.Fatalf("order %d: %v", id, res)
	}
	w.orders[id] = o
	w.run(t, id, o.Begin(w.s, w.now))
	return o
}

// reconScene is one biz id with an order of each kind, run to its end:
//
//	1 pay: coupon 30, balance 20, card 50 (txn T1): succeeded
//	2 refund of 60 of order 1 (card 50, balance 10; txn T2): succeeded
//	3 withdraw of 40, declined: failed, hold voided
//	4 recharge of 100, the channel collected 101 (txn T4): failed, amount_mismatch in suspense
//	5 transfer of 7: succeeded
//	6 withdraw of 5, the channel does not answer: in flight, its hold pending
func reconScene(t *testing.T) *reconWorld {
	w := &reconWorld{world: newWorld(t), led: newMiniLedger(), answers: map[string]channel.Result{
		"P1": {Status: channel.Succeeded, Txn: "T1", Amount: 50},
		"P2": {Status: channel.Succeeded, Txn: "T2", Amount: 50},
		"P3": {Status: channel.Failed, Txn: "T3", Reason: "declined"},
		"P4": {Status: channel.Succeeded, Txn: "T4", Amount: 101},
	}}
	for id, code := range map[uint64]uint32{1: 2001, 2: 2001, 10: 2002, 11: 2004} {
		w.accounts[id] = ledger.Account{ID: id, Ledger: 1, Code: code}
	}
	const biz = "B1"
	w.create(t, 1, &Request{Key: "k1", BizID: biz, Form: Pay, Ledger: 1, Amount: 100, From: 1, To: 10, Channel: "bank",
		Instruments: []Instrument{{Kind: Coupon, Amount: 30, Account: 11}, {Kind: Balance, Amount: 20}, {Kind: Card, Amount: 50}}})
	w.create(t, 2, &Request{Key: "k2", BizID: biz, Form: Refund, Amount: 60, Original: 1})
	w.create(t, 3, &Request{Key: "k3", BizID: biz, Form: Withdraw, Ledger: 1, Amount: 40, From: 1, Channel: "bank"})
	w.create(t, 4, &Request{Key: "k4", BizID: biz, Form: Recharge, Ledger: 1, Amount: 100, To: 2, Channel: "bank"})
	w.create(t, 5, &Request{Key: "k5", BizID: biz, Form: Transfer, Ledger: 1, Amount: 7, From: 1, To: 2})
	w.create(t, 6, &Request{Key: "k6", BizID: biz, Form: Withdraw, Ledger: 1, Amount: 5, From: 2, Channel: "bank"})
	want := map[uint64]State{1: Succeeded, 2: Succeeded, 3: Failed, 4: Failed, 5: Succeeded, 6: Unknown}
	for id, s := range want {
		if o := w.orders[id]; o.State != s {
			t.Fatalf("scene: order %d is %v (%v), want %v", id, o.State, o.Result, s)
		}
	}
	return w
}

func cloneOrder(o *Order) *Order {
	c := *o
	c.Instruments = slices.Clone(o.Instruments)
	c.Exceptions = slices.Clone(o.Exceptions)
	return &c
}

func TestReconcile(t *testing.T) {
	type scene struct {
		setup     *Setup
		orders    map[uint64]*Order
		transfers map[uint64]*ledger.Transfer
	}
	tid := TransferID
	cases := []struct {
		name   string
		tamper func(s *scene)
		want   []string // kind order step
	}{
		{name: "clean", tamper: func(*scene) {}},
		{name: "a transfer the ledger refused is no difference", tamper: func(s *scene) {
			t := ledger.Transfer{ID: tid(3, stepMain), Ledger: 1, Amount: 40, BizID: "B1", State: ledger.StateFailed,
				Result: ledger.ResultExceedsCredits}
			s.transfers[t.ID] = &t
		}},
		{name: "missing main posting", tamper: func(s *scene) { delete(s.transfers, tid(1, stepMain)) },
			want: []string{"missing 1 13"}},
		{name: "missing hold: the order's post of it is still there", tamper: func(s *scene) { delete(s.transfers, tid(1, stepHold)) },
			want: []string{"missing 1 1"}},
		{name: "post of another amount", tamper: func(s *scene) { s.transfers[tid(1, stepPost)].Amount = 29 },
			want: []string{"amount 1 0", "fields 1 5"}},
		{name: "other code and accounts", tamper: func(s *scene) {
			t := s.transfers[tid(5, stepHold)]
			t.Code, t.CreditAccountID = 999, 1
		}, want: []string{"fields 5 1"}},
		{name: "post of another pending id and flags", tamper: func(s *scene) {
			t := s.transfers[tid(2, stepPost+2)]
			t.PendingID, t.Flags = tid(2, stepHold+1), ledger.TransferVoidPending
		}, want: []string{"fields 2 7"}},
		{name: "a transfer of the biz id that is no order's", tamper: func(s *scene) {
			t := ledger.Transfer{ID: 12345, DebitAccountID: 1, CreditAccountID: 2, Amount: 9, Ledger: 1, Code: 1, BizID: "B1",
				State: ledger.StatePosted}
			s.transfers[t.ID] = &t
		}, want: []string{"unmatched 0 0"}},
		{name: "a transfer of an order not under the biz id", tamper: func(s *scene) {
			t := ledger.Transfer{ID: tid(99, stepHold), Amount: 9, Ledger: 1, BizID: "B1", State: ledger.StatePosted}
			s.transfers[t.ID] = &t
		}, want: []string{"unmatched 99 1"}},
		{name: "a step the order never made durable", tamper: func(s *scene) {
			o := s.orders[1]
			t := o.transfer(s.setup, stepVoid)
			t.State = ledger.StatePosted
			s.transfers[t.ID] = &t
		}, want: []string{"unmatched 1 9"}},
		{name: "a step the order does not make", tamper: func(s *scene) {
			t := ledger.Transfer{ID: tid(5, stepMain), Amount: 7, Ledger: 1, BizID: "B1", State: ledger.StatePosted}
			s.transfers[t.ID] = &t
		}, want: []string{"unmatched 5 13"}},
		{name: "an in-flight order's step not yet durable on it", tamper: func(s *scene) {
			o := s.orders[6]
			o.Done &^= 1 << stepHold
		}, want: nil},
		{name: "an in-flight order's step not durable on it, and not what it builds", tamper: func(s *scene) {
			s.orders[6].Done &^= 1 << stepHold
			s.transfers[tid(6, stepHold)].Amount = 6
		}, want: []string{"unmatched 6 1"}},
		{name: "a succeeded order's hold still pending", tamper: func(s *scene) {
			s.transfers[tid(1, stepHold+1)].State = ledger.StatePending
		}, want: []string{"state 1 2"}},
		{name: "a failed order's hold posted", tamper: func(s *scene) {
			s.transfers[tid(3, stepHold)].State = ledger.StatePendingPosted
		}, want: []string{"state 3 1"}},
		{name: "an in-flight order's hold voided is on its way", tamper: func(s *scene) {
			s.transfers[tid(6, stepHold)].State = ledger.StatePendingVoided
		}, want: nil},
		{name: "a posting the ledger failed", tamper: func(s *scene) {
			s.transfers[tid(5, stepHold)].State = ledger.StateFailed
		}, want: []string{"state 5 1"}},
		{name: "a succeeded order without its main posting", tamper: func(s *scene) {
			s.orders[1].Done &^= 1 << stepMain
		}, want: []string{"state 1 13", "unmatched 1 13"}},
		{name: "a failed order that posted", tamper: func(s *scene) {
			o := s.orders[3]
			o.Done |= 1 << stepPost
			t := o.transfer(s.setup, stepPost)
			t.State = ledger.StatePosted
			s.transfers[t.ID] = &t
		}, want: []string{"state 3 5"}},
		{name: "a failed order's hold not voided", tamper: func(s *scene) {
			s.orders[3].Done &^= 1 << stepVoid
			delete(s.transfers, tid(3, stepVoid))
		}, want: []string{"state 3 9"}},
		{name: "a succeeded payment without a channel transaction", tamper: func(s *scene) { s.orders[1].Txn = "" },
			want: []string{"channel 1 0"}},
		{name: "a succeeded payment paid another amount with no record", tamper: func(s *scene) { s.orders[1].Paid = 49 },
			want: []string{"channel 1 0"}},
		{name: "a mismatch without its record", tamper: func(s *scene) { s.orders[4].Exceptions[0].Txn = "T9" },
			want: []string{"channel 4 0"}},
		{name: "suspense booked with another amount", tamper: func(s *scene) { s.transfers[tid(4, stepExceptions)].Amount = 100 },
			want: []string{"fields 4 16"}},
		{name: "an exception open and its suspense posting not durable", tamper: func(s *scene) {
			s.orders[4].Done &^= 1 << stepExceptions
			delete(s.transfers, tid(4, stepExceptions))
		}, want: []string{"exception 4 16"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			w := reconScene(t)
			s := scene{setup: w.s, orders: map[uint64]*Order{}, transfers: map[uint64]*ledger.Transfer{}}
			for id, o := range w.orders {
				s.orders[id] = cloneOrder(o)
			}
			for _, tr := range ledgerOf(w.led) {
				s.transfers[tr.ID] = &tr
			}
			c.tamper(&s)
			var orders []*Order
			for _, id := range slices.Sorted(maps.Keys(s.orders)) {
				orders = append(orders, s.orders[id])
			}
			var transfers []ledger.Transfer
			for _, id := range slices.Sorted(maps.Keys(s.transfers)) {
				transfers = append(transfers, *s.transfers[id])
			}
			ds := Reconcile(w.s, orders, transfers)
			var got, text []string
			for _, d := range ds {
				got = append(got, fmt.Sprintf("%s %d %d", d.Kind, d.Order, d.Step))
				text = append(text, d.String())
			}
			if !slices.Equal(got, c.want) {
				t.Fatalf("got %q, want %q:\n%s", got, c.want, strings.Join(text, "\n"))
			}
			for _, l := range text {
				t.Log(l)
			}
			if again := Reconcile(w.s, orders, transfers); !slices.Equal(again, ds) {
				t.Fatalf("not deterministic: %v then %v", ds, again)
			}
		})
	}
}
