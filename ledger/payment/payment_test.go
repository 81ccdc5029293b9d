package payment

import (
	"fmt"
	"math/bits"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/cockroachdb/datadriven"

	"github.com/ledgercore/ledger/channel"
	"github.com/ledgercore/ledger/ledger"
	"github.com/ledgercore/ledger/ledger/rules"
)

// world is a test's orders, accounts and the effects each order still waits for.
type world struct {
	s        *Setup
	now      uint64
	accounts map[uint64]ledger.Account
	orders   map[uint64]*Order
	// submitted transfers and calls of each order not yet answered, in order.
	transfers map[uint64][]ledger.Transfer
	calls     map[uint64][]Call
	stmt      *stmtBooks // the statement imports of the script (statement_test.go)
}

func newWorld(t *testing.T) *world {
	s, err := NewSetup(rules.Default(), DefaultCodes, []string{"bank", "wallet"})
	if err != nil {
		t.Fatal(err)
	}
	return &world{s: s, accounts: map[uint64]ledger.Account{}, orders: map[uint64]*Order{},
		transfers: map[uint64][]ledger.Transfer{}, calls: map[uint64][]Call{}}
}

// TestScripts runs the scripts of testdata/: each form, every replay point, the anomalies.
func TestScripts(t *testing.T) {
	datadriven.Walk(t, "testdata", func(t *testing.T, path string) {
		w := newWorld(t)
		datadriven.RunTest(t, path, func(t *testing.T, d *datadriven.TestData) string {
			return w.run(t, d)
		})
	})
}

func arg(d *datadriven.TestData, key string) string {
	for _, a := range d.CmdArgs {
		if a.Key == key {
			return strings.Join(a.Vals, ",")
		}
	}
	return ""
}

func num(t *testing.T, d *datadriven.TestData, key string) uint64 {
	s := arg(d, key)
	if s == "" {
		return 0
	}
	v, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		t.Fatalf("%s: %s=%q: %v", d.Pos, key, s, err)
	}
	return v
}

func (w *world) run(t *testing.T, d *datadriven.TestData) string {
	if v := arg(d, "at"); v != "" {
		w.now = num(t, d, "at") * 1e9
	}
	id := num(t, d, "id")
	o := w.orders[id]
	if d.Cmd == "statement" || d.Cmd == "resolve-statement" {
		return w.statement(t, d)
	}
	if d.Cmd != "account" && d.Cmd != "new" && o == nil {
		t.Fatalf("%s: no order %d", d.Pos, id)
	}
	var e Effects
	var out strings.Builder
	switch d.Cmd {
	case "account":
		flags := map[string]ledger.AccountFlags{"": 0, "closed": ledger.AccountClosed,
			"limits_credits": ledger.AccountCreditsMustNotExceedDebits}[arg(d, "flags")]
		w.accounts[id] = ledger.Account{ID: id, Ledger: uint32(max(num(t, d, "ledger"), 1)), Code: uint32(num(t, d, "code")),
			Flags: flags}
		return ""
	case "new":
		r := w.request(t, d)
		var orig *Order
		if r.Original != 0 {
			orig = w.orders[r.Original]
		}
		if o := w.find(r.Key); o != nil {
			if o.Same(r) {
				return fmt.Sprintf("exists: order %d\n", o.ID)
			}
			return "key_reused\n"
		}
		before := ""
		if orig != nil {
			before = fmt.Sprint(*orig)
		}
		var res Result
		o, res = New(w.s, r, id, w.now, func(id uint64) (ledger.Account, bool) { a, ok := w.accounts[id]; return a, ok }, orig)
		if res != ResultOK {
			if orig != nil && fmt.Sprint(*orig) != before {
				t.Fatalf("%s: a refused refund changed its original", d.Pos)
			}
			return res.String() + "\n"
		}
		w.orders[id] = o
		e = o.Begin(w.s, w.now)
	case "transfers":
		ts := w.transfers[id]
		if len(ts) == 0 {
			t.Fatalf("%s: order %d submitted no transfers", d.Pos, id)
		}
		rs := make([]ledger.TransferResult, len(ts))
		names := strings.Split(arg(d, "results"), ",")
		for i := range rs {
			name := names[min(i, len(names)-1)]
			rs[i] = ledgerResult(t, name)
		}
		w.transfers[id] = nil
		e = o.OnTransfers(w.s, ts, rs, w.now)
	case "answer":
		calls := w.calls[id]
		if len(calls) == 0 {
			t.Fatalf("%s: order %d made no call", d.Pos, id)
		}
		c := calls[0]
		w.calls[id] = calls[1:]
		a, r := w.answer(t, d)
		e = o.OnChannel(w.s, c, a, r, w.now)
	case "notice":
		n := channel.Notice{Op: op(t, arg(d, "op")), OrderNo: arg(d, "no"), Txn: arg(d, "txn"),
			Status: status(t, arg(d, "status")), Amount: num(t, d, "amount")}
		if n.OrderNo == "" {
			n.OrderNo = OrderNo(id)
		}
		v := o.Version
		var res Result
		e, res = o.OnNotice(w.s, &n, w.now)
		if res != ResultOK && o.Version != v {
			t.Fatalf("%s: a refused notice changed the order", d.Pos)
		}
		fmt.Fprintf(&out, "notice: %v\n", res)
	case "tick":
		e = o.Tick(w.s, w.now)
	case "restart":
		// What is durable is the order without what was in flight: submit again.
		for _, x := range w.orders {
			x.inflight = 0
		}
		w.transfers[id], w.calls[id] = nil, nil
		e = o.Resume(w.s, w.now)
	case "resolve":
		how := map[string]Resolution{"refund": ResolveRefund, "close": ResolveClose}[arg(d, "how")]
		var res Result
		e, res = o.Resolve(w.s, int(num(t, d, "k")), how, arg(d, "note"), w.now)
		fmt.Fprintf(&out, "resolve: %v\n", res)
	case "show":
	default:
		t.Fatalf("%s: unknown command %q", d.Pos, d.Cmd)
	}
	if e.Release {
		orig := w.orders[o.Original]
		orig.Release(o, w.now)
		fmt.Fprintf(&out, "released %d on order %d (refunded %d)\n", o.Amount, orig.ID, orig.Refunded)
	}
	w.transfers[id] = append(w.transfers[id], e.Transfers...)
	w.calls[id] = append(w.calls[id], e.Calls...)
	w.show(&out, o, e)
	w.check(t, d)
	return out.String()
}

