package simulation

import (
	"fmt"
	"slices"

	"github.com/ledgercore/ledger/ledger"
)

// simModel is the simulator's own account of the ledger: what every account holds once every
// acknowledged transfer has landed, what each decided transfer id answered, and the holds. It
// decides results by the rules of ledger/doc.go, written again here rather than taken from the
// ledger, so that a ledger that refuses what it should take, or takes what it should refuse,
// disagrees with it.
type simModel struct {
	shards uint32
	flags  map[uint64]ledger.AccountFlags
	bal    map[uint64]*simBalance
	// unlanded: for hot accounts, acknowledged inflows from other shards that may still sit in
	// a buffer (at most this much of credits_posted may be missing right now).
	unlanded map[uint64]uint64
	decided  map[uint64]*simDecided // ids the ledger has decided: booked, or refused for good
	holds    map[uint64]*simHold
}

type simBalance struct{ debitsPending, debitsPosted, creditsPending, creditsPosted uint64 }

// simDecided is a decided transfer: as first sent, with its first answer.
type simDecided struct {
	t      ledger.Transfer
	result ledger.TransferResult // ok, or the refusal stored with it
	moved  uint64                // a post or void that succeeded: the amount it moved
}

type simHoldState uint8

const (
	holdPending simHoldState = iota
	holdPosted
	holdVoided
	holdExpired
)

type simHold struct {
	t         ledger.Transfer
	expiresAt uint64 // as the ledger computed it (read back); 0: never
	state     simHoldState
}

func newSimModel(shards uint32) *simModel {
	return &simModel{shards: shards, flags: map[uint64]ledger.AccountFlags{}, bal: map[uint64]*simBalance{},
		unlanded: map[uint64]uint64{}, decided: map[uint64]*simDecided{}, holds: map[uint64]*simHold{}}
}

func (m *simModel) split(t *ledger.Transfer) bool {
	return ledger.ShardOf(t.DebitAccountID, m.shards) != ledger.ShardOf(t.CreditAccountID, m.shards)
}

// simBurns: the refusals that depend on the ledger's state and so take the id (doc.go), listed
// here by name rather than taken from ledger.TransferResult.Burns.
var simBurns = map[ledger.TransferResult]bool{
	ledger.ResultDebitAccountNotFound: true, ledger.ResultCreditAccountNotFound: true,
	ledger.ResultAccountsMustHaveTheSameLedger: true, ledger.ResultTransferMustHaveTheSameLedgerAsAccounts: true,
	ledger.ResultPendingTransferNotFound: true, ledger.ResultPendingTransferNotPending: true,
	ledger.ResultPendingTransferHasDifferentAccounts: true, ledger.ResultPendingTransferHasDifferentLedger: true,
	ledger.ResultPendingTransferHasDifferentCode: true, ledger.ResultExceedsPendingTransferAmount: true,
	ledger.ResultPendingTransferHasDifferentAmount: true, ledger.ResultPendingTransferAlreadyPosted: true,
	ledger.ResultPendingTransferAlreadyVoided: true, ledger.ResultPendingTransferExpired: true,
	ledger.ResultDebitAccountClosed: true, ledger.ResultCreditAccountClosed: true,
	ledger.ResultOverflowsDebits: true, ledger.ResultOverflowsCredits: true,
	ledger.ResultExceedsCredits: true, ledger.ResultExceedsDebits: true,
}

// simView is the model's balances as one scenario sees them: with or without the hot inflows
// that may not have landed, plus the changes of a chain being decided.
type simView struct {
	m      *simModel
	landed bool
	chain  map[uint64]simBalance
}

func (v *simView) balance(id uint64) simBalance {
	if b, ok := v.chain[id]; ok {
		return b
	}
	b := *v.m.bal[id]
	if !v.landed {
		b.creditsPosted -= v.m.unlanded[id]
	}
	return b
}

// stateless is the result of the checks of the request alone that the simulator's transfers
// can meet (ok when it meets none).
func stateless(t *ledger.Transfer) ledger.TransferResult {
	resolving := t.Flags&(ledger.TransferPostPending|ledger.TransferVoidPending) != 0
	switch {
	case t.ID == 0:
		return ledger.ResultIDMustNotBeZero
	case t.DebitAccountID == t.CreditAccountID:
		return ledger.ResultAccountsMustBeDifferent
	case !resolving && t.PendingID != 0:
		return ledger.ResultPendingIDMustBeZero
	case resolving && t.PendingID == 0:
		return ledger.ResultPendingIDMustNotBeZero
	case t.Flags&ledger.TransferPending == 0 && t.Timeout != 0:
		return ledger.ResultTimeoutReservedForPendingTransfer
	case !resolving && t.Amount == 0:
		return ledger.ResultAmountMustNotBeZero
	}
	return ledger.ResultOK
}

