package ledger

import "fmt"

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
	DebitAccount uint64 // for a compensating posting if the credit side refuses
	Amount       uint64
	Held         uint64 // for LegCreditPostHeld: the held amount released
	Ledger       uint32
	From         uint32
	Redelivered  bool // sent again from the outbox: may already have been applied
	// Buffered: a posted inflow to a hot account. The transfer's reply does not wait for its
	// answer, and the sender may hold it back to deliver it with others (not stored: a leg
	// recovered from the outbox is sent at once).
	Buffered bool
	Event    int32 // the position of the transfer that made it in its batch (-1: none); not stored
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
// delivery) changes nothing and gets its first answer again. PostHeld and Release legs cannot
// fail; Post and Hold legs fail only for the credit account's own state (closed, its credit
// limit, overflow), and the sender then reverses the debit.
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
	a, ok := b.accounts[l.Account]
	if !ok {
		return ResultCreditAccountNotFound
	}
	if l.Kind == LegCreditPost || l.Kind == LegCreditHold {
		credits, overflow := sum3(a.CreditsPending, a.CreditsPosted, l.Amount)
		switch {
		case a.Flags&AccountClosed != 0:
			return ResultCreditAccountClosed
		case overflow:
			return ResultOverflowsCredits
		case a.Flags&AccountCreditsMustNotExceedDebits != 0 && credits > a.DebitsPosted:
			return ResultExceedsDebits
		}
		if tr, ok := b.accounts[TransitAccountID(b.shard, l.Ledger)]; ok {
			if _, overflow := sum3(tr.DebitsPending, tr.DebitsPosted, l.Amount); overflow {
				return ResultOverflowsDebits
			}
		}
	}
	ts := b.tick(now)
	op := l.Kind.op()
	b.post(a, Posting{Timestamp: ts, TransferID: l.TransferID, Op: op, Amount: l.Amount,
		Held: l.Held, Split: true}, fx)
	b.moveTransit(l.Ledger, ts, op.Mirror(), l.Amount, l.Held, fx)
	return ResultOK
}

// ApplyLegResults takes the credit shards' answers to this shard's legs: each answered leg
// leaves the outbox, and a refused one is reversed by a compensating posting that returns the
// money to the debit account; its transfer ends as reversed with the refusal as its result.
func (b *Book) ApplyLegResults(now uint64, results []LegResult, fx *Effects) {
	b.begin(fx)
	for _, r := range results {
		l, ok := b.outbox[r.LegKey]
		if !ok {
			continue // answered before
		}
		delete(b.outbox, r.LegKey)
		fx.OutboxDone = append(fx.OutboxDone, r.LegKey)
		fx.Forget = append(fx.Forget, LegForget{LegKey: r.LegKey, To: ShardOf(l.Account, b.shards)})
		if l.Kind == LegCreditHold {
			delete(b.holding, l.TransferID)
		}
		if r.Result != ResultOK {
			b.reverse(now, &l, r.Result, fx)
		}
		fx.Answered = append(fx.Answered, r)
	}
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

func (b *Book) reverse(now uint64, l *Leg, why TransferResult, fx *Effects) {
	var op PostingOp // on the debit account; the transit account takes its mirror
	switch l.Kind {
	case LegCreditPost:
		op = OpCreditPost
	case LegCreditHold:
		op = OpDebitRelease
	default:
		panic(fmt.Sprintf("ledger: INVARIANT: leg %+v cannot be refused (%v)", *l, why))
	}
	t, ok := b.transfers[l.TransferID]
	dr, okd := b.accounts[l.DebitAccount]
	if !ok || !okd {
		panic(fmt.Sprintf("ledger: INVARIANT: reversing leg %+v of an unknown transfer or account", *l))
	}
	ts := b.tick(now)
	b.post(dr, Posting{Timestamp: ts, TransferID: l.TransferID, Op: op, Amount: l.Amount, Split: true}, fx)
	b.moveTransit(l.Ledger, ts, op.Mirror(), l.Amount, 0, fx)
	t.State, t.Result = StateReversed, why
	b.setTransfer(t, fx)
}

// legOutstanding reports whether a transfer still has a leg whose answer may need it.
func (b *Book) legOutstanding(id uint64) bool {
	_, post := b.outbox[LegKey{TransferID: id, Kind: LegCreditPost}]
	_, hold := b.outbox[LegKey{TransferID: id, Kind: LegCreditHold}]
	return post || hold
}
