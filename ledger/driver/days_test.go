package driver

import (
	"testing"

	"github.com/ledgercore/ledger/ledger"
)

const testDay ledger.Day = 20261126

// switchAll switches every shard to day and makes it durable.
func (c *cluster) switchAll(day ledger.Day) {
	for i, d := range c.drivers {
		done := false
		d.SwitchDay(day, func() { done = true })
		c.run(uint32(i))
		if !done {
			c.t.Fatalf("shard %d: switch to %v not durable", i, day)
		}
	}
}

// TestLegOfALaterDaySwitchesItsShard: a shard that receives a leg of a day later than its
// own (its sender switched first, the explicit switch has not reached it) switches itself
// to that day in the same round, before the posting: its stored start of the day precedes
// the leg's posting (the day's per-account seek finds it), and the explicit switch that
// comes later changes nothing and is answered at once.
func TestLegOfALaterDaySwitchesItsShard(t *testing.T) {
	c := newCluster(t, 2)
	c.switchAll(testDay)
	a, b := accountOn(1, 0, 2), accountOn(1, 1, 2)
	c.openAccounts(ledger.Account{ID: a, Ledger: 1, Code: 1}, ledger.Account{ID: b, Ledger: 1, Code: 1})
	next := testDay.Next()
	done0 := false
	c.drivers[0].SwitchDay(next, func() { done0 = true })
	c.run(0)
	if !done0 {
		t.Fatal("shard 0's switch not durable")
	}
	c.drivers[0].Transfers(transfer(idArbitratedBy(7, 0, 2), a, b, 5))
	c.run(0)
	c.deliver(c.take(0)...) // the leg, of day next, reaches shard 1 (still on testDay)
	if got := c.drivers[1].book.Day(); got != next {
		t.Fatalf("shard 1 is on %v after a leg of %v, want %v", got, next, next)
	}
	v := c.store.Live()
	if day, _, err := v.ShardDay(1); err != nil || day != next {
		t.Fatalf("shard 1's stored day %v (%v), want %v", day, err, next)
	}
	starts, found, err := v.DayStarts(next, 2)
	if err != nil || !found {
		t.Fatalf("start of %v not stored on every shard: %v", next, err)
	}
	var posting ledger.Posting
	n := 0
	if err := v.ForEachPosting(func(p ledger.Posting) error {
		if p.Account == b {
			posting, n = p, n+1
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if n != 1 || posting.Day != next || posting.Timestamp <= starts[1] {
		t.Fatalf("credit posting %+v (of %d), shard 1's start of %v at clock %d: the day's seek misses it", posting, n, next, starts[1])
	}
	// The explicit switch, late: nothing to switch, answered at once, no round.
	done1 := false
	c.drivers[1].SwitchDay(next, func() { done1 = true })
	if !done1 || len(c.hosts[1].rounds) != 0 || !c.drivers[1].fx.Empty() {
		t.Fatalf("the late switch: done %v, rounds %d, gathered %v", done1, len(c.hosts[1].rounds), !c.drivers[1].fx.Empty())
	}
	c.deliver(c.take(1)...) // the answer
	if c.drivers[0].book.OutboxLen() != 0 {
		t.Fatal("leg unanswered")
	}
}

// TestHotBufferHoldsOneDay: buffered legs to a hot account booked before a day switch and
// after it in the same round are sent in separate messages: a buffer never mixes days.
func TestHotBufferHoldsOneDay(t *testing.T) {
	c := newCluster(t, 2)
	c.switchAll(testDay)
	a, hot := accountOn(1, 0, 2), accountOn(1, 1, 2)
	c.openAccounts(ledger.Account{ID: a, Ledger: 1, Code: 1},
		ledger.Account{ID: hot, Ledger: 1, Code: 1, Flags: ledger.AccountHot | ledger.AccountInternal})
	d, h := c.drivers[0], c.hosts[0]
	d.Transfers(transfer(idArbitratedBy(7, 0, 2), a, hot, 5))
	d.Wake() // round 1 (day testDay) is sealed and committing
	d.SwitchDay(testDay.Next(), func() {})
	d.Transfers(transfer(idArbitratedBy(100, 0, 2), a, hot, 3))
	h.woken = 0
	d.Wake() // gathered in round 2, after the switch
	c.run(0)
	var days [][]ledger.Day
	for _, e := range c.take(0) {
		if m, ok := e.m.(*Legs); ok {
			var ds []ledger.Day
			for _, l := range m.Legs {
				ds = append(ds, l.Day)
			}
			days = append(days, ds)
		}
	}
	if len(days) != 2 || len(days[0]) != 1 || len(days[1]) != 1 || days[0][0] != testDay || days[1][0] != testDay.Next() {
		t.Fatalf("legs messages by day %v, want [[%v] [%v]]", days, testDay, testDay.Next())
	}
}

// TestDrainWaitsForTheAnswersRound: a leg answered in a round not durable yet is gone from
// the book's outbox but not from the store's: a drain then waits for that round, so that a
// durable read after the drain finds no leg left.
func TestDrainWaitsForTheAnswersRound(t *testing.T) {
	c, _, leg := legBench(t)
	c.deliver(envelope{1, leg})
	answers := only[*Answers](t, c.take(1))
	d, h := c.drivers[0], c.hosts[0]
	d.Receive(answers)
	h.woken = 0
	d.Wake() // the answer's round is sealed, not committed
	if len(h.rounds) != 1 || d.book.OutboxLen() != 0 {
		t.Fatalf("rounds %d, outbox %d", len(h.rounds), d.book.OutboxLen())
	}
	drained := false
	d.Drain(1, func() {
		drained = true
		// What the drain's caller reads next (ledgerd's drain, TestHotInflowsAreBuffered).
		if got := d.Gauges.Outbox.Load(); got != 0 {
			t.Errorf("the outbox gauge says %d when the drain ends", got)
		}
	})
	n := 0
	if err := c.store.Live().ForEachOutboxLeg(func(ledger.Leg) error { n++; return nil }); err != nil {
		t.Fatal(err)
	}
	if drained || n != 1 {
		t.Fatalf("drained %v with %d legs in the stored outbox", drained, n)
	}
	c.run(0)
	if !drained {
		t.Fatal("not drained once the answer's round is durable")
	}
}

// TestCancelledDrainIsForgotten: a drain whose caller stopped waiting (a timeout, a cancel)
// is removed with the legs it waited for, and its done is never called; other drains keep
// waiting and end when the legs are answered.
func TestCancelledDrainIsForgotten(t *testing.T) {
	c, _, leg := legBench(t)
	d := c.drivers[0]
	var done [3]int
	for id := range uint64(3) {
		d.Drain(id+1, func() { done[id]++ })
	}
	if d.DrainsWaiting() != 3 || d.Gauges.Drains.Load() != 3 {
		t.Fatalf("drains waiting %d (gauge %d), want 3", d.DrainsWaiting(), d.Gauges.Drains.Load())
	}
	d.CancelDrain(2)
	d.CancelDrain(2) // again: nothing
	d.CancelDrain(9) // never there
	if d.DrainsWaiting() != 2 || d.Gauges.Drains.Load() != 2 {
		t.Fatalf("after a cancel: drains waiting %d (gauge %d), want 2", d.DrainsWaiting(), d.Gauges.Drains.Load())
	}
	c.deliver(envelope{1, leg})
	c.deliver(c.take(1)...) // the answer
	c.run(0)
	if done != [3]int{1, 0, 1} || d.DrainsWaiting() != 0 || d.Gauges.Drains.Load() != 0 {
		t.Fatalf("done %v, drains waiting %d (gauge %d): want [1 0 1] and none", done, d.DrainsWaiting(), d.Gauges.Drains.Load())
	}
	d.CancelDrain(1) // ended already: nothing
	if done != [3]int{1, 0, 1} {
		t.Fatalf("done %v after cancelling an ended drain", done)
	}
}