// knownAnswer is what a transfer with a decided id answers: exists for the same request, the
// stored refusal for one that failed, exists_with_different_fields for another request. For a
// post or void, an amount of 0 is the same as the whole hold's; a post or void that succeeded
// is stored with the amount it moved.
func (m *simModel) knownAnswer(d *simDecided, t *ledger.Transfer) ledger.TransferResult {
	s := d.t
	amount, stored := t.Amount, s.Amount
	if d.result == ledger.ResultOK && t.Flags&(ledger.TransferPostPending|ledger.TransferVoidPending) != 0 {
		stored = d.moved
	}
	if h, ok := m.decided[t.PendingID]; ok && t.PendingID != 0 && h.t.Flags&ledger.TransferPending != 0 &&
		t.Flags&(ledger.TransferPostPending|ledger.TransferVoidPending) != 0 {
		if amount == 0 {
			amount = h.t.Amount
		}
		if stored == 0 {
			stored = h.t.Amount
		}
	}
	s.Amount = t.Amount
	if amount != stored || s != *t {
		return ledger.ResultExistsWithDifferentFields
	}
	if d.result == ledger.ResultOK {
		return ledger.ResultExists
	}
	return d.result
}

// decide is the answer the rules give t, on the balances of v, at time now.
func (m *simModel) decide(t *ledger.Transfer, v *simView, now uint64, inChain bool) ledger.TransferResult {
	if r := stateless(t); r != ledger.ResultOK {
		return r
	}
	if _, ok := m.flags[t.DebitAccountID]; !ok {
		return ledger.ResultDebitAccountNotFound
	}
	if _, ok := m.flags[t.CreditAccountID]; !ok {
		return ledger.ResultCreditAccountNotFound
	}
	if d, ok := m.decided[t.ID]; ok {
		return m.knownAnswer(d, t)
	}
	df, cf := m.flags[t.DebitAccountID], m.flags[t.CreditAccountID]
	if t.Flags&(ledger.TransferPostPending|ledger.TransferVoidPending) != 0 {
		return m.decideResolve(t, now, df, cf)
	}
	switch {
	case df&ledger.AccountClosed != 0:
		return ledger.ResultDebitAccountClosed
	case cf&ledger.AccountClosed != 0:
		return ledger.ResultCreditAccountClosed
	}
	d, c := v.balance(t.DebitAccountID), v.balance(t.CreditAccountID)
	if df&ledger.AccountDebitsMustNotExceedCredits != 0 && d.debitsPending+d.debitsPosted+t.Amount > d.creditsPosted {
		return ledger.ResultExceedsCredits
	}
	limited := cf&ledger.AccountCreditsMustNotExceedDebits != 0
	if limited && m.split(t) && inChain {
		return ledger.ResultLinkedChainSpansShards
	}
	// Local: checked now; on another shard: checked when the money lands there, which, for a
	// transfer whose accounts nothing else in its request touches, sees the same balances.
	if limited && c.creditsPending+c.creditsPosted+t.Amount > c.debitsPosted {
		return ledger.ResultExceedsDebits
	}
	return ledger.ResultOK
}

func (m *simModel) decideResolve(t *ledger.Transfer, now uint64, df, cf ledger.AccountFlags) ledger.TransferResult {
	h, ok := m.holds[t.PendingID]
	post := t.Flags&ledger.TransferPostPending != 0
	switch {
	case !ok:
		if d, known := m.decided[t.PendingID]; known && d.result == ledger.ResultOK {
			return ledger.ResultPendingTransferNotPending
		}
		return ledger.ResultPendingTransferNotFound
	case h.t.DebitAccountID != t.DebitAccountID || h.t.CreditAccountID != t.CreditAccountID:
		return ledger.ResultPendingTransferHasDifferentAccounts
	case h.t.Code != t.Code:
		return ledger.ResultPendingTransferHasDifferentCode
	case post && t.Amount > h.t.Amount:
		return ledger.ResultExceedsPendingTransferAmount
	case !post && t.Amount != 0 && t.Amount != h.t.Amount:
		return ledger.ResultPendingTransferHasDifferentAmount
	case h.state == holdPosted:
		return ledger.ResultPendingTransferAlreadyPosted
	case h.state == holdVoided:
		return ledger.ResultPendingTransferAlreadyVoided
	case h.state == holdExpired, h.expiresAt != 0 && now >= h.expiresAt:
		return ledger.ResultPendingTransferExpired
	case df&ledger.AccountClosed != 0:
		return ledger.ResultDebitAccountClosed
	case cf&ledger.AccountClosed != 0:
		return ledger.ResultCreditAccountClosed
	}
	return ledger.ResultOK
}

