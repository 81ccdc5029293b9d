package events_test

import (
	"context"
	"errors"
	"math/rand/v2"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/ledgercore/ledger/events"
)

// TestLingerBatchesSmallCommits: a follower at the head that lingers takes several small
// commits in one batch (fewer messages), every event once and in order; one that does not
// linger takes about one batch per commit.
func TestLingerBatchesSmallCommits(t *testing.T) {
	n := startNode(t, vfs.NewMem(), 0)
	defer n.stop(t)
	openAccounts(t, n.l)
	batches := func(linger time.Duration, base uint64) (count, taken int64) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		start := n.seq.Last() + 1
		done := make(chan struct{})
		var batchN, eventN atomic.Int64
		var ferr error
		go func() {
			defer close(done)
			next := start
			ferr = n.seq.Follow(ctx, start, events.FollowOptions{Coalesce: true, Linger: linger}, func(b []events.Event) error {
				for _, e := range b {
					if e.Seq != next {
						t.Errorf("event %d after %d", e.Seq, next-1)
					}
					next++
				}
				batchN.Add(1)
				eventN.Add(int64(len(b)))
				return nil
			})
		}()
		// 40 commits of 40 transfers, each waited for: small commits, one after the other.
		workload(t, n.l, rand.New(rand.NewPCG(7, base)), base, 40)
		want := int64(n.seq.Last() + 1 - start)
		for deadline := time.Now().Add(10 * time.Second); eventN.Load() < want; time.Sleep(5 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("the follower took %d of %d events", eventN.Load(), want)
			}
		}
		cancel()
		<-done
		if ferr != nil && !errors.Is(ferr, context.Canceled) {
			t.Fatal(ferr)
		}
		return batchN.Load(), eventN.Load()
	}
	plain, pe := batches(0, 1_000_000)
	lingering, le := batches(50*time.Millisecond, 2_000_000)
	t.Logf("no linger: %d batches of %d events; lingering 50ms: %d batches of %d events", plain, pe, lingering, le)
	if lingering*2 > plain {
		t.Fatalf("lingering took %d batches, not lingering %d: no fewer", lingering, plain)
	}
}
