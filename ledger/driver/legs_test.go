package driver

import (
	"testing"

	"github.com/ledgercore/ledger/ledger"
)

// legBench: a on shard 0 funded by f, b on shard 1; a transfer of 5 from a to b is split, and
// its leg is on its way to shard 1.
func legBench(t *testing.T) (c *cluster, b uint64, leg *Legs) {
	c = newCluster(t, 2)
	a := accountOn(1, 0, 2)
	b = accountOn(1, 1, 2)
	c.openAccounts(ledger.Account{ID: a, Ledger: 1, Code: 1}, ledger.Account{ID: b, Ledger: 1, Code: 1})
	c.drivers[0].Transfers(transfer(idArbitratedBy(7, 0, 2), a, b, 5))
	c.run(0)
	return c, b, only[*Legs](t, c.take(0))
}

// TestStaleLegAfterForget: a copy of a leg that arrives after its sender took the answer and
// told the credit shard to forget it is dropped, not applied a second time: whether it is
// the same message delivered twice, or a copy sent again before the answer arrived.
func TestStaleLegAfterForget(t *testing.T) {
	for _, resent := range []bool{false, true} {
		c, b, leg := legBench(t)
		copyOf := leg
		if resent {
			c.drivers[0].Tick(c.now) // the answer is slow: the leg goes again
			c.drivers[0].Tick(c.now)
			copyOf = only[*Legs](t, c.take(0))
		}
		c.deliver(envelope{1, leg})
		c.deliver(c.take(1)...) // the answer: shard 0's round takes it, and sends the forget
		forget := only[*Forget](t, c.take(0))
		c.deliver(envelope{1, forget})
		c.deliver(envelope{1, copyOf}) // the copy, late
		if got := c.balance(b).CreditsPosted; got != ledger.U128(5) {
			t.Errorf("resent %v: credits posted %v after a stale copy, want 5", resent, got)
		}
		// The same message again is dropped as a duplicate; a copy sent again, as stale.
		st := c.drivers[1].stats
		if got := st.StaleLegs.Load() + st.DuplicateMessages.Load(); got != 1 {
			t.Errorf("resent %v: stale legs %d, duplicate messages %d", resent, st.StaleLegs.Load(), st.DuplicateMessages.Load())
		}
	}
}

// TestEarlyCopyDroppedLegStillLands: a copy of an unanswered leg stamped before a forget that
// overtook it is dropped too, but the leg is still in its sender's outbox and lands with the
// next re-delivery.
func TestEarlyCopyDroppedLegStillLands(t *testing.T) {
	c, b, first := legBench(t)
	a := accountOn(1, 0, 2)
	c.drivers[0].Transfers(transfer(idArbitratedBy(100, 0, 2), a, b, 3))
	c.run(0)
	second := only[*Legs](t, c.take(0))
	c.deliver(envelope{1, second}) // transfer 8 lands first, and is forgotten
	c.deliver(c.take(1)...)
	c.deliver(envelope{1, only[*Forget](t, c.take(0))})
	c.deliver(envelope{1, first}) // stamped before that forget, with no record: dropped
	c.deliver(c.take(1)...)
	if got := c.balance(b).CreditsPosted; got != ledger.U128(3) {
		t.Fatalf("credits posted %v, want 3 (the early copy dropped)", got)
	}
	c.drivers[0].Tick(c.now)
	c.drivers[0].Tick(c.now)
	c.deliver(c.take(0)...) // sent again, with a new stamp: applied
	c.deliver(c.take(1)...)
	if got := c.balance(b).CreditsPosted; got != ledger.U128(8) {
		t.Errorf("credits posted %v, want 8", got)
	}
	if n := c.drivers[0].book.OutboxLen(); n != 0 {
		t.Errorf("outbox %d", n)
	}
}

// TestLegDeliveredTwice: the same leg message delivered twice is dropped the second time; a
// copy too old for the receiver to tell, arriving after the credit shard's round was durable
// and its book trimmed (the record only in storage), is answered from the record. Neither is
// applied again.
func TestLegDeliveredTwice(t *testing.T) {
	c, b, leg := legBench(t)
	c.deliver(envelope{1, leg})
	first := only[*Answers](t, c.take(1))
	c.deliver(envelope{1, leg})
	if es := c.take(1); len(es) != 0 || c.drivers[1].stats.DuplicateMessages.Load() != 1 {
		t.Fatalf("a message delivered twice: sent %v, counted %d", es, c.drivers[1].stats.DuplicateMessages.Load())
	}
	c.drivers[1].legsSeen[0].latest += seenWindowSize // as if many messages came since
	c.deliver(envelope{1, leg})
	again := only[*Answers](t, c.take(1))
	if got := c.balance(b).CreditsPosted; got != ledger.U128(5) {
		t.Fatalf("credits posted %v after one leg delivered three times, want 5", got)
	}
	if len(again.Answers) != 1 || first.Answers[0] != again.Answers[0] {
		t.Errorf("answers %v and %v", first.Answers, again.Answers)
	}
}

// TestFirstSendingOvertaken: a copy of a leg sent again overtakes the first sending and is
// applied; the first sending, arriving out of order after the credit shard's book was
// trimmed, is answered from the record, not applied again.
func TestFirstSendingOvertaken(t *testing.T) {
	c, b, first := legBench(t)
	c.drivers[0].Tick(c.now)
	c.drivers[0].Tick(c.now)
	again := only[*Legs](t, c.take(0))
	c.deliver(envelope{1, again})
	c.take(1)
	c.deliver(envelope{1, first})
	if got := c.balance(b).CreditsPosted; got != ledger.U128(5) {
		t.Fatalf("credits posted %v after a first sending overtaken by its copy, want 5", got)
	}
	only[*Answers](t, c.take(1))
}

// TestLostForgetIsSentAgain (found by review): a lost forget is sent again until it is
// acknowledged; before, the credit shard kept the leg's record in storage for good.
func TestLostForgetIsSentAgain(t *testing.T) {
	c, _, leg := legBench(t)
	c.deliver(envelope{1, leg})
	c.deliver(c.take(1)...)         // the answer: shard 0 takes it, sends the Forget
	_ = only[*Forget](t, c.take(0)) // lost
	for i := 0; i < 50; i++ {
		c.drivers[0].Tick(c.now)
		c.drivers[1].Tick(c.now)
		c.deliver(c.take(0)...)
		c.deliver(c.take(1)...)
	}
	if _, found, err := c.store.Live().LegResult(leg.Legs[0].LegKey); err != nil || found {
		t.Errorf("leg record %+v still in storage after its forget was lost (found %v, err %v): nothing re-sends a Forget",
			leg.Legs[0].LegKey, found, err)
	}
}
