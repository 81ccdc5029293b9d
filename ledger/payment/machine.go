package payment

import (
	"fmt"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/ledgercore/ledger/channel"
	"github.com/ledgercore/ledger/ledger"
)

// Timing of the conversation with a channel, in nanoseconds of the host's clock.
const (
	// QueryBackoffMin and QueryBackoffMax bound the wait before asking a channel again about
	// a request whose outcome is not known; the wait doubles from one to the other.
	QueryBackoffMin = uint64(time.Second)
	// CallbackWait is how long an order waits for the channel's callback, once the channel
	// took its request (or while its sending is on its way), before it asks: callbacks are
	// the common path, and early queries under load only add to it.
	CallbackWait    = uint64(10 * time.Second)
	QueryBackoffMax = uint64(5 * time.Minute)
	// NotFoundFinal is how long after sending a payout or refund a channel must keep saying
	// it never received it before the order fails. (A payment is sent again instead: the
	// channel deduplicates it by order number, and nothing leaves the platform.)
	NotFoundFinal = uint64(10 * time.Minute)
)

// Request is what a caller asks for. Which fields a form uses is in docs/PAYMENTS.md.
type Request struct {
	Key            string
	BizID          string
	Form           Form
	Ledger         uint32
	Amount         uint64
	From, To       uint64
	Channel        string
	ChannelAccount string
	Original       uint64
	Instruments    []Instrument
}

// Call is a request for the channel gateway: send Request, or ask about it (Query).
type Call struct {
	Request channel.Request
	Query   bool
}

// Answer is what became of a Call at the gateway.
type Answer uint8

const (
	// Answered: the channel answered; the channel.Result is valid.
	Answered Answer = 1 + iota
	// Unanswered: the request may have reached the channel; its outcome is not known.
	Unanswered
	// Rejected: the request was not sent (circuit open, degraded, busy).
	Rejected
)

// Effects are what the host does once the order's new state is durable: make ledger
// transfers (idempotent by id), call the channel. Release asks the host to give a failed
// refund's reservation back to its original payment in the same commit as the refund.
type Effects struct {
	Transfers []ledger.Transfer
	Calls     []Call
	Release   bool
}

func (e *Effects) add(f Effects) {
	e.Transfers = append(e.Transfers, f.Transfers...)
	e.Calls = append(e.Calls, f.Calls...)
	e.Release = e.Release || f.Release
}

// Accounts reads the durable accounts a new order names.
type Accounts func(id uint64) (ledger.Account, bool)

// New checks a request and builds its order, Accepted, with id. A refund names its original
// payment (nil if there is none); New reserves the refund's amount on it, which the host
// persists with the refund. On a result other than ResultOK nothing is built and nothing
// changed.
func New(s *Setup, r *Request, id, now uint64, accounts Accounts, original *Order) (*Order, Result) {
	if res := checkShape(s, r); res != ResultOK {
		return nil, res
	}
	if id == 0 || id > OrderIDMax {
		panic(fmt.Sprintf("payment: INVARIANT: order id %d out of range", id))
	}
	o := &Order{ID: id, Key: r.Key, BizID: r.BizID, Form: r.Form, Ledger: r.Ledger, Amount: r.Amount, From: r.From,
		To: r.To, Channel: r.Channel, ChannelAccount: r.ChannelAccount, Original: r.Original,
		State: Accepted, Stage: StageHold, Created: now, Updated: now, Version: 1}
	switch r.Form {
	case Recharge:
		o.Instruments = []Instrument{{Kind: Card, Amount: r.Amount}}
	case Withdraw, Transfer:
		o.Instruments = []Instrument{{Kind: Balance, Amount: r.Amount, Account: r.From}}
	case Pay:
		o.Instruments = make([]Instrument, len(r.Instruments))
		for i, in := range r.Instruments {
			o.Instruments[i] = Instrument{Kind: in.Kind, Amount: in.Amount, Account: in.Account}
			if in.Kind == Balance && in.Account == 0 {
				o.Instruments[i].Account = r.From
			}
		}
	case Refund:
		if res := o.refundOf(original); res != ResultOK {
			return nil, res
		}
	}
	if r.Form != Refund {
		if res := o.checkAccounts(s, accounts); res != ResultOK {
			return nil, res
		}
	}
	if o.holds() == 0 {
		o.Stage, o.State, o.SentAt, o.Next = StageAwait, Processing, now, now+CallbackWait
	}
	if r.Form == Refund {
		original.reserve(o)
	}
	return o, ResultOK
}

