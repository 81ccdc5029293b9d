package storage

// Adversarial review of the paging over many rounds (c4129cc).

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/ledgercore/ledger/ledger"
)

// prCheck compares v's reads through the index with v's journal: balances (Account,
// Accounts), postings both ways, and a random range read a few at a time both ways.
func prCheck(v *Reader, ids []uint64, rng *rand.Rand) error {
	if err := rvCheck(v, ids); err != nil {
		return err
	}
	journal := map[uint64][]ledger.Posting{}
	if err := v.ForEachPosting(func(p ledger.Posting) error {
		journal[p.Account] = append(journal[p.Account], p)
		return nil
	}); err != nil {
		return err
	}
	var got []ledger.Account
	if err := v.Accounts(ids, func(a ledger.Account) { got = append(got, a) }); err != nil {
		return err
	}
	for _, a := range got {
		var bal ledger.Balance
		if w := journal[a.ID]; len(w) > 0 {
			bal = w[len(w)-1].After
		}
		if a.Balance != bal {
			return fmt.Errorf("Accounts: account %d balance %v, journal %v", a.ID, a.Balance.CreditsPosted, bal.CreditsPosted)
		}
	}
	for k := 0; k < 8; k++ {
		id := ids[rng.IntN(len(ids))]
		want := journal[id]
		if len(want) == 0 {
			continue
		}
		lo := want[rng.IntN(len(want))].Timestamp
		hi := want[rng.IntN(len(want))].Timestamp
		lo, hi = min(lo, hi)-uint64(rng.IntN(2)), max(lo, hi)+uint64(rng.IntN(2))
		var in []ledger.Posting
		for _, p := range want {
			if p.Timestamp >= lo && p.Timestamp <= hi {
				in = append(in, p)
			}
		}
		for _, reversed := range []bool{false, true} {
			all, err := postingsPaged(v, PostingFilter{Account: id, TimestampMin: lo, TimestampMax: hi,
				Limit: 1 + rng.IntN(4), Reversed: reversed})
			if err != nil {
				return err
			}
			if !slices.Equal(all, in) {
				return fmt.Errorf("account %d [%d,%d] reversed %v: %d postings, journal %d", id, lo, hi, reversed, len(all), len(in))
			}
		}
	}
	return nil
}

// TestPagingPacedManyAccounts: the production pacing (no PagingAccountsPerRound) with more
// accounts than pagingAccountsMin, so that a sealed generation is paged over several rounds;
// rounds of all sizes (some fill the next generation at once: the forced finish, and a seal
// again right after); two shards; pages of one account split (pageEntriesMax); snapshots held
// across several seals; restarts mid-paging. Every read agrees with the journal, and Verify
// with the pages.
func TestPagingPacedManyAccounts(t *testing.T) {
	defer func(n int) { pageEntriesMax = n }(pageEntriesMax)
	pageEntriesMax = 3
	const shards = 2
	const perShard = 160
	fs := vfs.NewMem()
	opts := Options{FS: fs, Shards: shards, PostingTailMax: 200}
	s, ws, ids := openRVShards(t, opts, perShard)
	rng := rand.New(rand.NewPCG(11, 12))
	var hs []heldSnapshot
	seals, multi, restarts := 0, 0, 0
	rounds := 160
	if raceOn {
		rounds = 60
	}
	for round := 0; round < rounds; round++ {
		for sh, r := range ws {
			var acc []int
			n := 1 + rng.IntN(30)
			if rng.IntN(25) == 0 {
				n = 150 + rng.IntN(150) // fills a generation in one round
			}
			for range n {
				if rng.IntN(3) == 0 {
					acc = append(acc, 0) // a hot account
				} else {
					acc = append(acc, rng.IntN(perShard))
				}
			}
			wasSealed, next := s.tails[sh].sealed != nil, s.tails[sh].sealedNext
			r.round(acc...)
			if !wasSealed && s.tails[sh].sealed != nil {
				seals++
			}
			// A round that wrote some of the sealed generation's pages, not the last (a round
			// that only waits for its grouping writes none).
			if wasSealed && s.tails[sh].sealed != nil && s.tails[sh].sealedNext > next {
				multi++
			}
		}
		v := s.Snapshot()
		// Each check reads the whole journal: one round in ten, to stay bounded under -race.
		if round%10 == 0 {
			if err := prCheck(v, ids, rng); err != nil {
				t.Fatalf("round %d: %v", round, err)
			}
		}
		if rng.IntN(4) == 0 {
			hs = append(hs, heldSnapshot{v, round})
		} else {
			_ = v.Close()
		}
		if len(hs) > 0 && rng.IntN(12) == 0 {
			hs = checkHeldSnapshot(t, hs, round, ids, shards, rng)
		}
		if round%23 == 22 {
			s, hs = reopenRVShards(t, s, opts, ws, hs), nil
			restarts++
			v := s.Snapshot()
			if err := prCheck(v, ids, rng); err != nil {
				t.Fatalf("round %d, after restart: %v", round, err)
			}
			_ = v.Close()
		}
	}
	for _, h := range hs {
		_ = h.v.Close()
	}
	v := s.Snapshot()
	if problems, err := rvIndexProblems(v, shards); err != nil || len(problems) > 0 {
		t.Fatalf("verify: %v %v", problems, err)
	}
	_ = v.Close()
	t.Logf("seals %d, rounds paging %d, restarts %d", seals, multi, restarts)
	if seals < 5 || multi < 5 {
		t.Fatalf("seals %d, rounds paging %d", seals, multi)
	}
	_ = s.Close()
}

