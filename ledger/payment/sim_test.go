package payment

import (
	"flag"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/ledgercore/ledger/channel"
	"github.com/ledgercore/ledger/ledger"
)

// miniLedger is a model of the ledger's answers to an order's transfers: idempotent by id,
// holds, posts and voids, and users that cannot overdraw.
type miniLedger struct {
	transfers map[uint64]ledger.Transfer
	results   map[uint64]ledger.TransferResult
	posted    map[uint64]int64 // credits minus debits
	pending   map[uint64]int64 // debits held
	limited   map[uint64]bool
}

func newMiniLedger() *miniLedger {
	return &miniLedger{transfers: map[uint64]ledger.Transfer{}, results: map[uint64]ledger.TransferResult{},
		posted: map[uint64]int64{}, pending: map[uint64]int64{}, limited: map[uint64]bool{}}
}

func (l *miniLedger) apply(t ledger.Transfer) ledger.TransferResult {
	if r, ok := l.results[t.ID]; ok {
		if l.transfers[t.ID] != t {
			return ledger.ResultExistsWithDifferentFields
		}
		if r == ledger.ResultOK {
			return ledger.ResultExists
		}
		return r
	}
	r := l.run(t)
	l.transfers[t.ID], l.results[t.ID] = t, r
	return r
}

// applyAll applies transfers in order and answers each.
func (l *miniLedger) applyAll(ts []ledger.Transfer) []ledger.TransferResult {
	rs := make([]ledger.TransferResult, len(ts))
	for k, t := range ts {
		rs[k] = l.apply(t)
	}
	return rs
}

func (l *miniLedger) run(t ledger.Transfer) ledger.TransferResult {
	amount := int64(t.Amount)
	switch {
	case t.Flags&(ledger.TransferPostPending|ledger.TransferVoidPending) != 0:
		p, ok := l.transfers[t.PendingID]
		if !ok || l.results[t.PendingID] != ledger.ResultOK {
			return ledger.ResultPendingTransferNotFound
		}
		for id, x := range l.transfers {
			if x.PendingID == t.PendingID && l.results[id] == ledger.ResultOK {
				return ledger.ResultPendingTransferAlreadyPosted
			}
		}
		l.pending[p.DebitAccountID] -= int64(p.Amount)
		if t.Flags&ledger.TransferPostPending != 0 {
			l.posted[p.DebitAccountID] -= int64(p.Amount)
			l.posted[p.CreditAccountID] += int64(p.Amount)
		}
		return ledger.ResultOK
	case l.limited[t.DebitAccountID] && l.posted[t.DebitAccountID]-l.pending[t.DebitAccountID] < amount:
		return ledger.ResultExceedsCredits
	case t.Flags&ledger.TransferPending != 0:
		l.pending[t.DebitAccountID] += amount
	default:
		l.posted[t.DebitAccountID] -= amount
		l.posted[t.CreditAccountID] += amount
	}
	return ledger.ResultOK
}

// miniChannel is a channel that decides each request once, by seed, and may collect twice
// or another amount.
type miniChannel struct {
	rnd     *rand.Rand
	decided map[string]channel.Result
	sent    map[string]int // sends (not queries) of each order number
	txns    int
	holds   int64 // what the channel holds for the platform: collected minus paid out
	dir     map[string]int
	dups    map[string]int64
}

func (c *miniChannel) decide(r channel.Request) channel.Result {
	if res, ok := c.decided[r.OrderNo]; ok {
		return res
	}
	c.txns++
	res := channel.Result{Status: channel.Succeeded, Txn: fmt.Sprintf("T%d", c.txns), Amount: r.Amount}
	switch x := c.rnd.Float64(); {
	case x < 0.2:
		res.Status, res.Amount = channel.Failed, 0
	case x < 0.25 && r.Op == channel.Pay:
		res.Amount = r.Amount + 1
	}
	if res.Status == channel.Succeeded {
		if r.Op == channel.Pay {
			c.dir[r.OrderNo] = 1
			c.holds += int64(res.Amount)
		} else {
			c.holds -= int64(res.Amount)
		}
	}
	c.decided[r.OrderNo] = res
	return res
}

// TestRandomized drives many orders through the pure machines with a seeded model of the
// ledger and of a channel that times out, answers late, calls back twice, collects twice or
// another amount; orders restart at random points. After everything settles: every order is
// final and idle, nothing was paid out twice, money is conserved, refunds never exceed what
// was captured, and suspense holds exactly what open exceptions hold.
// payment.seeds runs more seeds than CI does: go test ./ledger/payment -run TestRandomized -payment.seeds 5000
var seeds = flag.Uint64("payment.seeds", 40, "seeds of TestRandomized (from 1)")

