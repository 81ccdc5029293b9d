package events_test

import (
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/ledgercore/ledger/actors"
	"github.com/ledgercore/ledger/events"
	"github.com/ledgercore/ledger/ledger"
	"github.com/ledgercore/ledger/storage"
)

// accountsOfShard returns two account ids owned by shard s of 2.
func accountsOfShard(s uint32) (a, b uint64) {
	for id := uint64(1); ; id++ {
		if ledger.ShardOf(id, 2) != s {
			continue
		}
		if a == 0 {
			a = id
		} else {
			return a, id
		}
	}
}

// idOfShard returns the next transfer id from *next whose arbitrating shard is s.
func idOfShard(next *uint64, s uint32) uint64 {
	for ; ledger.IDShard(*next, 2) != s; *next++ {
	}
	*next++
	return *next - 1
}

func startTwoShards(t *testing.T, fs vfs.FS, retain uint64) *node {
	t.Helper()
	store, err := storage.Open("db", storage.Options{FS: fs, Shards: 2, CacheBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	fatal := func(err error) { t.Errorf("fatal: %v", err) }
	seq, err := events.Start(store, events.Config{RetainEvents: retain, Fatal: fatal})
	if err != nil {
		t.Fatal(err)
	}
	l, err := actors.Start(store, actors.Config{Shards: 2, Events: seq, Fatal: fatal, TickInterval: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	return &node{store: store, seq: seq, l: l}
}

// TestFullyTrimmedLogRoundsSurviveCrash (regression): retention deletes every log record of
// a log whose rounds are all below the horizon, but keeps its watermark (L <log>). After a
// restart the writer numbered rounds from 1 again, below the watermark; a crash between such
// a round's commit and its indexing then left it durable in its log but never indexed
// (EventsState takes rounds <= watermark as indexed): its events were lost from the stream,
// silently. The writer now numbers its rounds after the watermark too.
func TestFullyTrimmedLogRoundsSurviveCrash(t *testing.T) {
	fs := vfs.NewMem()
	n := startTwoShards(t, fs, 50)
	a0, b0 := accountsOfShard(0)
	a1, b1 := accountsOfShard(1)
	if _, err := n.l.CreateAccounts([]ledger.Account{{ID: a0, Ledger: 1, Code: 1}, {ID: b0, Ledger: 1, Code: 1},
		{ID: a1, Ledger: 1, Code: 1}, {ID: b1, Ledger: 1, Code: 1}}); err != nil {
		t.Fatal(err)
	}
	id := uint64(1000)
	tr := func(l *actors.Ledger, shard uint32, dr, cr uint64) {
		t.Helper()
		res, err := l.CreateTransfers([]ledger.Transfer{{ID: idOfShard(&id, shard), DebitAccountID: dr, CreditAccountID: cr,
			Amount: 1, Ledger: 1, Code: 1}})
		if err != nil {
			t.Fatal(err)
		}
		_ = res
	}
	// Log 0: a few rounds, then only log 1 until log 0 is wholly below the horizon.
	for range 5 {
		tr(n.l, 0, a0, b0)
	}
	log0Last := n.seq.Last()
	for range 60 {
		tr(n.l, 1, a1, b1)
	}
	deadline := time.Now().Add(10 * time.Second)
	for n.seq.Horizon() <= log0Last+3 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if n.seq.Horizon() <= log0Last+3 {
		t.Fatalf("horizon %d: log 0 (up to %d) not trimmed", n.seq.Horizon(), log0Last)
	}
	n.stop(t)

	// Restart, commit one round on log 0, and "crash" before the sequencer indexes it (the
	// ledger runs without a sequencer, as TestUnindexedRoundsIndexedAtStart does).
	store, err := storage.Open("db", storage.Options{FS: fs, Shards: 2, CacheBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	st0, err := store.EventsState()
	if err != nil {
		t.Fatal(err)
	}
	l, err := actors.Start(store, actors.Config{Shards: 2, Fatal: func(err error) { t.Errorf("fatal: %v", err) }})
	if err != nil {
		t.Fatal(err)
	}
	tr(l, 0, a0, b0)
	l.Stop()
	st, err := store.EventsState()
	if err != nil {
		t.Fatal(err)
	}
	if err := store.Close(); err != nil {
		t.Fatal(err)
	}
	if len(st.Unindexed) == 0 {
		t.Errorf("a durable round of log 0 committed after the restart is not seen as unindexed (next %d before, %d after): its events are lost",
			st0.Next, st.Next)
	}
	n = startTwoShards(t, fs, 50)
	defer n.stop(t)
	if got, want := n.seq.Last(), st0.Next-1+3; got != want {
		t.Errorf("after the restart the stream ends at %d, want %d (the transfer and its 2 postings)", got, want)
	}
}

// TestVerifyAcceptsFullyTrimmedLog (regression): a healthy store whose log retention emptied
// failed storage.Verify ("watermark past its last round"): verifyEvents compared the
// watermark with the log's last record, which retention deleted.
func TestVerifyAcceptsFullyTrimmedLog(t *testing.T) {
	fs := vfs.NewMem()
	n := startTwoShards(t, fs, 50)
	a0, b0 := accountsOfShard(0)
	a1, b1 := accountsOfShard(1)
	if _, err := n.l.CreateAccounts([]ledger.Account{{ID: a0, Ledger: 1, Code: 1}, {ID: b0, Ledger: 1, Code: 1},
		{ID: a1, Ledger: 1, Code: 1}, {ID: b1, Ledger: 1, Code: 1}}); err != nil {
		t.Fatal(err)
	}
	id := uint64(1000)
	tr := func(shard uint32, dr, cr uint64) {
		t.Helper()
		if _, err := n.l.CreateTransfers([]ledger.Transfer{{ID: idOfShard(&id, shard), DebitAccountID: dr, CreditAccountID: cr,
			Amount: 1, Ledger: 1, Code: 1}}); err != nil {
			t.Fatal(err)
		}
	}
	tr(0, a0, b0)
	log0Last := n.seq.Last()
	for range 60 {
		tr(1, a1, b1)
	}
	for deadline := time.Now().Add(10 * time.Second); n.seq.Horizon() <= log0Last+3 && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
	}
	if n.seq.Horizon() <= log0Last+3 {
		t.Fatalf("horizon %d: log 0 not trimmed", n.seq.Horizon())
	}
	n.l.Stop()
	n.seq.Stop()
	rep, err := storage.Verify(n.store.Live(), 2)
	if cerr := n.store.Close(); cerr != nil {
		t.Fatal(cerr)
	}
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Problems) > 0 {
		t.Fatalf("a healthy store, log 0 trimmed by retention: Verify reports %v", rep.Problems)
	}
}
