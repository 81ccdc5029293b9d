package ledger

import (
	"container/heap"
	"fmt"
)

// LegKind is what a credit leg does on the credit account's shard.
type LegKind uint8

const (
	LegCreditPost     LegKind = 1 + iota // credit posted; debit transit posted
	LegCreditHold                        // credit pending; debit transit pending
	LegCreditPostHeld                    // post a held credit
	LegCreditRelease                     // release a held credit (void or expiry)
	legKindLast
)

// Valid reports whether k is a known kind.
func (k LegKind) Valid() bool { return k >= LegCreditPost && k < legKindLast }

// op is the posting the leg makes on the credit account.
func (k LegKind) op() PostingOp {
	return OpCreditPost + PostingOp(k-LegCreditPost)
}

// LegKey names a leg: a transfer makes at most one leg of each kind, so (transfer, kind) is
// the idempotency key of its delivery.
type LegKey struct {
	TransferID uint64
	Kind       LegKind
}

// Leg is the second half of a split transfer, sent from the debit shard (From) to the shard
// that owns Account once the debit half is durable. It is kept in the debit shard's outbox
// until the credit shard answers.
type Leg struct {
	LegKey
	Account      uint64 // the credit account
	DebitAccount uint64 // the debit account, whose held amount a refusable leg's answer posts or releases
	Amount       uint64
	Held         uint64 // for LegCreditPostHeld: the held amount released
	Ledger       uint32
	From         uint32
	// Day is the accounting day of the transfer's debit side: the credit side and the
	// answer's postings are booked on it too, so that both halves of a split transfer, and
	// the transit account between them, belong to one day (0: a leg older than days, booked
	// on the credit shard's day).
	Day Day
	// Refusable: the credit account limits its credits and may refuse the leg (the debit
	// shard holds the amount meanwhile: see StateInFlight). No other leg may be refused.
	Refusable   bool
	Redelivered bool // sent again from the outbox, or otherwise maybe applied before: look up its record
	// Buffered: a posted inflow to a hot account. The transfer's reply does not wait for its
	// answer, and the sender may hold it back to deliver it with others (not stored: a leg
	// recovered from the outbox is sent at once).
	Buffered bool
	Event    int32 // the position of the transfer that made it in its batch (-1: none); not stored
}

// LegAwait says that the event at position Event of the batch being run repeats a transfer
// whose credit leg is unanswered: it answers once that leg is answered, what the first copy
// answers (exists, or the refusal).
type LegAwait struct {
	LegKey
	Event int32
}

// creationLeg is the kind of leg a transfer of t's kind sends when it is split.
func (t *Transfer) creationLeg() LegKind {
	switch {
	case t.Flags&TransferPending != 0:
		return LegCreditHold
	case t.Flags&TransferPostPending != 0:
		return LegCreditPostHeld
	case t.Flags&TransferVoidPending != 0:
		return LegCreditRelease
	}
	return LegCreditPost
}

// LegForget tells the credit shard To that the sender has durably taken the answer to a leg
// (its outbox record is gone), so the leg will never be sent again and the credit shard may
// delete its record of it.
type LegForget struct {
	LegKey
	To uint32
}

// LegResult is the credit shard's answer to a leg.
type LegResult struct {
	LegKey
	Result TransferResult
	From   uint32 // the shard that sent the leg, to route the answer
}

// ApplyLegs applies credit legs sent to this shard. A leg applied before (a duplicate
// delivery) changes nothing and gets its first answer again. Only a Refusable leg may be
// refused, for the credit account's own state (closed, its credit limit); the sender then
// releases the amount it held.
func (b *Book) ApplyLegs(now uint64, legs []Leg, fx *Effects) {
	b.begin(fx)
	for i := range legs {
		l := &legs[i]
		r, seen := b.legs[l.LegKey]
		if !seen {
			r = b.applyLeg(now, l, fx)
			b.legs[l.LegKey] = r
		}
		fx.LegsDone = append(fx.LegsDone, LegResult{LegKey: l.LegKey, Result: r, From: l.From})
	}
}

func (b *Book) applyLeg(now uint64, l *Leg, fx *Effects) TransferResult {
	if !l.Kind.Valid() || !b.Owns(l.Account) {
		panic(fmt.Sprintf("ledger: INVARIANT: leg %+v delivered to shard %d", *l, b.shard))
	}
	if l.Day > b.day {
		// The sender is on a later day than this shard (it switched first): switch here
		// too, before the posting, so that the day's start on this shard precedes every
		// posting of the day (the day's postings are found from it). A host normally does
		// this itself first (ledger/driver, which expires due holds before the switch).
		b.SwitchDay(l.Day, fx)
	}
	a, ok := b.accounts.get(l.Account)
	if r := refusal(l, a, ok); r != ResultOK {
		if !l.Refusable {
			// The sender checked everything else: the account exists (its record was read
			// before the debit round, which is durable, so it is), closed never changes, and
			// 128-bit totals cannot overflow.
			panic(fmt.Sprintf("ledger: INVARIANT: leg %+v refused (%v) but not refusable", *l, r))
		}
		return r
	}
	ts := b.tick(now)
	op := l.Kind.op()
	b.post(a, Posting{Timestamp: ts, TransferID: l.TransferID, Op: op, Amount: l.Amount,
		Held: l.Held, Split: true, Day: l.Day}, fx)
	b.moveTransit(l.Ledger, ts, op.Mirror(), l.Amount, l.Held, fx)
	return ResultOK
}

