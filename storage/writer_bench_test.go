package storage

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/ledgercore/ledger/ledger"
)

// BenchmarkWriterCommit: a shard's rounds of 1,024 transfers between uniform accounts of
// 10,000 or 1,000,000, as rows 1 and 5 of the TigerBeetle table commit them, on a memory
// file system (the commit's CPU, not the disk's). The book's work is outside the timer. A
// tail generation seals every 1,024 rounds: run 3,000 or more (-benchtime 3000x) for the
// pages' share.
func BenchmarkWriterCommit(b *testing.B) {
	for _, accounts := range []int{10_000, 1_000_000} {
		b.Run(fmt.Sprintf("accounts=%d", accounts), func(b *testing.B) { benchmarkWriterCommit(b, accounts) })
	}
}

func benchmarkWriterCommit(b *testing.B, accounts int) {
	const round = 1024
	s, err := Open("db", Options{FS: vfs.NewMem(), Shards: 1, CacheBytes: 64 << 20})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	w := s.Writer(0)
	defer w.Close()
	book := ledger.NewBook(0, 1)
	var fx ledger.Effects
	as := make([]ledger.Account, accounts)
	for i := range as {
		as[i] = ledger.Account{ID: uint64(i + 1), Ledger: 1, Code: 1}
	}
	book.CreateAccounts(1, as, make([]ledger.AccountResult, accounts), &fx)
	fx.Freeze()
	if err := w.Commit(&fx, book.Clock()); err != nil {
		b.Fatal(err)
	}
	fx.Reset()
	rng := rand.New(rand.NewPCG(5, 6))
	ts := make([]ledger.Transfer, round)
	results := make([]ledger.TransferResult, round)
	next, now := uint64(1), uint64(2)
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		for i := range ts {
			d := rng.Uint64N(uint64(accounts)) + 1
			c := rng.Uint64N(uint64(accounts-1)) + 1
			if c >= d {
				c++
			}
			ts[i] = ledger.Transfer{ID: next, DebitAccountID: d, CreditAccountID: c, Amount: 1 + rng.Uint64N(1000), Ledger: 1, Code: 1}
			next++
		}
		now++
		book.CreateTransfers(now, ts, results, &fx)
		fx.Freeze()
		b.StartTimer()
		if err := w.Commit(&fx, book.Clock()); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		fx.Reset()
		book.Trim()
		b.StartTimer()
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*round), "ns/transfer")
}
