package ledger

import (
	"math/rand/v2"
	"reflect"
	"runtime"
	"slices"
	"testing"
)

// TestAccountArena: states are found by id across chunks, a replaced state is replaced in
// place, a pointer taken early still names its account after many chunks were added, and
// each visits every account once in the order placed.
func TestAccountArena(t *testing.T) {
	r := newAccountArena()
	first := r.put(accountState{Account: Account{ID: 1000, Ledger: 1}})
	const n = 3*accountChunk + 17
	for i := uint64(1); i < n; i++ {
		r.put(accountState{Account: Account{ID: 1000 + i, Ledger: uint32(i)}})
	}
	first.DebitsPosted = Uint128{Lo: 42}
	if a, ok := r.get(1000); !ok || a != first || a.DebitsPosted.Lo != 42 {
		t.Fatalf("the first account moved or lost its change: %+v %v", a, ok)
	}
	again := r.put(accountState{Account: Account{ID: 1000 + accountChunk, Ledger: 9}})
	if a, _ := r.get(1000 + accountChunk); a != again || a.Ledger != 9 || r.n != n {
		t.Fatalf("a replaced account: %+v at %p (put answered %p), %d accounts; want ledger 9 in place, %d", a, a, again, r.n, n)
	}
	if _, ok := r.get(999); ok {
		t.Fatal("found an account never placed")
	}
	next := uint64(1000)
	r.each(func(a *accountState) {
		if a.ID != next {
			t.Fatalf("each visited %d; want %d", a.ID, next)
		}
		next++
	})
	if next != 1000+n {
		t.Fatalf("each visited %d accounts; want %d", next-1000, n)
	}
}

// BenchmarkBookMillionAccountsGC: one garbage collection with a book of a million accounts
// alive. Measured against the map of pointers to account objects it replaced (same machine,
// 4 runs each): 93-133 ms a collection before, 1.5-4.4 ms with the arena.
func BenchmarkBookMillionAccountsGC(b *testing.B) {
	bk := NewBook(0, 1)
	for i := uint64(1); i <= 1_000_000; i++ {
		bk.LoadAccount(Account{ID: i, Ledger: 1, Code: 1})
	}
	runtime.GC()
	for b.Loop() {
		runtime.GC()
	}
	runtime.KeepAlive(bk)
}

// TestWarmChangesNothing: a book large enough that warm reads ahead books the same batches as
// one that never does (results, every part of the effects, the balances): holds, their posts
// and voids, linked chains, refusals and unknown accounts, across warm's windows.
func TestWarmChangesNothing(t *testing.T) {
	const accounts = warmAccountsMin + 1000
	books := [2]*Book{NewBook(0, 1), NewBook(0, 1)}
	books[1].warmFrom = ^uint32(0) // never
	for _, bk := range books {
		for i := uint64(1); i <= accounts; i++ {
			var f AccountFlags
			if i%7 == 0 {
				f = AccountDebitsMustNotExceedCredits
			}
			bk.LoadAccount(Account{ID: i, Ledger: 1, Code: 1, Flags: f})
		}
	}
	rng := rand.New(rand.NewPCG(11, 12))
	var holds []uint64
	id, now := uint64(0), uint64(1)
	for range 12 {
		ts := make([]Transfer, 2000)
		for i := range ts {
			id++
			d, c := rng.Uint64N(accounts+50)+1, rng.Uint64N(accounts+50)+1 // some unknown
			ts[i] = Transfer{ID: id, DebitAccountID: d, CreditAccountID: c, Amount: 1 + rng.Uint64N(100), Ledger: 1, Code: 1}
			switch k := rng.IntN(10); {
			case k == 0:
				ts[i].Flags = TransferPending
				holds = append(holds, id)
			case k == 1 && len(holds) > 0:
				ts[i].Flags, ts[i].PendingID, ts[i].Amount = TransferPostPending, holds[rng.IntN(len(holds))], 0
			case k == 2 && len(holds) > 0:
				ts[i].Flags, ts[i].PendingID, ts[i].Amount = TransferVoidPending, holds[rng.IntN(len(holds))], 0
			case k == 3 && i+1 < len(ts):
				ts[i].Flags = TransferLinked
			}
		}
		ts[len(ts)-1].Flags &^= TransferLinked
		now += 1_000_000
		var results [2][]TransferResult
		var fxs [2]Effects
		for k, bk := range books {
			results[k] = make([]TransferResult, len(ts))
			in := slices.Clone(ts)
			bk.CreateTransfers(now, in, results[k], &fxs[k])
		}
		if !slices.Equal(results[0], results[1]) {
			t.Fatalf("results differ: warm %v, cold %v", results[0], results[1])
		}
		if !reflect.DeepEqual(fxs[0].Transfers, fxs[1].Transfers) || !reflect.DeepEqual(fxs[0].Postings, fxs[1].Postings) {
			t.Fatal("transfers or postings differ")
		}
		if len(fxs[0].Accounts) != len(fxs[1].Accounts) {
			t.Fatalf("%d accounts changed warm, %d cold", len(fxs[0].Accounts), len(fxs[1].Accounts))
		}
		for i := range fxs[0].Accounts {
			if *fxs[0].Accounts[i] != *fxs[1].Accounts[i] {
				t.Fatalf("account changed warm %+v, cold %+v", *fxs[0].Accounts[i], *fxs[1].Accounts[i])
			}
		}
	}
	// Every window of every batch was read ahead: 2,000 transfers are 8 windows at least.
	if books[0].warmWindows < 12*8 || books[1].warmWindows != 0 {
		t.Fatalf("warm read %d windows ahead in the warm book, %d in the cold one; want 96 at least, and none",
			books[0].warmWindows, books[1].warmWindows)
	}
	for i := uint64(1); i <= accounts; i++ {
		a, _ := books[0].Account(i)
		b, _ := books[1].Account(i)
		if a != b {
			t.Fatalf("account %d: warm %+v, cold %+v", i, a, b)
		}
	}
}
