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
// every pending index entry names a pending transfer, and every posting names a stored
// transfer of its account with its amount (a transfer booked twice under one id, with other
// fields, shows here). It returns the problems found (none:
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
		if problem, err := postingMatches(v, p); err != nil || problem != "" {
			if problem != "" {
				problems = append(problems, problem)
			}
			return err
		}
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

// postingMatches checks a posting against its transfer: the account is one of the transfer's,
// and the amount is the transfer's (a post or void stores the amount it moved; an expiry
// releases its hold's amount).
func postingMatches(v *Reader, p ledger.Posting) (string, error) {
	t, found, err := v.Transfer(p.TransferID)
	switch {
	case err != nil:
		return "", err
	case !found:
		return fmt.Sprintf("posting of account %d at %d names missing transfer %d", p.Account, p.Timestamp, p.TransferID), nil
	case p.Account != t.DebitAccountID && p.Account != t.CreditAccountID:
		return fmt.Sprintf("posting of account %d at %d names transfer %d of accounts %d and %d",
			p.Account, p.Timestamp, t.ID, t.DebitAccountID, t.CreditAccountID), nil
	case p.Amount != t.Amount:
		return fmt.Sprintf("posting of account %d at %d moves %d, its transfer %d has %d",
			p.Account, p.Timestamp, p.Amount, t.ID, t.Amount), nil
	}
	return "", nil
}
