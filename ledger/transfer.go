package ledger

import (
	"container/heap"
	"fmt"
)

// OutboxLegsMax bounds the unanswered legs of one shard; past it, transfers that would add one
// are refused as overloaded until the credit shards catch up.
const OutboxLegsMax = 1 << 20

// ValidateTransfer runs the checks that need no state, in the documented order (doc.go).
func ValidateTransfer(t *Transfer) TransferResult {
	resolving := t.Flags&(TransferPostPending|TransferVoidPending) != 0
	kinds := 0
	for _, f := range [...]TransferFlags{TransferPending, TransferPostPending, TransferVoidPending} {
		if t.Flags&f != 0 {
			kinds++
		}
	}
	switch {
	case t.ID == 0:
		return ResultIDMustNotBeZero
	case t.Flags&^transferFlagsKnown != 0 || kinds > 1:
		return ResultFlagsAreMutuallyExclusive
	case t.DebitAccountID == 0:
		return ResultDebitAccountIDMustNotBeZero
	case t.CreditAccountID == 0:
		return ResultCreditAccountIDMustNotBeZero
	case t.DebitAccountID == t.CreditAccountID:
		return ResultAccountsMustBeDifferent
	case !resolving && t.PendingID != 0:
		return ResultPendingIDMustBeZero
	case resolving && t.PendingID == 0:
		return ResultPendingIDMustNotBeZero
	case resolving && t.PendingID == t.ID:
		return ResultPendingIDMustBeDifferent
	case t.Flags&TransferPending == 0 && t.Timeout != 0:
		return ResultTimeoutReservedForPendingTransfer
	case t.Ledger == 0:
		return ResultLedgerMustNotBeZero
	case t.Code == 0:
		return ResultCodeMustNotBeZero
	case !resolving && t.Amount == 0:
		return ResultAmountMustNotBeZero
	case len(t.BizID) > BizIDBytesMax:
		return ResultBizIDTooLong
	case t.Timestamp != 0 || t.State != 0 || t.Result != 0:
		return ResultTimestampMustBeZero
	}
	return ResultOK
}

// CreateTransfers runs a batch of transfers whose debit accounts live on this shard, in order.
// results[i] is set for every ts[i]. A linked chain succeeds or fails as one: on the first
// failure the chain's earlier effects are undone and its other members fail with
// linked_event_failed. A refusal that Burns is stored (the transfer ends as StateFailed).
func (b *Book) CreateTransfers(now uint64, ts []Transfer, results []TransferResult, fx *Effects) {
	if len(ts) == 0 {
		b.begin(fx)
		return
	}
	b.CreateTransfersPiece(now, ts, 0, len(ts), results, fx)
}

// CreateTransfersPiece runs ts[lo:hi], a piece of a batch, as CreateTransfers runs the whole:
// the batch's pieces, run in order, do what it does. A piece cuts no linked chain: hi is
// len(ts) or follows an unlinked transfer (PieceEnd); events keep their places in ts (a leg's
// or an await's Event, results).
func (b *Book) CreateTransfersPiece(now uint64, ts []Transfer, lo, hi int, results []TransferResult, fx *Effects) {
	if lo < 0 || lo >= hi || hi > len(ts) || (hi < len(ts) && ts[hi-1].Flags&TransferLinked != 0) {
		panic(fmt.Sprintf("ledger: INVARIANT: a piece [%d, %d) of %d transfers that cuts a chain or is none", lo, hi, len(ts)))
	}
	b.begin(fx)
	open := hi
	for open > lo && ts[open-1].Flags&TransferLinked != 0 {
		open--
	}
	if open < hi { // the batch ends inside a chain: that chain was never closed
		for open > lo && ts[open-1].Flags&TransferLinked != 0 {
			open--
		}
		for j := open; j < hi; j++ {
			results[j] = ResultLinkedEventFailed
		}
		results[hi-1] = ResultLinkedEventChainOpen
	}
	warmed := lo
	for i := lo; i < open; {
		if i >= warmed {
			warmed = b.warm(ts, i, min(i+warmWindow, open))
		}
		end := i
		for ts[end].Flags&TransferLinked != 0 {
			end++
		}
		b.event = int32(i)
		if end == i {
			r := b.createTransfer(now, &ts[i], fx, false)
			if burns(&ts[i], r) {
				b.fail(now, &ts[i], r, fx)
			}
			results[i] = r
		} else {
			b.createChain(now, ts[i:end+1], results[i:end+1], fx)
		}
		i = end + 1
	}
}

