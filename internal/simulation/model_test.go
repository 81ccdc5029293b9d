package simulation

import (
	"testing"

	"github.com/ledgercore/ledger/ledger"
)

// TestChainBetween: a chain debiting an account whose credits are 100, 80 of them inflows that
// may not have landed, fails at its second member with none landed (20 of credit) and succeeds
// with all. Landed in part, it may fail at any member from the second to the last, or succeed;
// never at its first, never without a failing member, and never refused for another reason.
func TestChainBetween(t *testing.T) {
	const ec, lef, ok = ledger.ResultExceedsCredits, ledger.ResultLinkedEventFailed, ledger.ResultOK
	m := newSimModel(1)
	m.flags[1] = ledger.AccountDebitsMustNotExceedCredits
	m.flags[2] = 0
	m.bal[1], m.bal[2] = &simBalance{creditsPosted: 100}, &simBalance{debitsPosted: 100}
	m.unlanded[1] = 80
	tr := func(id, amount uint64, linked bool) ledger.Transfer {
		t := ledger.Transfer{ID: id, DebitAccountID: 1, CreditAccountID: 2, Amount: amount, Ledger: 1, Code: 1}
		if linked {
			t.Flags = ledger.TransferLinked
		}
		return t
	}
	chain := []ledger.Transfer{tr(10, 15, true), tr(11, 30, true), tr(12, 40, false)}
	for _, c := range []struct {
		got  []ledger.TransferResult
		want bool
	}{
		{[]ledger.TransferResult{lef, ec, lef}, true},                          // none landed, or under 45
		{[]ledger.TransferResult{lef, lef, ec}, true},                          // 45 to 84 landed
		{[]ledger.TransferResult{ok, ok, ok}, true},                            // 85 or more landed
		{[]ledger.TransferResult{ec, lef, lef}, false},                         // the first member has 20 at least
		{[]ledger.TransferResult{lef, lef, lef}, false},                        // no member failing
		{[]ledger.TransferResult{ok, ec, lef}, false},                          // a chain applied in part
		{[]ledger.TransferResult{lef, ledger.ResultExceedsDebits, lef}, false}, // the wrong refusal
	} {
		if got := m.chainBetween(chain, c.got, 0); got != c.want {
			t.Errorf("answers %v: chainBetween %v; want %v", c.got, got, c.want)
		}
	}
}
