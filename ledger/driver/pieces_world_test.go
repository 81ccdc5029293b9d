package driver

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/ledgercore/ledger/ledger"
)

// durableWatch checks, at every reply and every Legs or Answers sent, that
// what it reports is durable in the store.
type durableWatch struct {
	c        *cluster
	problems []string
}

func (w *durableWatch) durableTransfer(id uint64) bool {
	found := false
	if err := w.c.store.Live().Transfers([]uint64{id}, func(ledger.Transfer) { found = true }); err != nil {
		w.c.t.Fatal(err)
	}
	return found
}

// checkReply: every transfer the part reports OK (or a burned refusal) is in storage.
func (w *durableWatch) checkReply(shard uint32, p *TransfersPart) {
	for i, r := range p.Results {
		if r == ledger.ResultOK && !w.durableTransfer(p.Events[i].ID) {
			w.problems = append(w.problems, fmt.Sprintf("shard %d replied OK for transfer %d (event %d) not in storage", shard, p.Events[i].ID, i))
		}
	}
}

func (w *durableWatch) checkSend(from uint32, m Message) {
	switch m := m.(type) {
	case *Legs:
		for _, l := range m.Legs {
			if !w.durableTransfer(l.TransferID) {
				w.problems = append(w.problems, fmt.Sprintf("shard %d sent leg %+v before its transfer is durable", from, l.LegKey))
			}
		}
	case *Answers:
		for _, a := range m.Answers {
			_, found, err := w.c.store.Live().LegResult(a.LegKey)
			if err != nil {
				w.c.t.Fatal(err)
			}
			if !found {
				w.problems = append(w.problems, fmt.Sprintf("shard %d answered leg %+v before its record is durable", from, a.LegKey))
			}
		}
	}
}

// pump runs every shard (wakes, commits) and delivers every message until all is quiet.
func (c *cluster) pump(w *durableWatch) {
	for range 10000 {
		moved := false
		for i := range c.drivers {
			h, d := c.hosts[i], c.drivers[i]
			for h.woken > 0 || len(h.rounds) > 0 {
				moved = true
				for h.woken > 0 {
					h.woken--
					d.Wake()
				}
				c.commitOne(uint32(i))
			}
		}
		for i := range c.drivers {
			for _, e := range c.take(uint32(i)) {
				moved = true
				w.checkSend(uint32(i), e.m)
				c.drivers[e.to].Receive(e.m)
			}
		}
		if !moved {
			return
		}
	}
	c.t.Fatal("not quiet after 10000 steps")
}

type piecesOutcome struct {
	results  [][]ledger.TransferResult
	balances []ledger.Balance
	replies  int
}