func TestRandomized(t *testing.T) {
	total := map[string]int{}
	for seed := uint64(1); seed <= *seeds; seed++ {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			for k, n := range randomized(t, seed) {
				total[k] += n
			}
		})
	}
	// The seeds together reach every outcome the machines have.
	for _, k := range []string{"pay succeeded", "pay failed", "withdraw succeeded", "withdraw failed", "refund succeeded",
		"refund failed", "recharge succeeded", "recharge failed", "transfer succeeded", "transfer failed",
		"duplicate_payment resolved", "duplicate_payment open", "amount_mismatch open", "amount_mismatch resolved"} {
		if total[k] == 0 {
			t.Errorf("no seed reached %q: %v", k, total)
		}
	}
}

func randomized(t *testing.T, seed uint64) map[string]int {
	rnd := rand.New(rand.NewPCG(seed, 7))
	w := newWorld(t)
	led := newMiniLedger()
	ch := &miniChannel{rnd: rand.New(rand.NewPCG(seed, 8)), decided: map[string]channel.Result{},
		sent: map[string]int{}, dir: map[string]int{}, dups: map[string]int64{}}
	const users, merchant, coupon = 3, 10, 11
	for u := uint64(1); u <= users; u++ {
		w.accounts[u] = ledger.Account{ID: u, Ledger: 1, Code: 2001}
		led.limited[u] = true
	}
	w.accounts[merchant] = ledger.Account{ID: merchant, Ledger: 1, Code: 2002}
	w.accounts[coupon] = ledger.Account{ID: coupon, Ledger: 1, Code: 2004}
	led.limited[merchant] = true
	lookup := func(id uint64) (ledger.Account, bool) { a, ok := w.accounts[id]; return a, ok }

	type pendingWork struct {
		id uint64
		ts []ledger.Transfer
		cs []Call
	}
	var queue []pendingWork
	var notices []channel.Notice
	push := func(id uint64, e Effects) {
		if e.Release {
			o := w.orders[id]
			w.orders[o.Original].Release(o, w.now)
		}
		if len(e.Transfers) > 0 || len(e.Calls) > 0 {
			queue = append(queue, pendingWork{id: id, ts: e.Transfers, cs: e.Calls})
		}
	}
	var nextID uint64
	create := func(r *Request) {
		nextID++
		var orig *Order
		if r.Form == Refund {
			orig = w.orders[r.Original]
		}
		o, res := New(w.s, r, nextID, w.now, lookup, orig)
		if res != ResultOK {
			return
		}
		w.orders[o.ID] = o
		push(o.ID, o.Begin(w.s, w.now))
	}
	step := func() {
		w.now += uint64(rnd.IntN(3000)) * 1e6
		switch x := rnd.IntN(100); {
		case x < 8: // a new order
			u := uint64(1 + rnd.IntN(users))
			amount := uint64(1 + rnd.IntN(100))
			key := fmt.Sprint("k", nextID+1)
			switch rnd.IntN(5) {
			case 0:
				create(&Request{Key: key, Form: Recharge, Ledger: 1, Amount: amount * 3, To: u, Channel: "bank"})
			case 1:
				create(&Request{Key: key, Form: Withdraw, Ledger: 1, Amount: amount, From: u, Channel: "bank"})
			case 2:
				create(&Request{Key: key, Form: Transfer, Ledger: 1, Amount: amount, From: u, To: 1 + u%users})
			case 3:
				create(&Request{Key: key, Form: Pay, Ledger: 1, Amount: amount + 2, From: u, To: merchant, Channel: "bank",
					Instruments: []Instrument{{Kind: Coupon, Amount: 1, Account: coupon}, {Kind: Balance, Amount: 1},
						{Kind: Card, Amount: amount}}})
			case 4:
				var pays []uint64
				for _, id := range slices.Sorted(maps.Keys(w.orders)) {
					if o := w.orders[id]; o.Form == Pay && o.State == Succeeded {
						pays = append(pays, id)
					}
				}
				if len(pays) > 0 {
					create(&Request{Key: key, Form: Refund, Amount: amount / 2, Original: pays[rnd.IntN(len(pays))]})
				}
			}
		case x < 40 && len(queue) > 0: // the ledger or the channel answers some work
			i := rnd.IntN(len(queue))
			p := queue[i]
			queue = append(queue[:i], queue[i+1:]...)
			o := w.orders[p.id]
			if len(p.ts) > 0 {
				push(p.id, o.OnTransfers(w.s, p.ts, led.applyAll(p.ts), w.now))
			}
			for _, c := range p.cs {
				y := rnd.IntN(10)
				if y < 1 && !c.Query { // not sent: the circuit is open
					push(p.id, o.OnChannel(w.s, c, Rejected, channel.Result{}, w.now))
					continue
				}
				if !c.Query {
					ch.sent[c.Request.OrderNo]++
				}
				switch {
				case y < 3: // a timeout; the channel may or may not have it
					if rnd.IntN(2) == 0 && !c.Query {
						ch.decide(c.Request)
					}
					push(p.id, o.OnChannel(w.s, c, Unanswered, channel.Result{}, w.now))
					continue
				}
				res, known := ch.decided[c.Request.OrderNo]
				if !known && c.Query {
					res = channel.Result{Status: channel.NotFound}
				} else if !known {
					res = ch.decide(c.Request)
				}
				if rnd.IntN(2) == 0 && res.Status != channel.NotFound { // answer processing, call back later
					n := channel.Notice{Op: c.Request.Op, OrderNo: c.Request.OrderNo, Txn: res.Txn, Status: res.Status,
						Amount: res.Amount}
					notices = append(notices, n)
					if rnd.IntN(5) == 0 {
						notices = append(notices, n)
					}
					if res.Status == channel.Succeeded && c.Request.Op == channel.Pay && rnd.IntN(10) == 0 {
						ch.txns++
						n.Txn = fmt.Sprintf("T%d", ch.txns)
						ch.holds += int64(n.Amount)
						ch.dups[c.Request.OrderNo] += int64(n.Amount)
						notices = append(notices, n) // the payer paid twice
					}
					res = channel.Result{Status: channel.Processing}
				}
				push(p.id, o.OnChannel(w.s, c, Answered, res, w.now))
			}
		case x < 55 && len(notices) > 0: // a callback
			i := rnd.IntN(len(notices))
			n := notices[i]
			notices = append(notices[:i], notices[i+1:]...)
			id, _, _ := ParseOrderNo(n.OrderNo)
			e, res := w.orders[id].OnNotice(w.s, &n, w.now)
			if res != ResultOK {
				t.Fatalf("a notice the channel sent was refused: %+v: %v", n, res)
			}
			push(id, e)
		case x < 60: // ticks
			for _, id := range slices.Sorted(maps.Keys(w.orders)) {
				push(id, w.orders[id].Tick(w.s, w.now))
			}
		case x < 61: // a restart: whatever was in flight is lost and resumed (callbacks are
			// posted again by the channel until answered, so they are not lost)
			queue = nil
			for _, id := range slices.Sorted(maps.Keys(w.orders)) {
				w.orders[id].inflight = 0
				push(id, w.orders[id].Resume(w.s, w.now))
			}
		case x < 62: // an operator refunds an open mismatch
			for _, id := range slices.Sorted(maps.Keys(w.orders)) {
				o := w.orders[id]
				for k := range o.Exceptions {
					if o.Exceptions[k].Step == ExcOpen && o.Exceptions[k].Kind == AmountMismatch {
						e, _ := o.Resolve(w.s, k, ResolveRefund, "", w.now)
						push(o.ID, e)
					}
				}
			}
		}
	}
	for i := range 3000 {
		step()
		if i%250 == 0 {
			// Orders in flight reconcile with the ledger too: nothing they made is unmatched.
			reconcileAll(t, w, led)
		}
	}
	// Settle: the channel answers everything, no more faults.
	for round := 0; round < 200; round++ {
		w.now += uint64(QueryBackoffMax)
		for len(queue) > 0 || len(notices) > 0 {
			if len(notices) > 0 {
				n := notices[0]
				notices = notices[1:]
				id, _, _ := ParseOrderNo(n.OrderNo)
				e, _ := w.orders[id].OnNotice(w.s, &n, w.now)
				push(id, e)
				continue
			}
			p := queue[0]
			queue = queue[1:]
			o := w.orders[p.id]
			if len(p.ts) > 0 {
				push(p.id, o.OnTransfers(w.s, p.ts, led.applyAll(p.ts), w.now))
			}
			for _, c := range p.cs {
				if !c.Query {
					ch.sent[c.Request.OrderNo]++
				}
				res, known := ch.decided[c.Request.OrderNo]
				if !known {
					if c.Query {
						res = channel.Result{Status: channel.NotFound}
					} else {
						res = ch.decide(c.Request)
					}
				}
				push(p.id, o.OnChannel(w.s, c, Answered, res, w.now))
			}
		}
		for _, id := range slices.Sorted(maps.Keys(w.orders)) {
			push(id, w.orders[id].Tick(w.s, w.now))
		}
	}
	checkSettled(t, w, led, ch)
	counts := map[string]int{}
	for _, o := range w.orders {
		counts[o.Form.String()+" "+o.State.String()]++
		for _, x := range o.Exceptions {
			counts[x.Kind.String()+" "+x.Step.String()]++
		}
	}
	t.Logf("seed %d: %v", seed, counts)
	return counts
}