func (w *world) find(key string) *Order {
	for _, o := range w.orders {
		if o.Key == key {
			return o
		}
	}
	return nil
}

func (w *world) request(t *testing.T, d *datadriven.TestData) *Request {
	forms := map[string]Form{"recharge": Recharge, "withdraw": Withdraw, "refund": Refund, "transfer": Transfer, "pay": Pay}
	r := &Request{Key: arg(d, "key"), BizID: arg(d, "biz"), Form: forms[arg(d, "form")], Ledger: uint32(num(t, d, "ledger")),
		Amount: num(t, d, "amount"), From: num(t, d, "from"), To: num(t, d, "to"), Channel: arg(d, "channel"),
		Original: num(t, d, "original")}
	if r.Ledger == 0 && arg(d, "ledger") == "" {
		r.Ledger = 1
	}
	for _, a := range d.CmdArgs {
		if a.Key != "instruments" {
			continue
		}
		for _, v := range a.Vals {
			f := strings.Split(v, ":")
			kinds := map[string]Kind{"coupon": Coupon, "balance": Balance, "card": Card, "bogus": 9}
			in := Instrument{Kind: kinds[f[0]]}
			in.Amount, _ = strconv.ParseUint(f[1], 10, 64)
			if len(f) > 2 {
				in.Account, _ = strconv.ParseUint(f[2], 10, 64)
			}
			r.Instruments = append(r.Instruments, in)
		}
	}
	return r
}

func (w *world) answer(t *testing.T, d *datadriven.TestData) (Answer, channel.Result) {
	a := map[string]Answer{"answered": Answered, "unanswered": Unanswered, "rejected": Rejected}[arg(d, "kind")]
	if a == 0 {
		a = Answered
	}
	var r channel.Result
	if a == Answered {
		r = channel.Result{Status: status(t, arg(d, "status")), Txn: arg(d, "txn"), Amount: num(t, d, "amount"),
			Reason: arg(d, "reason")}
	}
	return a, r
}

