package payments

import (
	"errors"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/ledgercore/ledger/channel"
	"github.com/ledgercore/ledger/channel/fake"
	"github.com/ledgercore/ledger/ledger/payment"
)

func (w *world) importStatement(lines []channel.StatementLine) StatementReport {
	w.t.Helper()
	r, err := w.engine.ImportStatement("bank", lines)
	if err != nil {
		w.t.Fatal(err)
	}
	for _, it := range r.Items {
		w.t.Log(it)
	}
	return r
}

func classes(r StatementReport) map[LineClass]int {
	m := map[LineClass]int{}
	for c, n := range r.Counts {
		if n > 0 {
			m[LineClass(c)] = n
		}
	}
	return m
}

func sameClasses(a, b map[LineClass]int) bool {
	if len(a) != len(b) {
		return false
	}
	for c, n := range a {
		if b[c] != n {
			return false
		}
	}
	return true
}

func TestImportStatement(t *testing.T) {
	day := time.Now().UTC().Format(time.DateOnly)
	w := newWorld(t, fake.Config{Seed: 1, Latency: 2 * time.Millisecond, StatementDir: t.TempDir()})
	w.openAccounts()
	ok := func(r Reply) uint64 {
		t.Helper()
		if r.Result != payment.ResultOK || r.Order == nil {
			t.Fatalf("reply %v %+v", r.Result, r.Order)
		}
		return r.Order.ID
	}
	recharge := ok(w.create(payment.Request{Key: "r1", BizID: "biz-r", Form: payment.Recharge, Ledger: 1, Amount: 1000,
		To: alice, Channel: "bank", ChannelAccount: "card-1"})[0])
	w.settle(recharge)
	pay := ok(w.create(payment.Request{Key: "p1", BizID: "biz-p", Form: payment.Pay, Ledger: 1, Amount: 300,
		From: alice, To: shop, Channel: "bank", Instruments: []payment.Instrument{{Kind: payment.Balance, Amount: 100},
			{Kind: payment.Card, Amount: 200}}})[0])
	withdraw := ok(w.create(payment.Request{Key: "w1", BizID: "biz-w", Form: payment.Withdraw, Ledger: 1, Amount: 400,
		From: alice, Channel: "bank", ChannelAccount: "card-1"})[0])
	for _, o := range w.settle(recharge, pay, withdraw) {
		if o.State != payment.Succeeded {
			t.Fatalf("order %d: %v", o.ID, o.State)
		}
	}
	date := time.Now().UTC().Format(time.DateOnly)
	if date != day {
		t.Skip("the run crossed midnight UTC: the payments are on two days' statements")
	}
	path, n, err := w.fake.WriteStatement(date)
	if err != nil || n != 3 {
		t.Fatalf("statement: %d lines, %v (a run across midnight UTC?)", n, err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	lines, err := channel.ParseStatement(f)
	_ = f.Close()
	if err != nil {
		t.Fatal(err)
	}

	// The channel's statement of what the ledger holds: every line matches, twice.
	for range 2 {
		r := w.importStatement(lines)
		if !r.Clean() || !sameClasses(classes(r), map[LineClass]int{Matched: 3}) {
			t.Fatalf("the fake's own statement: %v", r.Counts)
		}
	}

	// A second collection for the recharge: recorded as a duplicate payment, booked to
	// suspense (and refunded by the state machine); the same line again changes nothing.
	before := w.settle(recharge)[0]
	dup := lines[0]
	if dup.OrderNo != payment.OrderNo(recharge) {
		t.Fatalf("first line %+v, want the recharge", dup)
	}
	dup.Txn = "DUP-1"
	r := w.importStatement(append(slices.Clone(lines), dup))
	// (Its refund may be made before the import looks for short txns: short, then.)
	if r.Counts[Matched] != 3 || r.Counts[Recorded] != 1 || statementLines(&r) != 4 || r.Clean() {
		t.Fatalf("with a duplicate: %v", r.Counts)
	}
	if it := r.Items[3]; it.Class != Recorded || it.Txn != "DUP-1" || it.Line != 5 {
		t.Fatalf("item %v", it)
	}
	after := w.settle(recharge)[0]
	if len(after.Exceptions) != len(before.Exceptions)+1 {
		t.Fatalf("exceptions %+v", after.Exceptions)
	}
	x := after.Exceptions[len(after.Exceptions)-1]
	if x.Kind != payment.DuplicatePayment || x.Txn != "DUP-1" || x.Amount != 1000 || !x.Booked() ||
		x.Step == payment.ExcBooking {
		t.Fatalf("exception %+v", x)
	}
	excepted, err := w.engine.Exceptions(true, 0, ListMax)
	if err != nil {
		t.Fatal(err)
	}
	// The channel's statement now has the refund of the duplicate too.
	if _, n, err = w.fake.WriteStatement(date); err != nil || n != 4 {
		t.Fatalf("statement: %d lines, %v", n, err)
	}
	if f, err = os.Open(path); err != nil {
		t.Fatal(err)
	}
	lines2, err := channel.ParseStatement(f)
	_ = f.Close()
	if err != nil {
		t.Fatal(err)
	}
	r = w.importStatement(append(lines2, dup))
	if !r.Clean() || !sameClasses(classes(r), map[LineClass]int{Matched: 5}) {
		t.Fatalf("the duplicate again: %v", r.Counts)
	}
	again := w.settle(recharge)[0]
	if again.Version != after.Version || len(again.Exceptions) != len(after.Exceptions) {
		t.Fatalf("the order changed: version %d -> %d", after.Version, again.Version)
	}
	excepted2, err := w.engine.Exceptions(true, 0, ListMax)
	if err != nil || len(excepted2) != len(excepted) {
		t.Fatalf("exceptions %d -> %d, %v", len(excepted), len(excepted2), err)
	}
	for i := range excepted {
		if excepted[i].ID != excepted2[i].ID || excepted[i].Version != excepted2[i].Version {
			t.Fatalf("exception order %d changed", excepted[i].ID)
		}
	}

	// Long: orders the ledger does not have. Refused: what the order would refuse as a
	// callback, and a currency not the order's. Short: the withdrawal missing.
	var kept []channel.StatementLine
	for _, l := range lines2 {
		if l.OrderNo != payment.OrderNo(withdraw) {
			kept = append(kept, l)
		}
	}
	if len(kept) != 3 {
		t.Fatalf("lines %+v", lines)
	}
	unknown, foreign, wrongOp, wrongCur := lines[0], lines[0], lines[0], lines[0]
	unknown.Txn, unknown.OrderNo = "L-1", payment.OrderNo(999_999)
	foreign.Txn, foreign.OrderNo = "L-2", "ORD-7"
	wrongOp.Txn, wrongOp.Op = "R-1", channel.Payout
	wrongCur.Txn, wrongCur.Currency = "R-2", "USD"
	v0 := w.settle(recharge)[0].Version
	r = w.importStatement(append(kept, unknown, foreign, wrongOp, wrongCur))
	if !sameClasses(classes(r), map[LineClass]int{Matched: 3, Long: 2, Refused: 2, Short: 1}) {
		t.Fatalf("long, refused, short: %v", r.Counts)
	}
	last := r.Items[len(r.Items)-1]
	if last.Class != Short || last.OrderNo != payment.OrderNo(withdraw) || last.Line != 0 {
		t.Fatalf("short item %v", last)
	}
	if v := w.settle(recharge)[0].Version; v != v0 {
		t.Fatalf("refused lines changed the order: version %d -> %d", v0, v)
	}

	if _, err := w.engine.ImportStatement("nobank", lines); !errors.Is(err, ErrUnknownChannel) {
		t.Fatalf("unknown channel: %v", err)
	}
	mixed := slices.Clone(lines)
	mixed[1].Date = "2000-01-01"
	if _, err := w.engine.ImportStatement("bank", mixed); err == nil {
		t.Fatal("lines of two dates taken")
	}
}