// BenchmarkHotAccountPostingsLimit1: Postings with Limit 1 of an account that took most of
// a shard's postings (once 24 ms a call, when each call copied the account's whole tail; now
// the tail is walked lazily, newest first).
func BenchmarkHotAccountPostingsLimit1(b *testing.B) {
	s, err := Open("db", Options{FS: vfs.NewMem(), Shards: 1})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	r := newRVShard(b, s, 0, 1)
	acc := make([]int, 1<<14)
	for range (PostingTailMax + PostingTailMax/2) / len(acc) {
		r.round(acc...)
	}
	id := r.ids[0]
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		v := s.Snapshot()
		ps, _, err := v.Postings(PostingFilter{Account: id, Limit: 1, Reversed: true})
		if err != nil || len(ps) != 1 {
			b.Fatal(err)
		}
		_ = v.Close()
	}
}

// TestPagingOverrideKeepsTailBounded: with PagingAccountsPerRound set (as every simulator
// and most tests run), a full current generation does not force the sealed one's pages to
// finish: the current generation grows past PostingTailMax without bound while the sealed one
// is paged a few accounts a round, and the forced finish (the production path when the next
// generation fills) is never exercised by the simulators.
func TestPagingOverrideKeepsTailBounded(t *testing.T) {
	const tailMax = 16
	s, err := Open("db", Options{FS: vfs.NewMem(), Shards: 1, PostingTailMax: tailMax, PagingAccountsPerRound: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	r := newRVShard(t, s, 0, 64)
	most := 0
	for k := range 40 {
		acc := make([]int, 8)
		for i := range acc {
			acc[i] = (k*8 + i) % 64
		}
		r.round(acc...)
		most = max(most, len(s.tails[0].cur.ts))
	}
	if most > 2*tailMax {
		t.Fatalf("the current generation held %d postings (PostingTailMax %d, rounds of 8) while the sealed one was paged", most, tailMax)
	}
}

// heldSnapshot is a snapshot a test keeps across rounds, and the round it was taken at.
type heldSnapshot struct {
	v     *Reader
	round int
}

// checkHeldSnapshot checks one of hs, picked at random, and closes it: its reads agree with
// its journal (prCheck) and Verify finds its index clean. It answers hs without it.
func checkHeldSnapshot(t *testing.T, hs []heldSnapshot, round int, ids []uint64, shards uint32, rng *rand.Rand) []heldSnapshot {
	t.Helper()
	i := rng.IntN(len(hs))
	if err := prCheck(hs[i].v, ids, rng); err != nil {
		t.Fatalf("round %d, snapshot of round %d: %v", round, hs[i].round, err)
	}
	if problems, err := rvIndexProblems(hs[i].v, shards); err != nil || len(problems) > 0 {
		t.Fatalf("round %d, snapshot of round %d: verify: %v %v", round, hs[i].round, problems, err)
	}
	_ = hs[i].v.Close()
	return slices.Delete(hs, i, i+1)
}

// reopenRVShards closes the snapshots held, the shards' writers and s, and opens the store
// again with opts, the shards writing to it.
func reopenRVShards(t *testing.T, s *Store, opts Options, ws []*rvShard, hs []heldSnapshot) *Store {
	t.Helper()
	for _, h := range hs {
		_ = h.v.Close()
	}
	for _, r := range ws {
		_ = r.w.Close()
	}
	_ = s.Close()
	s, err := Open("db", opts)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range ws {
		r.w = s.Writer(r.shard)
	}
	return s
}
