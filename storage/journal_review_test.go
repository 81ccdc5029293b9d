package storage

// Adversarial review tests of the journal and its index (format 8).

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/ledgercore/ledger/ledger"
)

// rvShard writes a shard's rounds by hand: each round credits 1 to some of the shard's
// accounts, one posting each, at increasing timestamps.
type rvShard struct {
	t     testing.TB
	w     *Writer
	shard uint32
	clock uint64
	ids   []uint64
	bal   map[uint64]ledger.Balance
	// prepared, when set, runs between each round's Prepare and its Finish.
	prepared func()
	lastPrev *tailGen // TestReadsBetweenPrepareAndFinish's: the generation paged last it saw
}

// rvAccounts answers n client account ids of shard (of shards).
func rvAccounts(shard, shards uint32, n int) []uint64 {
	var ids []uint64
	for id := uint64(1); len(ids) < n; id++ {
		if ledger.ShardOf(id, shards) == shard {
			ids = append(ids, id)
		}
	}
	return ids
}

func newRVShard(t testing.TB, s *Store, shard uint32, n int) *rvShard {
	r := &rvShard{t: t, w: s.Writer(shard), shard: shard, ids: rvAccounts(shard, s.shards, n), bal: map[uint64]ledger.Balance{}}
	var fx ledger.Effects
	for _, id := range r.ids {
		fx.Opened = append(fx.Opened, ledger.Account{ID: id, Ledger: 1, Code: 1})
	}
	r.clock++
	fx.Freeze()
	if err := r.w.Commit(&fx, r.clock); err != nil {
		t.Fatal(err)
	}
	return r
}

// openRVShards opens a store with opts and an rvShard of perShard accounts on each of its
// shards; ids are all their accounts, ascending.
func openRVShards(t testing.TB, opts Options, perShard int) (s *Store, ws []*rvShard, ids []uint64) {
	t.Helper()
	s, err := Open("db", opts)
	if err != nil {
		t.Fatal(err)
	}
	for sh := range opts.Shards {
		r := newRVShard(t, s, sh, perShard)
		ws = append(ws, r)
		ids = append(ids, r.ids...)
	}
	slices.Sort(ids)
	return s, ws, ids
}

// credits makes a round's effects: one posting of 1 for each of accounts (indexes into r.ids).
func (r *rvShard) credits(accounts ...int) *ledger.Effects {
	var fx ledger.Effects
	for _, i := range accounts {
		id := r.ids[i]
		r.clock++
		b := r.bal[id]
		ledger.OpCreditPost.Apply(&b, 1, 0)
		r.bal[id] = b
		fx.Postings = append(fx.Postings, ledger.Posting{Account: id, Timestamp: r.clock, TransferID: r.clock,
			Amount: 1, Op: ledger.OpCreditPost, After: b})
	}
	fx.Freeze()
	return &fx
}

// round commits one posting for each of accounts (indexes into r.ids).
func (r *rvShard) round(accounts ...int) {
	p, err := r.w.Prepare(r.credits(accounts...), r.clock)
	if err != nil {
		r.t.Fatal(err)
	}
	if r.prepared != nil {
		r.prepared()
	}
	if err := r.w.Finish(p); err != nil {
		r.t.Fatal(err)
	}
}

// TestLiveReaderSeesLaterCommits: Live "reads the store as it is at each read". A Live
// reader caches its shard view (paged mark, clock) on its first read, so a balance read
// through the same Live reader after a later commit is the one before it.
func TestLiveReaderSeesLaterCommits(t *testing.T) {
	s, err := Open("db", Options{FS: vfs.NewMem(), Shards: 1, PostingTailMax: 1 << 10})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	r := newRVShard(t, s, 0, 2)
	r.round(0)
	live := s.Live()
	a, _, err := live.Account(r.ids[0])
	if err != nil || a.Balance != r.bal[r.ids[0]] {
		t.Fatalf("first read: %+v %v", a.Balance, err)
	}
	r.round(0, 0, 0)
	a, _, err = live.Account(r.ids[0])
	if err != nil {
		t.Fatal(err)
	}
	if a.Balance != r.bal[r.ids[0]] {
		t.Fatalf("Live reader after a commit: credits posted %v, the store has %v",
			a.Balance.CreditsPosted, r.bal[r.ids[0]].CreditsPosted)
	}
}