// warmWindow is how many transfers warm reads ahead at a time: their accounts' lines (some
// 500 of them, about 100 KB) stay in a core's L2 cache until they run.
const warmWindow = 256

// warmAccountsMin is the accounts a book holds before warm reads ahead (Book.warmFrom): a
// smaller book's accounts stay in the caches, and the reads would only cost.
const warmAccountsMin = 1 << 16

// warm reads the accounts of ts[lo:hi] ahead of running them, and returns hi. Each look-up
// in a book of a million accounts is a cache miss or two, a memory round trip each, and
// createTransfer waits for them one after another; read in a short loop of their own, the
// processor has many in flight at once. It changes nothing.
func (b *Book) warm(ts []Transfer, lo, hi int) int {
	r := &b.accounts
	if r.n < b.warmFrom {
		return len(ts)
	}
	at := b.warmAt[:0]
	for i := lo; i < hi; i++ {
		if x, ok := r.index.Get(ts[i].DebitAccountID); ok {
			at = append(at, x)
		}
		if x, ok := r.index.Get(ts[i].CreditAccountID); ok {
			at = append(at, x)
		}
	}
	var sum uint64
	for _, x := range at {
		a := &r.chunks[x/accountChunk][x%accountChunk]
		sum += a.ID + a.DebitsPosted.Lo + a.epoch // a line each: 112 bytes may span three
	}
	b.warmAt, b.warmSum = at, sum
	b.warmWindows++
	return hi
}

// PieceEnd is where a piece of ts that starts at lo and holds about n transfers ends: after
// lo+n, or later to end the chain that holds it, or len(ts).
func PieceEnd(ts []Transfer, lo, n int) int {
	hi := lo + max(n, 1)
	if hi >= len(ts) {
		return len(ts)
	}
	for hi < len(ts) && ts[hi-1].Flags&TransferLinked != 0 {
		hi++
	}
	return hi
}

// burns reports whether refusal r of t is stored (TransferResult.Burns). Ids of the ledger's
// own accounts cannot be named, whatever the state: that refusal is the request's alone.
func burns(t *Transfer, r TransferResult) bool {
	return r.Burns() && t.DebitAccountID < TransitIDMin && t.CreditAccountID < TransitIDMin
}

// fail stores a refused transfer, taking its id: the same request answers r again. An id the
// book already knows, or that another shard is booking, is not this request's to take.
func (b *Book) fail(now uint64, t *Transfer, r TransferResult, fx *Effects) {
	if b.transfers.has(t.ID) {
		return
	}
	if _, elsewhere := b.elsewhere[t.ID]; elsewhere {
		return
	}
	n := *t
	n.Timestamp, n.State, n.Result = b.tick(now), StateFailed, r
	b.setTransfer(n, fx)
}