func ledgerResult(t *testing.T, name string) ledger.TransferResult {
	switch name {
	case "ok":
		return ledger.ResultOK
	case "exists":
		return ledger.ResultExists
	case "exceeds_credits":
		return ledger.ResultExceedsCredits
	case "credit_account_closed":
		return ledger.ResultCreditAccountClosed
	case "overloaded":
		return ledger.ResultOverloaded
	}
	t.Fatalf("unknown ledger result %q", name)
	return 0
}

func op(t *testing.T, s string) channel.Op {
	if s == "" {
		return channel.Pay
	}
	o, err := channel.ParseOp(s)
	if err != nil {
		t.Fatal(err)
	}
	return o
}

func status(t *testing.T, s string) channel.Status {
	if s == "" {
		return 0
	}
	x, err := channel.ParseStatus(s)
	if err != nil {
		t.Fatal(err)
	}
	return x
}

// show prints an order and what it asks its host to do.
func (w *world) show(out *strings.Builder, o *Order, e Effects) {
	fmt.Fprintf(out, "order %d %v %v stage=%v outcome=%v result=%v", o.ID, o.Form, o.State, o.Stage, o.Outcome, o.Result)
	if o.Ledgered != 0 {
		fmt.Fprintf(out, " ledger=%v", o.Ledgered)
	}
	if o.Refunded != 0 {
		fmt.Fprintf(out, " refunded=%d", o.Refunded)
	}
	if o.Txn != "" {
		fmt.Fprintf(out, " txn=%s paid=%d", o.Txn, o.Paid)
	}
	if o.Flagged {
		out.WriteString(" flagged")
	}
	fmt.Fprintf(out, " done=%v\n", steps(o.Done))
	for k, x := range o.Exceptions {
		fmt.Fprintf(out, "  exception %d %v %v txn=%s amount=%d: %s\n", k, x.Kind, x.Step, x.Txn, x.Amount, x.Note)
	}
	for _, t := range e.Transfers {
		_, step, _ := StepOf(t.ID)
		kind := ""
		switch {
		case t.Flags&ledger.TransferPending != 0:
			kind = " pending"
		case t.Flags&ledger.TransferPostPending != 0:
			_, p, _ := StepOf(t.PendingID)
			kind = fmt.Sprintf(" post of %d", p)
		case t.Flags&ledger.TransferVoidPending != 0:
			_, p, _ := StepOf(t.PendingID)
			kind = fmt.Sprintf(" void of %d", p)
		}
		fmt.Fprintf(out, "  transfer step %d: code %d %s -> %s %d%s\n", step, t.Code, w.name(t.DebitAccountID),
			w.name(t.CreditAccountID), t.Amount, kind)
	}
	for _, c := range e.Calls {
		verb := "send"
		if c.Query {
			verb = "query"
		}
		r := c.Request
		fmt.Fprintf(out, "  call %s %v %s amount=%d", verb, r.Op, r.OrderNo, r.Amount)
		if r.Original != "" {
			fmt.Fprintf(out, " original=%s/%s", r.Original, r.OriginalTxn)
		}
		out.WriteString("\n")
	}
}

func (w *world) name(id uint64) string {
	if id&platformAccountBit == 0 {
		return strconv.FormatUint(id, 10)
	}
	subject := uint32(id >> 8 & (1<<24 - 1))
	name := strings.ReplaceAll(w.s.Chart.Subjects[subject].Name, " ", "_")
	if idx := id & 0xff; idx != 0 {
		name += "@" + w.s.Channels[idx-1]
	}
	return name
}

func steps(m uint64) []int {
	var out []int
	for m != 0 {
		s := bits.TrailingZeros64(m)
		m &^= 1 << s
		out = append(out, s)
	}
	return out
}

