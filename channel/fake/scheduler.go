package fake

import (
	"context"
	"sync"
	"time"
)

// drainPoll is how often Close looks whether the scheduled work is done.
const drainPoll = 5 * time.Millisecond

// scheduler runs functions later (outcomes after their latency, notices after their delay
// or backoff) and knows how many are due or running, so that Close can wait for them and
// then stop the rest.
type scheduler struct {
	ctx    context.Context // done once stopped: cancels notices being posted
	cancel context.CancelFunc

	mu      sync.Mutex
	timers  map[uint64]*time.Timer
	next    uint64
	busy    int // functions scheduled or running
	stopped bool
}

func (s *scheduler) init() {
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.timers = make(map[uint64]*time.Timer)
}

// after runs f in d, in a goroutine of its own; false when stopped (f never runs).
func (s *scheduler) after(d time.Duration, f func()) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		return false
	}
	id := s.next
	s.next++
	s.busy++
	s.timers[id] = time.AfterFunc(d, func() {
		s.mu.Lock()
		_, live := s.timers[id]
		delete(s.timers, id)
		s.mu.Unlock()
		if live {
			f()
		}
		s.mu.Lock()
		s.busy--
		s.mu.Unlock()
	})
	return true
}

// hold counts work that is not a scheduled function (a notice waiting to be posted) as
// scheduled, until release; false when stopped (nothing is counted).
func (s *scheduler) hold() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		return false
	}
	s.busy++
	return true
}

// release ends a hold.
func (s *scheduler) release() {
	s.mu.Lock()
	s.busy--
	s.mu.Unlock()
}

// drain waits until nothing is scheduled or running, or ctx is done.
func (s *scheduler) drain(ctx context.Context) error {
	t := time.NewTicker(drainPoll)
	defer t.Stop()
	for {
		s.mu.Lock()
		busy := s.busy
		s.mu.Unlock()
		if busy == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}

// stop drops whatever has not started and cancels s.ctx; nothing is scheduled after.
func (s *scheduler) stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stopped = true
	for id, t := range s.timers {
		if t.Stop() {
			s.busy--
		}
		delete(s.timers, id)
	}
	s.cancel()
}