// createChain runs a linked chain. When it fails, every member answers as it would alone if
// its id is known (a repeated chain answers what it answered the first time), the failing one
// its refusal, and the rest linked_event_failed. A refusal that burns takes the ids of the
// failing member and of the members before it (which passed every check), but only if the
// failing member fails the same way alone: a refusal the chain's own undone members caused
// (a second post of a hold the first one posted) is not the ledger's state.
func (b *Book) createChain(now uint64, ts []Transfer, results []TransferResult, fx *Effects) {
	first := b.event
	failed, why := repeatedID(ts), ResultChainIDsMustBeDifferent
	if failed < 0 {
		if failed, why = b.runChain(now, ts, fx); failed < 0 {
			for j := range results {
				results[j] = ResultOK
			}
			return
		}
	}
	knownBefore := b.transfers.has(ts[failed].ID)
	for k := range ts {
		b.event = first + int32(k)
		s, known := b.transfers.get(ts[k].ID)
		switch {
		case known && ValidateTransfer(&ts[k]) == ResultOK:
			results[k] = b.known(&ts[k], &s, fx)
		case k == failed:
			results[k] = why
		default:
			results[k] = ResultLinkedEventFailed
		}
	}
	b.event = first + int32(failed)
	if burns(&ts[failed], why) && !knownBefore && b.failsAlone(now, &ts[failed], why, fx) {
		for k := 0; k <= failed; k++ {
			b.event = first + int32(k)
			b.fail(now, &ts[k], results[k], fx)
		}
	}
}

// repeatedID is the position of the first member of a chain whose id an earlier member has,
// or -1: such a chain can never succeed (its second copy would meet the first).
func repeatedID(ts []Transfer) int {
	for k := 1; k < len(ts); k++ {
		for j := 0; j < k; j++ {
			if ts[j].ID == ts[k].ID {
				return k
			}
		}
	}
	return -1
}

// runChain runs a chain's members in order, recording what they change. At the first
// failure it undoes them all and reports which failed and why (-1: every member passed).
func (b *Book) runChain(now uint64, ts []Transfer, fx *Effects) (int, TransferResult) {
	mark := fx.mark()
	b.undo = b.undo[:0]
	b.recording = true
	defer func() { b.recording = false; b.undo = b.undo[:0] }()
	first := b.event
	for k := range ts {
		b.event = first + int32(k)
		if r := b.createTransfer(now, &ts[k], fx, true); r != ResultOK {
			b.rollback()
			fx.truncate(mark)
			return k, r
		}
	}
	return -1, ResultOK
}

// failsAlone reports whether t, a chain member that failed with why, fails the same way on
// the ledger's state without the chain: it runs t and undoes whatever it did.
func (b *Book) failsAlone(now uint64, t *Transfer, why TransferResult, fx *Effects) bool {
	mark := fx.mark()
	b.undo = b.undo[:0]
	b.recording = true
	r := b.createTransfer(now, t, fx, true)
	b.recording = false
	b.rollback()
	fx.truncate(mark)
	return r == why
}

func (b *Book) createTransfer(now uint64, t *Transfer, fx *Effects, inChain bool) TransferResult {
	if r := ValidateTransfer(t); r != ResultOK {
		return r
	}
	if _, ok := b.elsewhere[t.ID]; ok {
		return ResultIDInFlight
	}
	dr, ok := b.accounts.get(t.DebitAccountID)
	if !ok || t.DebitAccountID >= TransitIDMin {
		return ResultDebitAccountNotFound
	}
	var cr *accountState
	var credit AccountInfo
	if t.CreditAccountID >= TransitIDMin {
		return ResultCreditAccountNotFound
	} else if b.Owns(t.CreditAccountID) {
		if cr, ok = b.accounts.get(t.CreditAccountID); !ok {
			return ResultCreditAccountNotFound
		}
		credit = cr.Info()
	} else if credit, ok = b.remote[t.CreditAccountID]; !ok {
		return ResultCreditAccountNotFound
	}
	if dr.Ledger != credit.Ledger {
		return ResultAccountsMustHaveTheSameLedger
	}
	if t.Ledger != dr.Ledger {
		return ResultTransferMustHaveTheSameLedgerAsAccounts
	}
	if s, ok := b.transfers.get(t.ID); ok {
		return b.known(t, &s, fx)
	}
	if t.Flags&(TransferPostPending|TransferVoidPending) != 0 {
		return b.resolvePending(now, t, dr, cr, credit, fx)
	}
	if r := b.checkFits(t, dr, cr, credit, inChain); r != ResultOK {
		return r
	}
	// A credit account on another shard that limits its credits may refuse the money when it
	// arrives: the amount is then only held here until it answers (StateInFlight).
	refusable := cr == nil && credit.Flags&AccountCreditsMustNotExceedDebits != 0
	kind, state := LegCreditPost, StatePosted
	if t.Flags&TransferPending != 0 {
		kind, state = LegCreditHold, StatePending
	}
	if refusable {
		state = StateInFlight
	}
	ts := b.tick(now)
	b.move(t.ID, t.Ledger, ts, dr, cr, credit, kind, t.Amount, 0, refusable, fx)
	n := *t
	n.Timestamp, n.State = ts, state
	b.setTransfer(n, fx)
	if t.Flags&TransferPending != 0 {
		if cr == nil {
			b.setHolding(n.ID)
		}
		if at := n.ExpiresAt(); at != 0 {
			heap.Push(&b.expiries, expiry{at: at, id: n.ID})
		}
	}
	return ResultOK
}

