package driver

// seenWindowSize is how many of one sender's latest message numbers a receiver remembers.
const seenWindowSize = 4096

// seenWindow remembers which of one sender's latest seenWindowSize message numbers arrived:
// a bit per number, the latest number seen, and everything older than the window unknown.
type seenWindow struct {
	latest uint64
	bits   []uint64 // bit n%seenWindowSize: n arrived; allocated at the first message
}

type seen uint8

const (
	seenInOrder    seen = iota // after every number seen so far
	seenOutOfOrder             // not seen before, but a later number was
	seenBefore                 // a duplicate
	seenUnknown                // older than the window: it may have been seen
)

// see records that message n arrived and says whether it had before.
func (w *seenWindow) see(n uint64) seen {
	if w.bits == nil {
		w.bits = make([]uint64, seenWindowSize/64)
	}
	switch {
	case n+seenWindowSize <= w.latest:
		return seenUnknown
	case n > w.latest:
		if n-w.latest >= seenWindowSize {
			clear(w.bits)
		} else {
			for k := w.latest + 1; k < n; k++ {
				w.clear(k) // its bit was k-seenWindowSize's, now out of the window
			}
		}
		w.latest = n
		w.set(n)
		return seenInOrder
	case w.has(n):
		return seenBefore
	}
	w.set(n)
	return seenOutOfOrder
}

func (w *seenWindow) set(n uint64)      { w.bits[n/64%(seenWindowSize/64)] |= 1 << (n % 64) }
func (w *seenWindow) clear(n uint64)    { w.bits[n/64%(seenWindowSize/64)] &^= 1 << (n % 64) }
func (w *seenWindow) has(n uint64) bool { return w.bits[n/64%(seenWindowSize/64)]&(1<<(n%64)) != 0 }
