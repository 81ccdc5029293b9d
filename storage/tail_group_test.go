package storage

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
)

// chainTimes appends to ts account's timestamps in g, ascending, by a walk of its chain (what
// pages were written from before group).
func chainTimes(ts []uint64, g *tailGen, account uint64) []uint64 {
	for i := g.latestOf(account); i >= 0; i = g.prev[i] {
		ts = append(ts, g.ts[i])
	}
	slices.Reverse(ts)
	return ts
}

func randomTailGen(seed uint64, postings, accounts int) *tailGen {
	r := rand.New(rand.NewPCG(seed, 7))
	g := newTailGen(0, nil)
	ts := uint64(1)
	for range postings {
		if r.IntN(3) > 0 { // some postings share a timestamp (a transfer's two)
			ts += uint64(r.IntN(5))
		}
		g.add(r.Uint64N(uint64(accounts))+1, ts)
	}
	return g
}

// group gathers exactly what each account's chain holds, in the same order, whatever the
// accounts' order after seal and sortTo.
func TestGroupMatchesChains(t *testing.T) {
	for _, c := range []struct{ seed, postings, accounts int }{{1, 1, 1}, {2, 500, 3}, {3, 5000, 1000}, {4, 20000, 30000}, {5, 3, 2}} {
		t.Run(fmt.Sprint(c), func(t *testing.T) {
			g := randomTailGen(uint64(c.seed), c.postings, c.accounts)
			g.seal()
			g.sortTo(len(g.accounts))
			g.startGroup(nil)
			<-g.grouping
			if n := int(g.groupEnd[len(g.accounts)]); n != len(g.ts) {
				t.Fatalf("grouped %d postings of %d", n, len(g.ts))
			}
			for _, a := range g.accounts {
				x, _ := g.place.Get(a)
				got, want := g.grouped[g.groupEnd[x]:g.groupEnd[x+1]], chainTimes(nil, g, a)
				if !slices.Equal(got, want) {
					t.Fatalf("account %d: grouped %v, chain %v", a, got, want)
				}
			}
		})
	}
}

// BenchmarkGroupTail: a sealed generation's timestamps gathered by account, by chain walks
// (before) and by group, over PostingTailMax postings.
func BenchmarkGroupTail(b *testing.B) {
	for _, accounts := range []int{10_000, 1_000_000} {
		g := randomTailGen(1, PostingTailMax, accounts)
		g.seal()
		g.sortTo(len(g.accounts))
		b.Run(fmt.Sprintf("chains/%d", accounts), func(b *testing.B) {
			var ts []uint64
			for b.Loop() {
				n := 0
				for _, a := range g.accounts {
					ts = chainTimes(ts[:0], g, a)
					n += len(ts)
				}
				if n != len(g.ts) {
					b.Fatal(n)
				}
			}
		})
		b.Run(fmt.Sprintf("group/%d", accounts), func(b *testing.B) {
			owner := g.owner
			for b.Loop() {
				g.owner = owner
				g.group(len(g.accounts))
				n := 0
				for _, a := range g.accounts {
					x, _ := g.place.Get(a)
					n += int(g.groupEnd[x+1] - g.groupEnd[x])
				}
				if n != len(g.ts) {
					b.Fatal(n)
				}
			}
		})
	}
}

// While a sealed generation is still being grouped, rounds go on without its pages until the
// new generation holds an eighth of the tail; the round that reaches it waits for the grouping
// and writes pages.
func TestPagesWaitForGroupingPastAnEighth(t *testing.T) {
	const tailMax = 64
	s, err := Open("db", Options{FS: vfs.NewMem(), Shards: 1, PostingTailMax: tailMax})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	r := newRVShard(t, s, 0, 100)
	gate := make(chan struct{})
	r.w.groupGate = gate
	pages := 0
	r.w.inspect = func(b *pebble.Batch) {
		pages = 0
		for rd := b.Reader(); ; {
			_, k, _, ok, err := rd.Next()
			if err != nil || !ok {
				break
			}
			if k[0] == prefixGenPage {
				pages++
			}
		}
	}
	tail := s.tails[0]
	for i := 0; tail.sealed == nil; i += 4 {
		r.round(i%100, (i+1)%100, (i+2)%100, (i+3)%100)
	}
	for n := 1; n < tailMax/groupWaitDivisor; n++ {
		r.round(n)
		if pages != 0 || tail.sealedNext != 0 || len(tail.cur.ts) != n {
			t.Fatalf("round %d of the new generation, its grouping held: %d pages, %d accounts paged", n, pages, tail.sealedNext)
		}
	}
	time.AfterFunc(20*time.Millisecond, func() { close(gate) })
	r.round(0) // an eighth: waits for the grouping
	if pages == 0 {
		t.Fatal("the round at an eighth wrote no pages")
	}
	v := s.Snapshot()
	defer v.Close()
	if err := rvCheck(v, r.ids); err != nil {
		t.Fatal(err)
	}
}