// known answers a transfer whose id the book already knows: exists for the same request,
// the stored refusal for one that failed. While the transfer's own credit leg is unanswered
// (not buffered), the answer waits for it (Effects.Awaits): until then the outcome is not
// final, or the credit has not landed, and a repeated request answers only what the first one
// answers, when it answers.
func (b *Book) known(t, s *Transfer, fx *Effects) TransferResult {
	var hold uint64
	if p, ok := b.transfers.get(t.PendingID); ok && t.PendingID != 0 && p.Flags&TransferPending != 0 {
		hold = p.Amount
	}
	switch {
	case !t.sameRequest(s, hold):
		return ResultExistsWithDifferentFields
	case s.State == StateFailed:
		return s.Result
	}
	k := LegKey{TransferID: s.ID, Kind: s.creationLeg()}
	if l, ok := b.outbox[k]; ok && !l.Buffered {
		fx.Awaits = append(fx.Awaits, LegAwait{LegKey: k, Event: b.event})
	} else if s.State == StateInFlight {
		panic(fmt.Sprintf("ledger: INVARIANT: transfer %d in flight without its leg", s.ID))
	}
	return ResultExists
}

// checkFits runs the balance checks of a new (not resolving) transfer.
func (b *Book) checkFits(t *Transfer, dr, cr *accountState, credit AccountInfo, inChain bool) TransferResult {
	if dr.Flags&AccountClosed != 0 {
		return ResultDebitAccountClosed
	}
	if credit.Flags&AccountClosed != 0 {
		return ResultCreditAccountClosed
	}
	debits, overflow := sum3(dr.DebitsPending, dr.DebitsPosted, t.Amount)
	if overflow {
		return ResultOverflowsDebits
	}
	var credits Uint128
	if cr != nil {
		if credits, overflow = sum3(cr.CreditsPending, cr.CreditsPosted, t.Amount); overflow {
			return ResultOverflowsCredits
		}
	}
	if dr.Flags&AccountDebitsMustNotExceedCredits != 0 && debits.Cmp(dr.CreditsPosted) > 0 {
		return ResultExceedsCredits
	}
	if cr != nil && cr.Flags&AccountCreditsMustNotExceedDebits != 0 && credits.Cmp(cr.DebitsPosted) > 0 {
		return ResultExceedsDebits
	}
	if cr == nil && inChain && credit.Flags&AccountCreditsMustNotExceedDebits != 0 {
		// Its limit can only be checked on its own shard, after the chain is committed here.
		return ResultLinkedChainSpansShards
	}
	if cr == nil && len(b.outbox) >= OutboxLegsMax {
		return ResultOverloaded
	}
	return ResultOK
}