// reconcileAll checks that every order agrees with the ledger's transfers (Reconcile).
func reconcileAll(t *testing.T, w *world, led *miniLedger) {
	t.Helper()
	var orders []*Order
	for _, id := range slices.Sorted(maps.Keys(w.orders)) {
		orders = append(orders, w.orders[id])
	}
	if ds := Reconcile(w.s, orders, ledgerOf(led)); len(ds) > 0 {
		t.Fatalf("%d differences; the first: %v", len(ds), ds[0])
	}
}

func checkSettled(t *testing.T, w *world, led *miniLedger, ch *miniChannel) {
	reconcileAll(t, w, led)
	var suspense int64
	for _, o := range w.orders {
		if !o.State.Final() || o.Active() {
			t.Fatalf("order %d %v is %v at stage %v, active %v: %+v", o.ID, o.Form, o.State, o.Stage, o.Active(), o.Exceptions)
		}
		for _, x := range o.Exceptions {
			if x.Booked() && x.Step != ExcResolved {
				suspense += int64(x.Amount)
			}
		}
		if o.Form == Pay && o.Refunded > o.Amount {
			t.Fatalf("order %d refunded %d of %d", o.ID, o.Refunded, o.Amount)
		}
	}
	for no, n := range ch.sent {
		id, k, _ := ParseOrderNo(no)
		if o := w.orders[id]; (o.op() != channel.Pay || k >= 0) && n > 1 {
			t.Fatalf("%s (%v) was sent %d times", no, o.Form, n)
		}
	}
	var sum int64
	for _, v := range led.posted {
		sum += v
	}
	for id, v := range led.pending {
		if v != 0 {
			t.Fatalf("account %d still holds %d", id, v)
		}
	}
	if sum != 0 {
		t.Fatalf("money is not conserved: %d", sum)
	}
	if got := led.posted[w.s.PlatformAccount(1, 2005, "")]; got != suspense {
		t.Fatalf("suspense holds %d, open exceptions %d", got, suspense)
	}
	if got := led.posted[w.s.PlatformAccount(1, 2003, "")]; got != 0 {
		t.Fatalf("withdraw in transit holds %d", got)
	}
	// The channel receivable is what the channel holds for the platform: every collection
	// that succeeded minus every payout and refund. The books reconcile with the channel.
	if got := -led.posted[w.s.PlatformAccount(1, 1122, "bank")]; got != ch.holds {
		debugReceivable(t, w, led, ch)
		t.Fatalf("the channel receivable is %d, the channel holds %d", got, ch.holds)
	}
	for id, v := range led.posted {
		if id < platformAccountBit && v < 0 && (id <= 3 || id == 10) {
			t.Fatalf("account %d overdrawn: %d", id, v)
		}
	}
}

