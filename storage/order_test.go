package storage

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/ledgercore/ledger/ledger"
)

// TestRoundRecordsInKeyOrder: a round's batch holds its records in key order, whatever order
// the round made them in (random ids, postings of one time in either account order, every
// family of record), a key written twice in a round ends with its last write, and a key set
// and deleted in one round (a pending mark, an outbox record, a leg's record) is set first.
func TestRoundRecordsInKeyOrder(t *testing.T) {
	s, err := Open("db", Options{FS: vfs.NewMem(), Shards: 1, PostingTailMax: 64, PagingAccountsPerRound: 3})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	w := s.Writer(0)
	var records, rounds, setThenDeleted int
	w.inspect = func(b *pebble.Batch) {
		var last []byte
		lastSet := false
		r := b.Reader()
		for {
			kind, k, _, ok, err := r.Next()
			if err != nil {
				t.Fatal(err)
			}
			if !ok {
				break
			}
			switch {
			case last != nil && bytes.Compare(last, k) > 0:
				t.Fatalf("round %d: key %q after %q", rounds, k, last)
			case bytes.Equal(last, k) && kind == pebble.InternalKeyKindSet && !lastSet:
				t.Fatalf("round %d: key %q deleted, then set", rounds, k)
			case bytes.Equal(last, k) && kind != pebble.InternalKeyKindSet && lastSet:
				setThenDeleted++
			}
			last, lastSet = append(last[:0], k...), kind == pebble.InternalKeyKindSet
			records++
		}
		rounds++
	}
	rng := rand.New(rand.NewPCG(5, 6))
	clock := uint64(1000)
	last := map[uint64]ledger.Transfer{} // the transfer records' last writes
	for range 200 {
		var fx ledger.Effects
		for range rng.IntN(4) {
			fx.Opened = append(fx.Opened, ledger.Account{ID: 1 + rng.Uint64N(1<<40), Ledger: 1, Code: 1})
		}
		for range rng.IntN(40) {
			clock++
			tr := ledger.Transfer{ID: 1 + rng.Uint64N(1<<40), DebitAccountID: 1 + rng.Uint64N(50),
				CreditAccountID: 51 + rng.Uint64N(50), Amount: 1 + rng.Uint64N(100), Ledger: 1, Code: 1,
				Timestamp: clock, State: ledger.StatePosted}
			switch rng.IntN(5) {
			case 0:
				tr.State = ledger.StatePending
			case 1:
				tr.BizID = fmt.Sprintf("biz-%d", rng.IntN(1000))
			}
			fx.Transfers = append(fx.Transfers, tr)
			if rng.IntN(4) == 0 { // the same record written again in the round, later
				tr.State, tr.Amount = ledger.StatePendingPosted, tr.Amount+1
				fx.Transfers = append(fx.Transfers, tr)
			}
			for _, acct := range []uint64{tr.DebitAccountID, tr.CreditAccountID} {
				fx.Postings = append(fx.Postings, ledger.Posting{Account: acct, Timestamp: clock, TransferID: tr.ID,
					Amount: tr.Amount, Op: ledger.OpDebitPost})
			}
			if rng.IntN(2) == 0 { // a transfer's postings in either account order
				n := len(fx.Postings)
				fx.Postings[n-1], fx.Postings[n-2] = fx.Postings[n-2], fx.Postings[n-1]
			}
		}
		for range rng.IntN(5) {
			leg := ledger.Leg{LegKey: ledger.LegKey{TransferID: 1 + rng.Uint64N(500), Kind: ledger.LegKind(1 + rng.IntN(2))},
				Account: 1 + rng.Uint64N(50), From: uint32(rng.IntN(3)), Amount: 1, Ledger: 1}
			fx.LegsOut = append(fx.LegsOut, leg)
			fx.LegsDone = append(fx.LegsDone, ledger.LegResult{LegKey: leg.LegKey, From: leg.From})
			if rng.IntN(2) == 0 {
				fx.OutboxDone = append(fx.OutboxDone, leg)
				fx.LegsForgotten = append(fx.LegsForgotten, leg.LegKey)
			}
		}
		clock += uint64(rng.IntN(3))
		fx.Freeze()
		if err := w.Commit(&fx, clock); err != nil {
			t.Fatal(err)
		}
		for _, tr := range fx.Transfers {
			last[tr.ID] = tr
		}
	}
	if rounds != 200 || records < 200*20 || setThenDeleted < 100 {
		t.Fatalf("%d rounds, %d records inspected, %d keys set then deleted", rounds, records, setThenDeleted)
	}
	v := s.Live()
	for id, want := range last {
		got, found, err := v.Transfer(id)
		if err != nil || !found || got != want {
			t.Fatalf("transfer %d: %+v (%v, %v), want its last write %+v", id, got, found, err, want)
		}
	}
}