// resolvePending posts or voids the pending transfer t names. The stored post or void carries
// the amount it moved.
func (b *Book) resolvePending(now uint64, t *Transfer, dr, cr *accountState, credit AccountInfo,
	fx *Effects) TransferResult {
	p, ok := b.transfers.get(t.PendingID)
	post := t.Flags&TransferPostPending != 0
	switch {
	case !ok, p.State == StateFailed:
		return ResultPendingTransferNotFound
	case p.Flags&TransferPending == 0:
		return ResultPendingTransferNotPending
	case p.DebitAccountID != t.DebitAccountID || p.CreditAccountID != t.CreditAccountID:
		return ResultPendingTransferHasDifferentAccounts
	case p.Ledger != t.Ledger:
		return ResultPendingTransferHasDifferentLedger
	case p.Code != t.Code:
		return ResultPendingTransferHasDifferentCode
	case post && t.Amount > p.Amount:
		return ResultExceedsPendingTransferAmount
	case !post && t.Amount != 0 && t.Amount != p.Amount:
		return ResultPendingTransferHasDifferentAmount
	case p.State == StatePendingPosted:
		return ResultPendingTransferAlreadyPosted
	case p.State == StatePendingVoided:
		return ResultPendingTransferAlreadyVoided
	case p.State == StatePendingExpired, p.ExpiresAt() != 0 && now >= p.ExpiresAt():
		return ResultPendingTransferExpired
	case p.State != StatePending && p.State != StateInFlight:
		panic(fmt.Sprintf("ledger: INVARIANT: pending transfer %d in state %d", p.ID, p.State))
	}
	if _, ok := b.holding[p.ID]; ok {
		return ResultPendingTransferInFlight
	}
	if p.State != StatePending {
		panic(fmt.Sprintf("ledger: INVARIANT: pending transfer %d in flight but not holding", p.ID))
	}
	if dr.Flags&AccountClosed != 0 {
		return ResultDebitAccountClosed
	}
	if credit.Flags&AccountClosed != 0 {
		return ResultCreditAccountClosed
	}
	ts := b.tick(now)
	n := *t
	if post {
		if n.Amount == 0 {
			n.Amount = p.Amount
		}
		b.move(t.ID, t.Ledger, ts, dr, cr, credit, LegCreditPostHeld, n.Amount, p.Amount, false, fx)
		p.State = StatePendingPosted
	} else {
		n.Amount = p.Amount
		b.move(t.ID, t.Ledger, ts, dr, cr, credit, LegCreditRelease, p.Amount, 0, false, fx)
		p.State = StatePendingVoided
	}
	b.setTransfer(p, fx)
	n.Timestamp, n.State = ts, StatePosted
	b.setTransfer(n, fx)
	return ResultOK
}

// move posts one movement of a transfer: the debit side on dr, and the credit side on cr
// (same shard) or on this shard's transit account plus a leg for the credit shard. A posted
// inflow to a hot account elsewhere makes a buffered leg. A refusable post (a credit account
// elsewhere that limits its credits) only holds the amount on dr until the leg is answered.
func (b *Book) move(transferID uint64, ledger uint32, ts uint64, dr, cr *accountState,
	credit AccountInfo, kind LegKind, amount, held uint64, refusable bool, fx *Effects) {
	op := kind.op()
	debitOp := op.Mirror()
	if refusable && kind == LegCreditPost {
		debitOp = OpDebitHold
	}
	b.post(dr, Posting{Timestamp: ts, TransferID: transferID, Op: debitOp, Amount: amount,
		Held: held, Split: cr == nil}, fx)
	if cr != nil {
		b.post(cr, Posting{Timestamp: ts, TransferID: transferID, Op: op, Amount: amount, Held: held}, fx)
		return
	}
	b.moveTransit(ledger, ts, debitOp.Mirror(), amount, held, fx)
	l := Leg{LegKey: LegKey{TransferID: transferID, Kind: kind}, Account: credit.ID,
		DebitAccount: dr.ID, Amount: amount, Held: held, Ledger: ledger, From: b.shard, Event: b.event, Day: b.day,
		Refusable: refusable,
		Buffered:  credit.Flags&AccountHot != 0 && (kind == LegCreditPost || kind == LegCreditPostHeld)}
	b.setOutbox(l)
	fx.LegsOut = append(fx.LegsOut, l)
}

