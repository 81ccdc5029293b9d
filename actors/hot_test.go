package actors

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/ledgercore/ledger/ledger"
	"github.com/ledgercore/ledger/ledger/driver"
	"github.com/ledgercore/ledger/storage"
)

// sizes records what an Observer saw.
type sizes struct {
	mu sync.Mutex
	v  []float64
}

func (s *sizes) Observe(v float64) { s.mu.Lock(); s.v = append(s.v, v); s.mu.Unlock() }

func (s *sizes) seen() []float64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]float64(nil), s.v...)
}

// hotWorld opens two shards with hot internal account 100, four customer accounts on the
// other shard and one (hotPeer) on its shard, and a flush interval long enough that only the size limit, Drain and Stop send
// a buffer.
func hotWorld(t *testing.T, fs vfs.FS, bufferMax int) (*Ledger, *storage.Store, []uint64, *sizes) {
	t.Helper()
	store := openStore(t, fs, 2)
	flushes := &sizes{}
	l, err := Start(store, Config{Shards: 2, HotFlushInterval: time.Hour, HotBufferLegsMax: bufferMax,
		HotFlushLegs: flushes, Fatal: func(err error) { t.Errorf("fatal: %v", err) }})
	if err != nil {
		t.Fatal(err)
	}
	hot := ledger.Account{ID: 100, Ledger: 1, Code: 1,
		Flags: ledger.AccountHot | ledger.AccountInternal | ledger.AccountDebitsMustNotExceedCredits}
	as := []ledger.Account{hot}
	var payers []uint64
	for id := uint64(1); len(payers) < 4; id++ {
		if ledger.ShardOf(id, 2) != ledger.ShardOf(hot.ID, 2) {
			payers = append(payers, id)
			as = append(as, ledger.Account{ID: id, Ledger: 1, Code: 1})
		}
	}
	as = append(as, ledger.Account{ID: hotPeer(), Ledger: 1, Code: 1})
	openAccounts(t, l, as...)
	return l, store, payers, flushes
}

// hotPeer is an account on the hot account's shard.
func hotPeer() uint64 {
	id := uint64(200)
	for ledger.ShardOf(id, 2) != ledger.ShardOf(100, 2) {
		id++
	}
	return id
}

func payHot(t *testing.T, l *Ledger, payers []uint64, first uint64, n int) {
	t.Helper()
	ts := make([]ledger.Transfer, n)
	for i := range ts {
		ts[i] = ledger.Transfer{ID: first + uint64(i), DebitAccountID: payers[i%len(payers)],
			CreditAccountID: 100, Amount: 1, Ledger: 1, Code: 1}
	}
	rs, err := l.CreateTransfers(ts)
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range rs {
		if r != ledger.ResultOK {
			t.Fatalf("transfer %d: %v", ts[i].ID, r)
		}
	}
}

func hotCredits(t *testing.T, store *storage.Store) uint64 {
	t.Helper()
	a, found, err := store.Live().Account(100)
	if err != nil || !found {
		t.Fatalf("account 100: %v %v", found, err)
	}
	if a.CreditsPosted.Hi != 0 {
		t.Fatalf("account 100: credits %v", a.CreditsPosted)
	}
	return a.CreditsPosted.Lo
}

