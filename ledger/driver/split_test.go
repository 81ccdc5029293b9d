package driver

import (
	"slices"
	"testing"

	"github.com/ledgercore/ledger/ledger"
)

// splitBatch is a request of ten transfers on shard 0 (of two): inflows to a local account and
// to one on shard 1 (a leg), a chain across the middle, a hold and its post, a repeated id
// and a refusal, so that running it in two rounds has something to get wrong.
func splitBatch(c *cluster) (*TransfersPart, []uint64) {
	a, a2, b := accountOn(1, 0, 2), accountOn(100, 0, 2), accountOn(1, 1, 2)
	c.openAccounts(ledger.Account{ID: a, Ledger: 1, Code: 1}, ledger.Account{ID: a2, Ledger: 1, Code: 1},
		ledger.Account{ID: b, Ledger: 1, Code: 1})
	id := func(n uint64) uint64 { return idArbitratedBy(n*1000, 0, 2) }
	tr := func(n, dr, cr, amount uint64) ledger.Transfer {
		return ledger.Transfer{ID: id(n), DebitAccountID: dr, CreditAccountID: cr, Amount: amount, Ledger: 1, Code: 1}
	}
	ts := []ledger.Transfer{
		tr(1, a, a2, 10),
		tr(2, a, b, 7), // to shard 1
		tr(3, a, a2, 1),
		tr(4, a, a2, 2), // a chain of 4, 5, 6 across the middle
		tr(5, a, b, 3),
		tr(6, a2, a, 4),
		tr(7, a, a2, 50), // a hold, posted in part below
		{ID: id(8), DebitAccountID: a, CreditAccountID: a2, PendingID: id(7), Amount: 20, Flags: ledger.TransferPostPending, Ledger: 1, Code: 1},
		tr(1, a, a2, 10), // the first one again: exists
		tr(9, a, 424242, 1),
	}
	ts[3].Flags |= ledger.TransferLinked
	ts[4].Flags |= ledger.TransferLinked
	ts[6].Flags |= ledger.TransferPending
	return &TransfersPart{Events: ts, Results: make([]ledger.TransferResult, len(ts))}, []uint64{a, a2, b}
}

// TestLargePartRunsInTwoRounds: a part as large as SplitMin that arrives while nothing commits
// runs as two rounds, split where no chain goes on; it is answered only once both are durable
// (and its leg answered), with the results and balances of the same part run in one round.
func TestLargePartRunsInTwoRounds(t *testing.T) {
	whole := newCluster(t, 2)
	whole.drivers[0].splitMin = -1 >> 1
	wp, accounts := splitBatch(whole)
	whole.drivers[0].Transfers(wp)
	whole.run(0)
	whole.deliver(whole.take(0)...)
	whole.deliver(whole.take(1)...)
	if len(whole.hosts[0].replies) != 1 {
		t.Fatalf("one round: %d replies", len(whole.hosts[0].replies))
	}

	c := newCluster(t, 2)
	c.drivers[0].splitMin = 10
	p, _ := splitBatch(c)
	d, h := c.drivers[0], c.hosts[0]
	d.Transfers(p)
	h.woken = 0
	d.Wake()
	// The first half (to the end of the chain) commits while the second half runs.
	if len(h.rounds) != 1 {
		t.Fatalf("%d rounds sealed after the part ran, want the first half's", len(h.rounds))
	}
	first := h.rounds[0]
	h.rounds = nil
	var ids []uint64
	for _, tr := range first.Effects.Transfers {
		ids = append(ids, tr.ID)
	}
	if want := []uint64{p.Events[0].ID, p.Events[1].ID, p.Events[2].ID, p.Events[3].ID, p.Events[4].ID, p.Events[5].ID}; !slices.Equal(ids, want) {
		t.Fatalf("the first round wrote transfers %v, want %v (the first half and the chain)", ids, want)
	}
	first.Err = h.w.Commit(first.Effects, first.Clock)
	if err := d.Committed(first); err != nil {
		t.Fatal(err)
	}
	if len(h.replies) != 0 || len(h.rounds) != 1 {
		t.Fatalf("after the first half's round: %d replies, %d rounds sealed; want none and the second half's", len(h.replies), len(h.rounds))
	}
	c.run(0)
	if len(h.replies) != 0 {
		t.Fatal("answered before its leg to shard 1 was")
	}
	c.deliver(c.take(0)...)
	c.deliver(c.take(1)...)
	if len(h.replies) != 1 || h.replies[0] != p {
		t.Fatalf("%d replies once both rounds and the leg are done", len(h.replies))
	}
	if !slices.Equal(p.Results, wp.Results) {
		t.Fatalf("results in two rounds %v, in one %v", p.Results, wp.Results)
	}
	if p.Results[8] != ledger.ResultExists || p.Results[9] == ledger.ResultOK || p.Results[7] != ledger.ResultOK {
		t.Fatalf("results %v: want the post ok, the repeat exists, the unknown account refused", p.Results)
	}
	for _, id := range accounts {
		if got, want := c.balance(id), whole.balance(id); got != want {
			t.Errorf("account %d: balance %+v in two rounds, %+v in one", id, got, want)
		}
	}
}

// TestSplitOnlyWhenIdle: a part that arrives while a round commits, or smaller than SplitMin,
// runs in one round.
func TestSplitOnlyWhenIdle(t *testing.T) {
	c := newCluster(t, 2)
	c.drivers[0].splitMin = 11 // the batch has 10
	p, _ := splitBatch(c)
	d, h := c.drivers[0], c.hosts[0]
	d.Transfers(p)
	h.woken = 0
	d.Wake()
	if len(h.rounds) != 1 {
		t.Fatalf("a part under SplitMin: %d rounds", len(h.rounds))
	}
	c.run(0)

	c = newCluster(t, 2)
	c.drivers[0].splitMin = 2
	a := accountOn(1, 0, 2)
	c.openAccounts(ledger.Account{ID: a, Ledger: 1, Code: 1})
	d, h = c.drivers[0], c.hosts[0]
	d.Transfers(transfer(idArbitratedBy(1, 0, 2), a, 424242, 1)) // refused, burns: a round
	h.woken = 0
	d.Wake()
	if len(h.rounds) != 1 {
		t.Fatalf("%d rounds", len(h.rounds))
	}
	p, _ = splitBatch(c)
	d.Transfers(p)
	h.woken = 0
	d.Wake() // the first round still commits
	if len(h.rounds) != 1 {
		t.Fatalf("a part that ran while a round commits sealed %d more", len(h.rounds)-1)
	}
	c.run(0)
	if n := len(h.rounds); n != 0 {
		t.Fatalf("%d rounds left", n)
	}
}