// refusal is why the credit account refuses a leg, or ResultOK.
func refusal(l *Leg, a *accountState, found bool) TransferResult {
	if !found {
		return ResultCreditAccountNotFound
	}
	if l.Kind != LegCreditPost && l.Kind != LegCreditHold {
		return ResultOK // it moves a credit already held here
	}
	credits, overflow := sum3(a.CreditsPending, a.CreditsPosted, l.Amount)
	switch {
	case a.Flags&AccountClosed != 0:
		return ResultCreditAccountClosed
	case overflow:
		return ResultOverflowsCredits
	case a.Flags&AccountCreditsMustNotExceedDebits != 0 && credits.Cmp(a.DebitsPosted) > 0:
		return ResultExceedsDebits
	}
	return ResultOK
}

// ApplyLegResults takes the credit shards' answers to this shard's legs: each answered leg
// leaves the outbox, and a refusable transfer ends: a refusal releases the amount held on
// the debit account and the transfer fails with it; an acceptance posts the held amount (or,
// for a hold, lets it stand as pending).
func (b *Book) ApplyLegResults(now uint64, results []LegResult, fx *Effects) {
	b.begin(fx)
	for _, r := range results {
		l, ok := b.outbox[r.LegKey]
		if !ok {
			continue // answered before
		}
		delete(b.outbox, r.LegKey)
		fx.OutboxDone = append(fx.OutboxDone, l)
		fx.Forget = append(fx.Forget, LegForget{LegKey: r.LegKey, To: ShardOf(l.Account, b.shards)})
		if l.Kind == LegCreditHold {
			b.unhold(l.TransferID)
		}
		switch {
		case l.Refusable:
			b.settle(now, &l, r.Result, fx)
		case r.Result != ResultOK:
			panic(fmt.Sprintf("ledger: INVARIANT: leg %+v refused (%v) but not refusable", l, r.Result))
		}
		fx.Answered = append(fx.Answered, r)
	}
}

// unhold notes that a hold's leg was answered, and arms its expiry again if a sweep parked it.
func (b *Book) unhold(id uint64) {
	delete(b.holding, id)
	if e, ok := b.parked[id]; ok {
		delete(b.parked, id)
		heap.Push(&b.expiries, e)
	}
}

// settle ends a refusable transfer once its credit account answered its leg.
func (b *Book) settle(now uint64, l *Leg, r TransferResult, fx *Effects) {
	t, ok := b.transfers.get(l.TransferID)
	dr, okd := b.accounts.get(l.DebitAccount)
	if !ok || !okd || t.State != StateInFlight {
		panic(fmt.Sprintf("ledger: INVARIANT: settling leg %+v of transfer %+v (found %v, %v)", *l, t, ok, okd))
	}
	switch {
	case r == ResultOK && l.Kind == LegCreditHold:
		t.State = StatePending // held on both sides now
	case r == ResultOK:
		ts := b.tick(now)
		b.post(dr, Posting{Timestamp: ts, TransferID: l.TransferID, Op: OpDebitPostHeld, Amount: l.Amount,
			Held: l.Amount, Split: true, Day: l.Day}, fx)
		b.moveTransit(l.Ledger, ts, OpCreditPostHeld, l.Amount, l.Amount, fx)
		t.State = StatePosted
	default:
		ts := b.tick(now)
		b.post(dr, Posting{Timestamp: ts, TransferID: l.TransferID, Op: OpDebitRelease, Amount: l.Amount,
			Split: true, Day: l.Day}, fx)
		b.moveTransit(l.Ledger, ts, OpCreditRelease, l.Amount, 0, fx)
		t.State, t.Result = StateFailed, r
	}
	b.setTransfer(t, fx)
}

// ForgetLegs deletes this shard's records of legs whose senders have durably taken the
// answers (LegForget): no copy of them can come any more. A record a crash kept from being
// forgotten stays, harmless: it would only answer a copy that cannot come.
func (b *Book) ForgetLegs(keys []LegKey, fx *Effects) {
	b.begin(fx)
	for _, k := range keys {
		delete(b.legs, k)
		fx.LegsForgotten = append(fx.LegsForgotten, k)
	}
}

// legOutstanding reports whether a transfer still has a leg whose answer may need it.
func (b *Book) legOutstanding(id uint64) bool {
	_, post := b.outbox[LegKey{TransferID: id, Kind: LegCreditPost}]
	_, hold := b.outbox[LegKey{TransferID: id, Kind: LegCreditHold}]
	return post || hold
}
