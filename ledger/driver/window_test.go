package driver

import (
	"math/rand/v2"
	"testing"
)

// TestSeenWindow: against a set of every number seen, the window answers exactly for numbers
// within it, and unknown only for older ones.
func TestSeenWindow(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var w seenWindow
	all := map[uint64]bool{}
	latest := uint64(0)
	for i := 0; i < 200_000; i++ {
		var n uint64
		switch r := rng.IntN(10); {
		case r < 6:
			n = latest + 1 + uint64(rng.IntN(3)) // mostly in order, with gaps
		case r < 9 && latest > 0:
			n = latest - uint64(rng.Int64N(int64(min(latest, 2*seenWindowSize)))) // reordered or repeated
		default:
			n = latest + uint64(rng.IntN(3*seenWindowSize)) + 1 // a long gap
		}
		got := w.see(n)
		var want seen
		switch {
		case n+seenWindowSize <= latest:
			want = seenUnknown
		case all[n]:
			want = seenBefore
		case n > latest:
			want = seenInOrder
		default:
			want = seenOutOfOrder
		}
		if got != want {
			t.Fatalf("step %d: see(%d) with latest %d = %v, want %v", i, n, latest, got, want)
		}
		if want != seenUnknown {
			all[n] = true
		}
		latest = max(latest, n)
	}
}
