package storage

import (
	"math/rand/v2"
	"testing"
)

// TestTailReserveKeepsPlaces: a first generation that reserves room mid-way (the writer opened
// more accounts) keeps every account's place and chain, and goes on adding; a generation
// sized as the one before it reserves nothing.
func TestTailReserveKeepsPlaces(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	g := newTailGen(0, nil)
	var ts uint64
	add := func(n int, accounts uint64) {
		for range n {
			ts++
			g.add(r.Uint64N(accounts)+1, ts)
		}
	}
	check := func(when string) {
		t.Helper()
		for x, account := range g.accounts {
			if got, ok := g.place.Get(account); !ok || int(got) != x {
				t.Fatalf("%s: account %d at place %d, %v; want %d", when, account, got, ok, x)
			}
		}
		if g.place.Len() != len(g.accounts) {
			t.Fatalf("%s: %d places for %d accounts", when, g.place.Len(), len(g.accounts))
		}
		// Each chain, walked from its latest posting, holds the account's postings newest first.
		seen := 0
		for x := range g.accounts {
			prevTS := uint64(1<<64 - 1)
			for i := g.last[x]; i >= 0; i = g.prev[i] {
				if g.owner[i] != int32(x) || g.ts[i] >= prevTS {
					t.Fatalf("%s: account %d's chain at %d: owner %d, time %d after %d", when, g.accounts[x], i, g.owner[i], g.ts[i], prevTS)
				}
				prevTS = g.ts[i]
				seen++
			}
		}
		if seen != len(g.ts) {
			t.Fatalf("%s: chains hold %d of %d postings", when, seen, len(g.ts))
		}
	}
	add(3000, 5000)
	check("before")
	before := g.placeCap
	g.reserve(before) // no more than it holds: nothing
	if g.placeCap != before {
		t.Fatalf("a reserve of what the map holds grew it to %d", g.placeCap)
	}
	g.reserve(100_000)
	if g.placeCap < 100_000 {
		t.Fatalf("reserved %d, want 100,000", g.placeCap)
	}
	check("reserved")
	add(20_000, 50_000)
	check("after")

	next := newTailGen(ts, g)
	capNext := next.placeCap
	next.reserve(10 * capNext)
	if next.placeCap != capNext {
		t.Fatalf("a generation sized as the one before reserved: %d, want %d", next.placeCap, capNext)
	}
}
