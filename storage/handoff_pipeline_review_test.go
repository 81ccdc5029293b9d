package storage

import (
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// TestHandOffPipelined (review): the committer/syncer pipeline of actors/shard.go (round k+1's
// Prepare, its tail hand-off forced, while round k's Finish runs on another goroutine), small
// generations so that rounds seal, page and retire, and readers (snapshots and Live readers)
// all the while: every view agrees with its journal and none shows a round its clock lacks.
// Run with -race.
func TestHandOffPipelined(t *testing.T) {
	const accounts = 2*warmChunk + 17
	s, ws, ids := openRVShards(t, Options{FS: vfs.NewMem(), Shards: 1, PostingTailMax: 3 * accounts, PagingAccountsPerRound: 97}, accounts)
	defer s.Close()
	r := ws[0]
	r.w.tailAsyncPostings, r.w.tailAsyncAccounts = 0, 0
	var stop atomic.Bool
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for g := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; !stop.Load(); i++ {
				var v *Reader
				if g == 2 {
					v = s.Live()
				} else {
					v = s.Snapshot()
				}
				var err error
				if g == 2 {
					// A Live reader: each account's balance must be one the store held.
					for _, id := range ids[:32] {
						if _, _, e := v.Account(id); e != nil {
							err = e
							break
						}
					}
				} else {
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
		n := warmChunk + 1 + rng.IntN(accounts-warmChunk)
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
