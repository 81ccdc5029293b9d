package api

import (
	"maps"
	"math/big"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ledgercore/ledger/actors"
	"github.com/ledgercore/ledger/ledger"
	"github.com/ledgercore/ledger/ledger/accounting"
	ledgerv1 "github.com/ledgercore/ledger/proto/ledger/v1"
)

func trialLine(t *testing.T, lines []*ledgerv1.TrialBalanceLine, code uint32) *ledgerv1.TrialBalanceLine {
	t.Helper()
	for _, l := range lines {
		if l.GetCode() == code {
			return l
		}
	}
	t.Fatalf("no line for subject %d", code)
	return nil
}

// TestTrialBalance: the trial balance of a running ledger by the default chart, all ledgers and
// one: subjects rolled up, pending holds, an unclassified account, and the round trip of the
// report through the wire.
func TestTrialBalance(t *testing.T) {
	f := newFixture(t, 1)
	f.accounts(t, &ledgerv1.Account{Id: 1, Ledger: 1, Code: 2001}, &ledgerv1.Account{Id: 100, Ledger: 1, Code: 1122},
		&ledgerv1.Account{Id: 7, Ledger: 1, Code: 9999}, &ledgerv1.Account{Id: 2, Ledger: 2, Code: 2001},
		&ledgerv1.Account{Id: 200, Ledger: 2, Code: 1122})
	hold := tr(4, 1, 100, 40)
	hold.Flags = &ledgerv1.TransferFlags{Pending: true}
	other := tr(3, 200, 2, 5)
	other.Ledger = 2
	if got := f.transfers(t, tr(1, 100, 1, 1000), tr(2, 1, 7, 30), other, hold); !slices.Equal(got, []string{"ok", "ok", "ok", "ok"}) {
		t.Fatalf("transfers: %v", got)
	}
	resp, err := f.admin.TrialBalance(f.ctx, &ledgerv1.TrialBalanceRequest{})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"ledger 1: unclassified: 1 accounts (from 7): code 9999 names no subject of the chart (posted debits 0, credits 30; pending debits 0, credits 0)"}
	if !resp.GetBalanced() || !slices.Equal(resp.GetDifferences(), want) || len(resp.GetLedgers()) != 2 {
		t.Fatalf("balanced %v, %d ledgers, differences %q", resp.GetBalanced(), len(resp.GetLedgers()), resp.GetDifferences())
	}
	l1 := resp.GetLedgers()[0]
	user, liabilities := trialLine(t, l1.GetSubjects(), 2001), trialLine(t, l1.GetSubjects(), 2000)
	if user.GetCreditsPosted().GetLo() != 1000 || user.GetDebitsPosted().GetLo() != 30 || user.GetDebitsPending().GetLo() != 40 ||
		user.GetBalance() != "970" || user.GetNormalSide() != "credit" || user.GetDepth() != 1 || user.GetCategory() != "liability" {
		t.Errorf("user balance: %v", user)
	}
	if liabilities.GetBalance() != "970" || liabilities.GetAccounts() != 1 || liabilities.GetDepth() != 0 {
		t.Errorf("liabilities: %v", liabilities)
	}
	if u := l1.GetUnclassified(); len(u) != 1 || u[0].GetAccountId() != 7 || u[0].GetBalance() != "-30" {
		t.Errorf("unclassified: %v", u)
	}
	if tot := l1.GetTotal(); tot.GetDebitsPosted().GetLo() != 1030 || tot.GetCreditsPending().GetLo() != 40 || tot.GetAccounts() != 3 {
		t.Errorf("total: %v", tot)
	}
	rep, err := TrialBalanceFromProto(resp)
	if err != nil {
		t.Fatal(err)
	}
	if back := TrialBalanceToProto(&rep, TrialBalanceCurrencies(resp)); back.String() != resp.String() {
		t.Errorf("round trip:\n%v\n%v", back, resp)
	}

	resp, err = f.admin.TrialBalance(f.ctx, &ledgerv1.TrialBalanceRequest{Ledger: 2})
	if err != nil {
		t.Fatal(err)
	}
	if !resp.GetBalanced() || len(resp.GetDifferences()) != 0 || len(resp.GetLedgers()) != 1 || resp.GetLedgers()[0].GetLedger() != 2 ||
		trialLine(t, resp.GetLedgers()[0].GetSubjects(), 1122).GetBalance() != "5" {
		t.Errorf("ledger 2: %v", resp)
	}
}

// TestTrialBalanceTransit: inflows buffered for a hot account sit in transit: the books
// balance, and transit not drained is reported with the amount.
func TestTrialBalanceTransit(t *testing.T) {
	f := newFixtureWith(t, actors.Config{Shards: 2, HotFlushInterval: time.Hour})
	const hot = 100
	payer := uint64(1)
	for ledger.ShardOf(payer, 2) == ledger.ShardOf(hot, 2) {
		payer++
	}
	f.accounts(t, &ledgerv1.Account{Id: hot, Ledger: 1, Code: 2002, Flags: &ledgerv1.AccountFlags{Hot: true, Internal: true}},
		&ledgerv1.Account{Id: payer, Ledger: 1, Code: 2001})
	if got := f.transfers(t, tr(1, payer, hot, 70)); got[0] != "ok" {
		t.Fatalf("transfers: %v", got)
	}
	resp, err := f.admin.TrialBalance(f.ctx, &ledgerv1.TrialBalanceRequest{})
	if err != nil {
		t.Fatal(err)
	}
	d := resp.GetDifferences()
	if !resp.GetBalanced() || len(d) != 1 || !strings.Contains(d[0], "ledger 1: transit not drained: ") || !strings.Contains(d[0], "posted credits 70") {
		t.Fatalf("balanced %v, differences %q", resp.GetBalanced(), d)
	}
}

// TestTrialBalanceCurrency: each ledger of the trial balance carries the currency the service
// names for it (none for a ledger it does not name), and the client reads them back.
func TestTrialBalanceCurrency(t *testing.T) {
	rep := accounting.Report{Balanced: true, Ledgers: []accounting.Ledger{{Ledger: 1}, {Ledger: 2}}}
	for i := range rep.Ledgers {
		l := &rep.Ledgers[i]
		l.Transit.Balance, l.Total.Balance = new(big.Int), new(big.Int)
	}
	resp := TrialBalanceToProto(&rep, accounting.Currencies{1: "CNY", 3: "JPY"})
	if c1, c2 := resp.GetLedgers()[0].GetCurrency(), resp.GetLedgers()[1].GetCurrency(); c1 != "CNY" || c2 != "" {
		t.Fatalf("currencies %q, %q; want CNY and none", c1, c2)
	}
	if got := TrialBalanceCurrencies(resp); !maps.Equal(got, accounting.Currencies{1: "CNY"}) {
		t.Fatalf("read back %v", got)
	}
}
