package driver

import (
	"strings"
	"testing"

	"github.com/ledgercore/ledger/ledger"
)

// TestRoundsInFlight: a second round is sealed while the first commits, a third waits for
// room, a round completes only after the rounds sealed before it, and each part is answered
// once its own round is durable; with RoundsInFlight 1 the next round waits for the first.
func TestRoundsInFlight(t *testing.T) {
	for _, inFlight := range []int{1, 2} {
		c := newClusterWith(t, 1, func(cfg *Config) { cfg.RoundsInFlight, cfg.PieceEvents = inFlight, 1 })
		h, d := c.hosts[0], c.drivers[0]
		c.openAccounts(ledger.Account{ID: 1, Ledger: 1, Code: 1}, ledger.Account{ID: 2, Ledger: 1, Code: 1})
		h.replies = nil
		send := func(id uint64) *TransfersPart {
			p := transfer(id, 1, 2, 1)
			d.Transfers(p)
			d.Wake()
			return p
		}
		first, second := send(10), send(11)
		if len(h.rounds) != inFlight {
			t.Fatalf("in flight %d: %d rounds sealed for two parts sent one after the other", inFlight, len(h.rounds))
		}
		third := send(12)
		if len(h.rounds) != inFlight {
			t.Fatalf("in flight %d: %d rounds sealed with no room", inFlight, len(h.rounds))
		}
		if inFlight == 2 {
			// The second round's commit returns first: the driver may not take it before the first.
			r := h.rounds[1]
			close(r.Durable)
			func() {
				defer func() {
					if p := recover(); p == nil || !strings.Contains(p.(string), "not the oldest") {
						t.Fatalf("a round completed before the round sealed before it: %v", p)
					}
				}()
				_ = d.Committed(r)
			}()
			r.Durable = make(chan struct{}) // not written: commitOne writes it below
			if len(h.replies) != 0 {
				t.Fatalf("%d replies before the first round was completed", len(h.replies))
			}
		}
		c.commitOne(0)
		if len(h.replies) != 1 || h.replies[0] != first {
			t.Fatalf("in flight %d: after the first round, replies %v", inFlight, h.replies)
		}
		for c.commitOne(0) {
		}
		if len(h.replies) != 3 || h.replies[1] != second || h.replies[2] != third {
			t.Fatalf("in flight %d: replies %v", inFlight, h.replies)
		}
		for _, p := range []*TransfersPart{first, second, third} {
			if p.Results[0] != ledger.ResultOK {
				t.Fatalf("in flight %d: %v", inFlight, p.Results)
			}
		}
		if !d.Idle() {
			t.Fatalf("in flight %d: not idle after every round committed", inFlight)
		}
	}
}

// TestSmallRoundWaits: a round of fewer transfers than a piece is not sealed while another
// commits, even with room for two: it gathers more until that one is durable.
func TestSmallRoundWaits(t *testing.T) {
	c := newClusterWith(t, 1, func(cfg *Config) { cfg.RoundsInFlight, cfg.PieceEvents = 2, 3 })
	h, d := c.hosts[0], c.drivers[0]
	c.openAccounts(ledger.Account{ID: 1, Ledger: 1, Code: 1}, ledger.Account{ID: 2, Ledger: 1, Code: 1})
	send := func(ids ...uint64) {
		p := &TransfersPart{Results: make([]ledger.TransferResult, len(ids))}
		for _, id := range ids {
			p.Events = append(p.Events, transfer(id, 1, 2, 1).Events...)
		}
		d.Transfers(p)
		d.Wake()
	}
	send(10)
	send(11, 12)
	if len(h.rounds) != 1 {
		t.Fatalf("%d rounds sealed; a round of 2 transfers under a piece of 3 must wait", len(h.rounds))
	}
	send(13)
	if len(h.rounds) != 2 || len(h.rounds[1].Effects.Transfers) != 3 {
		t.Fatalf("%d rounds sealed: want the second sealed once it held a piece's 3 transfers", len(h.rounds))
	}
	for c.commitOne(0) {
	}
	if !d.Idle() {
		t.Fatal("not idle after every round committed")
	}
}
