package ledger

import (
	"fmt"
	"sort"
)

// Audit recomputes balances from the journal and checks the invariants of DESIGN.md that a
// stored state must meet: (1) per ledger, credits equal debits over all accounts, transit
// accounts included; (2) every stored balance equals the sum of its account's postings;
// every posting's balance-after equals the running sum of the postings before it;
// (5) no account flagged debits_must_not_exceed_credits is overdrawn, holds included;
// (6) what the transit accounts hold is exactly what the outboxes still carry.
//
// Feed it every stored account, posting and outbox leg, in any order, then call Problems.
type Audit struct {
	shards   uint32
	stored   map[uint64]Account
	computed map[uint64]*Balance
	ledgers  map[uint64]uint32 // the ledger each posted-to account belongs to
	inFlight map[uint32]*flight
	outbox   []Leg
	applied  map[LegKey]TransferResult
	problems []string
}

// flight and the sums below use wrapping uint64 arithmetic: exact for the zero and equality
// checks made here, printed as signed.
type flight struct{ posted, pending uint64 }

// NewAudit starts an audit of a store of shards shards.
func NewAudit(shards uint32) *Audit {
	return &Audit{shards: shards, stored: map[uint64]Account{}, computed: map[uint64]*Balance{},
		ledgers: map[uint64]uint32{}, inFlight: map[uint32]*flight{},
		applied: map[LegKey]TransferResult{}}
}

func (a *Audit) problem(format string, args ...any) {
	a.problems = append(a.problems, fmt.Sprintf(format, args...))
}

// Account takes a stored account.
func (a *Audit) Account(acc Account) { a.stored[acc.ID] = acc }

func (a *Audit) apply(id uint64, op PostingOp, amount, held uint64) {
	b := a.computed[id]
	if b == nil {
		b = &Balance{}
		a.computed[id] = b
	}
	if !op.Apply(b, amount, held) {
		a.problem("account %d: posting %d (op %d) does not fit the running balance %+v", id, amount, op, *b)
	}
}

// Posting takes a journal entry: it moves its account, and for a split posting the transit
// account of the account's shard by the mirror operation.
func (a *Audit) Posting(p Posting, ledger uint32) {
	if !p.Op.Valid() {
		a.problem("account %d: posting at %d has unknown op %d", p.Account, p.Timestamp, p.Op)
		return
	}
	a.apply(p.Account, p.Op, p.Amount, p.Held)
	if b := a.computed[p.Account]; *b != p.After {
		a.problem("account %d: balance after posting at %d is %+v, journal says %+v",
			p.Account, p.Timestamp, p.After, *b)
	}
	if p.Split {
		tr := TransitAccountID(ShardOf(p.Account, a.shards), ledger)
		a.apply(tr, p.Op.Mirror(), p.Amount, p.Held)
		a.ledgers[tr] = ledger
	}
}

// Outbox takes a leg still in its sender's outbox.
func (a *Audit) Outbox(l Leg) { a.outbox = append(a.outbox, l) }

// LegApplied takes a credit shard's record of a leg it applied (or refused).
func (a *Audit) LegApplied(r LegResult) { a.applied[r.LegKey] = r.Result }

// inFlight counts a leg whose credit side has not moved: not yet applied, or refused and
// not yet reversed.
func (a *Audit) countInFlight(l Leg) {
	if r, ok := a.applied[l.LegKey]; ok && r == ResultOK {
		return
	}
	f := a.inFlight[l.Ledger]
	if f == nil {
		f = &flight{}
		a.inFlight[l.Ledger] = f
	}
	switch l.Kind {
	case LegCreditPost:
		f.posted += l.Amount
	case LegCreditHold:
		f.pending += l.Amount
	case LegCreditPostHeld:
		f.posted += l.Amount
		f.pending -= l.Held
	case LegCreditRelease:
		f.pending -= l.Amount
	default:
		a.problem("outbox leg %+v has unknown kind", l)
	}
}

// Problems finishes the audit and returns what is wrong, sorted; none means clean.
func (a *Audit) Problems() []string {
	for _, l := range a.outbox {
		a.countInFlight(l)
	}
	type sums struct{ posted, pending, transitPosted, transitPending uint64 }
	perLedger := map[uint32]*sums{}
	at := func(l uint32) *sums {
		if perLedger[l] == nil {
			perLedger[l] = &sums{}
		}
		return perLedger[l]
	}
	for id, acc := range a.stored {
		c := a.computed[id]
		if c == nil {
			c = &Balance{}
		}
		if *c != acc.Balance {
			a.problem("account %d: stored balance %+v, journal sums to %+v", id, acc.Balance, *c)
		}
		s := at(acc.Ledger)
		posted := acc.CreditsPosted - acc.DebitsPosted
		pending := acc.CreditsPending - acc.DebitsPending
		s.posted += posted
		s.pending += pending
		if _, _, ok := IsTransit(id); ok {
			s.transitPosted += posted
			s.transitPending += pending
		} else if acc.Flags&AccountDebitsMustNotExceedCredits != 0 &&
			acc.DebitsPending+acc.DebitsPosted > acc.CreditsPosted {
			a.problem("account %d: overdrawn: %+v", id, acc.Balance)
		} else if acc.Flags&AccountCreditsMustNotExceedDebits != 0 &&
			acc.CreditsPending+acc.CreditsPosted > acc.DebitsPosted {
			a.problem("account %d: over its credit limit: %+v", id, acc.Balance)
		}
	}
	for id := range a.computed {
		if _, ok := a.stored[id]; !ok {
			a.problem("account %d: has postings but is not stored", id)
		}
	}
	for l, s := range perLedger {
		if s.posted != 0 || s.pending != 0 {
			a.problem("ledger %d: credits minus debits is %d posted, %d pending; must be 0", l, int64(s.posted), int64(s.pending))
		}
		f := a.inFlight[l]
		if f == nil {
			f = &flight{}
		}
		if s.transitPosted != f.posted || s.transitPending != f.pending {
			a.problem("ledger %d: transit holds %d posted, %d pending; the outbox carries %d, %d",
				l, int64(s.transitPosted), int64(s.transitPending), int64(f.posted), int64(f.pending))
		}
	}
	for l, f := range a.inFlight {
		if perLedger[l] == nil && (f.posted != 0 || f.pending != 0) {
			a.problem("ledger %d: the outbox carries %d posted, %d pending, but no transit account holds it",
				l, int64(f.posted), int64(f.pending))
		}
	}
	sort.Strings(a.problems)
	return a.problems
}