func checkShape(s *Setup, r *Request) Result {
	switch {
	case r.Key == "":
		return ResultKeyRequired
	case len(r.Key) > KeyBytesMax:
		return ResultKeyTooLong
	case len(r.BizID) > ledger.BizIDBytesMax:
		return ResultBizIDTooLong
	case r.Form < Recharge || r.Form > Pay:
		return ResultFormUnknown
	case r.Amount == 0:
		return ResultAmountMustNotBeZero
	case len(r.ChannelAccount) > ChannelAccountBytesMax:
		return ResultChannelAccountTooLong
	case !Printable(r.BizID):
		return ResultBizIDNotPrintable
	case !Printable(r.ChannelAccount):
		return ResultChannelAccountNotPrintable
	case r.Channel != "" && !s.Channel(r.Channel):
		return ResultChannelUnknown
	}
	if r.Form != Pay && len(r.Instruments) > 0 || r.Form != Refund && r.Original != 0 {
		return ResultFieldNotUsed
	}
	if r.Form == Refund {
		if r.Original == 0 {
			return ResultOriginalRequired
		}
		return ResultOK
	}
	if r.Ledger == 0 || r.Ledger > LedgerIDMax {
		return ResultLedgerMustNotBeZero
	}
	needsChannel := r.Form == Recharge || r.Form == Withdraw
	switch r.Form {
	case Recharge:
		if r.To == 0 {
			return ResultAccountRequired
		}
	case Withdraw:
		if r.From == 0 {
			return ResultAccountRequired
		}
	case Transfer:
		if r.From == 0 || r.To == 0 {
			return ResultAccountRequired
		}
		if r.From == r.To {
			return ResultAccountsMustBeDifferent
		}
	case Pay:
		if r.To == 0 {
			return ResultAccountRequired
		}
		if res := checkInstruments(r); res != ResultOK {
			return res
		}
		needsChannel = r.Instruments[len(r.Instruments)-1].Kind == Card
	}
	if needsChannel {
		if r.Channel == "" {
			return ResultChannelRequired
		}
		if !s.Channel(r.Channel) {
			return ResultChannelUnknown
		}
	}
	return ResultOK
}

func checkInstruments(r *Request) Result {
	if len(r.Instruments) == 0 {
		return ResultInstrumentsRequired
	}
	if len(r.Instruments) > InstrumentsMax {
		return ResultTooManyInstruments
	}
	var sum uint64
	for i, in := range r.Instruments {
		switch {
		case in.Kind < Coupon || in.Kind > Card:
			return ResultInstrumentUnknown
		case in.Amount == 0:
			return ResultInstrumentAmountMustNotBeZero
		case in.Kind == Card && i != len(r.Instruments)-1:
			return ResultCardMustBeLast
		case in.Kind == Coupon && in.Account == 0, in.Kind == Balance && in.Account == 0 && r.From == 0:
			return ResultAccountRequired
		}
		if sum+in.Amount < sum {
			return ResultInstrumentsMustAddUp
		}
		sum += in.Amount
	}
	if sum != r.Amount {
		return ResultInstrumentsMustAddUp
	}
	return ResultOK
}

// printable reports whether s is UTF-8 without control characters.
// Printable reports whether s is UTF-8 without control characters (what a key, a biz id or
// an operator's note may be).
func Printable(s string) bool {
	for _, r := range s {
		if r == utf8.RuneError || !unicode.IsPrint(r) {
			return false
		}
	}
	return true
}

