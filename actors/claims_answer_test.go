package actors

import (
	"testing"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/ledgercore/ledger/ledger"
)

// sendRecorder is an actor.Context that only records what is sent (white-box tests of the
// claim protocol; every other method panics through the nil embedded interface).
type sendRecorder struct {
	actor.Context
	sent []any
}

func (c *sendRecorder) Send(_ *actor.PID, m any) { c.sent = append(c.sent, m) }
func (c *sendRecorder) Self() *actor.PID         { return nil }

// TestEachClaimAnswerGoesToItsPart: two parts on shard 0 carry the same new id x (arbitrated
// by shard 1) and arrive in two flushes, so shard 0 sends two claim messages for x before the
// first answer comes back. Shard 1 holds x itself when the first claim arrives (denied), and
// lets go of it before the second arrives (granted). Each answer must go to the part that
// asked: the first part is denied, the second granted and books x, and gives the grant back
// once durable. (When every waiting part took the first answer, the grant was never given
// back, and x answered id_in_flight on every other shard until a restart.)
func TestEachClaimAnswerGoesToItsPart(t *testing.T) {
	store := openStore(t, vfs.NewMem(), 2)
	defer store.Close()
	l := &Ledger{cfg: Config{Shards: 2, Now: func() uint64 { return 1e12 }}, store: store, pids: make([]*actor.PID, 2)}
	a0 := accountOn(1, 0, 2)
	b0 := accountOn(a0+1, 0, 2)
	a1 := accountOn(1, 1, 2)
	b1 := accountOn(a1+1, 1, 2)
	book0, book1 := ledger.NewBook(0, 2), ledger.NewBook(1, 2)
	book0.LoadAccount(ledger.Account{ID: a0, Ledger: 1, Code: 1})
	book0.LoadAccount(ledger.Account{ID: b0, Ledger: 1, Code: 1})
	book1.LoadAccount(ledger.Account{ID: a1, Ledger: 1, Code: 1})
	book1.LoadAccount(ledger.Account{ID: b1, Ledger: 1, Code: 1})
	s0, s1 := newShard(l, 0, book0), newShard(l, 1, book1)
	ctx0, ctx1 := &sendRecorder{}, &sendRecorder{}
	x := idArbitratedBy(1000, 1, 2)
	tr := func(debit, credit uint64) *transfersPart {
		return &transfersPart{events: []ledger.Transfer{{ID: x, DebitAccountID: debit, CreditAccountID: credit,
			Amount: 5, Ledger: 1, Code: 1}}, results: make([]ledger.TransferResult, 1)}
	}
	takeClaimMessage := func() *claimMessage { // what runArrived sends
		b := s0.claimsTo[1]
		s0.asked[1] = append(s0.asked[1], b)
		s0.claimsTo[1] = claimBatch{}
		return &claimMessage{from: 0, ids: b.ids}
	}

	// Shard 1 is booking x itself (a part of its own holds the claim).
	if !s1.takeClaim(x, 1) {
		t.Fatal("setup")
	}
	// Shard 0: part 1 with x arrives, claim message 1; part 2 with x arrives in the next
	// flush, before the answer: claim message 2.
	p1, p2 := tr(a0, b0), tr(a0, b0)
	s0.claim(p1)
	msg1 := takeClaimMessage()
	s0.claim(p2)
	msg2 := takeClaimMessage()

	s1.grant(ctx1, msg1) // denied: shard 1 holds x
	s1.unclaim(x, 1)     // shard 1's part failed on the request alone: x is free
	s1.grant(ctx1, msg2) // granted to shard 0
	ans1, ans2 := ctx1.sent[0].(*claimAnswer), ctx1.sent[1].(*claimAnswer)
	t.Logf("answer 1 denied=%v, answer 2 denied=%v", ans1.denied, ans2.denied)

	s0.answered(ctx0, ans1)
	s0.answered(ctx0, ans2)
	if p1.results[0] != ledger.ResultIDInFlight || p2.results[0] != ledger.ResultOK {
		t.Fatalf("part 1 (denied): %v, part 2 (granted): %v", p1.results[0], p2.results[0])
	}
	// Their round is durable: shard 0 gives back what it holds, and shard 1 takes it back.
	s0.release(ctx0, s0.releases)
	for _, m := range ctx0.sent {
		if r, ok := m.(*releaseMessage); ok {
			for _, id := range r.ids {
				s1.unclaim(id, r.from)
			}
		}
	}
	if c, held := s1.claims[x]; held {
		t.Errorf("id %d stays granted to shard %d (%d part(s)) though no part of shard 0 holds it", x, c.holder, c.parts)
	}
}