// TestHotInflowsAreBuffered: inflows to a hot account from another shard are acknowledged
// once their debit side is durable, sit in the sender's buffer (not spendable), and land as
// one aggregated message when the buffer reaches its size limit or a Drain sends it.
func TestHotInflowsAreBuffered(t *testing.T) {
	l, store, payers, flushes := hotWorld(t, vfs.NewMem(), 1000)
	defer store.Close()
	defer l.Stop()

	payHot(t, l, payers, 1, 600)
	if got := hotCredits(t, store); got != 0 {
		t.Fatalf("credits posted before any flush: %d", got)
	}
	if got := l.BufferedLegs(int(ledger.ShardOf(payers[0], 2))); got != 600 {
		t.Fatalf("buffered legs: %d, want 600", got)
	}
	// Buffered money is not spendable: outflows check the posted balance only.
	rs, err := l.CreateTransfers([]ledger.Transfer{{ID: 5000, DebitAccountID: 100, CreditAccountID: hotPeer(),
		Amount: 1, Ledger: 1, Code: 1}})
	if err != nil || rs[0] != ledger.ResultExceedsCredits {
		t.Fatalf("spending buffered money: %v %v", rs, err)
	}

	// 600 + 500 passes the limit of 1000: one flush of exactly 1000 legs, 100 stay buffered.
	payHot(t, l, payers, 1000, 500)
	waitFor(t, func() bool { return hotCredits(t, store) == 1000 })
	if got := flushes.seen(); len(got) != 1 || got[0] != 1000 {
		t.Fatalf("flushes: %v, want one of 1000", got)
	}
	if got := l.Stats().HotFlushes[driver.FlushSize].Load(); got != 1 {
		t.Fatalf("size flushes: %d", got)
	}

	if err := l.Drain(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := hotCredits(t, store); got != 1100 {
		t.Fatalf("credits after drain: %d, want 1100", got)
	}
	if got := flushes.seen(); len(got) != 2 || got[1] != 100 {
		t.Fatalf("flushes: %v, want 1000 then 100", got)
	}
	for s := range 2 {
		if l.OutboxLegs(s) != 0 || l.BufferedLegs(s) != 0 {
			t.Fatalf("shard %d: outbox %d, buffered %d after drain", s, l.OutboxLegs(s), l.BufferedLegs(s))
		}
	}
	rs, err = l.CreateTransfers([]ledger.Transfer{{ID: 5001, DebitAccountID: 100, CreditAccountID: hotPeer(),
		Amount: 1100, Ledger: 1, Code: 1}})
	if err != nil || rs[0] != ledger.ResultOK {
		t.Fatalf("spending posted money: %v %v", rs, err)
	}
	verify(t, store)
}

// TestHotFlushAlong: a buffer bound for a shard that other legs go to anyway goes with them,
// without waiting for its interval.
func TestHotFlushAlong(t *testing.T) {
	l, store, payers, flushes := hotWorld(t, vfs.NewMem(), 1000)
	defer store.Close()
	defer l.Stop()
	payHot(t, l, payers, 1, 10) // buffered; nothing else goes to the hot account's shard
	if got := hotCredits(t, store); got != 0 {
		t.Fatalf("credits posted before any flush: %d", got)
	}
	rs, err := l.CreateTransfers([]ledger.Transfer{{ID: 100, DebitAccountID: payers[0], CreditAccountID: hotPeer(),
		Amount: 1, Ledger: 1, Code: 1}})
	if err != nil || rs[0] != ledger.ResultOK {
		t.Fatalf("transfer to the hot account's neighbour: %v %v", rs, err)
	}
	waitFor(t, func() bool { return hotCredits(t, store) == 10 })
	if got := l.Stats().HotFlushes[driver.FlushAlong].Load(); got != 1 {
		t.Fatalf("flushes along: %d, want 1 (all flushes: %v)", got, flushes.seen())
	}
}

// TestHotIntervalFlush: with no size limit in reach, the flush interval sends the buffer.
func TestHotIntervalFlush(t *testing.T) {
	store := openStore(t, vfs.NewMem(), 2)
	defer store.Close()
	l, err := Start(store, Config{Shards: 2, HotFlushInterval: 5 * time.Millisecond,
		Fatal: func(err error) { t.Errorf("fatal: %v", err) }})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Stop()
	openAccounts(t, l, ledger.Account{ID: 100, Ledger: 1, Code: 1, Flags: ledger.AccountHot},
		ledger.Account{ID: 1, Ledger: 1, Code: 1}, ledger.Account{ID: 2, Ledger: 1, Code: 1},
		ledger.Account{ID: 3, Ledger: 1, Code: 1})
	var payers []uint64
	for _, id := range []uint64{1, 2, 3} {
		if ledger.ShardOf(id, 2) != ledger.ShardOf(100, 2) {
			payers = append(payers, id)
		}
	}
	if len(payers) == 0 {
		t.Fatal("no payer on the other shard")
	}
	payHot(t, l, payers, 1, 50)
	waitFor(t, func() bool { return hotCredits(t, store) == 50 })
	if l.Stats().HotFlushes[driver.FlushInterval].Load() == 0 {
		t.Fatal("no interval flush counted")
	}
}

// TestStopFlushesHotBuffers: a clean stop sends the buffers and waits for their answers, so
// the stopped store holds every credit and an empty outbox.
func TestStopFlushesHotBuffers(t *testing.T) {
	fs := vfs.NewMem()
	l, store, payers, _ := hotWorld(t, fs, 1000)
	payHot(t, l, payers, 1, 300)
	l.Stop()
	if got := hotCredits(t, store); got != 300 {
		t.Fatalf("credits after stop: %d, want 300", got)
	}
	n := 0
	if err := store.Live().ForEachOutboxLeg(func(ledger.Leg) error { n++; return nil }); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Fatalf("%d legs left in the outboxes", n)
	}
	verify(t, store)
	if err := store.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestBufferedLegsSurviveCrash: a power cut loses the buffers; recovery re-sends the outbox
// and every acknowledged inflow lands exactly once.
func TestBufferedLegsSurviveCrash(t *testing.T) {
	fs := vfs.NewCrashableMem()
	l, store, payers, _ := hotWorld(t, fs, 1000)
	payHot(t, l, payers, 1, 400)
	crashed := fs.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: 0})
	l.Stop()
	_ = store.Close()

	store = openStore(t, crashed, 2)
	defer store.Close()
	l = startLedger(t, store)
	defer l.Stop()
	waitFor(t, func() bool { return hotCredits(t, store) == 400 })
	if err := l.Drain(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := hotCredits(t, store); got != 400 {
		t.Fatalf("credits: %d, want 400", got)
	}
	verify(t, store)
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in 10s")
		}
		time.Sleep(2 * time.Millisecond)
	}
}
