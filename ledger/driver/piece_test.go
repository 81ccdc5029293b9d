package driver

import (
	"slices"
	"testing"

	"github.com/ledgercore/ledger/ledger"
)

// TestPartInPieces: a part of more transfers than Config.PieceEvents runs in pieces. The
// first piece's round is sealed before the rest runs; a linked chain is never cut; the part is
// answered once, after the round of its last piece is durable, with the results and balances
// of the part run whole. With the committer done early (Host.Durable), a round completed
// between two pieces finds nothing gathered (a piece of refusals that write nothing) and
// must not trim the book: the last piece repeats a transfer loaded from storage for it
// (trimmed from the book before), which answers exists and moves nothing again.
func TestPartInPieces(t *testing.T) {
	tr := func(id, amount uint64, flags ledger.TransferFlags) ledger.Transfer {
		return ledger.Transfer{ID: id, DebitAccountID: 1, CreditAccountID: 2, Amount: amount, Ledger: 1, Code: 1, Flags: flags}
	}
	events := []ledger.Transfer{
		tr(20, 1, 0), tr(21, 2, 0), // piece 1
		tr(0, 7, 0), tr(0, 7, 0), // piece 2: refused, nothing written
		tr(10, 5, 0), tr(31, 3, ledger.TransferLinked), tr(32, 4, ledger.TransferLinked), tr(33, 6, 0), // piece 3: a chain past 2
	}
	want := []ledger.TransferResult{ledger.ResultOK, ledger.ResultOK, ledger.ResultIDMustNotBeZero, ledger.ResultIDMustNotBeZero,
		ledger.ResultExists, ledger.ResultOK, ledger.ResultOK, ledger.ResultOK}
	for _, tc := range []struct {
		name         string
		pieces       int
		early        bool
		rounds       int // rounds the part's request makes
		firstRoundOf int // transfers created in the first one
	}{
		{"whole", -1, false, 1, 5},
		{"pieces", 2, false, 2, 2},
		{"pieces, committed early", 2, true, 2, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newClusterWith(t, 1, func(cfg *Config) { cfg.PieceEvents = tc.pieces })
			h, d := c.hosts[0], c.drivers[0]
			h.book.SetCacheLimit(1)
			c.openAccounts(ledger.Account{ID: 1, Ledger: 1, Code: 1}, ledger.Account{ID: 2, Ledger: 1, Code: 1})
			for _, id := range []uint64{10, 11} { // two: over the limit, the quiet book trims both
				d.Transfers(transfer(id, 1, 2, 5))
				c.run(0)
			}
			h.replies, h.sealed = nil, nil
			h.early = tc.early
			p := &TransfersPart{Events: slices.Clone(events), Results: make([]ledger.TransferResult, len(events))}
			d.Transfers(p)
			for h.woken > 0 || len(h.rounds) > 0 {
				if len(h.replies) > 0 {
					t.Fatalf("answered before the round of its last piece was durable (%d rounds sealed)", len(h.sealed))
				}
				for h.woken > 0 {
					h.woken--
					d.Wake()
				}
				c.commitOne(0)
			}
			if len(h.sealed) != tc.rounds || h.sealed[0] != 2*tc.firstRoundOf || len(h.replies) != 1 || h.replies[0] != p {
				t.Fatalf("rounds of %v postings, %d replies; want %d rounds, the first of %d, and the part answered once",
					h.sealed, len(h.replies), tc.rounds, 2*tc.firstRoundOf)
			}
			if !slices.Equal(p.Results, want) {
				t.Fatalf("results %v; want %v", p.Results, want)
			}
			if tc.early && h.earlyCommits == 0 {
				t.Fatal("no round was completed between two pieces")
			}
			if got := c.balance(2).CreditsPosted; got != ledger.U128(10+1+2+3+4+6) {
				t.Fatalf("account 2 credited %v; want %d (transfer 10 once)", got, 10+1+2+3+4+6)
			}
		})
	}
}

// TestStoredIDInALaterPieceWithShards: with more than one shard a large part is looked up in
// storage whole when it arrives, later pieces too (lookedUpAtArrival), because its claims
// depend on which of its ids are stored: a transfer stored on the shard (forgotten by its
// book since) and repeated in the part's second piece answers exists, as it would in the
// first, and no claim goes out for it.
func TestStoredIDInALaterPieceWithShards(t *testing.T) {
	c := newClusterWith(t, 2, func(cfg *Config) { cfg.PieceEvents = 1 })
	a := accountOn(1, 0, 2)
	b := accountOn(a+1, 0, 2)
	c.openAccounts(ledger.Account{ID: a, Ledger: 1, Code: 1}, ledger.Account{ID: b, Ledger: 1, Code: 1})
	h, d := c.hosts[0], c.drivers[0]
	h.book.SetCacheLimit(1)
	settle := func() {
		for {
			es := append(c.take(0), c.take(1)...)
			if len(es) == 0 {
				return
			}
			c.deliver(es...)
		}
	}
	x := idArbitratedBy(100, 1, 2) // its claim would go to shard 1
	y := idArbitratedBy(x+1, 1, 2)
	for _, id := range []uint64{x, y} { // two: over the limit, the quiet book trims both
		d.Transfers(transfer(id, a, b, 5))
		c.run(0)
		settle()
	}
	if _, known := h.book.Transfer(x); known {
		t.Fatal("setup: the book still holds the stored transfer")
	}
	z := idArbitratedBy(y+1, 0, 2) // new, its claim shard 0's own
	p := &TransfersPart{Events: []ledger.Transfer{
		{ID: z, DebitAccountID: a, CreditAccountID: b, Amount: 1, Ledger: 1, Code: 1},
		{ID: x, DebitAccountID: a, CreditAccountID: b, Amount: 5, Ledger: 1, Code: 1}, // the second piece
	}, Results: make([]ledger.TransferResult, 2)}
	d.Transfers(p)
	c.run(0)
	for _, e := range c.hosts[0].sent {
		if cl, ok := e.m.(*Claim); ok {
			t.Fatalf("a claim went out for a part whose only new id is shard 0's own: %+v", cl)
		}
	}
	settle()
	if want := []ledger.TransferResult{ledger.ResultOK, ledger.ResultExists}; !slices.Equal(p.Results, want) {
		t.Fatalf("results %v; want %v", p.Results, want)
	}
}