func debugReceivable(t *testing.T, w *world, led *miniLedger, ch *miniChannel) {
	recv := w.s.PlatformAccount(1, 1122, "bank")
	book := map[uint64]int64{}
	for id, tr := range led.transfers {
		if led.results[id] != ledger.ResultOK {
			continue
		}
		oid, _, _ := StepOf(id)
		amt := int64(tr.Amount)
		if tr.Flags&(ledger.TransferPostPending|ledger.TransferVoidPending) != 0 {
			p := led.transfers[tr.PendingID]
			if tr.Flags&ledger.TransferVoidPending != 0 {
				continue
			}
			tr, amt = p, int64(p.Amount)
		} else if tr.Flags&ledger.TransferPending != 0 {
			continue
		}
		if tr.DebitAccountID == recv {
			book[oid] += amt
		}
		if tr.CreditAccountID == recv {
			book[oid] -= amt
		}
	}
	chs := map[uint64]int64{}
	for no, res := range ch.decided {
		id, _, _ := ParseOrderNo(no)
		if res.Status == channel.Succeeded {
			if res.Amount != 0 && (ch.dir[no] > 0) {
				chs[id] += int64(res.Amount)
			} else {
				chs[id] -= int64(res.Amount)
			}
		}
	}
	for no, a := range ch.dups {
		id, _, _ := ParseOrderNo(no)
		chs[id] += a
	}
	for id, o := range w.orders {
		if book[id] != chs[id] {
			t.Logf("order %d %v %v %v outcome %v txn %s paid %d: book %d channel %d exceptions %+v", id, o.Form, o.State, o.Result, o.Outcome, o.Txn, o.Paid, book[id], chs[id], o.Exceptions)
		}
	}
}
