package events

// SetRingLimits sets the ring's bounds (RingEventsMax and RingBytesMax) for a test.
func SetRingLimits(s *Sequencer, events, bytes int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ringEventsMax, s.ringBytesMax = events, bytes
}
