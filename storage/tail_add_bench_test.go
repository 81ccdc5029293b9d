package storage

import (
	"fmt"
	"math/rand/v2"
	"testing"
)

// BenchmarkTailAdd: a generation's postings entering the tail (tailGen.add, under addRound's
// lock), 2^21 of them over uniform accounts, as rows 1 and 5 of the TigerBeetle table.
func BenchmarkTailAdd(b *testing.B) {
	for _, accounts := range []int{10_000, 1_000_000} {
		b.Run(fmt.Sprint(accounts), func(b *testing.B) {
			const postings = 1 << 21
			r := rand.New(rand.NewPCG(1, uint64(accounts)))
			ids := make([]uint64, postings)
			for i := range ids {
				ids[i] = r.Uint64N(uint64(accounts)) + 1
			}
			fill := func(g *tailGen) *tailGen {
				for i, id := range ids {
					g.add(id, uint64(i+1))
				}
				return g
			}
			like := fill(newTailGen(0, nil)) // a generation after the first is sized as the one before
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				fill(newTailGen(0, like))
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/postings, "ns/posting")
		})
	}
}
