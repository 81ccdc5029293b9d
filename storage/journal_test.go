package storage

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/ledgercore/ledger/ledger"
)

// journalWorld drives one shard's book and writer and keeps, per account, every posting it
// committed: the model the store's reads are checked against.
type journalWorld struct {
	t        *testing.T
	s        *Store
	b        *ledger.Book
	w        *Writer
	rng      *rand.Rand
	accounts []uint64
	model    map[uint64][]ledger.Posting
	nextID   uint64
	now      uint64
	logged   []loggedRound // every round that logged events, with its postings
}

type loggedRound struct {
	lr       LogRound
	postings []ledger.Posting
}

const journalAccounts = 6

func newJournalWorld(t *testing.T, s *Store, seed uint64) *journalWorld {
	t.Helper()
	j := &journalWorld{t: t, s: s, b: ledger.NewBook(0, 1), w: s.Writer(0), rng: rand.New(rand.NewPCG(seed, 1)),
		model: map[uint64][]ledger.Posting{}, nextID: 1, now: 1}
	var fx ledger.Effects
	as := make([]ledger.Account, journalAccounts)
	for i := range as {
		as[i] = ledger.Account{ID: uint64(i + 1), Ledger: 1, Code: 1}
		j.accounts = append(j.accounts, as[i].ID)
	}
	j.b.CreateAccounts(j.now, as, make([]ledger.AccountResult, len(as)), &fx)
	j.commit(&fx)
	return j
}

func (j *journalWorld) commit(fx *ledger.Effects) {
	j.t.Helper()
	fx.Freeze()
	if err := j.w.Commit(fx, j.b.Clock()); err != nil {
		j.t.Fatal(err)
	}
	for _, p := range fx.Postings {
		j.model[p.Account] = append(j.model[p.Account], p)
	}
	if len(fx.Postings) > 0 {
		j.logged = append(j.logged, loggedRound{j.w.LastRound(), slices.Clone(fx.Postings)})
	}
	fx.Reset()
}

// round commits a round of 1 to n transfers between random accounts (account 1 takes most).
func (j *journalWorld) round(n int) {
	var fx ledger.Effects
	ts := make([]ledger.Transfer, 1+j.rng.IntN(n))
	for i := range ts {
		dr := j.accounts[j.rng.IntN(len(j.accounts))]
		cr := uint64(1)
		if j.rng.IntN(3) == 0 || dr == 1 {
			cr = j.accounts[1+j.rng.IntN(len(j.accounts)-1)]
		}
		if cr == dr {
			cr = dr%journalAccounts + 1
		}
		ts[i] = ledger.Transfer{ID: j.nextID, DebitAccountID: dr, CreditAccountID: cr, Amount: 1 + j.rng.Uint64N(100), Ledger: 1, Code: 1}
		j.nextID++
	}
	j.now++
	j.b.CreateTransfers(j.now, ts, make([]ledger.TransferResult, len(ts)), &fx)
	j.commit(&fx)
}

// snapshotModel copies the model as a reader taken now must see it.
func (j *journalWorld) snapshotModel() map[uint64][]ledger.Posting {
	m := map[uint64][]ledger.Posting{}
	for a, ps := range j.model {
		m[a] = slices.Clone(ps)
	}
	return m
}

