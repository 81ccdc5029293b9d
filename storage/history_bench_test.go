package storage

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/ledgercore/ledger/ledger"
)

// BenchmarkHistoryReads: an account's balance, its latest 100 postings and all of them, read
// on a snapshot of a store of 1,000 accounts after 500,000 transfers (1,000 postings an
// account): with the default tail (the postings in memory: no index pages yet), and with a
// tail of 2^16 postings (15 generations of pages, some 65 postings of an account in each).
func BenchmarkHistoryReads(b *testing.B) {
	for _, tail := range []int{0, 1 << 16} {
		b.Run(fmt.Sprintf("tail=%d", tail), func(b *testing.B) { historyReads(b, tail) })
	}
}

func historyReads(b *testing.B, tail int) {
	s, err := Open(b.TempDir(), Options{Shards: 1, PostingTailMax: tail})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	const accounts, rounds, perRound = 1000, 250, 2000
	book := ledger.NewBook(0, 1)
	w := s.Writer(0)
	defer w.Close()
	var fx ledger.Effects
	as := make([]ledger.Account, accounts)
	for i := range as {
		as[i] = ledger.Account{ID: uint64(i + 1), Ledger: 1, Code: 1}
	}
	book.CreateAccounts(1, as, make([]ledger.AccountResult, accounts), &fx)
	commit := func() {
		fx.Freeze()
		if err := w.Commit(&fx, book.Clock()); err != nil {
			b.Fatal(err)
		}
		fx.Reset()
	}
	commit()
	rng := rand.New(rand.NewPCG(1, 1))
	ts := make([]ledger.Transfer, perRound)
	results := make([]ledger.TransferResult, perRound)
	id := uint64(1)
	for r := range rounds {
		for i := range ts {
			dr := 1 + rng.Uint64N(accounts)
			cr := 1 + (dr+rng.Uint64N(accounts-1))%accounts
			ts[i] = ledger.Transfer{ID: id, DebitAccountID: dr, CreditAccountID: cr, Amount: 1, Ledger: 1, Code: 1}
			id++
		}
		book.CreateTransfers(uint64(r+2), ts, results, &fx)
		commit()
	}
	v := s.Snapshot()
	defer v.Close()
	b.Run("balance", func(b *testing.B) {
		for i := 0; b.Loop(); i++ {
			if _, _, err := v.Account(1 + uint64(i)%accounts); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("latest100", func(b *testing.B) {
		for i := 0; b.Loop(); i++ {
			ps, _, err := v.Postings(PostingFilter{Account: 1 + uint64(i)%accounts, Limit: 100, Reversed: true})
			if err != nil || len(ps) != 100 {
				b.Fatal(len(ps), err)
			}
		}
	})
	b.Run("all", func(b *testing.B) {
		for i := 0; b.Loop(); i++ {
			if _, _, err := v.Postings(PostingFilter{Account: 1 + uint64(i)%accounts, Limit: 10000}); err != nil {
				b.Fatal(err)
			}
		}
	})
}
