package actors

import (
	"fmt"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/ledgercore/ledger/ledger"
)

// Hot-account buffers (热点账户缓冲记账). A posted inflow to a hot account on another shard
// is a buffered leg (ledger.Leg.Buffered): its debit side, the transit posting and its outbox
// record (the journal entry) commit in the sender's round, and the request is answered then,
// without waiting for the credit side. Once that round is durable the leg joins this shard's
// buffer for its account; the buffer goes to the account's shard as one message when it
// reaches HotBufferLegsMax legs, at most HotFlushInterval after its first leg (one timer per
// shard sends every buffer), when a Drain asks (before an accounting-day cut, and on Stop),
// or earlier, along with other legs that go to the same shard anyway (flushAlong: an extra
// flush would cost the hot account's shard an extra round; this one costs it nothing). The credit shard applies the whole
// message in one round, each detail with its own posting and running balance.
//
// Buffered legs are outbox legs like any other: a crash loses only the buffer, and recovery
// re-sends the outbox. The outbox limit (ledger.OutboxLegsMax) bounds all buffers together.

// Flush reasons, the label values of ledger_hot_flushes_total.
const (
	FlushInterval = iota
	FlushSize
	FlushDrain
	FlushAlong // with other legs to the same shard
	flushReasons
)

// FlushReasonNames names the flush reasons.
var FlushReasonNames = [flushReasons]string{"interval", "size", "drain", "along"}

// hotFlushMessage is what a shard's flush timer sends it.
type hotFlushMessage struct{}

// drainMessage asks a shard to flush its buffers and to close done once every leg in its
// outbox at that moment has been answered.
type drainMessage struct{ done chan<- struct{} }

// drainWait is a Drain waiting for the legs still unanswered when it came.
type drainWait struct {
	left map[ledger.LegKey]struct{}
	done chan<- struct{}
}

// spareBuffersMax bounds the emptied buffers a shard keeps to use again.
const spareBuffersMax = 4

// buffer takes a durable round's buffered leg.
func (s *shard) buffer(ctx actor.Context, l ledger.Leg) {
	b, ok := s.buffers[l.Account]
	if !ok && len(s.spareBuffers) > 0 {
		b = s.spareBuffers[len(s.spareBuffers)-1]
		s.spareBuffers = s.spareBuffers[:len(s.spareBuffers)-1]
	}
	b = append(b, l)
	s.buffers[l.Account] = b
	s.bufferedLegs++
	if len(b) >= s.l.cfg.HotBufferLegsMax {
		s.flushAccount(l.Account, b, FlushSize)
		s.sendLegsTo(ctx)
		return
	}
	if !s.flushArmed {
		s.flushArmed = true
		if s.flushTimer == nil {
			self, system := ctx.Self(), s.l.system
			s.flushTimer = time.AfterFunc(s.l.cfg.HotFlushInterval, func() {
				system.Root.Send(self, hotFlushMessage{})
			})
			return
		}
		s.flushTimer.Reset(s.l.cfg.HotFlushInterval)
	}
}

// flushAccount moves one account's buffer to the legs to send (the caller sends them), and
// counts it as one flush for reason.
func (s *shard) flushAccount(account uint64, legs []ledger.Leg, reason int) {
	s.l.stats.HotFlushes[reason].Add(1)
	to := ledger.ShardOf(account, s.l.cfg.Shards)
	for _, l := range legs {
		w, ok := s.waiting[l.LegKey]
		if !ok {
			continue // no waiter to update (every buffered leg has one; nothing to check)
		}
		if w.round > s.durable {
			panic(fmt.Sprintf("actors: INVARIANT: buffered leg %+v sent before its debit round %d is durable (%d)",
				l.LegKey, w.round, s.durable))
		}
		w.buffered, w.sent = false, s.ticks
		s.waiting[l.LegKey] = w
	}
	s.legsTo[to] = append(s.legsTo[to], legs...)
	s.bufferedLegs -= len(legs)
	s.l.cfg.HotFlushLegs.Observe(float64(len(legs)))
	delete(s.buffers, account)
	if len(s.spareBuffers) < spareBuffersMax {
		s.spareBuffers = append(s.spareBuffers, legs[:0]) // its legs were copied into legsTo
	}
}

// flushBuffers sends every buffer now.
func (s *shard) flushBuffers(ctx actor.Context, reason int) {
	s.flushArmed = false
	if len(s.buffers) == 0 {
		return
	}
	for account, legs := range s.buffers {
		s.flushAccount(account, legs, reason)
	}
	s.sendLegsTo(ctx)
}

// flushAlong adds to the legs about to go to a shard the buffers bound for it: a message
// goes there anyway, so they cost that shard no extra message or round.
func (s *shard) flushAlong() {
	if len(s.buffers) == 0 {
		return
	}
	for account, legs := range s.buffers {
		if len(s.legsTo[ledger.ShardOf(account, s.l.cfg.Shards)]) > 0 {
			s.flushAccount(account, legs, FlushAlong)
		}
	}
}

// drainLegs flushes the buffers and waits for every leg in the outbox to be answered.
func (s *shard) drainLegs(ctx actor.Context, m drainMessage) {
	s.flushBuffers(ctx, FlushDrain)
	left := make(map[ledger.LegKey]struct{}, s.book.OutboxLen())
	s.book.Outbox(func(l ledger.Leg) { left[l.LegKey] = struct{}{} })
	if len(left) == 0 {
		close(m.done)
		return
	}
	s.drains = append(s.drains, &drainWait{left: left, done: m.done})
}

// answeredDrain crosses an answered leg off the drains waiting for it.
func (s *shard) answeredDrain(k ledger.LegKey) {
	kept := s.drains[:0]
	for _, d := range s.drains {
		delete(d.left, k)
		if len(d.left) == 0 {
			close(d.done)
			continue
		}
		kept = append(kept, d)
	}
	clear(s.drains[len(kept):])
	s.drains = kept
}