// check reads every account's balance and postings through v (forward, backward, in ranges,
// page by page) and compares them with model.
func checkJournalReads(t *testing.T, what string, v *Reader, model map[uint64][]ledger.Posting, rng *rand.Rand) {
	t.Helper()
	for id := uint64(1); id <= journalAccounts; id++ {
		want := model[id]
		a, found, err := v.Account(id)
		if err != nil || !found {
			t.Fatalf("%s: account %d: %v %v", what, id, found, err)
		}
		var balance ledger.Balance
		if len(want) > 0 {
			balance = want[len(want)-1].After
		}
		if a.Balance != balance {
			t.Fatalf("%s: account %d balance %+v, want %+v", what, id, a.Balance, balance)
		}
		all, next, err := v.Postings(PostingFilter{Account: id, Limit: len(want) + 1})
		if err != nil || next != 0 || !slices.Equal(all, want) {
			t.Fatalf("%s: account %d: %d postings (next %d, %v), want %d", what, id, len(all), next, err, len(want))
		}
		back, _, err := v.Postings(PostingFilter{Account: id, Limit: len(want) + 1, Reversed: true})
		slices.Reverse(back)
		if err != nil || !slices.Equal(back, want) {
			t.Fatalf("%s: account %d: %d postings backward (%v), want %d", what, id, len(back), err, len(want))
		}
		if len(want) == 0 {
			continue
		}
		// A range between two postings' timestamps, read a few at a time both ways.
		lo := want[rng.IntN(len(want))].Timestamp
		hi := want[rng.IntN(len(want))].Timestamp
		lo, hi = min(lo, hi), max(lo, hi)
		var inRange []ledger.Posting
		for _, p := range want {
			if p.Timestamp >= lo && p.Timestamp <= hi {
				inRange = append(inRange, p)
			}
		}
		for _, reversed := range []bool{false, true} {
			got, err := postingsPaged(v, PostingFilter{Account: id, TimestampMin: lo, TimestampMax: hi,
				Limit: 1 + rng.IntN(5), Reversed: reversed})
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, inRange) {
				t.Fatalf("%s: account %d [%d, %d] reversed %v: %d postings, want %d", what, id, lo, hi, reversed, len(got), len(inRange))
			}
		}
	}
}

// TestJournalIndex: postings written to the journal are read back by account, through index
// pages and the tail, exactly as committed: by the live store, by snapshots taken long before
// (whose tail the shared one no longer holds), after a restart (the tail rebuilt from the
// journal), and Verify finds the pages and the journal in agreement.
func TestJournalIndex(t *testing.T) {
	defer func(n int) { pageEntriesMax = n }(pageEntriesMax)
	pageEntriesMax = 5 // an account's postings of one generation span several pages
	fs := vfs.NewMem()
	opts := Options{FS: fs, Shards: 1, PostingTailMax: 16, PagingAccountsPerRound: 2}
	s, err := Open("db", opts)
	if err != nil {
		t.Fatal(err)
	}
	j := newJournalWorld(t, s, 1)
	type snap struct {
		v     *Reader
		model map[uint64][]ledger.Posting
	}
	var snaps []snap
	for r := range 200 {
		j.round(6)
		if r%37 == 0 {
			snaps = append(snaps, snap{s.Snapshot(), j.snapshotModel()})
		}
	}
	if len(s.tails[0].cur.ts) >= 16 || s.tails[0].prev == nil {
		t.Fatalf("the tail was never written to pages: %d postings", len(s.tails[0].cur.ts))
	}
	rng := rand.New(rand.NewPCG(2, 2))
	checkJournalReads(t, "live", s.Live(), j.model, rng)
	for i, sn := range snaps {
		checkJournalReads(t, fmt.Sprintf("snapshot %d", i), sn.v, sn.model, rng)
		if sn.v.views[0].own == nil && i < len(snaps)-2 {
			t.Errorf("snapshot %d read its tail from the shared one, generations later", i)
		}
		_ = sn.v.Close()
	}
	rep, err := Verify(s.Live(), 1)
	if err != nil || len(rep.Problems) != 0 {
		t.Fatalf("verify: %+v %v", rep, err)
	}
	_ = j.w.Close()
	_ = s.Close()

	s, err = Open("db", opts)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	checkJournalReads(t, "reopened", s.Live(), j.model, rng)
	// The writer goes on from the rebuilt tail.
	j.s, j.w = s, s.Writer(0)
	for range 50 {
		j.round(6)
	}
	checkJournalReads(t, "reopened and written", s.Live(), j.model, rng)
	if rep, err := Verify(s.Live(), 1); err != nil || len(rep.Problems) != 0 {
		t.Fatalf("verify: %+v %v", rep, err)
	}
	_ = j.w.Close()
}

