package storage

import (
	"math/rand/v2"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/ledgercore/ledger/ledger"
)

// TestTailGrownKeepsPlaces: a first generation whose place map is grown ahead mid-way (for a
// round's postings, or the accounts the writer opened) keeps every account's place and chain,
// and goes on adding; a generation sized as the one before it grows only for postings, and
// no map is grown past what a generation can hold.
func TestTailGrownKeepsPlaces(t *testing.T) {
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
	const limit = 1 << 21
	add(3000, 5000) // the map grows by itself
	check("before")
	if _, ok := g.grown(g.place.Room()-g.place.Len(), 0, limit); ok {
		t.Fatal("grown with room for the round")
	}
	m, ok := g.grown(0, 100_000, limit)
	if !ok || m.Room() < 100_000 {
		t.Fatalf("grown for 100,000 opened accounts: %v, room %d", ok, m.Room())
	}
	g.place = m
	check("grown for opened accounts")
	add(20_000, 50_000)
	check("after")
	m, ok = g.grown(2*g.place.Room(), 0, limit) // a round of more postings than it has room for
	if !ok || m.Room() < g.place.Len()+2*g.place.Room() {
		t.Fatalf("grown for a round: %v, room %d", ok, m.Room())
	}
	g.place = m
	check("grown for a round")

	// A generation sized as the one before: a quarter more room, and opened accounts ignored.
	next := newTailGen(ts, g)
	if next.place.Room() < len(g.accounts)*5/4 {
		t.Fatalf("a generation after one of %d accounts has room for %d", len(g.accounts), next.place.Room())
	}
	if _, ok := next.grown(0, 10*limit, limit); ok {
		t.Fatal("a generation sized as the one before grew for opened accounts")
	}

	// Never past twice what a generation holds (limit), however many accounts were opened.
	small := newTailGen(0, nil)
	for i := range 2000 {
		small.add(uint64(i)+1, uint64(i)+1)
	}
	for _, opened := range []int{3000, 5000, 1 << 20} {
		if m, ok := small.grown(0, opened, 4096); ok {
			if m.Room() > 2*4096 {
				t.Fatalf("%d opened, limit 4,096: grown to room for %d", opened, m.Room())
			}
			small.place = m
		}
	}
}

// TestWriterSizesFirstTailForOpenedAccounts: a new store's writer sizes its first tail
// generation as it opens accounts, so that their first postings add to it without a rehash,
// and never past what one generation holds (found in review: a doubling made it 5,000 with
// PostingTailMax 4,096).
func TestWriterSizesFirstTailForOpenedAccounts(t *testing.T) {
	const tailMax = 4096
	s, err := Open("db", Options{FS: vfs.NewMem(), Shards: 1, PostingTailMax: tailMax})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	w := s.Writer(0)
	defer w.Close()
	id, clock := uint64(0), uint64(1000)
	open := func(n int) {
		var fx ledger.Effects
		for range n {
			id++
			fx.Opened = append(fx.Opened, ledger.Account{ID: id, Ledger: 1, Code: 1})
		}
		fx.Freeze()
		clock++
		if err := w.Commit(&fx, clock); err != nil {
			t.Fatal(err)
		}
	}
	open(2500)
	if room := s.tails[0].cur.place.Room(); room < 2500 {
		t.Fatalf("2,500 accounts opened, room for %d", room)
	}
	open(100)
	open(10_000)
	if room := s.tails[0].cur.place.Room(); room < tailMax || room > 2*tailMax {
		t.Fatalf("12,600 accounts opened, PostingTailMax %d: room for %d", tailMax, room)
	}
}

// TestWriterTailNeverRehashesInARound: the tail's map of a generation is grown ahead of each
// round for the round's postings (tailGen.grown, outside the tail's lock), so no round's
// postings make it rehash inside addRound, under the lock. The accounts are not opened by this
// writer (as after a restart): only the postings size it.
func TestWriterTailNeverRehashesInARound(t *testing.T) {
	const accounts, round = 20_000, 2_000
	s, err := Open("db", Options{FS: vfs.NewMem(), Shards: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	w := s.Writer(0)
	defer w.Close()
	book := ledger.NewBook(0, 1)
	for id := uint64(1); id <= accounts; id++ {
		book.LoadAccount(ledger.Account{ID: id, Ledger: 1, Code: 1})
	}
	ts := make([]ledger.Transfer, round)
	results := make([]ledger.TransferResult, round)
	next, now := uint64(1), uint64(1000)
	for r := range 10 {
		for i := range ts { // each account new to the generation until it holds them all
			d := uint64(r*round+i)%accounts + 1
			ts[i] = ledger.Transfer{ID: next, DebitAccountID: d, CreditAccountID: d%accounts + 1, Amount: 1, Ledger: 1, Code: 1}
			next++
		}
		now += 1_000_000
		var fx ledger.Effects
		book.CreateTransfers(now, ts, results, &fx)
		fx.Freeze()
		if err := w.Commit(&fx, book.Clock()); err != nil {
			t.Fatal(err)
		}
		if g := s.tails[0].cur; g.place.Grows() != 0 || g.place.Len() > g.place.Room() {
			t.Fatalf("round %d: the generation's map of %d accounts (room %d) grew %d times inside its rounds",
				r, g.place.Len(), g.place.Room(), g.place.Grows())
		}
	}
	if n := s.tails[0].cur.place.Len(); n < accounts/2 {
		t.Fatalf("the generation holds %d accounts: the test grew nothing", n)
	}
}
