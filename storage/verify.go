package storage

import (
	"fmt"

	"github.com/ledgercore/ledger/ledger"
)

// Report is what Verify found.
type Report struct {
	Problems   []string
	Accounts   uint64
	Postings   uint64
	OutboxLegs uint64
}

// Verify recomputes every balance from the journal in v and checks the invariants of
// DESIGN.md that a stored state must meet (ledger.Audit), plus what only storage can see:
// every pending index entry names a pending transfer. It returns the problems found (none:
// clean) or the error that stopped it.
func Verify(v *Reader, shards uint32) (Report, error) {
	var rep Report
	audit := ledger.NewAudit(shards)
	ledgers := map[uint64]uint32{}
	err := v.ForEachAccount(func(a ledger.Account) error {
		audit.Account(a)
		ledgers[a.ID] = a.Ledger
		rep.Accounts++
		return nil
	})
	if err != nil {
		return rep, err
	}
	var problems []string
	err = v.ForEachPosting(func(p ledger.Posting) error {
		l, ok := ledgers[p.Account]
		if !ok {
			problems = append(problems, fmt.Sprintf("posting of unknown account %d at %d", p.Account, p.Timestamp))
			return nil
		}
		audit.Posting(p, l)
		rep.Postings++
		return nil
	})
	if err != nil {
		return rep, err
	}
	err = v.ForEachOutboxLeg(func(l ledger.Leg) error {
		if l.From >= shards {
			problems = append(problems, fmt.Sprintf("outbox leg %+v of shard %d of %d", l.LegKey, l.From, shards))
		}
		audit.Outbox(l)
		rep.OutboxLegs++
		return nil
	})
	if err != nil {
		return rep, err
	}
	for s := uint32(0); s < shards; s++ {
		err := v.ForEachPending(s, func(ledger.Transfer) error { return nil })
		if err != nil {
			problems = append(problems, err.Error())
		}
	}
	if err := v.ForEachLegResult(func(r ledger.LegResult) error { audit.LegApplied(r); return nil }); err != nil {
		return rep, err
	}
	rep.Problems = append(problems, audit.Problems()...)
	return rep, nil
}