// checkAccounts: every party account the order posts to exists, is in the order's ledger, has
// the subject its posting wants and is open; none that the order credits limits its credits.
// Account flags never change, so no posting of a decided outcome can be refused for them.
func (o *Order) checkAccounts(s *Setup, accounts Accounts) Result {
	check := func(id uint64, subject uint32, credited bool) Result {
		if subject == 0 {
			return ResultOK
		}
		a, ok := accounts(id)
		switch {
		case !ok:
			return ResultAccountNotFound
		case a.Ledger != o.Ledger:
			return ResultLedgerMismatch
		case a.Code != subject:
			return ResultAccountWrongSubject
		case a.Flags&ledger.AccountClosed != 0:
			return ResultAccountClosed
		case credited && a.Flags&ledger.AccountCreditsMustNotExceedDebits != 0:
			return ResultAccountLimitsCredits
		}
		return ResultOK
	}
	for i := range o.Instruments {
		code, from, to, _ := o.holdPosting(s, i)
		if code == "" {
			continue
		}
		debit, credit := s.partySubjects(code)
		if res := check(from, debit, false); res != ResultOK {
			return res
		}
		if res := check(to, credit, true); res != ResultOK {
			return res
		}
	}
	if code := o.mainCode(s); code != "" {
		debit, credit := s.partySubjects(code)
		if res := check(o.From, debit, false); res != ResultOK {
			return res
		}
		return check(o.To, credit, true)
	}
	return ResultOK
}

// refundOf fills a refund from its original payment: the route is the payment's, taken back
// from its last instrument (the card) to its first, each up to what is left of it.
func (o *Order) refundOf(orig *Order) Result {
	switch {
	case orig == nil:
		return ResultOriginalNotFound
	case orig.Form != Pay || orig.State != Succeeded:
		return ResultOriginalNotRefundable
	case o.Amount > orig.Amount-orig.Refunded:
		return ResultRefundExceedsCaptured
	}
	o.Ledger, o.From, o.To, o.Channel = orig.Ledger, orig.To, orig.From, orig.Channel
	o.ChannelAccount, o.OriginalTxn = orig.ChannelAccount, orig.Txn
	o.Instruments = make([]Instrument, len(orig.Instruments))
	left := o.Amount
	for i := len(orig.Instruments) - 1; i >= 0; i-- {
		in := orig.Instruments[i]
		part := min(left, in.Amount-in.Refunded)
		o.Instruments[i] = Instrument{Kind: in.Kind, Amount: part, Account: in.Account}
		left -= part
	}
	if left != 0 {
		panic(fmt.Sprintf("payment: INVARIANT: order %d refunded %d of %d but its instruments have %d left too few",
			orig.ID, orig.Refunded, orig.Amount, left))
	}
	return ResultOK
}

// reserve takes a refund's parts from what is left to refund of the payment.
func (o *Order) reserve(ref *Order) {
	o.Refunded += ref.Amount
	for i := range ref.Instruments {
		o.Instruments[i].Refunded += ref.Instruments[i].Amount
		if o.Instruments[i].Refunded > o.Instruments[i].Amount {
			panic(fmt.Sprintf("payment: INVARIANT: order %d instrument %d refunded beyond its amount", o.ID, i))
		}
	}
	o.Version++
}

// Release gives a failed refund's reservation back to its original payment.
func (o *Order) Release(ref *Order, now uint64) {
	if ref.Form != Refund || ref.Original != o.ID || ref.State != Failed || o.Refunded < ref.Amount {
		panic(fmt.Sprintf("payment: INVARIANT: order %d cannot release refund %d", o.ID, ref.ID))
	}
	o.Refunded -= ref.Amount
	for i := range ref.Instruments {
		o.Instruments[i].Refunded -= ref.Instruments[i].Amount
	}
	o.touch(now)
}

// Same reports whether r asks for what the order was made from (a repeated request).
func (o *Order) Same(r *Request) bool {
	if o.Key != r.Key || o.BizID != r.BizID || o.Form != r.Form || o.Amount != r.Amount {
		return false
	}
	if o.Form == Refund {
		return o.Original == r.Original
	}
	if o.Ledger != r.Ledger || o.From != r.From || o.To != r.To || o.Channel != r.Channel ||
		o.ChannelAccount != r.ChannelAccount {
		return false
	}
	if o.Form != Pay {
		return len(r.Instruments) == 0
	}
	if len(o.Instruments) != len(r.Instruments) {
		return false
	}
	for i, in := range r.Instruments {
		acct := in.Account
		if in.Kind == Balance && acct == 0 {
			acct = r.From
		}
		if o.Instruments[i].Kind != in.Kind || o.Instruments[i].Amount != in.Amount || o.Instruments[i].Account != acct {
			return false
		}
	}
	return true
}

