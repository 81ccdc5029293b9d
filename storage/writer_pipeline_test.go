package storage

import (
	"errors"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/ledgercore/ledger/ledger"
)

// prepareRound books transfer id between accounts 1 and 2 and prepares its round through w.
func prepareRound(t *testing.T, w *Writer, b *ledger.Book, id uint64) *Prepared {
	t.Helper()
	fx := &ledger.Effects{}
	rs := make([]ledger.TransferResult, 1)
	b.CreateTransfers(id, []ledger.Transfer{{ID: id, DebitAccountID: 1, CreditAccountID: 2, Amount: 5,
		Ledger: 1, Code: 1}}, rs, fx)
	if rs[0] != ledger.ResultOK {
		t.Fatalf("transfer %d: %v", id, rs[0])
	}
	fx.Freeze()
	p, err := w.Prepare(fx, b.Clock())
	if err != nil {
		t.Fatalf("prepare %d: %v", id, err)
	}
	return p
}

// TestWriterPreparesWhileOneCommits: the next round is prepared while the round before it
// waits for its WAL sync; neither is durable before its own Finish returns, they become
// durable in order, and their event log rounds follow each other. A third Prepare waits for
// a batch (writerBatches) until a Finish gives one back.
func TestWriterPreparesWhileOneCommits(t *testing.T) {
	_, fs, s, b, w := stallableStore(t)
	defer s.Close()
	defer w.Close()

	fs.Stall()
	a := prepareRound(t, w, b, 10)
	finishedA := make(chan error, 1)
	go func() { finishedA <- w.Finish(a) }()
	bp := prepareRound(t, w, b, 11) // does not wait for a's sync
	if got, want := bp.Round().Round, a.Round().Round+1; got != want || a.Round().Events == 0 {
		t.Fatalf("event log rounds %+v then %+v: want consecutive rounds with events", a.Round(), bp.Round())
	}
	reads := readDurably(s, 10)
	third := make(chan *Prepared, 1)
	go func() { third <- prepareRound(t, w, b, 12) }()
	select {
	case r := <-reads:
		t.Fatalf("a durable read returned while round 10's sync was stalled: %+v", r)
	case <-third:
		t.Fatal("a third round was prepared while two were not finished")
	case <-time.After(50 * time.Millisecond):
	}
	fs.Resume()
	if err := <-finishedA; err != nil {
		t.Fatal(err)
	}
	<-reads // taken before round 10 was durable: it may or may not show it
	if r := <-readDurably(s, 10); r.err != nil || !r.found {
		t.Fatalf("round 10 after its Finish: found %v, %v", r.found, r.err)
	}
	if _, found, err := s.Live().Transfer(11); found || err != nil {
		t.Fatalf("round 11 in the store before its Finish: found %v, %v", found, err)
	}
	if err := w.Finish(bp); err != nil {
		t.Fatal(err)
	}
	if err := w.Finish(<-third); err != nil {
		t.Fatal(err)
	}
	for _, id := range []uint64{10, 11, 12} {
		if r := <-readDurably(s, id); r.err != nil || !r.found {
			t.Fatalf("transfer %d: found %v, %v", id, r.found, r.err)
		}
	}
	if got := w.LastRound(); got.Round != bp.Round().Round+1 {
		t.Fatalf("last round %+v after rounds %+v and %+v", got, a.Round(), bp.Round())
	}
}

// TestWriterPreparedAfterFailedSync: a round prepared while the round before it commits is
// never committed once that commit fails: its Finish answers the first failure and writes
// nothing (its postings are in the tail, after a round that may be lost), and nothing is
// prepared after it.
func TestWriterPreparedAfterFailedSync(t *testing.T) {
	_, fs, s, b, w := stallableStore(t)
	defer s.Close()
	defer w.Close()

	a := prepareRound(t, w, b, 10)
	next := prepareRound(t, w, b, 11) // prepared before round 10 commits
	fs.Fail(errors.New("injected: the disk failed"))
	errA := w.Finish(a)
	if errA == nil {
		t.Fatal("round 10's commit succeeded on a failed sync")
	}
	fs.Fail(nil) // the disk is back: round 11 must still not be written after round 10
	if err := w.Finish(next); err == nil || err.Error() != errA.Error() {
		t.Fatalf("round 11 after a failed commit: %v, want the first failure %v", err, errA)
	}
	if _, found, err := s.Live().Transfer(11); found || err != nil {
		t.Fatalf("round 11 was written after the failed commit before it: found %v, %v", found, err)
	}
	fx := &ledger.Effects{}
	fx.Freeze()
	if _, err := w.Prepare(fx, b.Clock()); err == nil || err.Error() != errA.Error() {
		t.Fatalf("Prepare after a failed commit: %v, want %v", err, errA)
	}
}

// TestWriterFailedPrepareFailsTheRest: a Prepare that fails before its batch is built (here the
// event log cursor's first load, on a malformed record) fails the writer as a failed commit
// does: the next round, whose account records carry the failed round's balances, is never
// written, even once the cause is gone.
func TestWriterFailedPrepareFailsTheRest(t *testing.T) {
	_, _, s, b, first := stallableStore(t)
	defer s.Close()
	_ = first.Close()
	w := s.Writer(0) // a fresh writer loads its log cursor at its first Prepare, as after a restart
	defer w.Close()
	bad := eventLogKey(nil, 0, 1000)
	if err := s.db.Set(bad, []byte{0xff, 0xff}, pebble.Sync); err != nil {
		t.Fatal(err)
	}
	book := func(id uint64) *ledger.Effects {
		fx := &ledger.Effects{}
		rs := make([]ledger.TransferResult, 1)
		b.CreateTransfers(id, []ledger.Transfer{{ID: id, DebitAccountID: 1, CreditAccountID: 2, Amount: 5,
			Ledger: 1, Code: 1}}, rs, fx)
		fx.Freeze()
		return fx
	}
	_, errA := w.Prepare(book(10), b.Clock())
	if errA == nil {
		t.Fatal("Prepare over a malformed event log record succeeded")
	}
	if err := s.db.Delete(bad, pebble.Sync); err != nil { // the cause is gone
		t.Fatal(err)
	}
	if _, err := w.Prepare(book(11), b.Clock()); err == nil || err.Error() != errA.Error() {
		t.Fatalf("the round after a failed Prepare: %v, want the first failure %v", err, errA)
	}
	if _, found, err := s.Live().Transfer(11); found || err != nil {
		t.Fatalf("the round after a failed Prepare was written: found %v, %v", found, err)
	}
}