// moveTransit applies op to this shard's transit account. Transit accounts have no journal of
// their own: their postings are the mirrors of the split postings of this shard's accounts.
func (b *Book) moveTransit(ledger uint32, ts uint64, op PostingOp, amount, held uint64, fx *Effects) {
	tr := b.transit(ledger, ts, fx)
	b.saveAccount(tr)
	if !op.Apply(&tr.Balance, amount, held) {
		panic(fmt.Sprintf("ledger: INVARIANT: transit %d cannot take %v of %d (held %d): %+v",
			tr.ID, op, amount, held, tr.Balance))
	}
	b.touch(tr, fx)
}

// Expire releases the holds of pending transfers whose timeout passed by now (at most
// ExpiriesPerSweepMax of them). A hold whose leg is still in flight is parked, and armed again
// when its leg is answered, so that it never holds back the sweep.
func (b *Book) Expire(now uint64, fx *Effects) {
	b.begin(fx)
	b.event = -1
	for n := 0; len(b.expiries) > 0 && b.expiries[0].at <= now && n < ExpiriesPerSweepMax; {
		e := heap.Pop(&b.expiries).(expiry)
		p, ok := b.transfers.get(e.id)
		if !ok || !p.holds() || p.ExpiresAt() != e.at {
			continue
		}
		if _, ok := b.holding[p.ID]; ok {
			b.parked[p.ID] = e
			continue
		}
		n++
		dr, _ := b.accounts.get(p.DebitAccountID)
		cr, _ := b.accounts.get(p.CreditAccountID)
		if !b.Owns(p.CreditAccountID) {
			cr = nil
		}
		ts := b.tick(now)
		credit := AccountInfo{ID: p.CreditAccountID} // a release is never buffered
		b.move(p.ID, p.Ledger, ts, dr, cr, credit, LegCreditRelease, p.Amount, 0, false, fx)
		p.State = StatePendingExpired
		b.setTransfer(p, fx)
	}
}

func (b *Book) setTransfer(t Transfer, fx *Effects) {
	if b.recording {
		old, existed := b.transfers.get(t.ID)
		b.undo = append(b.undo, undoEntry{kind: undoTransfer, id: t.ID, transfer: old, existed: existed})
	}
	b.transfers.set(t)
	fx.Transfers = append(fx.Transfers, t)
}

func (b *Book) setOutbox(l Leg) {
	if b.recording {
		b.undo = append(b.undo, undoEntry{kind: undoOutbox, leg: l.LegKey})
	}
	b.outbox[l.LegKey] = l
}

func (b *Book) setHolding(id uint64) {
	if b.recording {
		b.undo = append(b.undo, undoEntry{kind: undoHolding, id: id})
	}
	b.holding[id] = struct{}{}
}

func (b *Book) saveAccount(a *accountState) {
	if b.recording {
		b.undo = append(b.undo, undoEntry{kind: undoBalance, account: a, balance: a.Balance})
	}
}

type undoKind uint8

const (
	undoBalance undoKind = iota + 1
	undoTransfer
	undoOutbox
	undoHolding
)

// undoEntry is what a linked chain changed, to restore it if the chain fails.
type undoEntry struct {
	kind     undoKind
	existed  bool
	id       uint64
	leg      LegKey
	account  *accountState
	balance  Balance
	transfer Transfer
}

// rollback restores what the chain changed, newest first. Accounts stay in the round's
// Effects: they are written with their restored balances. Armed expiries of rolled-back
// pending transfers are dropped when they come due (their transfer is gone).
func (b *Book) rollback() {
	for i := len(b.undo) - 1; i >= 0; i-- {
		u := &b.undo[i]
		switch u.kind {
		case undoBalance:
			u.account.Balance = u.balance
		case undoTransfer:
			if u.existed {
				b.transfers.set(u.transfer)
			} else {
				b.transfers.del(u.id)
			}
		case undoOutbox:
			delete(b.outbox, u.leg)
		case undoHolding:
			delete(b.holding, u.id)
		}
	}
	b.undo = b.undo[:0]
}
