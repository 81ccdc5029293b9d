package payment

import (
	"testing"

	"github.com/ledgercore/ledger/channel"
	"github.com/ledgercore/ledger/ledger/rules"
)

// TestHeldOnlyWhenARecordHoldsIt: a line of what the channel collected for an order that
// failed with AMOUNT_MISMATCH is held (no difference) only when it agrees with the books and
// the order's amount_mismatch record is about its txn (open or resolved); a line of another
// amount, currency or status is a difference; with no record holding the money (the order
// had no room for one) it is a status_mismatch that books what the channel holds.
func TestHeldOnlyWhenARecordHoldsIt(t *testing.T) {
	s, err := NewSetup(rules.Default(), DefaultCodes, []string{"bank"})
	if err != nil {
		t.Fatal(err)
	}
	s.Currencies = map[uint32]string{1: "CNY"}
	order := func(record bool, step ExceptionStep) *Order {
		o := &Order{ID: 7, Form: Recharge, Ledger: 1, Channel: "bank", State: Failed, Stage: StageDone, Outcome: OutcomeMismatch,
			Result: ResultAmountMismatch, Txn: "T7", Paid: 990, TxnAt: 1, Amount: 1000, Instruments: []Instrument{{Kind: Card, Amount: 1000}}}
		if record {
			o.Exceptions = []Exception{{Kind: AmountMismatch, Step: step, Txn: "T7", Amount: 990}}
		}
		return o
	}
	line := func(st channel.Status, amount uint64, cur string) *channel.StatementLine {
		return &channel.StatementLine{Date: "1970-01-01", Txn: "T7", Op: channel.Pay, OrderNo: "P7", Status: st, Amount: amount, Currency: cur}
	}
	ledgers := func(c string) (uint32, bool) { return 1, c == "CNY" }
	for _, c := range []struct {
		name    string
		o       *Order
		l       *channel.StatementLine
		want    LineClass
		in, out uint64
	}{
		{"agrees, record open", order(true, ExcOpen), line(channel.Succeeded, 990, "CNY"), LineHeld, 0, 0},
		{"agrees, record resolved", order(true, ExcResolved), line(channel.Succeeded, 990, "CNY"), LineHeld, 0, 0},
		{"another amount", order(true, ExcOpen), line(channel.Succeeded, 980, "CNY"), LineAmount, 0, 10},
		{"the amount asked", order(true, ExcOpen), line(channel.Succeeded, 1000, "CNY"), LineAmount, 10, 0},
		{"another currency", order(true, ExcOpen), line(channel.Succeeded, 990, "USD"), LineAmount, 0, 0},
		{"failed", order(true, ExcOpen), line(channel.Failed, 0, "CNY"), LineStatus, 0, 990},
		{"no record holds it", order(false, 0), line(channel.Succeeded, 990, "CNY"), LineStatus, 990, 0},
	} {
		m := s.MatchLine("bank", c.l, c.o, ledgers)
		if m.Class != c.want || m.In != c.in || m.Out != c.out {
			t.Errorf("%s: %v in %d out %d (%s), want %v in %d out %d", c.name, m.Class, m.In, m.Out, m.Note, c.want, c.in, c.out)
		}
	}
}