// check asserts the invariants of every order after every event.
func (w *world) check(t *testing.T, d *datadriven.TestData) {
	for _, o := range w.orders {
		if o.State.Final() != (o.Stage == StageDone) {
			t.Fatalf("%s: order %d is %v at stage %d", d.Pos, o.ID, o.State, o.Stage)
		}
		if o.State == Succeeded && (o.Outcome != OutcomeSucceeded || o.settleSteps()&^o.Done != 0) {
			t.Fatalf("%s: order %d succeeded before its postings were durable", d.Pos, o.ID)
		}
		if o.State == Failed && o.holds()&o.Done<<(stepVoid-stepHold)&^o.Done != 0 {
			t.Fatalf("%s: order %d failed with a hold not voided", d.Pos, o.ID)
		}
		var refunded uint64
		for _, x := range w.orders {
			if x.Form == Refund && x.Original == o.ID && x.State != Failed {
				refunded += x.Amount
			}
		}
		if o.Form == Pay && refunded != o.Refunded {
			t.Fatalf("%s: order %d has %d refunded, its refunds %d", d.Pos, o.ID, o.Refunded, refunded)
		}
		if o.Refunded > o.Amount {
			t.Fatalf("%s: order %d refunded %d of %d", d.Pos, o.ID, o.Refunded, o.Amount)
		}
		if !slices.ContainsFunc(o.Instruments, func(in Instrument) bool { return in.Amount > 0 }) {
			t.Fatalf("%s: order %d has no instrument with an amount", d.Pos, o.ID)
		}
	}
}

// TestRefusalWaitsForHoldsInFlight: one hold of a combined payment is refused while another
// is still at the ledger (the host sends a transient answer again): the order decides only
// when that one is answered, and voids it if it was made.
func TestRefusalWaitsForHoldsInFlight(t *testing.T) {
	w := newWorld(t)
	for id, code := range map[uint64]uint32{1: 2001, 2: 2002, 3: 2004} {
		w.accounts[id] = ledger.Account{ID: id, Ledger: 1, Code: code}
	}
	o, res := New(w.s, &Request{Key: "p", Form: Pay, Ledger: 1, Amount: 30, From: 1, To: 2,
		Instruments: []Instrument{{Kind: Coupon, Amount: 10, Account: 3}, {Kind: Balance, Amount: 20}}}, 1, 1,
		func(id uint64) (ledger.Account, bool) { a, ok := w.accounts[id]; return a, ok }, nil)
	if res != ResultOK {
		t.Fatal(res)
	}
	e := o.Begin(w.s, 1)
	coupon, balance := e.Transfers[0], e.Transfers[1]
	if e = o.OnTransfers(w.s, []ledger.Transfer{balance}, []ledger.TransferResult{ledger.ResultExceedsCredits}, 2); len(e.Transfers) != 0 || o.Stage != StageHold {
		t.Fatalf("decided with a hold in flight: %v %v %+v", o.State, o.Stage, e)
	}
	e = o.OnTransfers(w.s, []ledger.Transfer{coupon}, []ledger.TransferResult{ledger.ResultOK}, 3)
	if o.State != Partial || len(e.Transfers) != 1 || e.Transfers[0].PendingID != coupon.ID ||
		e.Transfers[0].Flags != ledger.TransferVoidPending {
		t.Fatalf("the late hold is not voided: %v %+v", o.State, e)
	}
	e = o.OnTransfers(w.s, e.Transfers, []ledger.TransferResult{ledger.ResultOK}, 4)
	if o.State != Failed || o.Result != ResultInsufficientFunds || o.Active() {
		t.Fatalf("%v %v active %v", o.State, o.Result, o.Active())
	}
}

// TestTransitions: the table of states, every pair: final states never change; nothing goes
// back to accepted; partial only ends failed; and an illegal move is an invariant violation.
func TestTransitions(t *testing.T) {
	legal := map[[2]State]bool{}
	for _, p := range [][2]State{
		{Accepted, Processing}, {Accepted, Unknown}, {Accepted, Partial}, {Accepted, Succeeded}, {Accepted, Failed},
		{Processing, Unknown}, {Processing, Partial}, {Processing, Succeeded}, {Processing, Failed},
		{Unknown, Processing}, {Unknown, Partial}, {Unknown, Succeeded}, {Unknown, Failed},
		{Partial, Failed},
	} {
		legal[p] = true
	}
	for from := Accepted; from <= Failed; from++ {
		for to := Accepted; to <= Failed; to++ {
			if from == to {
				continue
			}
			if got := CanMove(from, to); got != legal[[2]State{from, to}] {
				t.Errorf("%v -> %v: %v", from, to, got)
			}
			func() {
				defer func() {
					if r := recover(); (r != nil) == legal[[2]State{from, to}] {
						t.Errorf("%v -> %v: panicked %v", from, to, r)
					}
				}()
				o := &Order{ID: 1, State: from}
				o.set(to, 1)
			}()
		}
	}
}
