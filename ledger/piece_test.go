package ledger

import (
	"math/rand/v2"
	"testing"
)

// TestPieceEnd: for any batch, any piece size and any start after an unlinked transfer, the
// piece PieceEnd gives is one CreateTransfersPiece takes (it panics on any other): not empty,
// within the batch, at least n long or to the end, ending after an unlinked transfer or at the
// batch's end (a chain left open there included). Client input chooses the flags, so a piece
// that cut a chain would stop the shard.
func TestPieceEnd(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for range 2000 {
		ts := make([]Transfer, 1+rng.IntN(40))
		for i := range ts {
			if rng.IntN(3) == 0 {
				ts[i].Flags = TransferLinked
			}
		}
		n := 1 + rng.IntN(6)
		for lo := 0; lo < len(ts); {
			hi := PieceEnd(ts, lo, n)
			if hi <= lo || hi > len(ts) || hi-lo < min(n, len(ts)-lo) || (hi < len(ts) && ts[hi-1].Flags&TransferLinked != 0) {
				t.Fatalf("flags %v, n %d: piece [%d, %d)", ts, n, lo, hi)
			}
			lo = hi
		}
	}
}