// TestVerifyFindsIndexFaults: an index page that lists a posting the journal lacks, or misses
// one it has, is reported.
func TestVerifyFindsIndexFaults(t *testing.T) {
	for _, fault := range []string{"missing", "extra", "unpaged", "both shapes", "wrong generation"} {
		t.Run(fault, func(t *testing.T) {
			s, err := Open("db", Options{FS: vfs.NewMem(), Shards: 1, PostingTailMax: 8})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			j := newJournalWorld(t, s, 3)
			for range 20 {
				j.round(4)
			}
			_ = j.w.Close()
			v := s.Live()
			sv, err := v.shardView(0)
			if err != nil || sv.paged == 0 {
				t.Fatalf("no pages: %+v %v", sv, err)
			}
			// The first page of account 1.
			lo, hi := prefixBounds(prefixGenPage)
			var key, val []byte
			if err := v.scan(lo, hi, false, func(k, v []byte) (bool, error) {
				if _, _, a, _ := genPageParts(k); a != 1 {
					return true, nil
				}
				key, val = slices.Clone(k), slices.Clone(v)
				return false, nil
			}); err != nil || key == nil {
				t.Fatalf("no page of account 1: %v", err)
			}
			ts, err := decodePage(nil, key, val)
			if err != nil {
				t.Fatal(err)
			}
			b := s.db.NewBatch()
			switch fault {
			case "missing": // the journal lost a paged posting
				_ = b.Delete(journalTimeKey(nil, 0, ts[0]), nil)
			case "extra": // a second page lists a posting again
				_, gen, _, _ := genPageParts(key)
				_ = b.Set(genPageKey(nil, 0, gen, 1, ts[0]), encodePage(nil, ts[:1]), nil)
			case "unpaged": // a page was lost
				_ = b.Delete(key, nil)
			case "wrong generation": // the page moved to a generation before its postings
				_ = b.Delete(key, nil)
				_ = b.Set(genPageKey(nil, 0, ts[0]-1, 1, ts[len(ts)-1]), val, nil)
			case "both shapes": // a format-8 record where the journal has time records
				p, _, err := v.Postings(PostingFilter{Account: 1, Limit: 1})
				if err != nil || len(p) != 1 {
					t.Fatalf("account 1's first posting: %v %v", p, err)
				}
				_ = b.Delete(journalTimeKey(nil, 0, p[0].Timestamp), nil)
				_ = b.Set(journalKey(nil, 0, p[0].Timestamp, 1), encodePosting(nil, &p[0]), nil)
				_ = b.Set(journalKey(nil, 0, 1<<62, 1), encodePosting(nil, &p[0]), nil)
			}
			if err := b.Commit(pebble.Sync); err != nil {
				t.Fatal(err)
			}
			rep, err := Verify(s.Live(), 1)
			if err != nil || len(rep.Problems) == 0 {
				t.Fatalf("%s: verify passed: %+v %v", fault, rep, err)
			}
			t.Log(len(rep.Problems), "problems, the first:", rep.Problems[0])
			if fault == "both shapes" && !slices.ContainsFunc(rep.Problems, func(p string) bool { return strings.Contains(p, "format 8") }) {
				t.Errorf("verify missed a format-8 record after the time records: %q", rep.Problems)
			}
		})
	}
}

