package ledger

import (
	"fmt"
	"sort"
)

// Audit recomputes balances from the journal and checks the invariants
// (docs/ARCHITECTURE.md) that a stored state must meet: (1) per ledger, credits equal debits
// over all accounts, transit accounts included; (2) every stored balance equals the sum of its account's postings;
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

// flight and the sums below use wrapping 128-bit arithmetic: exact for the zero and equality
// checks made here, printed as signed.
type flight struct{ posted, pending Uint128 }

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

// countInFlight counts what a leg's transit accounts hold while it is in an outbox: all of it
// until the credit shard booked it (or while it refused it), and, for a refusable post the
// credit shard booked, the amount still held on the debit side while the credit is posted.
func (a *Audit) countInFlight(l Leg) {
	r, applied := a.applied[l.LegKey]
	booked := applied && r == ResultOK
	f := a.inFlight[l.Ledger]
	if f == nil {
		f = &flight{}
		a.inFlight[l.Ledger] = f
	}
	amount, held := U128(l.Amount), U128(l.Held)
	switch {
	case !l.Kind.Valid():
		a.problem("outbox leg %+v has unknown kind", l)
	case l.Kind == LegCreditPost && l.Refusable:
		f.pending = f.pending.WrapAdd(amount)
		if booked {
			f.posted = f.posted.WrapSub(amount)
		}
	case booked:
	case l.Kind == LegCreditPost:
		f.posted = f.posted.WrapAdd(amount)
	case l.Kind == LegCreditHold:
		f.pending = f.pending.WrapAdd(amount)
	case l.Kind == LegCreditPostHeld:
		f.posted = f.posted.WrapAdd(amount)
		f.pending = f.pending.WrapSub(held)
	case l.Kind == LegCreditRelease:
		f.pending = f.pending.WrapSub(amount)
	}
}

// Problems finishes the audit and returns what is wrong, sorted; none means clean.
func (a *Audit) Problems() []string {
	for _, l := range a.outbox {
		a.countInFlight(l)
	}
	type sums struct{ posted, pending, transitPosted, transitPending Uint128 }
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
		posted := acc.CreditsPosted.WrapSub(acc.DebitsPosted)
		pending := acc.CreditsPending.WrapSub(acc.DebitsPending)
		s.posted, s.pending = s.posted.WrapAdd(posted), s.pending.WrapAdd(pending)
		debits, _ := acc.DebitsPending.Add(acc.DebitsPosted)
		credits, _ := acc.CreditsPending.Add(acc.CreditsPosted)
		if _, _, ok := IsTransit(id); ok {
			s.transitPosted, s.transitPending = s.transitPosted.WrapAdd(posted), s.transitPending.WrapAdd(pending)
		} else if acc.Flags&AccountDebitsMustNotExceedCredits != 0 && debits.Cmp(acc.CreditsPosted) > 0 {
			a.problem("account %d: overdrawn: %+v", id, acc.Balance)
		} else if acc.Flags&AccountCreditsMustNotExceedDebits != 0 && credits.Cmp(acc.DebitsPosted) > 0 {
			a.problem("account %d: over its credit limit: %+v", id, acc.Balance)
		}
	}
	for id := range a.computed {
		if _, ok := a.stored[id]; !ok {
			a.problem("account %d: has postings but is not stored", id)
		}
	}
	for l, s := range perLedger {
		if !s.posted.IsZero() || !s.pending.IsZero() {
			a.problem("ledger %d: credits minus debits is %v posted, %v pending; must be 0", l,
				s.posted.Signed(), s.pending.Signed())
		}
		f := a.inFlight[l]
		if f == nil {
			f = &flight{}
		}
		if s.transitPosted != f.posted || s.transitPending != f.pending {
			a.problem("ledger %d: transit holds %v posted, %v pending; the outbox carries %v, %v",
				l, s.transitPosted.Signed(), s.transitPending.Signed(), f.posted.Signed(), f.pending.Signed())
		}
	}
	for l, f := range a.inFlight {
		if perLedger[l] == nil && (!f.posted.IsZero() || !f.pending.IsZero()) {
			a.problem("ledger %d: the outbox carries %v posted, %v pending, but no transit account holds it",
				l, f.posted.Signed(), f.pending.Signed())
		}
	}
	sort.Strings(a.problems)
	return a.problems
}
