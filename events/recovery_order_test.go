package events_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/ledgercore/ledger/actors"
	"github.com/ledgercore/ledger/events"
	"github.com/ledgercore/ledger/ledger"
	"github.com/ledgercore/ledger/storage"
)

// TestRecoveryNumbersSplitCreditAfterDebit (regression): rounds a crash left unindexed are
// numbered at start by their time, which was each shard's own clock (now one store-wide
// counter, storage's logClock). Shard clocks do not agree (one past the
// last when the wall clock stood still or stepped back within ClockSkewMax, or a shard
// pinned ahead after a step forward): a shard that stamped many transfers runs ahead of an
// idle one. A split transfer's credit round on the idle shard then gets a lower time than
// the debit round that caused it, and after the crash the credit posting is streamed before
// the debit round: not commit order, against README ("a split transfer's credit posting ...
// comes after the debit").
func TestRecoveryNumbersSplitCreditAfterDebit(t *testing.T) {
	fs := vfs.NewMem()
	store, err := storage.Open("db", storage.Options{FS: fs, Shards: 2, CacheBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	const now = uint64(1_700_000_000_000_000_000) // the wall clock stands still (or stepped back)
	l, err := actors.Start(store, actors.Config{Shards: 2, Now: func() uint64 { return now },
		Fatal: func(err error) { t.Errorf("fatal: %v", err) }})
	if err != nil {
		t.Fatal(err)
	}
	a0, b0 := accountsOfShard(0)
	c1, _ := accountsOfShard(1)
	if _, err := l.CreateAccounts([]ledger.Account{{ID: a0, Ledger: 1, Code: 1}, {ID: b0, Ledger: 1, Code: 1},
		{ID: c1, Ledger: 1, Code: 1}}); err != nil {
		t.Fatal(err)
	}
	id := uint64(1000)
	var busy []ledger.Transfer
	for range 500 { // shard 0 stamps 500 transfers: its clock runs 500 ns ahead of shard 1's
		busy = append(busy, ledger.Transfer{ID: idOfShard(&id, 0), DebitAccountID: a0, CreditAccountID: b0, Amount: 1, Ledger: 1, Code: 1})
	}
	if _, err := l.CreateTransfers(busy); err != nil {
		t.Fatal(err)
	}
	split := idOfShard(&id, 0)
	if res, err := l.CreateTransfers([]ledger.Transfer{{ID: split, DebitAccountID: a0, CreditAccountID: c1, Amount: 1, Ledger: 1, Code: 1}}); err != nil {
		t.Fatalf("split transfer: %v %v", res, err)
	}
	time.Sleep(200 * time.Millisecond) // the credit leg lands on shard 1
	l.Stop()                           // the crash: nothing was indexed (no sequencer ran)
	if err := store.Close(); err != nil {
		t.Fatal(err)
	}

	n := startTwoShards(t, fs, 0)
	defer n.stop(t)
	last := n.seq.Last()
	var debitSeq, creditSeq uint64
	done := errors.New("done")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = n.seq.Follow(ctx, 1, events.FollowOptions{}, func(batch []events.Event) error {
		for _, e := range batch {
			if p := e.Posting; p != nil && p.TransferID == split {
				switch p.Account {
				case a0:
					debitSeq = e.Seq
				case c1:
					creditSeq = e.Seq
				}
			}
			if e.Seq >= last {
				return done
			}
		}
		return nil
	})
	if debitSeq == 0 || creditSeq == 0 {
		t.Fatalf("split transfer %d: debit posting at %d, credit posting at %d (of %d)", split, debitSeq, creditSeq, last)
	}
	if creditSeq < debitSeq {
		t.Fatalf("after recovery the credit posting of split transfer %d is event %d, before its debit posting %d: "+
			"the credit round, committed after the debit round, was numbered first (shard clocks, not commit order)",
			split, creditSeq, debitSeq)
	}
}