// TestUpgradeMovesPostings: a format-7 store, its postings keyed by account, opened for
// writing has them in the journal and its index, reads the same, verifies clean and takes
// more rounds; opened read-only before that, it is refused with a clear error.
func TestUpgradeMovesPostings(t *testing.T) {
	defer func(n int) { pageEntriesMax = n }(pageEntriesMax)
	pageEntriesMax = 7
	fs := vfs.NewMem()
	s, err := Open("db", Options{FS: fs, Shards: 1})
	if err != nil {
		t.Fatal(err)
	}
	j := newJournalWorld(t, s, 5)
	for range 60 {
		j.round(5)
	}
	_ = j.w.Close()
	toFormat7(t, s)
	_ = s.Close()

	if _, err := Open("db", Options{FS: fs, ReadOnly: true}); err == nil {
		t.Fatal("a format-7 store with postings opened read-only")
	} else {
		t.Log(err)
	}
	s, err = Open("db", Options{FS: fs, PostingTailMax: 8})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	rng := rand.New(rand.NewPCG(6, 6))
	checkJournalReads(t, "upgraded", s.Live(), j.model, rng)
	if rep, err := Verify(s.Live(), 1); err != nil || len(rep.Problems) != 0 || rep.Postings == 0 {
		t.Fatalf("verify: %+v %v", rep, err)
	}
	lo, hi := prefixBounds(prefixPosting)
	if err := s.Live().scan(lo, hi, false, func(k, _ []byte) (bool, error) {
		return false, fmt.Errorf("old posting %x left", k)
	}); err != nil {
		t.Fatal(err)
	}
	j.s, j.w = s, s.Writer(0)
	for range 30 {
		j.round(5)
	}
	checkJournalReads(t, "upgraded and written", s.Live(), j.model, rng)
	if rep, err := Verify(s.Live(), 1); err != nil || len(rep.Problems) != 0 {
		t.Fatalf("verify: %+v %v", rep, err)
	}
	_ = j.w.Close()
}

// TestPagingAcrossRestarts: a sealed generation's pages are written a few accounts a round;
// reads during the paging show every posting once, and a store closed mid-way seals the same
// postings again when it opens and writes the same pages: reads and Verify agree throughout.
func TestPagingAcrossRestarts(t *testing.T) {
	fs := vfs.NewMem()
	opts := Options{FS: fs, Shards: 1, PostingTailMax: 12, PagingAccountsPerRound: 1}
	s, err := Open("db", opts)
	if err != nil {
		t.Fatal(err)
	}
	j := newJournalWorld(t, s, 7)
	rng := rand.New(rand.NewPCG(7, 7))
	sealedSeen, restarts := 0, 0
	rounds := 120
	if raceOn {
		rounds = 40
	}
	for r := range rounds {
		j.round(4)
		if s.tails[0].sealed != nil {
			sealedSeen++
			if r%5 == 0 { // close while paging: the next open seals again
				_ = j.w.Close()
				_ = s.Close()
				if s, err = Open("db", opts); err != nil {
					t.Fatal(err)
				}
				if s.tails[0].sealed == nil {
					t.Fatalf("round %d: reopened without the sealed generation", r)
				}
				j.s, j.w = s, s.Writer(0)
				restarts++
			}
		}
		v := s.Snapshot()
		checkJournalReads(t, fmt.Sprintf("round %d", r), v, j.model, rng)
		if s.tails[0].sealed != nil && r%3 == 0 { // pages of a generation half written
			if rep, err := Verify(v, 1); err != nil || len(rep.Problems) != 0 {
				t.Fatalf("round %d: verify: %+v %v", r, rep, err)
			}
		}
		_ = v.Close()
	}
	if sealedSeen == 0 || restarts == 0 {
		t.Fatalf("paging seen in %d rounds, %d restarts mid-way", sealedSeen, restarts)
	}
	if rep, err := Verify(s.Live(), 1); err != nil || len(rep.Problems) != 0 {
		t.Fatalf("verify: %+v %v", rep, err)
	}
	_ = j.w.Close()
	_ = s.Close()
}

