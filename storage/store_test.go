package storage

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/ledgercore/ledger/ledger"
	"github.com/ledgercore/ledger/storage/storagetest"
)

// commitTransfer books transfer id between accounts 1 and 2 of a one-shard book and commits
// the round through w.
func commitRound(t *testing.T, w *Writer, b *ledger.Book, id uint64) error {
	t.Helper()
	var fx ledger.Effects
	rs := make([]ledger.TransferResult, 1)
	b.CreateTransfers(id, []ledger.Transfer{{ID: id, DebitAccountID: 1, CreditAccountID: 2, Amount: 5,
		Ledger: 1, Code: 1}}, rs, &fx)
	if rs[0] != ledger.ResultOK {
		t.Fatalf("transfer %d: %v", id, rs[0])
	}
	fx.Freeze()
	return w.Commit(&fx, b.Clock())
}

func openAccounts(t *testing.T, s *Store) (*ledger.Book, *Writer) {
	t.Helper()
	b := ledger.NewBook(0, 1)
	var fx ledger.Effects
	rs := make([]ledger.AccountResult, 2)
	b.CreateAccounts(1, []ledger.Account{{ID: 1, Ledger: 1, Code: 1}, {ID: 2, Ledger: 1, Code: 1}}, rs, &fx)
	w := s.Writer(0)
	fx.Freeze()
	if err := w.Commit(&fx, b.Clock()); err != nil {
		t.Fatal(err)
	}
	return b, w
}

// stallableStore opens a one-shard store with accounts 1 and 2 on a crashable file system
// whose WAL syncs can be stalled.
func stallableStore(t *testing.T) (*vfs.MemFS, *storagetest.StallFS, *Store, *ledger.Book, *Writer) {
	t.Helper()
	mem := vfs.NewCrashableMem()
	fs := storagetest.NewStallFS(mem)
	s, err := Open("db", Options{FS: fs, Shards: 1, CacheBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	b, w := openAccounts(t, s)
	return mem, fs, s, b, w
}

// TestDurableSnapshotSeesOnlyDurable: Pebble shows a batch to readers before its WAL sync
// returns, so a live read can see what a power cut then erases. A durable snapshot does not
// return before what it shows is synced: whatever it shows survives a crash.
func TestDurableSnapshotSeesOnlyDurable(t *testing.T) {
	mem, fs, s, b, w := stallableStore(t)
	defer s.Close()
	defer w.Close()

	fs.Stall()
	committed := make(chan error, 1)
	go func() { committed <- commitRound(t, w, b, 10) }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, found, _ := s.Live().Transfer(10); found {
			break // visible, not yet durable
		}
		if time.Now().After(deadline) {
			t.Fatal("the stalled commit never became visible")
		}
		time.Sleep(time.Millisecond)
	}
	// The defect this guards against: a live read shows transfer 10, and a power cut now
	// (only synced data kept) erases it.
	crashed := mem.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: 0})
	if found := transferIn(t, crashed, 10); found {
		t.Fatal("transfer 10 survived a crash before its sync: the test shows nothing")
	}

	reads := readDurably(s, 10)
	select {
	case r := <-reads:
		t.Fatalf("a durable read returned while the WAL sync was stalled: %+v", r)
	case <-time.After(50 * time.Millisecond):
	}
	fs.Resume()
	if err := <-committed; err != nil {
		t.Fatal(err)
	}
	r := <-reads
	if r.err != nil || !r.found {
		t.Fatalf("durable read after the sync: found %v, %v", r.found, r.err)
	}
	if !transferIn(t, mem.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: 0}), 10) {
		t.Fatal("what a durable read showed did not survive a crash")
	}
}

// durableRead is what a durable snapshot showed of one transfer.
type durableRead struct {
	found bool
	err   error
}

// readDurably looks transfer id up on a durable snapshot, in the background.
func readDurably(s *Store, id uint64) <-chan durableRead {
	reads := make(chan durableRead, 1)
	go func() {
		v, err := s.DurableSnapshot()
		if err != nil {
			reads <- durableRead{err: err}
			return
		}
		defer v.Close()
		_, found, err := v.Transfer(id)
		reads <- durableRead{found, err}
	}()
	return reads
}

