package driver

import (
	"fmt"
	"maps"
	"slices"

	"github.com/ledgercore/ledger/ledger"
)

// Hot-account buffers (热点账户缓冲记账). A posted inflow to a hot account on another shard
// is a buffered leg (ledger.Leg.Buffered): its debit side, the transit posting and its outbox
// record (the journal entry) commit in the sender's round, and the request is answered then,
// without waiting for the credit side. Once that round is durable the leg joins this shard's
// buffer for its account; the buffer goes to the account's shard as one message when it
// reaches HotBufferLegsMax legs, at most HotFlushInterval after its first leg (one timer per
// shard sends every buffer: Host.ArmHotFlush), when a Drain asks (before an accounting-day
// cut, and on Stop), or earlier, along with other legs that go to the same shard anyway
// (flushAlong: an extra flush would cost the hot account's shard an extra round; this one
// costs it nothing). The credit shard applies the whole message in one round, each detail
// with its own posting and running balance.
//
// Buffered legs are outbox legs like any other: a crash loses only the buffer, and recovery
// re-sends the outbox. The outbox limit (ledger.OutboxLegsMax) bounds all buffers together.

// spareBuffersMax bounds the emptied buffers a shard keeps to use again.
const spareBuffersMax = 4

type hotState struct {
	buffers      map[uint64][]ledger.Leg // durable buffered legs not yet sent, per credit account
	spareBuffers [][]ledger.Leg          // emptied buffers, to use again (spareBuffersMax)
	bufferedLegs int                     // legs in buffers
	flushArmed   bool                    // a HotFlush is due
	drains       []*drainWait
}

func (h *hotState) init() { h.buffers = make(map[uint64][]ledger.Leg) }

// drainWait is a Drain waiting for the legs still unanswered when it came.
type drainWait struct {
	id   uint64
	left map[ledger.LegKey]struct{}
	done func()
}

// buffer takes a durable round's buffered leg.
func (d *Driver) buffer(l ledger.Leg) {
	b, ok := d.buffers[l.Account]
	if ok && b[0].Day != l.Day {
		// A buffer holds legs of one accounting day: a leg of another day (booked after
		// a day switch in the round that switched) sends the buffer first.
		d.flushAccount(l.Account, b, FlushDrain)
		d.sendLegsTo()
		b, ok = nil, false
	}
	if !ok && len(d.spareBuffers) > 0 {
		b = d.spareBuffers[len(d.spareBuffers)-1]
		d.spareBuffers = d.spareBuffers[:len(d.spareBuffers)-1]
	}
	b = append(b, l)
	d.buffers[l.Account] = b
	d.bufferedLegs++
	if len(b) >= d.cfg.HotBufferLegsMax {
		d.flushAccount(l.Account, b, FlushSize)
		d.sendLegsTo()
		return
	}
	if !d.flushArmed {
		d.flushArmed = true
		d.host.ArmHotFlush(d.cfg.HotFlushInterval)
	}
}

// flushAccount moves one account's buffer to the legs to send (the caller sends them), and
// counts it as one flush for reason.
func (d *Driver) flushAccount(account uint64, legs []ledger.Leg, reason int) {
	d.stats.HotFlushes[reason].Add(1)
	to := ledger.ShardOf(account, d.cfg.Shards)
	for _, l := range legs {
		w, ok := d.waiting[l.LegKey]
		if !ok {
			continue // no waiter to update (every buffered leg has one; nothing to check)
		}
		if w.round > d.durable {
			panic(fmt.Sprintf("driver: INVARIANT: buffered leg %+v sent before its debit round %d is durable (%d)",
				l.LegKey, w.round, d.durable))
		}
		w.buffered, w.sent = false, d.ticks
		d.waiting[l.LegKey] = w
	}
	d.legsTo[to] = append(d.legsTo[to], legs...)
	d.bufferedLegs -= len(legs)
	d.cfg.HotFlushLegs.Observe(float64(len(legs)))
	delete(d.buffers, account)
	if len(d.spareBuffers) < spareBuffersMax {
		d.spareBuffers = append(d.spareBuffers, legs[:0]) // its legs were copied into legsTo
	}
}

// HotFlush sends every buffer now (the flush timer fired).
func (d *Driver) HotFlush() {
	if d.live() {
		d.flushBuffers(FlushInterval)
		d.Gauges.Buffered.Store(int64(d.bufferedLegs))
	}
}

// flushBuffers sends every buffer now. Accounts go in order, so that a run replays.
func (d *Driver) flushBuffers(reason int) {
	d.flushArmed = false
	if len(d.buffers) == 0 {
		return
	}
	for _, account := range slices.Sorted(maps.Keys(d.buffers)) {
		d.flushAccount(account, d.buffers[account], reason)
	}
	d.sendLegsTo()
}

// flushAlong adds to the legs about to go to a shard the buffers bound for it: a message
// goes there anyway, so they cost that shard no extra message or round.
func (d *Driver) flushAlong() {
	if len(d.buffers) == 0 {
		return
	}
	for _, account := range slices.Sorted(maps.Keys(d.buffers)) {
		if len(d.legsTo[ledger.ShardOf(account, d.cfg.Shards)]) > 0 {
			d.flushAccount(account, d.buffers[account], FlushAlong)
		}
	}
}

// Drain flushes the buffers and calls done once every leg in the outbox now has been
// answered and the answer's round is durable (at once when there is none). id names the
// drain for CancelDrain (the caller's choice; ids of drains waiting at once differ).
func (d *Driver) Drain(id uint64, done func()) {
	if !d.live() {
		return
	}
	d.flushBuffers(FlushDrain)
	d.Gauges.Buffered.Store(int64(d.bufferedLegs))
	left := make(map[ledger.LegKey]struct{}, d.book.OutboxLen())
	d.book.Outbox(func(l ledger.Leg) { left[l.LegKey] = struct{}{} })
	// Legs answered in a round not durable yet are gone from the book's outbox but not from
	// the store's: wait for that round too (completed crosses them off), so that a durable
	// read after the drain finds no leg the drain took for answered.
	for _, r := range d.fx.Answered {
		left[r.LegKey] = struct{}{}
	}
	for _, r := range d.inflight {
		for _, a := range r.Effects.Answered {
			left[a.LegKey] = struct{}{}
		}
	}
	if len(left) == 0 {
		done()
		return
	}
	d.drains = append(d.drains, &drainWait{id: id, left: left, done: done})
	d.Gauges.Drains.Store(int64(len(d.drains)))
}

// CancelDrain forgets the drain id (its caller stopped waiting: a timeout, a cancel) without
// calling its done, with the legs it waited for; a drain that ended already is not there.
func (d *Driver) CancelDrain(id uint64) {
	kept := d.drains[:0]
	for _, w := range d.drains {
		if w.id != id {
			kept = append(kept, w)
		}
	}
	clear(d.drains[len(kept):])
	d.drains = kept
	d.Gauges.Drains.Store(int64(len(d.drains)))
}

// DrainsWaiting is how many drains wait for legs.
func (d *Driver) DrainsWaiting() int { return len(d.drains) }

// answeredDrain crosses an answered leg off the drains waiting for it.
func (d *Driver) answeredDrain(k ledger.LegKey) {
	kept := d.drains[:0]
	for _, w := range d.drains {
		delete(w.left, k)
		if len(w.left) == 0 {
			w.done()
			continue
		}
		kept = append(kept, w)
	}
	clear(d.drains[len(kept):])
	d.drains = kept
	d.Gauges.Drains.Store(int64(len(d.drains)))
}