// toFormat7 rewrites a store as format 7 had it: each posting under h account timestamp, no
// journal, pages or paged marks.
func toFormat7(t *testing.T, s *Store) {
	t.Helper()
	b := s.db.NewBatch()
	lo, hi := prefixBounds(prefixJournal)
	if err := s.Live().scan(lo, hi, false, func(k, val []byte) (bool, error) {
		err := decodeJournal(k, val, func(_ uint32, p ledger.Posting) error {
			return b.Set(postingKey(nil, p.Account, p.Timestamp), encodePosting(nil, &p), nil)
		})
		return err == nil, err
	}); err != nil {
		t.Fatal(err)
	}
	for _, prefix := range []byte{prefixJournal, prefixPage, prefixGenPage, prefixLatest, prefixPaged} {
		lo, hi := prefixBounds(prefix)
		_ = b.DeleteRange(lo, hi, nil)
	}
	_ = b.Set([]byte("mformat"), []byte("ledger-format-7"), nil)
	if err := b.Commit(pebble.Sync); err != nil {
		t.Fatal(err)
	}
}

// postingsPaged reads f's postings f.Limit at a time, continuing from each answer's next, and
// answers them oldest first.
func postingsPaged(v *Reader, f PostingFilter) ([]ledger.Posting, error) {
	var all []ledger.Posting
	for n := 0; ; n++ {
		if n > 1_000_000 {
			return all, fmt.Errorf("account %d: the pages never end", f.Account)
		}
		ps, next, err := v.Postings(f)
		if err != nil {
			return all, err
		}
		all = append(all, ps...)
		if next == 0 {
			break
		}
		if f.Reversed {
			f.TimestampMax = next
		} else {
			f.TimestampMin = next
		}
	}
	if f.Reversed {
		slices.Reverse(all)
	}
	return all, nil
}

// TestTailAheadOfCommitUnseen: a round's postings enter the shared tail before its batch
// commits (Writer.Commit); until the shard's clock in a reader's view has the round, no
// balance or history read shows them (reads show only durable state).
func TestTailAheadOfCommitUnseen(t *testing.T) {
	s, err := Open("db", Options{FS: vfs.NewMem(), Shards: 1, PostingTailMax: 8})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	j := newJournalWorld(t, s, 9)
	for range 10 {
		j.round(3)
	}
	snap := s.Snapshot()
	defer snap.Close()
	// What Commit does before its batch is durable: the next round's postings in the tail.
	clock := j.b.Clock()
	a, _ := j.b.Account(1)
	after := a.Balance
	after.CreditsPosted, _ = after.CreditsPosted.Add64(5)
	j.w.tail.addRound([]ledger.Posting{{Account: 1, Timestamp: clock + 1, TransferID: 999, Op: ledger.OpCreditPost,
		Amount: 5, After: after}})
	rng := rand.New(rand.NewPCG(9, 9))
	checkJournalReads(t, "snapshot before the round", snap, j.model, rng)
	checkJournalReads(t, "live, the round not committed", s.Live(), j.model, rng)
	_ = j.w.Close()
}

// toFormat9 rewrites a store's index pages as format 9 had them: keyed by account (i account
// last), those of a generation being paged too, and no latest paged postings (k).
func toFormat9(t *testing.T, s *Store) {
	t.Helper()
	b := s.db.NewBatch()
	lo, hi := prefixBounds(prefixGenPage)
	if err := s.Live().scan(lo, hi, false, func(k, val []byte) (bool, error) {
		_, _, account, last := genPageParts(k)
		return true, b.Set(pageKey(nil, account, last), val, nil)
	}); err != nil {
		t.Fatal(err)
	}
	for _, prefix := range []byte{prefixGenPage, prefixLatest} {
		lo, hi := prefixBounds(prefix)
		_ = b.DeleteRange(lo, hi, nil)
	}
	_ = b.Set([]byte("mformat"), []byte("ledger-format-9"), nil)
	if err := b.Commit(pebble.Sync); err != nil {
		t.Fatal(err)
	}
}

