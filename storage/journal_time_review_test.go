package storage

// Adversarial tests of format 9's time records (a fresh review's).

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/ledgercore/ledger/ledger"
)

// TestWriterRefusesRoundsThatWouldReplaceTimeRecords: a round whose postings are out of time
// order, name an account twice at one time, or come at the time of an earlier round's latest
// posting is refused before anything is written: a time record written at a time that has one
// would replace it, losing its postings.
func TestWriterRefusesRoundsThatWouldReplaceTimeRecords(t *testing.T) {
	post := func(account, ts uint64) ledger.Posting {
		return ledger.Posting{Account: account, Timestamp: ts, TransferID: ts, Amount: 1, Op: ledger.OpDebitPost,
			After: ledger.Balance{DebitsPosted: ledger.Uint128{Lo: 1}}}
	}
	for name, rounds := range map[string][][]ledger.Posting{
		"out of time order":   {{post(1, 5), post(2, 3)}},
		"one account twice":   {{post(1, 3), post(2, 3), post(1, 3)}},
		"at an earlier round": {{post(1, 4), post(2, 5)}, {post(3, 5)}},
	} {
		s, err := Open("db", Options{FS: vfs.NewMem(), Shards: 1})
		if err != nil {
			t.Fatal(err)
		}
		w := s.Writer(0)
		var panicked any
		for i, ps := range rounds {
			func() {
				defer func() { panicked = recover() }()
				fx := ledger.Effects{Postings: ps}
				fx.Freeze()
				if err := w.Commit(&fx, 9); err != nil {
					t.Fatal(err)
				}
			}()
			if panicked != nil && i < len(rounds)-1 {
				t.Fatalf("%s: round %d refused: %v", name, i, panicked)
			}
		}
		if !strings.Contains(fmt.Sprint(panicked), "INVARIANT") {
			t.Errorf("%s: the last round was not refused (%v)", name, panicked)
		}
		var all []ledger.Posting
		if err := s.Live().ForEachPosting(func(p ledger.Posting) error { all = append(all, p); return nil }); err != nil {
			t.Fatal(err)
		}
		if want := len(rounds[0]) * (len(rounds) - 1); len(all) != want {
			t.Errorf("%s: %d postings stored, want %d", name, len(all), want)
		}
		_ = w.Close()
		_ = s.Close()
	}
}

// shardsWorld drives two shards' books with transfers within a shard and across them (credit
// legs and their answers), keeping a model of every account's postings and of every logged
// round's postings.
type shardsWorld struct {
	t        *testing.T
	s        *Store
	books    [2]*ledger.Book
	ws       [2]*Writer
	rng      *rand.Rand
	accounts [2][]uint64 // per shard
	model    map[uint64][]ledger.Posting
	logged   []loggedRound
	next     uint64
	now      uint64
}

func newShardsWorld(t *testing.T, s *Store) *shardsWorld {
	rw := &shardsWorld{t: t, s: s, rng: rand.New(rand.NewPCG(7, 7)), model: map[uint64][]ledger.Posting{}, next: 1, now: 1}
	for sh := range rw.books {
		rw.books[sh] = ledger.NewBook(uint32(sh), 2)
		rw.ws[sh] = s.Writer(uint32(sh))
	}
	for id := uint64(1); len(rw.accounts[0]) < 4 || len(rw.accounts[1]) < 4; id++ {
		sh := ledger.ShardOf(id, 2)
		if len(rw.accounts[sh]) < 4 {
			rw.accounts[sh] = append(rw.accounts[sh], id)
		}
	}
	for sh, b := range rw.books {
		var as []ledger.Account
		for _, id := range rw.accounts[sh] {
			as = append(as, ledger.Account{ID: id, Ledger: 1, Code: 1})
		}
		var fx ledger.Effects
		b.CreateAccounts(rw.now, as, make([]ledger.AccountResult, len(as)), &fx)
		rw.commit(sh, &fx)
	}
	for sh, b := range rw.books {
		for _, id := range rw.accounts[1-sh] {
			b.LoadRemote(ledger.AccountInfo{ID: id, Ledger: 1})
		}
	}
	return rw
}

func (rw *shardsWorld) reopen(s *Store) {
	for sh := range rw.ws {
		_ = rw.ws[sh].Close()
		rw.ws[sh] = s.Writer(uint32(sh))
	}
	rw.s = s
}

func (rw *shardsWorld) commit(sh int, fx *ledger.Effects) {
	rw.t.Helper()
	fx.Freeze()
	if err := rw.ws[sh].Commit(fx, rw.books[sh].Clock()); err != nil {
		rw.t.Fatal(err)
	}
	for _, p := range fx.Postings {
		rw.model[p.Account] = append(rw.model[p.Account], p)
	}
	if len(fx.Postings) > 0 {
		rw.logged = append(rw.logged, loggedRound{rw.ws[sh].LastRound(), slices.Clone(fx.Postings)})
	}
}

