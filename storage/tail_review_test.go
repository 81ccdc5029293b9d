package storage

// Tests from session 16's review of the paging's pacing and the pre-sized tail generations.

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// TestRVTinyTailMax: PostingTailMax 1..8 (any positive value is accepted by Open), rounds
// of 0..3 postings: no panic in page, reads agree with the journal.
func TestRVTinyTailMax(t *testing.T) {
	for tailMax := 1; tailMax <= 8; tailMax++ {
		t.Run(fmt.Sprint(tailMax), func(t *testing.T) {
			s, err := Open("db", Options{FS: vfs.NewMem(), Shards: 1, PostingTailMax: tailMax})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			r := newRVShard(t, s, 0, 8)
			rng := rand.New(rand.NewPCG(uint64(tailMax), 3))
			defer func() {
				if p := recover(); p != nil {
					t.Fatalf("tailMax %d: panic: %v", tailMax, p)
				}
			}()
			for round := range 60 {
				n := rng.IntN(4)
				acc := rng.Perm(8)[:n]
				slices.Sort(acc)
				r.round(acc...)
				if g := s.tails[0].sealed; g != nil && g.grouping != nil {
					<-g.grouping
				}
				v := s.Snapshot()
				if err := rvCheck(v, r.ids); err != nil {
					t.Fatalf("round %d: %v", round, err)
				}
				_ = v.Close()
			}
		})
	}
}

// TestRVConcurrentPresizedReads: a writer seals generation after generation (each pre-sized
// as the one before, so appends land in the backing arrays readers' chains hold) while
// readers read balances and histories on snapshots: each snapshot's balance is its history's
// count (every posting credits 1). Run with -race.
func TestRVConcurrentPresizedReads(t *testing.T) {
	defer func(n int) { pageEntriesMax = n }(pageEntriesMax)
	pageEntriesMax = 3
	s, err := Open("db", Options{FS: vfs.NewMem(), Shards: 1, PostingTailMax: 64})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	const accounts = 40
	r := newRVShard(t, s, 0, accounts)
	var stop atomic.Bool
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for g := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; !stop.Load(); i++ {
				id := r.ids[(i*7+g)%accounts]
				if i%3 == 0 {
					id = r.ids[0]
				}
				v := s.Snapshot()
				a, found, err := v.Account(id)
				if err == nil && found {
					var ps []uint64
					all, _, err2 := v.Postings(PostingFilter{Account: id, Limit: 1 << 20})
					err = err2
					for _, p := range all {
						ps = append(ps, p.Timestamp)
					}
					if err == nil && uint64(len(all)) != a.Balance.CreditsPosted.Lo {
						err = fmt.Errorf("account %d: balance %d, %d postings", id, a.Balance.CreditsPosted, len(all))
					}
					for j := 1; err == nil && j < len(ps); j++ {
						if ps[j] <= ps[j-1] {
							err = fmt.Errorf("account %d: postings out of order %v", id, ps)
						}
					}
				}
				_ = v.Close()
				if err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	rounds := 1500
	if raceOn {
		rounds = 600
	}
	for k := range rounds {
		var acc []int
		n := 1 + k%13
		for i := range n {
			acc = append(acc, (k*5+i*3)%accounts)
		}
		// distinct, any order is fine for round (one posting each at rising times)
		seen := map[int]bool{}
		var d []int
		for _, a := range acc {
			if !seen[a] {
				seen[a] = true
				d = append(d, a)
			}
		}
		if k%5 == 0 {
			d = append(d[:0], 0) // hot
		}
		r.round(d...)
	}
	stop.Store(true)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}