// TestFormat9PagesUpgraded: a format-9 store, its index pages keyed by account, closed at
// every point of its paging (a generation sealed and some of its accounts paged, or none),
// is refused read-only; opened for writing it has its pages in generations and each account's
// latest paged posting, reads as before, verifies clean, and takes more rounds (the generation
// that was being paged is paged again from its start).
func TestFormat9PagesUpgraded(t *testing.T) {
	defer func(n int) { pageEntriesMax = n }(pageEntriesMax)
	pageEntriesMax = 4 // an account's postings of one generation span several pages
	paging := 0
	defer func() {
		if paging == 0 || paging == 12 {
			t.Errorf("%d of 12 stores closed while a generation was paged: not both cases", paging)
		}
	}()
	for stop := 20; stop < 44; stop += 2 {
		fs := vfs.NewMem()
		opts := Options{FS: fs, Shards: 1, PostingTailMax: 16, PagingAccountsPerRound: 3}
		s, err := Open("db", opts)
		if err != nil {
			t.Fatal(err)
		}
		j := newJournalWorld(t, s, uint64(stop))
		for range stop {
			j.round(3)
		}
		_ = j.w.Close()
		sealed := s.tails[0].sealed != nil
		if sealed {
			paging++
		}
		toFormat9(t, s)
		_ = s.Close()

		if _, err := Open("db", Options{FS: fs, ReadOnly: true}); err == nil {
			t.Fatal("a format-9 store with index pages opened read-only")
		}
		if s, err = Open("db", opts); err != nil {
			t.Fatal(err)
		}
		what := fmt.Sprintf("stopped after %d rounds (a generation being paged: %v)", stop, sealed)
		rng := rand.New(rand.NewPCG(uint64(stop), 9))
		checkJournalReads(t, what+", upgraded", s.Live(), j.model, rng)
		if rep, err := Verify(s.Live(), 1); err != nil || len(rep.Problems) != 0 || rep.Postings == 0 {
			t.Fatalf("%s: verify: %+v %v", what, rep, err)
		}
		lo, hi := prefixBounds(prefixPage)
		if err := s.Live().scan(lo, hi, false, func(k, _ []byte) (bool, error) {
			return false, fmt.Errorf("format-9 page %x left", k)
		}); err != nil {
			t.Fatal(err)
		}
		j.s, j.w = s, s.Writer(0)
		for range 30 {
			j.round(3)
		}
		checkJournalReads(t, what+", upgraded and written", s.Live(), j.model, rng)
		if rep, err := Verify(s.Live(), 1); err != nil || len(rep.Problems) != 0 {
			t.Fatalf("%s: verify: %+v %v", what, rep, err)
		}
		_ = j.w.Close()
		_ = s.Close()
	}
}

// TestPagesComeAfterTheirShards: each round's index pages (and the tables their flushes make)
// come after every page its shard wrote before, so that compactions move them down instead of
// merging them with the older ones; two shards, many accounts, several generations.
func TestPagesComeAfterTheirShards(t *testing.T) {
	fs := vfs.NewMem()
	s, err := Open("db", Options{FS: fs, Shards: 2, PostingTailMax: 40, PagingAccountsPerRound: 5})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var ws []*rvShard
	for sh := range uint32(2) {
		ws = append(ws, newRVShard(t, s, sh, 30))
	}
	last := make([][]byte, 2)
	pages := 0
	for _, r := range ws {
		r.w.inspect = func(b *pebble.Batch) {
			for rd := b.Reader(); ; {
				_, k, _, ok, err := rd.Next()
				if err != nil || !ok {
					break
				}
				if k[0] != prefixGenPage {
					continue
				}
				shard, _, _, _ := genPageParts(k)
				if bytes.Compare(k, last[shard]) <= 0 {
					t.Fatalf("shard %d: page %x after %x", shard, k, last[shard])
				}
				last[shard] = slices.Clone(k)
				pages++
			}
		}
	}
	rng := rand.New(rand.NewPCG(3, 4))
	for range 200 {
		for _, r := range ws {
			r.round(rng.IntN(30), rng.IntN(30), rng.IntN(30))
		}
	}
	if pages < 100 {
		t.Fatalf("%d pages written: too few generations to show anything", pages)
	}
}