// runPiecesWorkload runs one seeded workload of multi-shard requests with large parts on a cluster
// whose drivers run parts in pieces of pieces (-1: whole), early: Host.Durable commits early.
func runPiecesWorkload(t *testing.T, seed uint64, shards uint32, pieces int, early bool) (out piecesOutcome, w *durableWatch) {
	c := newClusterWith(t, shards, func(cfg *Config) { cfg.PieceEvents = pieces })
	w = &durableWatch{c: c}
	rng := rand.New(rand.NewPCG(seed, 17))
	const accounts = 12
	var accts []ledger.Account
	for id := uint64(1); id <= accounts; id++ {
		a := ledger.Account{ID: id, Ledger: 1, Code: 1}
		// No balance limits: whether a debit fits would depend on when other shards' credit
		// legs land, which pieces change as network timing does.
		accts = append(accts, a)
	}
	c.openAccounts(accts...)
	for _, h := range c.hosts {
		h.early = early
		h.book.SetCacheLimit(3) // trim often
	}
	var pendings []ledger.Transfer
	var parts []*TransfersPart
	for batch := range 12 {
		// One request per shard per batch, each a part of 3-12 transfers whose debits are there.
		var batchParts []*TransfersPart
		var batchShards []uint32
		for s := range shards {
			var debits []uint64
			for id := uint64(1); id <= accounts; id++ {
				if ledger.ShardOf(id, shards) == s {
					debits = append(debits, id)
				}
			}
			if len(debits) == 0 {
				continue
			}
			var mine []ledger.Transfer
			for _, pt := range pendings {
				if ledger.ShardOf(pt.DebitAccountID, shards) == s {
					mine = append(mine, pt)
				}
			}
			n := 3 + rng.IntN(10)
			p := &TransfersPart{Results: make([]ledger.TransferResult, n)}
			for i := range n {
				// Ids of one batch's parts never meet on two shards (claims would make the
				// outcome depend on timing: id_in_flight or exists); they repeat across batches.
				tr := ledger.Transfer{ID: (1+rng.Uint64N(30))*uint64(shards) + uint64(s) + 1000*uint64(batch%2), DebitAccountID: debits[rng.IntN(len(debits))],
					CreditAccountID: 1 + rng.Uint64N(accounts+1), Amount: 1 + rng.Uint64N(20), Ledger: 1, Code: 1}
				switch k := rng.IntN(10); {
				case k == 0:
					tr.Flags |= ledger.TransferPending
				case (k == 1 || k == 2) && len(mine) > 0:
					pt := mine[rng.IntN(len(mine))]
					tr.Flags |= ledger.TransferPostPending
					if k == 2 {
						tr.Flags = ledger.TransferVoidPending
					}
					tr.PendingID = pt.ID
					tr.Amount = 0
					tr.DebitAccountID, tr.CreditAccountID = pt.DebitAccountID, pt.CreditAccountID
				}
				if rng.IntN(4) == 0 && i < n-1 || i == n-1 && rng.IntN(6) == 0 {
					tr.Flags |= ledger.TransferLinked // sometimes a chain left open at the end
				}
				if tr.Flags&ledger.TransferPending != 0 {
					pendings = append(pendings, tr)
				}
				p.Events = append(p.Events, tr)
			}
			batchParts = append(batchParts, p)
			batchShards = append(batchShards, s)
		}
		for i, p := range batchParts {
			c.drivers[batchShards[i]].Transfers(p)
		}
		_ = batch
		c.pump(w)
		parts = append(parts, batchParts...)
	}
	for _, p := range parts {
		out.results = append(out.results, slices.Clone(p.Results))
	}
	for id := uint64(1); id <= accounts; id++ {
		out.balances = append(out.balances, c.balance(id))
	}
	for _, h := range c.hosts {
		for _, p := range h.replies {
			w.checkReply(h.shard, p)
		}
		out.replies += len(h.replies)
	}
	return out, w
}

// TestPiecesMatchWhole: large multi-shard parts run in pieces (committed early or not)
// give the results and balances of the same parts run whole; nothing is replied, and no leg or
// answer leaves, before it is durable.
func TestPiecesMatchWhole(t *testing.T) {
	for seed := uint64(1); seed <= 60; seed++ {
		for _, shards := range []uint32{1, 2, 3} {
			want, _ := runPiecesWorkload(t, seed, shards, -1, false)
			for _, pieces := range []int{1, 2, 3} {
				for _, early := range []bool{false, true} {
					got, w := runPiecesWorkload(t, seed, shards, pieces, early)
					if len(w.problems) > 0 {
						t.Fatalf("seed %d shards %d pieces %d early %v: %v", seed, shards, pieces, early, w.problems[:min(5, len(w.problems))])
					}
					if got.replies != want.replies {
						t.Fatalf("seed %d shards %d pieces %d early %v: %d replies; whole: %d", seed, shards, pieces, early, got.replies, want.replies)
					}
					for i := range want.results {
						if !slices.Equal(got.results[i], want.results[i]) {
							t.Fatalf("seed %d shards %d pieces %d early %v: part %d results %v; whole %v", seed, shards, pieces, early, i, got.results[i], want.results[i])
						}
					}
					if !slices.Equal(got.balances, want.balances) {
						t.Fatalf("seed %d shards %d pieces %d early %v: balances differ\n%v\n%v", seed, shards, pieces, early, got.balances, want.balances)
					}
				}
			}
		}
	}
}

