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
		if c.drivers[1].stats.StaleLegs.Load() != 1 {
			t.Errorf("resent %v: stale legs counted %d", resent, c.drivers[1].stats.StaleLegs.Load())
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

// TestLegDeliveredTwice: the same leg message delivered twice, the second time after the
// credit shard's round was durable and its book trimmed (its record only in storage), is
// answered from the record, not applied again.
func TestLegDeliveredTwice(t *testing.T) {
	c, b, leg := legBench(t)
	c.deliver(envelope{1, leg})
	first := c.take(1)
	c.deliver(envelope{1, leg})
	second := c.take(1)
	if got := c.balance(b).CreditsPosted; got != ledger.U128(5) {
		t.Fatalf("credits posted %v after one leg delivered twice, want 5", got)
	}
	a1, a2 := only[*Answers](t, first), only[*Answers](t, second)
	if len(a2.Answers) != 1 || a1.Answers[0] != a2.Answers[0] {
		t.Errorf("answers %v and %v", a1.Answers, a2.Answers)
	}
}