// TestLiveReaderAcrossPageWrite: a Live reader whose view was loaded before the shard
// wrote pages reads the new pages live and the tail it cached: the postings in both show
// twice.
func TestLiveReaderAcrossPageWrite(t *testing.T) {
	s, err := Open("db", Options{FS: vfs.NewMem(), Shards: 1, PostingTailMax: 4})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	r := newRVShard(t, s, 0, 2)
	r.round(0)
	live := s.Live()
	if _, _, err := live.Account(r.ids[1]); err != nil { // loads the shard's view
		t.Fatal(err)
	}
	r.round(0, 0, 0) // 4 postings: pages written, the tail rotated
	ps, _, err := live.Postings(PostingFilter{Account: r.ids[0], Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	var ts []uint64
	for _, p := range ps {
		ts = append(ts, p.Timestamp)
	}
	if len(ps) != 4 {
		t.Fatalf("Live reader: %d postings %v, the store has 4", len(ps), ts)
	}
}

// rvCheck reads every account of ids through v's index (balance, postings both ways) and
// compares with the journal as v sees it.
func rvCheck(v *Reader, ids []uint64) error {
	journal := map[uint64][]ledger.Posting{}
	if err := v.ForEachPosting(func(p ledger.Posting) error {
		journal[p.Account] = append(journal[p.Account], p)
		return nil
	}); err != nil {
		return err
	}
	for _, id := range ids {
		want := journal[id]
		a, found, err := v.Account(id)
		if err != nil || !found {
			return fmt.Errorf("account %d: %v %v", id, found, err)
		}
		var bal ledger.Balance
		if len(want) > 0 {
			bal = want[len(want)-1].After
		}
		if a.Balance != bal {
			return fmt.Errorf("account %d: balance %v, the journal's latest %v", id, a.Balance.CreditsPosted, bal.CreditsPosted)
		}
		got, _, err := v.Postings(PostingFilter{Account: id, Limit: len(want) + 10})
		if err != nil {
			return err
		}
		if !slices.Equal(got, want) {
			return fmt.Errorf("account %d: %d postings by the index, %d in the journal", id, len(got), len(want))
		}
		back, _, err := v.Postings(PostingFilter{Account: id, Limit: len(want) + 10, Reversed: true})
		if err != nil {
			return err
		}
		slices.Reverse(back)
		if !slices.Equal(back, want) {
			return fmt.Errorf("account %d: %d postings backward by the index, %d in the journal", id, len(back), len(want))
		}
	}
	return nil
}

// rvIndexProblems answers Verify's problems with the index pages (the rounds written by hand
// have postings without transfers, which Verify reports too).
func rvIndexProblems(v *Reader, shards uint32) ([]string, error) {
	rep, err := Verify(v, shards)
	var out []string
	for _, p := range rep.Problems {
		if strings.Contains(p, "index page") || strings.Contains(p, "paged mark") || strings.Contains(p, "in the journal of shard") {
			out = append(out, p)
		}
	}
	return out, err
}

// TestConcurrentSnapshots: two shards' writers commit while readers take snapshots
// (read at once, and some held across several page writes): every snapshot's reads through
// the index agree with its journal. Run with -race.
func TestConcurrentSnapshots(t *testing.T) {
	defer func(n int) { pageEntriesMax = n }(pageEntriesMax)
	pageEntriesMax = 3
	const shards = 2
	s, ws, ids := openRVShards(t, Options{FS: vfs.NewMem(), Shards: shards, PostingTailMax: 8, PagingAccountsPerRound: 2}, 4)
	defer s.Close()
	var stop atomic.Bool
	var wg, writers sync.WaitGroup
	for sh, r := range ws {
		writers.Add(1)
		go func() {
			defer writers.Done()
			rng := rand.New(rand.NewPCG(uint64(sh), 9))
			for range 300 { // a bounded run, the same work under -race
				n := 1 + rng.IntN(5)
				acc := make([]int, n)
				for i := range acc {
					acc[i] = rng.IntN(len(r.ids))
				}
				r.round(acc...)
			}
		}()
	}
	errs := make(chan error, 16)
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var held []*Reader
			for i := 0; !stop.Load(); i++ {
				v := s.Snapshot()
				if err := rvCheck(v, ids); err != nil {
					errs <- fmt.Errorf("reader %d, snapshot %d: %w", g, i, err)
					return
				}
				if i%5 == 0 {
					held = append(held, v)
				} else {
					_ = v.Close()
				}
				if len(held) > 3 {
					if err := rvCheck(held[0], ids); err != nil {
						errs <- fmt.Errorf("reader %d, held snapshot: %w", g, err)
						return
					}
					_ = held[0].Close()
					held = held[1:]
				}
			}
			for _, v := range held {
				_ = v.Close()
			}
		}()
	}
	writers.Wait()
	stop.Store(true)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if problems, err := rvIndexProblems(s.Snapshot(), shards); err != nil || len(problems) > 0 {
		t.Fatalf("verify: %v %v", problems, err)
	}
}