// TestQuietAccountsLatest: an account with index pages but none in its shard's newest
// generation (quiet since) has its latest paged posting (k), which gives its balance, and
// Verify finds it wrong or missing; accounts busy in the newest generation need none.
func TestQuietAccountsLatest(t *testing.T) {
	fs := vfs.NewMem()
	s, err := Open("db", Options{FS: fs, Shards: 1, PostingTailMax: 40, PagingAccountsPerRound: 8})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	r := newRVShard(t, s, 0, 30)
	rng := rand.New(rand.NewPCG(8, 9))
	for i := range 120 {
		if i < 60 {
			r.round(rng.IntN(30), rng.IntN(30), rng.IntN(30))
		} else {
			r.round(rng.IntN(5), rng.IntN(5), rng.IntN(5)) // accounts 5 to 29 go quiet
		}
	}
	v := s.Live()
	sv, err := v.shardView(0)
	if err != nil || sv.paged == 0 {
		t.Fatalf("no pages: %+v %v", sv, err)
	}
	// A quiet account: pages, none in the newest generation.
	inNewest, last := map[uint64]bool{}, map[uint64]uint64{}
	lo, hi := prefixBounds(prefixGenPage)
	if err := v.scan(lo, hi, false, func(k, _ []byte) (bool, error) {
		_, gen, a, l := genPageParts(k)
		if gen <= sv.paged {
			inNewest[a] = inNewest[a] || gen == sv.paged
			last[a] = l
		}
		return true, nil
	}); err != nil {
		t.Fatal(err)
	}
	var quiet uint64
	for _, id := range r.ids {
		if _, paged := last[id]; paged && !inNewest[id] {
			quiet = id
			break
		}
	}
	if quiet == 0 {
		t.Fatal("no quiet account: the test shows nothing")
	}
	if err := rvCheck(v, r.ids); err != nil { // balances, the quiet ones' through k
		t.Fatal(err)
	}
	// This world's postings name no transfers (Verify reports them): only its pages count.
	latestProblems := func() []string {
		rep, err := Verify(s.Live(), 1)
		if err != nil {
			t.Fatal(err)
		}
		return slices.DeleteFunc(rep.Problems, func(p string) bool { return !strings.Contains(p, "latest paged posting") })
	}
	if ps := latestProblems(); len(ps) != 0 {
		t.Fatalf("verify: %q", ps)
	}
	for _, fault := range []string{"wrong", "missing"} {
		b := s.db.NewBatch()
		if fault == "wrong" { // its first posting: in the journal, not its latest
			first, _, err := v.Postings(PostingFilter{Account: quiet, Limit: 1})
			if err != nil || len(first) != 1 || first[0].Timestamp == last[quiet] {
				t.Fatalf("the quiet account's first posting: %v %v", first, err)
			}
			_ = b.Set(latestKey(nil, quiet), be.AppendUint64(nil, first[0].Timestamp), nil)
		} else {
			_ = b.Delete(latestKey(nil, quiet), nil)
		}
		if err := b.Commit(pebble.Sync); err != nil {
			t.Fatal(err)
		}
		ps := latestProblems()
		if len(ps) != 1 {
			t.Fatalf("k %s: verify found %q", fault, ps)
		}
		t.Log(fault, ps[0])
		if fault == "wrong" { // the balance comes from k
			if a, found, err := s.Live().Account(quiet); err != nil || !found || a.Balance == r.bal[quiet] {
				t.Fatalf("the quiet account's balance does not come from k: %+v %v %v", a.Balance, found, err)
			}
		}
	}
}