// expect is the set of answers the rules allow for a lone transfer (or a chain), over the
// scenarios the model cannot tell apart (hot inflows landed or not). One answer: the model
// predicts it exactly.
func (m *simModel) expect(ts []ledger.Transfer, now uint64) [][]ledger.TransferResult {
	out := make([][]ledger.TransferResult, len(ts))
	for _, landed := range []bool{false, true} {
		rs := m.decideChain(ts, &simView{m: m, landed: landed}, now)
		for k, r := range rs {
			if !containsResult(out[k], r) {
				out[k] = append(out[k], r)
			}
		}
	}
	return out
}

func containsResult(rs []ledger.TransferResult, r ledger.TransferResult) bool {
	for _, x := range rs {
		if x == r {
			return true
		}
	}
	return false
}

// decideChain decides a lone transfer (a chain of one) or a linked chain, which succeeds or
// fails as one: when it fails, a member with a decided id answers as it would alone, the
// failing one its refusal, and the others linked_event_failed.
func (m *simModel) decideChain(ts []ledger.Transfer, v *simView, now uint64) []ledger.TransferResult {
	if len(ts) == 1 {
		return []ledger.TransferResult{m.decide(&ts[0], v, now, false)}
	}
	failed, r := m.chainFails(ts, v, now)
	return m.chainAnswers(ts, failed, r)
}

// chainFails is the first member of a chain that fails on v's balances, with the members
// before it applied, and its refusal; len(ts) when none does.
func (m *simModel) chainFails(ts []ledger.Transfer, v *simView, now uint64) (int, ledger.TransferResult) {
	v.chain = map[uint64]simBalance{}
	for k := range ts {
		t := &ts[k]
		if r := m.decide(t, v, now, true); r != ledger.ResultOK {
			return k, r
		}
		d, c := v.balance(t.DebitAccountID), v.balance(t.CreditAccountID)
		if t.Flags&ledger.TransferPending != 0 {
			d.debitsPending += t.Amount
			c.creditsPending += t.Amount
		} else {
			d.debitsPosted += t.Amount
			c.creditsPosted += t.Amount
		}
		v.chain[t.DebitAccountID], v.chain[t.CreditAccountID] = d, c
	}
	return len(ts), ledger.ResultOK
}

// chainAnswers are a chain's answers when member failed fails with r (none: len(ts)).
func (m *simModel) chainAnswers(ts []ledger.Transfer, failed int, r ledger.TransferResult) []ledger.TransferResult {
	rs := make([]ledger.TransferResult, len(ts))
	if failed == len(ts) {
		for k := range rs {
			rs[k] = ledger.ResultOK
		}
		return rs
	}
	rs[failed] = r
	for k := range ts {
		d, known := m.decided[ts[k].ID]
		switch {
		case known && stateless(&ts[k]) == ledger.ResultOK:
			rs[k] = m.knownAnswer(d, &ts[k])
		case k != failed:
			rs[k] = ledger.ResultLinkedEventFailed
		}
	}
	return rs
}

// chainBetween reports whether got are a chain's answers with its accounts' hot inflows
// landed in part: the chain failing at a member between where it fails with none landed and
// where it fails with all (or succeeding, where it does with all), refused as one of the two
// refuses, the others answering linked_event_failed or as their known ids do.
func (m *simModel) chainBetween(ts []ledger.Transfer, got []ledger.TransferResult, now uint64) bool {
	fNone, rNone := m.chainFails(ts, &simView{m: m}, now)
	fAll, rAll := m.chainFails(ts, &simView{m: m, landed: true}, now)
	for f := min(fNone, fAll); f <= max(fNone, fAll); f++ {
		for _, r := range []ledger.TransferResult{rNone, rAll} {
			if slices.Equal(got, m.chainAnswers(ts, f, r)) {
				return true
			}
		}
	}
	return false
}