// TestUpgradeAgainAfterOldBuildWrote: an upgrade interrupted after some of its
// (unsynced) batches reached the disk leaves index pages behind, with the format still 7.
// If the older build runs on it again (a rollback after the failed start) and writes more
// postings for an account, the next upgrade writes that account's last page under another
// key, and the interrupted run's page lists the same postings again.
func TestUpgradeAgainAfterOldBuildWrote(t *testing.T) {
	defer func(n int) { pageEntriesMax = n }(pageEntriesMax)
	pageEntriesMax = 4
	fs := vfs.NewMem()
	s, err := Open("db", Options{FS: fs, Shards: 1})
	if err != nil {
		t.Fatal(err)
	}
	r := newRVShard(t, s, 0, 1)
	for range 6 {
		r.round(0)
	}
	_ = r.w.Close()
	// A format-7 store with 6 postings of the account, the pages and mark of format 8 gone.
	toFormat7(t, s)
	// The interrupted upgrade: moveToJournal's batches reached the disk, not the final one.
	lo, hi := prefixBounds(prefixPosting)
	if err := s.moveToJournal(lo, hi); err != nil {
		t.Fatal(err)
	}
	// The older build runs again: two more postings, under h, its clock with them.
	b := s.db.NewBatch()
	bal := r.bal[r.ids[0]]
	for range 2 {
		r.clock++
		ledger.OpCreditPost.Apply(&bal, 1, 0)
		p := ledger.Posting{Account: r.ids[0], Timestamp: r.clock, TransferID: r.clock, Amount: 1, Op: ledger.OpCreditPost, After: bal}
		_ = b.Set(postingKey(nil, p.Account, p.Timestamp), encodePosting(nil, &p), nil)
	}
	_ = b.Set(clockKey(nil, 0), be.AppendUint64(nil, r.clock), nil)
	if err := b.Commit(pebble.Sync); err != nil {
		t.Fatal(err)
	}
	_ = s.Close()

	s, err = Open("db", Options{FS: fs})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	v := s.Snapshot()
	defer v.Close()
	if err := rvCheck(v, r.ids); err != nil {
		t.Error(err)
	}
	if problems, err := rvIndexProblems(v, 1); err != nil || len(problems) > 0 {
		t.Errorf("verify: %v %v", problems, err)
	}
}

// BenchmarkHotAccountBalance: one balance read of an account that has every posting of
// a full tail (default PostingTailMax) walks and copies its whole chain, under the tail's
// read lock, to answer its latest posting. Before format 8 it was one SeekLT.
func BenchmarkHotAccountBalance(b *testing.B) {
	s, err := Open("db", Options{FS: vfs.NewMem(), Shards: 1})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	r := newRVShard(b, s, 0, 2)
	acc := make([]int, 4096)
	for range PostingTailMax/len(acc) - 1 {
		r.round(acc...)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		v := s.Snapshot()
		if _, _, err := v.Account(r.ids[0]); err != nil {
			b.Fatal(err)
		}
		_ = v.Close()
	}
}

