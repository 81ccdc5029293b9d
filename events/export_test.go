package events

import "github.com/ledgercore/ledger/ledger"

// SetRingLimits sets the ring's bounds (RingEventsMax and RingBytesMax) for a test.
func SetRingLimits(s *Sequencer, events, bytes int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ringEventsMax, s.ringBytesMax = events, bytes
}

// EncodeRoundNumbered is a ledger round encoded as its committer does (the sequences left in
// width bytes) and numbered from first as the sequencer does: its bytes, offsets and History
// marks.
func EncodeRoundNumbered(ts []ledger.Transfer, ps []ledger.Posting, width int, first uint64) (b []byte, off, history []uint32) {
	w := encodeRound(ts, ps, width).number(first)
	return w.b, w.off, w.history
}