// round books, on each shard, transfers within the shard and to the other, then applies the
// legs on their credit shard and the answers on their debit shard, each a round of its own.
func (rw *shardsWorld) round() {
	rw.now++
	var legs [2][]ledger.Leg
	for sh, b := range rw.books {
		var ts []ledger.Transfer
		for range 1 + rw.rng.IntN(4) {
			own := rw.accounts[sh]
			dr := own[rw.rng.IntN(len(own))]
			var cr uint64
			if rw.rng.IntN(2) == 0 {
				cr = own[rw.rng.IntN(len(own))]
				if cr == dr {
					continue
				}
			} else {
				other := rw.accounts[1-sh]
				cr = other[rw.rng.IntN(len(other))]
			}
			ts = append(ts, ledger.Transfer{ID: rw.next, DebitAccountID: dr, CreditAccountID: cr,
				Amount: 1 + rw.rng.Uint64N(50), Ledger: 1, Code: 1})
			rw.next++
		}
		var fx ledger.Effects
		rs := make([]ledger.TransferResult, len(ts))
		b.CreateTransfers(rw.now, ts, rs, &fx)
		for i, r := range rs {
			if r != ledger.ResultOK {
				rw.t.Fatalf("transfer %+v: %v", ts[i], r)
			}
		}
		legs[1-sh] = slices.Clone(fx.LegsOut)
		rw.commit(sh, &fx)
	}
	var answers [2][]ledger.LegResult
	for sh, b := range rw.books {
		var fx ledger.Effects
		b.ApplyLegs(rw.now, legs[sh], &fx)
		answers[1-sh] = slices.Clone(fx.LegsDone)
		rw.commit(sh, &fx)
	}
	for sh, b := range rw.books {
		var fx ledger.Effects
		b.ApplyLegResults(rw.now, answers[sh], &fx)
		rw.commit(sh, &fx)
	}
}

func (rw *shardsWorld) check(what string, v *Reader) {
	rw.t.Helper()
	for sh := range rw.accounts {
		for _, id := range rw.accounts[sh] {
			want := rw.model[id]
			for _, reversed := range []bool{false, true} {
				got, err := postingsPaged(v, PostingFilter{Account: id, Limit: 1 + rw.rng.IntN(4), Reversed: reversed})
				if err != nil || !slices.Equal(got, want) {
					rw.t.Fatalf("%s: account %d reversed %v: %d postings (%v), want %d", what, id, reversed, len(got), err, len(want))
				}
			}
			a, _, err := v.Account(id)
			if err != nil || len(want) > 0 && a.Balance != want[len(want)-1].After {
				rw.t.Fatalf("%s: account %d balance %+v (%v)", what, id, a.Balance, err)
			}
		}
	}
	checkLoggedRounds(rw.t, what, v, rw.logged)
	var n uint64
	if err := v.ForEachPosting(func(p ledger.Posting) error { n++; return nil }); err != nil {
		rw.t.Fatal(err)
	}
	var modelled uint64
	for _, ps := range rw.model {
		modelled += uint64(len(ps))
	}
	rep, err := Verify(v, 2)
	if err != nil || len(rep.Problems) != 0 || rep.Postings != modelled || n != modelled {
		rw.t.Fatalf("%s: verify %+v %v; %d postings scanned, %d modelled", what, rep, err, n, modelled)
	}
}

// TestFormat8TwoShardsUpgraded: a two-shard format-8 store (split transfers, their legs
// and answers: one-posting timestamps next to two-posting ones) reads right read-only, after
// the upgrade, across the boundary, and after a restart, through snapshots whose iterators
// are renewed every few keys, Verify checking a few postings a lot (lots that end inside a run
// of two-posting time records and at the shapes' boundary).
func TestFormat8TwoShardsUpgraded(t *testing.T) {
	defer func(n, r int) { pageEntriesMax, verifyRefsMax = n, r }(pageEntriesMax, verifyRefsMax)
	pageEntriesMax, verifyRefsMax = 3, 3
	fs := vfs.NewMem()
	opts := Options{FS: fs, Shards: 2, PostingTailMax: 12, PagingAccountsPerRound: 1, SnapshotIterKeysMax: 3}
	s, err := Open("db", opts)
	if err != nil {
		t.Fatal(err)
	}
	rw := newShardsWorld(t, s)
	for range 40 {
		rw.round()
	}
	for sh := range rw.ws {
		_ = rw.ws[sh].Close()
	}
	toFormat8(t, s)
	sealed := 0
	for sh := range uint32(2) {
		sv, err := s.Live().shardView(sh)
		if err != nil {
			t.Fatal(err)
		}
		if sv.sealed != 0 {
			sealed++
		}
	}
	t.Logf("%d of 2 shards mid-paging at the conversion", sealed)
	_ = s.Close()

	// Its index pages are format 8's, which this build reads once they are moved.
	if _, err := Open("db", Options{FS: fs, ReadOnly: true, SnapshotIterKeysMax: 3}); !errors.Is(err, ErrFormat) {
		t.Fatalf("a format-8 store with index pages opened read-only: %v", err)
	}

	if s, err = Open("db", opts); err != nil {
		t.Fatal(err)
	}
	rw.reopen(s)
	for range 40 {
		rw.round()
	}
	snap := s.Snapshot()
	rw.check("upgraded and written, snapshot", snap)
	_ = snap.Close()
	rw.check("upgraded and written, live", s.Live())
	for sh := range rw.ws {
		_ = rw.ws[sh].Close()
	}
	_ = s.Close()

	if s, err = Open("db", opts); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	rw.reopen(s)
	for range 10 {
		rw.round()
	}
	rw.check("reopened and written", s.Live())
	shapes := map[int]int{}
	lo, hi := prefixBounds(prefixJournal)
	_ = s.Live().scan(lo, hi, false, func(k, val []byte) (bool, error) {
		n := 0
		err := journalRecordAccounts(k, val, func(uint64, uint64) { n++ })
		shapes[len(k)*10+n]++
		return err == nil, err
	})
	t.Logf("journal records by key length*10+postings: %v", shapes)
	if shapes[journalKeyLen*10+1] == 0 || shapes[journalTimeKeyLen*10+1] == 0 || shapes[journalTimeKeyLen*10+2] == 0 {
		t.Fatalf("want old records and time records of one and two postings: %v", shapes)
	}
	for sh := range rw.ws {
		_ = rw.ws[sh].Close()
	}
}