// transferIn opens a crashed copy and reports whether transfer id is in it.
func transferIn(t *testing.T, fs vfs.FS, id uint64) bool {
	t.Helper()
	s, err := Open("db", Options{FS: fs, CacheBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	_, found, err := s.Live().Transfer(id)
	if err != nil {
		t.Fatal(err)
	}
	return found
}

// TestOtherFormatRefused: a store written with another layout is refused with a clear error,
// not misread.
func TestOtherFormatRefused(t *testing.T) {
	fs := vfs.NewMem()
	db, err := pebble.Open("db", &pebble.Options{FS: fs})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Set([]byte("mformat"), []byte("ledger-format-2"), pebble.Sync); err != nil {
		t.Fatal(err)
	}
	_ = db.Close()
	_, err = Open("db", Options{FS: fs, Shards: 1})
	if !errors.Is(err, ErrFormat) {
		t.Fatalf("opened a ledger-format-2 store: %v", err)
	}
	t.Log(err)
}

// TestOlderFormatsUpgradedOnWrite: a store made before the event stream (format 4), before
// payment log records were compressed (format 5) or before accounting days (format 6) opens;
// opened for writing it becomes the current format, which the builds that wrote it refuse;
// opened read-only it keeps its format.
func TestOlderFormatsUpgradedOnWrite(t *testing.T) {
	for _, old := range formatsUpgradable {
		t.Run(old, func(t *testing.T) { testUpgradedOnWrite(t, old) })
	}
}

func testUpgradedOnWrite(t *testing.T, old string) {
	fs := vfs.NewMem()
	db, err := pebble.Open("db", &pebble.Options{FS: fs})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Set([]byte("mformat"), []byte(old), pebble.Sync); err != nil {
		t.Fatal(err)
	}
	if err := db.Set([]byte("mshards"), []byte("1"), pebble.Sync); err != nil {
		t.Fatal(err)
	}
	_ = db.Close()
	format := func() string {
		t.Helper()
		db, err := pebble.Open("db", &pebble.Options{FS: fs})
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		v, closer, err := db.Get([]byte("mformat"))
		if err != nil {
			t.Fatal(err)
		}
		defer closer.Close()
		return string(v)
	}
	s, err := Open("db", Options{FS: fs, ReadOnly: true})
	if err != nil {
		t.Fatalf("read-only open of a %s store: %v", old, err)
	}
	_ = s.Close()
	if got := format(); got != old {
		t.Fatalf("read-only open changed the format to %q", got)
	}
	s, err = Open("db", Options{FS: fs, Shards: 1})
	if err != nil {
		t.Fatalf("open of a %s store: %v", old, err)
	}
	_ = s.Close()
	if got := format(); got != formatVersion {
		t.Fatalf("format %q after a writable open, want %q", got, formatVersion)
	}
}

// TestReadOnlyWritesNothing: a store opened read-only (ledgerctl verify --data-dir) reads, and
// leaves every file as it was.
func TestReadOnlyWritesNothing(t *testing.T) {
	fs := vfs.NewMem()
	s, err := Open("db", Options{FS: fs, Shards: 1})
	if err != nil {
		t.Fatal(err)
	}
	b, w := openAccounts(t, s)
	if err := commitRound(t, w, b, 10); err != nil {
		t.Fatal(err)
	}
	_ = w.Close()
	_ = s.Close()
	before := snapshotFiles(t, fs)
	s, err = Open("db", Options{FS: fs, ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	rep, err := Verify(s.Live(), s.Shards())
	if err != nil || len(rep.Problems) != 0 || rep.Accounts != 2 {
		t.Fatalf("verify read-only: %+v %v", rep, err)
	}
	if _, err := s.DurableSnapshot(); err != nil {
		t.Fatalf("durable snapshot of a read-only store: %v", err)
	}
	_ = s.Close()
	if after := snapshotFiles(t, fs); len(after) != len(before) {
		t.Fatalf("files changed: %v -> %v", before, after)
	} else {
		for name, size := range before {
			if after[name] != size {
				t.Errorf("%s: %d bytes, then %d", name, size, after[name])
			}
		}
	}
	if _, err := Open("other", Options{FS: fs, ReadOnly: true}); err == nil {
		t.Fatal("opened a missing store read-only")
	}
}

func snapshotFiles(t *testing.T, fs vfs.FS) map[string]int64 {
	t.Helper()
	names, err := fs.List("db")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int64{}
	for _, n := range names {
		st, err := fs.Stat(fs.PathJoin("db", n))
		if err != nil {
			t.Fatal(err)
		}
		out[n] = st.Size()
	}
	return out
}

// TestInflowsInTransitReadsOneAccount: the inflows on their way to an account are the outbox
// legs to it that its shard has not booked, from every shard, and nothing else.
func TestInflowsInTransitReadsOneAccount(t *testing.T) {
	s, err := Open("db", Options{FS: vfs.NewMem(), Shards: 3})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	leg := func(id, to uint64, from uint32, amount uint64, kind ledger.LegKind) ledger.Leg {
		return ledger.Leg{LegKey: ledger.LegKey{TransferID: id, Kind: kind}, Account: to, DebitAccount: 1,
			Amount: amount, Ledger: 1, From: from}
	}
	for from, legs := range map[uint32][]ledger.Leg{
		0: {leg(1, 5, 0, 10, ledger.LegCreditPost), leg(2, 6, 0, 100, ledger.LegCreditPost),
			leg(3, 5, 0, 7, ledger.LegCreditHold)},
		1: {leg(4, 5, 1, 20, ledger.LegCreditPostHeld), leg(5, 5, 1, 1000, ledger.LegCreditPost),
			leg(6, 4, 1, 3, ledger.LegCreditPost)},
	} {
		fx := ledger.Effects{LegsOut: legs}
		if from == 1 { // shard 2 booked transfer 5's leg already
			fx.LegsDone = []ledger.LegResult{{LegKey: legs[1].LegKey, Result: ledger.ResultOK, From: 1}}
		}
		fx.Freeze()
		w := s.Writer(from)
		if err := w.Commit(&fx, 1); err != nil {
			t.Fatal(err)
		}
		_ = w.Close()
	}
	sums := map[uint64]ledger.Uint128{5: {}}
	if err := s.Live().InflowsInTransit(sums); err != nil {
		t.Fatal(err)
	}
	if len(sums) != 1 || sums[5] != ledger.U128(30) { // 10 + 20: not the hold, not the booked leg
		t.Fatalf("inflows to account 5: %v", sums)
	}
}

// BenchmarkRead: a lookup of one transfer on the live store, on a snapshot, and on a durable
// snapshot (which waits for a WAL sync), on the operating system's disk.
func BenchmarkRead(b *testing.B) {
	s, err := Open(b.TempDir(), Options{Shards: 1})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	book := ledger.NewBook(0, 1)
	var fx ledger.Effects
	book.CreateAccounts(1, []ledger.Account{{ID: 1, Ledger: 1, Code: 1}, {ID: 2, Ledger: 1, Code: 1}},
		make([]ledger.AccountResult, 2), &fx)
	book.CreateTransfers(2, []ledger.Transfer{{ID: 9, DebitAccountID: 1, CreditAccountID: 2, Amount: 3,
		Ledger: 1, Code: 1}}, make([]ledger.TransferResult, 1), &fx)
	fx.Freeze()
	w := s.Writer(0)
	if err := w.Commit(&fx, book.Clock()); err != nil {
		b.Fatal(err)
	}
	_ = w.Close()
	for _, mode := range []string{"live", "snapshot", "durable"} {
		b.Run(mode, func(b *testing.B) {
			for b.Loop() {
				var r *Reader
				switch mode {
				case "live":
					r = s.Live()
				case "snapshot":
					r = s.Snapshot()
				default:
					if r, err = s.DurableSnapshot(); err != nil {
						b.Fatal(err)
					}
				}
				if _, found, err := r.Transfer(9); err != nil || !found {
					b.Fatal(found, err)
				}
				_ = r.Close()
			}
		})
	}
}

// TestDurableSnapshotOrder: a durable snapshot is taken first and synced after. A round that
// becomes visible between the two steps (its sync stalled) must not show in what it returns:
// the other order (sync, then snapshot) would show it, and a power cut would erase it.
func TestDurableSnapshotOrder(t *testing.T) {
	mem, fs, s, b, w := stallableStore(t)
	defer s.Close()
	defer w.Close()
	committed := make(chan error, 1)
	visible := make(chan struct{})
	durableReadHook = func() {
		fs.Stall()
		go func() { committed <- commitRound(t, w, b, 10) }()
		for {
			if _, found, _ := s.Live().Transfer(10); found {
				close(visible)
				return
			}
			time.Sleep(time.Millisecond)
		}
	}
	defer func() { durableReadHook = nil }()
	reads := readDurably(s, 10)
	<-visible
	crashed := mem.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: 0}) // transfer 10 not durable yet
	time.Sleep(20 * time.Millisecond)
	fs.Resume()
	r := <-reads
	if err := <-committed; err != nil || r.err != nil {
		t.Fatal(err, r.err)
	}
	if r.found && !transferIn(t, crashed, 10) {
		t.Fatal("a durable snapshot showed a round that was not durable when it returned")
	}
}

// TestVerifyChecksPostingsAgainstTransfers: a posting whose transfer is missing, names other
// accounts, or has another amount is a problem (a transfer booked twice under one id shows
// so), and a clean store has none, however many postings it has.
func TestVerifyChecksPostingsAgainstTransfers(t *testing.T) {
	s, err := Open("db", Options{FS: vfs.NewMem(), Shards: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	b, w := openAccounts(t, s)
	defer w.Close()
	defer func(n int) { verifyRefsMax = n }(verifyRefsMax)
	verifyRefsMax = 64 // several batches of references
	for id := uint64(10); id < 13; id++ {
		var fx ledger.Effects
		ts := make([]ledger.Transfer, 100)
		for i := range ts {
			ts[i] = ledger.Transfer{ID: id*1000 + uint64(i), DebitAccountID: 1, CreditAccountID: 2, Amount: 3, Ledger: 1, Code: 1}
		}
		b.CreateTransfers(id, ts, make([]ledger.TransferResult, len(ts)), &fx)
		fx.Freeze()
		if err := w.Commit(&fx, b.Clock()); err != nil {
			t.Fatal(err)
		}
	}
	if rep, err := Verify(s.Live(), 1); err != nil || len(rep.Problems) != 0 {
		t.Fatalf("clean store: %v %v", rep.Problems, err)
	}
	a, _ := b.Account(2)
	var fx ledger.Effects
	for i, p := range []ledger.Posting{
		{TransferID: 999, Amount: 3},   // no such transfer
		{TransferID: 10000, Amount: 4}, // another amount
		{TransferID: 10001, Amount: 3}, // fine
	} {
		after := a.Balance
		after.CreditsPosted, _ = after.CreditsPosted.Add64(p.Amount)
		p.Account, p.Timestamp, p.Op, p.After = 2, b.Clock()+1+uint64(i), ledger.OpCreditPost, after
		a.Balance = after
		fx.Postings = append(fx.Postings, p)
	}
	fx.Postings = append(fx.Postings, ledger.Posting{Account: 1, Timestamp: b.Clock() + 9, TransferID: 10002,
		Op: ledger.OpCreditPost, Amount: 3, After: ledger.Balance{}}) // fine by its transfer
	fx.Freeze()
	if err := w.Commit(&fx, b.Clock()+10); err != nil {
		t.Fatal(err)
	}
	rep, err := Verify(s.Live(), 1)
	if err != nil {
		t.Fatal(err)
	}
	var missing, amount int
	for _, p := range rep.Problems {
		switch {
		case strings.Contains(p, "names missing transfer 999"):
			missing++
		case strings.Contains(p, "moves 4, its transfer 10000 has 3"):
			amount++
		}
	}
	if missing != 1 || amount != 1 {
		t.Fatalf("problems: %v", rep.Problems)
	}
}

// TestWriterClosedTwice: closing a writer twice gives its batch back to Pebble once (twice, two
// later writers could share it), and a closed writer refuses to commit.
func TestWriterClosedTwice(t *testing.T) {
	s, err := Open("db", Options{FS: vfs.NewMem(), Shards: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	w := s.Writer(0)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	a, b := s.Writer(0), s.Writer(0)
	defer a.Close()
	defer b.Close()
	if a.batch == b.batch {
		t.Fatal("two writers share one batch")
	}
	var fx ledger.Effects
	fx.Freeze()
	if err := w.Commit(&fx, 1); !errors.Is(err, errWriterClosed) {
		t.Fatalf("Commit on a closed writer: %v", err)
	}
	ow := s.OrderWriter(0)
	_ = ow.Close()
	if err := ow.Commit(nil, 0); !errors.Is(err, errWriterClosed) {
		t.Fatalf("Commit on a closed order writer: %v", err)
	}
}