// TestPostingsOfForeignTransitID: Postings of any account id a client sends
// (GetAccountTransfers reads them without looking the account up) must not panic. A
// transit-shaped id names its shard in its bits (ledger.ShardOf), which may be past the
// store's shards: the shard view is indexed with it.
func TestPostingsOfForeignTransitID(t *testing.T) {
	s, err := Open("db", Options{FS: vfs.NewMem(), Shards: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	v := s.Snapshot()
	defer v.Close()
	id := ledger.TransitAccountID(0x7fff, 1)
	defer func() {
		if r := recover(); r != nil {
			t.Fatalf("Postings of account %#x: panic: %v", id, r)
		}
	}()
	ps, next, err := v.Postings(PostingFilter{Account: id, Limit: 10})
	if err != nil || len(ps) != 0 || next != 0 {
		t.Fatalf("%v %d %v", ps, next, err)
	}
}

// TestConcurrentReadsOfLargeRounds: rounds of more postings than addRound adds under one hold
// of the tail's lock (warmChunk: their places are found outside it, the postings added a chunk
// at a time) commit as the shard's committer and syncer commit them (round k+1's Prepare while
// round k's Finish runs on another goroutine), with generations small enough to seal, page
// and retire, while readers take snapshots and a Live reader reads: every snapshot's balances
// and histories, read through the tail and the pages, agree with its journal, never showing a
// posting of a round its snapshot does not hold. Both ways: the postings put in the tail by
// Prepare, and on a goroutine of their own (Writer.addToTail, forced). Run with -race.
func TestConcurrentReadsOfLargeRounds(t *testing.T) {
	for _, handOff := range []bool{false, true} {
		t.Run(fmt.Sprint("tail on its own goroutine ", handOff), func(t *testing.T) { concurrentReadsOfLargeRounds(t, handOff) })
	}
}

func concurrentReadsOfLargeRounds(t *testing.T, handOff bool) {
	const accounts = 2*warmChunk + 17
	s, ws, ids := openRVShards(t, Options{FS: vfs.NewMem(), Shards: 1, PostingTailMax: 3 * accounts, PagingAccountsPerRound: 97}, accounts)
	defer s.Close()
	r := ws[0]
	if handOff {
		r.w.tailAsyncPostings, r.w.tailAsyncAccounts = 0, 0
	}
	var stop atomic.Bool
	var wg sync.WaitGroup
	errs := make(chan error, 3)
	for g := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; !stop.Load(); i++ {
				var err error
				if g == 2 { // a Live reader: each account's balance must be one the store held
					v := s.Live()
					for _, id := range ids[:32] {
						if _, _, err = v.Account(id); err != nil {
							break
						}
					}
				} else {
					v := s.Snapshot()
					err = rvCheck(v, ids)
					_ = v.Close()
				}
				if err != nil {
					errs <- fmt.Errorf("reader %d, view %d: %w", g, i, err)
					return
				}
			}
		}()
	}
	syncs := make(chan *Prepared, 1) // two rounds in flight, as the shard's committer and syncer
	synced := make(chan error, 1)
	go func() {
		var first error
		for p := range syncs {
			if err := r.w.Finish(p); err != nil && first == nil {
				first = err
			}
		}
		synced <- first
	}()
	rng := rand.New(rand.NewPCG(31, 32))
	rounds := 40
	if raceOn {
		rounds = 20
	}
	for range rounds {
		n := warmChunk + 1 + rng.IntN(accounts-warmChunk) // over one chunk, some over two
		p, err := r.w.Prepare(r.credits(rng.Perm(accounts)[:n]...), r.clock)
		if err != nil {
			t.Fatal(err)
		}
		syncs <- p
	}
	close(syncs)
	if err := <-synced; err != nil {
		t.Fatal(err)
	}
	stop.Store(true)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if handedOff := r.w.handedOff > 0; handedOff != handOff {
		t.Fatalf("%d rounds handed their postings off; want them all handed off: %v", r.w.handedOff, handOff)
	}
	v := s.Snapshot()
	defer v.Close()
	if err := rvCheck(v, ids); err != nil {
		t.Fatal(err)
	}
	for _, id := range ids {
		a, _, err := v.Account(id)
		if err != nil || a.Balance != r.bal[id] {
			t.Fatalf("account %d: %+v %v, want %+v", id, a.Balance, err, r.bal[id])
		}
	}
	if problems, err := rvIndexProblems(v, 1); err != nil || len(problems) > 0 {
		t.Fatalf("%v %v", problems, err)
	}
}

// TestReadsBetweenPrepareAndFinish: a round's Prepare takes its postings into the tail and, when
// it writes the last of a sealed generation's pages, retires that generation (it becomes the
// one paged last) before the round, with its new paged mark, is committed. A snapshot taken
// in that window still has the old mark: its balances and histories, through the tail and the
// pages, must agree with its journal, and show nothing of the round being prepared.
func TestReadsBetweenPrepareAndFinish(t *testing.T) {
	for _, handOff := range []bool{false, true} {
		t.Run(fmt.Sprint("tail on its own goroutine ", handOff), func(t *testing.T) { readsBetweenPrepareAndFinish(t, handOff) })
	}
}

// readsBetweenPrepareAndFinish is TestReadsBetweenPrepareAndFinish, with every round's postings
// put in the tail on a goroutine of their own (Writer.addToTail) when handOff.
func readsBetweenPrepareAndFinish(t *testing.T, handOff bool) {
	s, ws, ids := openRVShards(t, Options{FS: vfs.NewMem(), Shards: 1, PostingTailMax: 64, PagingAccountsPerRound: 4}, 40)
	defer s.Close()
	r := ws[0]
	if handOff {
		r.w.tailAsyncPostings, r.w.tailAsyncAccounts = 0, 0
	}
	tail := s.tails[0]
	retired := 0
	r.prepared = func() {
		v := s.Snapshot()
		defer v.Close()
		if err := rvCheck(v, ids); err != nil {
			t.Fatalf("a snapshot between Prepare and Finish: %v", err)
		}
		tail.mu.RLock()
		if tail.sealed == nil && tail.prev != nil && len(tail.prev.ts) > 0 && tail.prev != r.lastPrev {
			retired++ // this round's Prepare retired a generation
			r.lastPrev = tail.prev
		}
		tail.mu.RUnlock()
	}
	rng := rand.New(rand.NewPCG(5, 6))
	for range 300 {
		r.round(rng.Perm(40)[:1+rng.IntN(12)]...)
	}
	if handedOff := r.w.handedOff > 0; handedOff != handOff {
		t.Fatalf("%d rounds handed their postings off; want them handed off: %v", r.w.handedOff, handOff)
	}
	if retired < 3 {
		t.Fatalf("%d generations retired between a Prepare and its Finish: the test shows little", retired)
	}
}