// TestPiecesEarlyDurableFailedCommit: the committer's round became "durable" with an error
// (the actors host closes r.Durable after a failed commit too): between two pieces the driver
// must not complete it, must not seal more, and nothing may be replied or sent; Committed then
// stops the driver.
func TestPiecesEarlyDurableFailedCommit(t *testing.T) {
	c := newClusterWith(t, 1, func(cfg *Config) { cfg.PieceEvents = 1 })
	h, d := c.hosts[0], c.drivers[0]
	c.openAccounts(ledger.Account{ID: 1, Ledger: 1, Code: 1}, ledger.Account{ID: 2, Ledger: 1, Code: 1})
	// A first part: its round is in flight when the big part arrives.
	first := transfer(100, 1, 2, 1)
	d.Transfers(first)
	h.woken = 0
	d.Wake()
	if len(h.rounds) != 1 {
		t.Fatalf("%d rounds", len(h.rounds))
	}
	r := h.rounds[0]
	h.rounds = nil
	r.Err = errors.New("injected: fsync failed")
	close(r.Durable) // as actors' committer does, before committedMessage arrives
	big := &TransfersPart{Results: make([]ledger.TransferResult, 3)}
	for i := range 3 {
		big.Events = append(big.Events, ledger.Transfer{ID: uint64(200 + i), DebitAccountID: 1, CreditAccountID: 2, Amount: 1, Ledger: 1, Code: 1})
	}
	d.Transfers(big)
	h.woken = 0
	d.Wake()
	if len(h.replies) != 0 || len(h.rounds) != 0 || len(h.sent) != 0 {
		t.Fatalf("after a failed commit, between pieces: %d replies, %d rounds sealed, %d sent", len(h.replies), len(h.rounds), len(h.sent))
	}
	if err := d.Committed(r); err == nil {
		t.Fatal("Committed of a failed round: nil")
	}
	d.Wake()
	if len(h.replies) != 0 || len(h.rounds) != 0 {
		t.Fatalf("after failure: %d replies, %d rounds", len(h.replies), len(h.rounds))
	}
}

// TestPiecesStopMidPart: Stop runs what arrived; a part whose first piece writes nothing
// meets seal() with nothing gathered and nothing committing while stopping, which marks the
// driver stopped in the middle of the part. The part must still be committed and answered.
func TestPiecesStopMidPart(t *testing.T) {
	c := newClusterWith(t, 1, func(cfg *Config) { cfg.PieceEvents = 1 })
	h, d := c.hosts[0], c.drivers[0]
	c.openAccounts(ledger.Account{ID: 1, Ledger: 1, Code: 1}, ledger.Account{ID: 2, Ledger: 1, Code: 1})
	p := &TransfersPart{Events: []ledger.Transfer{
		{ID: 0, DebitAccountID: 1, CreditAccountID: 2, Amount: 1, Ledger: 1, Code: 1},           // refused, writes nothing
		{ID: 5, DebitAccountID: 1, CreditAccountID: 2, Amount: 3, Ledger: 1, Code: 1}}, Results: make([]ledger.TransferResult, 2)}
	d.Transfers(p)
	h.woken = 0
	d.Stop()
	stoppedEarly := d.stopped && d.inflight != nil
	for r := d.Wait(); r != nil; r = d.Wait() {
		h.rounds = h.rounds[1:]
		r.Err = h.w.Commit(r.Effects, r.Clock)
		close(r.Durable)
		if err := d.Committed(r); err != nil {
			t.Fatal(err)
		}
	}
	if stoppedEarly {
		t.Fatal("stopped while its last round was still to commit")
	}
	if len(h.replies) != 1 || p.Results[1] != ledger.ResultOK || c.balance(2).CreditsPosted != ledger.U128(3) {
		t.Fatalf("after Stop: %d replies, results %v, credit %v", len(h.replies), p.Results, c.balance(2).CreditsPosted)
	}
}
