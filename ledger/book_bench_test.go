package ledger

import (
	"fmt"
	"math/rand/v2"
	"testing"
)

// BenchmarkCreateTransfersAccounts: one batch of 8,190 plain transfers between accounts drawn
// uniformly from a book of 10,000 or 1,000,000 (the TigerBeetle comparison's rows 1 and 5),
// as the driver runs it: the look-up of what it needs, a fresh round's Effects, and a Trim
// when the book asks for one. Its
// ns/op over 8,190 is the book's cost per transfer; the gap between the sizes is what a
// million accounts cost in memory look-ups.
func BenchmarkCreateTransfersAccounts(b *testing.B) {
	const batch = 8190
	for _, accounts := range []int{10_000, 1_000_000} {
		b.Run(fmt.Sprintf("accounts=%d", accounts), func(b *testing.B) {
			bk := NewBook(0, 1)
			for i := 1; i <= accounts; i++ {
				bk.LoadAccount(Account{ID: uint64(i), Ledger: 1, Code: 1})
			}
			rng := rand.New(rand.NewPCG(1, 2))
			ts := make([]Transfer, batch)
			results := make([]TransferResult, batch)
			var fx Effects
			var needs Needs
			id, now := uint64(0), uint64(1)
			for b.Loop() {
				for i := range ts {
					d := uint64(rng.IntN(accounts)) + 1
					c := uint64(rng.IntN(accounts-1)) + 1
					if c >= d {
						c++
					}
					id++
					ts[i] = Transfer{ID: id, DebitAccountID: d, CreditAccountID: c, Amount: 1, Ledger: 1, Code: 1}
				}
				fx.Reset()
				now += 1_000_000
				bk.NeedsForTransfers(ts, &needs) // all new: nothing to load
				needs.Reset()
				bk.CreateTransfers(now, ts, results, &fx)
				for i, r := range results {
					if r != ResultOK {
						b.Fatalf("transfer %d: %v", i, r)
					}
				}
				if bk.TrimNeeded() {
					bk.Trim()
				}
			}
		})
	}
}