// applyChain updates the model with the ledger's answers to a lone transfer or a chain (the
// answers were checked, or could not be predicted): new transfers that succeeded move money,
// and refusals that take their ids are remembered, by the rule of decideChain.
func (m *simModel) applyChain(ts []ledger.Transfer, rs []ledger.TransferResult, hot func(ledger.Transfer) bool) error {
	ok := true
	for _, r := range rs {
		ok = ok && r == ledger.ResultOK
	}
	if ok {
		for _, t := range ts {
			if err := m.book(t, hot(t)); err != nil {
				return err
			}
		}
		return nil
	}
	if len(ts) == 1 && simBurns[rs[0]] && m.decided[ts[0].ID] == nil {
		m.decided[ts[0].ID] = &simDecided{t: ts[0], result: rs[0]}
	}
	return nil
}

// chainBurns says which ids a failed chain takes, by the rule of the book: none, unless the
// failing member (the first that answers neither linked_event_failed nor as a known id would)
// was refused for a reason that burns and fails the same way alone, on the balances the chain
// found; then it and the members before it. certain is false when the scenarios the model
// cannot tell apart disagree.
func (m *simModel) chainBurns(ts []ledger.Transfer, rs []ledger.TransferResult, now uint64) (upTo int, certain bool) {
	failed := -1
	for k := range ts {
		if _, known := m.decided[ts[k].ID]; !known && rs[k] != ledger.ResultLinkedEventFailed {
			failed = k
			break
		}
	}
	if failed < 0 || !simBurns[rs[failed]] {
		return -1, true
	}
	alone := map[bool]bool{}
	for _, landed := range []bool{false, true} {
		alone[landed] = m.decide(&ts[failed], &simView{m: m, landed: landed}, now, true) == rs[failed]
	}
	if !alone[true] && !alone[false] {
		return -1, true
	}
	return failed, alone[true] && alone[false]
}

// book applies a transfer the ledger took. A posted inflow to a hot account from another
// shard may land later (unlanded).
func (m *simModel) book(t ledger.Transfer, buffered bool) error {
	if _, known := m.decided[t.ID]; known {
		return fmt.Errorf("transfer %d booked twice", t.ID)
	}
	d, c := m.bal[t.DebitAccountID], m.bal[t.CreditAccountID]
	moved := t.Amount
	switch {
	case t.Flags&ledger.TransferPending != 0:
		d.debitsPending += t.Amount
		c.creditsPending += t.Amount
		m.holds[t.ID] = &simHold{t: t, state: holdPending}
	case t.Flags&(ledger.TransferPostPending|ledger.TransferVoidPending) != 0:
		h := m.holds[t.PendingID]
		if h == nil || h.state != holdPending {
			return fmt.Errorf("transfer %d resolved hold %d, which is not pending", t.ID, t.PendingID)
		}
		d.debitsPending -= h.t.Amount
		c.creditsPending -= h.t.Amount
		h.state, moved = holdVoided, h.t.Amount
		if t.Flags&ledger.TransferPostPending != 0 {
			if moved = t.Amount; moved == 0 {
				moved = h.t.Amount
			}
			h.state = holdPosted
			d.debitsPosted += moved
			c.creditsPosted += moved
		}
	default:
		d.debitsPosted += t.Amount
		c.creditsPosted += t.Amount
	}
	if buffered && t.Flags&ledger.TransferPending == 0 && t.Flags&ledger.TransferVoidPending == 0 {
		m.unlanded[t.CreditAccountID] += moved
	}
	m.decided[t.ID] = &simDecided{t: t, result: ledger.ResultOK, moved: moved}
	return nil
}

// expire records that the ledger released a hold at its timeout.
func (m *simModel) expire(h *simHold) {
	h.state = holdExpired
	m.bal[h.t.DebitAccountID].debitsPending -= h.t.Amount
	m.bal[h.t.CreditAccountID].creditsPending -= h.t.Amount
}

// due reports whether an account has a hold whose timeout passed and that the ledger may or
// may not have released yet.
func (m *simModel) due(id, now uint64) bool {
	for _, h := range m.holds {
		if h.state == holdPending && h.expiresAt != 0 && h.expiresAt <= now &&
			(h.t.DebitAccountID == id || h.t.CreditAccountID == id) {
			return true
		}
	}
	return false
}

func (b *simBalance) equals(x ledger.Balance) bool {
	return x.DebitsPending == ledger.U128(b.debitsPending) && x.DebitsPosted == ledger.U128(b.debitsPosted) &&
		x.CreditsPending == ledger.U128(b.creditsPending) && x.CreditsPosted == ledger.U128(b.creditsPosted)
}