// holdPosting is the first posting of instrument i: its code, debit and credit party accounts,
// and whether it is a hold (posted or voided later) rather than final at once.
func (o *Order) holdPosting(s *Setup, i int) (code string, from, to uint64, hold bool) {
	in := &o.Instruments[i]
	if in.Amount == 0 {
		return "", 0, 0, false
	}
	c := s.names
	switch o.Form {
	case Withdraw:
		return c.WithdrawHold, in.Account, 0, true
	case Transfer:
		return c.Transfer, o.From, o.To, false
	case Pay:
		switch in.Kind {
		case Coupon:
			return c.PayCoupon, in.Account, o.To, true
		case Balance:
			return c.Pay, in.Account, o.To, true
		}
	case Refund:
		switch in.Kind {
		case Coupon:
			return c.RefundCoupon, o.From, in.Account, true
		case Balance:
			return c.Refund, o.From, in.Account, true
		case Card:
			return c.RefundChannel, o.From, 0, true
		}
	}
	return "", 0, 0, false
}

// mainCode is the posting that books the channel's money once it moved, if the form has one.
func (o *Order) mainCode(s *Setup) string {
	if !o.booksMain() {
		return ""
	}
	switch o.Form {
	case Recharge:
		return s.names.Recharge
	case Withdraw:
		return s.names.WithdrawPaid
	}
	return s.names.PayChannel
}

// booksMain reports whether the order books the channel's money in a posting of its own
// (stepMain): a recharge, a withdrawal, a payment with a card.
func (o *Order) booksMain() bool {
	return o.Form == Recharge || o.Form == Withdraw || o.Form == Pay && o.card() != nil
}

// card is the instrument the channel moves, if any.
func (o *Order) card() *Instrument {
	switch o.Form {
	case Withdraw:
		return &o.Instruments[0]
	case Recharge, Pay, Refund:
		if in := &o.Instruments[len(o.Instruments)-1]; in.Kind == Card && in.Amount > 0 {
			return in
		}
	}
	return nil
}

// op is what the order asks its channel to do.
func (o *Order) op() channel.Op {
	switch o.Form {
	case Withdraw:
		return channel.Payout
	case Refund:
		return channel.Refund
	}
	return channel.Pay
}

// holds is the set of hold steps (first postings) of the order.
func (o *Order) holds() uint64 {
	var m uint64
	for i, in := range o.Instruments {
		if in.Amount > 0 && !(in.Kind == Card && o.Form != Refund && o.Form != Withdraw) {
			m |= 1 << (stepHold + i)
		}
	}
	return m
}

func (o *Order) touch(now uint64) {
	o.Updated = max(o.Updated, now)
	o.Version++
}

// transitions are the legal changes of State.
var transitions = map[State][]State{
	Accepted:   {Processing, Unknown, Partial, Succeeded, Failed},
	Processing: {Unknown, Partial, Succeeded, Failed},
	Unknown:    {Processing, Partial, Succeeded, Failed},
	Partial:    {Failed},
}

// CanMove reports whether an order in state from may move to state to.
func CanMove(from, to State) bool {
	for _, s := range transitions[from] {
		if s == to {
			return true
		}
	}
	return false
}

// set moves the order from the state it is in to another, by the table.
func (o *Order) set(to State, now uint64) {
	if o.State == to {
		return
	}
	if !CanMove(o.State, to) {
		panic(fmt.Sprintf("payment: INVARIANT: order %d: %v -> %v is not a legal transition", o.ID, o.State, to))
	}
	o.State = to
	o.touch(now)
}

func backoff(queries uint32) uint64 {
	if queries >= 20 {
		return QueryBackoffMax
	}
	return min(QueryBackoffMin<<queries, QueryBackoffMax)
}