// TestPostingRecordsAreShort: a posting record is at most 114 bytes (3 + 3 uvarints of
// 64 bits + 4 LEB128 of 128 + a day), so its length in a time record is one byte
// (appendTimeRecord).
func TestPostingRecordsAreShort(t *testing.T) {
	big := ledger.Uint128{Hi: ^uint64(0), Lo: ^uint64(0)}
	p := ledger.Posting{Account: 1, Timestamp: 1, TransferID: ^uint64(0), Amount: ^uint64(0), Held: ^uint64(0),
		Op: ledger.OpCreditPostHeld, Split: true, History: true, Day: ledger.Day(^uint32(0)),
		After: ledger.Balance{DebitsPending: big, DebitsPosted: big, CreditsPending: big, CreditsPosted: big}}
	if n := len(encodePosting(nil, &p)); n >= 128 {
		t.Fatalf("a posting record of %d bytes", n)
	} else {
		t.Logf("the longest posting record: %d bytes", n)
	}
}

// TestWriterGuardAcrossTailStates: the writer refuses a round whose posting is at the time
// of the shard's latest posting (whose time record it would replace) in each state of the tail: with
// postings in the current generation, right after a seal (the current generation empty),
// after a restart (the tail rebuilt from time records), and after a format-8 store's upgrade (the
// tail rebuilt from records of one posting).
func TestWriterGuardAcrossTailStates(t *testing.T) {
	fs := vfs.NewMem()
	opts := Options{FS: fs, Shards: 1, PostingTailMax: 16, PagingAccountsPerRound: 2}
	s, err := Open("db", opts)
	if err != nil {
		t.Fatal(err)
	}
	j := newJournalWorld(t, s, 5)
	latest := func() (last ledger.Posting) {
		if err := j.s.Live().ForEachPosting(func(p ledger.Posting) error {
			if p.Timestamp >= last.Timestamp {
				last = p
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		return last
	}
	refused := func(what string) {
		t.Helper()
		last := latest()
		// Another account at the latest posting's time: a new time record there would replace it.
		p := last
		p.Account = last.Account%journalAccounts + 1
		func() {
			defer func() {
				if r := recover(); r == nil || !strings.Contains(fmt.Sprint(r), "INVARIANT") {
					t.Errorf("%s: a round at %d (the latest posting's time) was not refused: %v", what, last.Timestamp, r)
				}
			}()
			fx := ledger.Effects{Postings: []ledger.Posting{p}}
			fx.Freeze()
			_ = j.w.Commit(&fx, j.b.Clock())
		}()
		// The panic left no trace: a new writer goes on.
		_ = j.w.Close()
		j.w = j.s.Writer(0)
	}
	j.round(3)
	refused("current generation")
	sealed := false
	for range 100 {
		j.round(3)
		if tl := s.tails[0]; tl.sealed != nil && len(tl.cur.ts) == 0 {
			sealed = true
			break
		}
	}
	if !sealed {
		t.Fatal("never caught the tail right after a seal")
	}
	refused("right after a seal")
	_ = j.w.Close()
	_ = s.Close()
	if s, err = Open("db", opts); err != nil {
		t.Fatal(err)
	}
	j.s, j.w = s, s.Writer(0)
	refused("restarted")
	j.round(3)
	_ = j.w.Close()
	toFormat8(t, s)
	_ = s.Close()
	if s, err = Open("db", opts); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	j.s, j.w = s, s.Writer(0)
	refused("upgraded from format 8")
	_ = j.w.Close()
}
