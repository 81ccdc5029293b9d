package payments

import (
	"github.com/ledgercore/ledger/ledger"
)

// pipe sends a shard's ledger transfers to the ledger one batch at a time: while a batch is
// at the ledger, the next one gathers (the ledger's own group commit does the rest).
type pipe struct {
	ledger Ledger
	s      *shard
	in     chan []ledger.Transfer
	done   chan struct{}
}

func newPipe(l Ledger, s *shard) *pipe {
	// Every order in flight has at most one set of transfers waiting, and retries one more.
	return &pipe{ledger: l, s: s, in: make(chan []ledger.Transfer, 2*s.e.cfg.ActiveOrdersMax+RequestInboxMax),
		done: make(chan struct{})}
}

// submit queues transfers for the ledger, in pieces no larger than one request.
func (p *pipe) submit(ts []ledger.Transfer) {
	for len(ts) > ledger.BatchEventsMax {
		p.in <- ts[:ledger.BatchEventsMax]
		ts = ts[ledger.BatchEventsMax:]
	}
	p.in <- ts
}

func (p *pipe) run() {
	defer close(p.done)
	var next []ledger.Transfer
	for {
		batch := next
		next = nil
		if batch == nil {
			ts, ok := <-p.in
			if !ok {
				return
			}
			batch = append([]ledger.Transfer(nil), ts...)
		}
	gather:
		for len(batch) < ledger.BatchEventsMax {
			select {
			case ts, ok := <-p.in:
				if !ok {
					break gather
				}
				if len(batch)+len(ts) > ledger.BatchEventsMax {
					next = append([]ledger.Transfer(nil), ts...)
					break gather
				}
				batch = append(batch, ts...)
			default:
				break gather
			}
		}
		rs, err := p.ledger.CreateTransfers(batch)
		p.s.event(ledgerMsg{ts: batch, rs: rs, err: err})
	}
}

// stop sends what is queued and waits for the last batch's answer.
func (p *pipe) stop() {
	close(p.in)
	<-p.done
}
