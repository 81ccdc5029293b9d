// Package payment is the payment layer on top of the ledger: the four payment forms
// (recharge, withdraw, refund, transfer) and the combined payment, as orders whose state
// machines are pure and deterministic. An order never reads a clock or does I/O: its host (the
// payment actors) feeds it events (results of ledger transfers, channel outcomes, callbacks,
// ticks with the time) and runs the effects it returns once the order's new state is durable.
//
// # Promises
//
//   - Every ledger transfer an order makes has an id derived from (order, step) (TransferID),
//     so a crash and replay at any point books nothing twice: the ledger answers EXISTS.
//   - Every change of state goes through one transition table (see transitions) from an
//     expected state; anything else is refused as an invariant violation.
//   - The channel is told to move money once per order: an order records that it sent its
//     request (Stage Await) before it is sent, and after a restart it only queries. A
//     timeout is UNKNOWN, never FAILED.
//   - An order is SUCCEEDED or FAILED only once every posting of that outcome is durable.
//   - Money whose order does not match (an amount mismatch, a second payment) goes to the
//     suspense account and opens an exception record; it is never dropped.
package payment

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/ledgercore/ledger/ledger"
)

// Limits of the payment layer.
const (
	// KeyBytesMax is the longest idempotency key.
	KeyBytesMax = 64
	// InstrumentsMax is the most instruments one combined payment may use.
	InstrumentsMax = 4
	// ExceptionsMax is the most exception records one order keeps. Records that hold no money
	// take at most half; past that such an anomaly is counted on the order (Dropped) and
	// logged by the host. A record that holds money is never dropped: a callback that would
	// need one when the order is full is not applied, and the channel calls back again.
	ExceptionsMax = 16
	// OrderIDMax is the largest order id: ids of the order's transfers are built from it.
	OrderIDMax = 1<<56 - 1
	// ChannelAccountBytesMax is the longest external instrument (card or bank account) text.
	ChannelAccountBytesMax = 64
)

// Form is the kind of a payment order.
type Form uint8

const (
	// Recharge: the channel collects from the user's card; then the channel receivable is
	// debited and the user's balance credited.
	Recharge Form = 1 + iota
	// Withdraw: the user's funds are held, the channel pays out, then the hold is posted (or
	// voided when the payout failed).
	Withdraw
	// Refund: (part of) a succeeded payment goes back by its original route.
	Refund
	// Transfer: one account pays another, immediately.
	Transfer
	// Pay: a combined payment of a merchant with coupon, balance and card.
	Pay
)

var formNames = [...]string{Recharge: "recharge", Withdraw: "withdraw", Refund: "refund", Transfer: "transfer", Pay: "pay"}

func (f Form) String() string {
	if int(f) < len(formNames) && formNames[f] != "" {
		return formNames[f]
	}
	return fmt.Sprintf("form(%d)", uint8(f))
}

// State is where an order stands, as its caller sees it.
type State uint8

const (
	// Accepted: the order is durable (the caller holds its voucher); ledger steps are running.
	Accepted State = 1 + iota
	// Processing: the channel has the request; its outcome is awaited.
	Processing
	// Unknown: the channel's outcome is not known (a timeout); it is queried with backoff.
	Unknown
	// Partial: some instruments moved money and the order failed; the completed ones are
	// being reversed.
	Partial
	// Succeeded: final; every posting is durable.
	Succeeded
	// Failed: final; nothing of the order moved (or all of it was reversed).
	Failed
)

var stateNames = [...]string{Accepted: "accepted", Processing: "processing", Unknown: "unknown",
	Partial: "partial", Succeeded: "succeeded", Failed: "failed"}

func (s State) String() string {
	if int(s) < len(stateNames) && stateNames[s] != "" {
		return stateNames[s]
	}
	return fmt.Sprintf("state(%d)", uint8(s))
}

// Final reports whether the state never changes again.
func (s State) Final() bool { return s == Succeeded || s == Failed }

// Stage is the order's progress through its steps; it decides what Resume does after a
// restart.
type Stage uint8

const (
	// StageHold: the first ledger transfers (holds, or the whole of a transfer) are made.
	StageHold Stage = 1 + iota
	// StageAwait: the channel request was (or may have been) sent; the outcome is awaited.
	StageAwait
	// StageSettle: the outcome is decided; its postings (post or void the holds, book the
	// channel's money) are made.
	StageSettle
	// StageDone: nothing more to do for the order itself (its exceptions may still move).
	StageDone
)

var stageNames = [...]string{StageHold: "hold", StageAwait: "await", StageSettle: "settle", StageDone: "done"}

func (s Stage) String() string {
	if int(s) < len(stageNames) && stageNames[s] != "" {
		return stageNames[s]
	}
	return fmt.Sprintf("stage(%d)", uint8(s))
}

// Outcome is what the channel decided, once it is known.
type Outcome uint8

const (
	OutcomeNone Outcome = iota
	OutcomeSucceeded
	OutcomeFailed
	// OutcomeMismatch: the channel collected an amount other than the order's.
	OutcomeMismatch
)

var outcomeNames = [...]string{OutcomeNone: "none", OutcomeSucceeded: "succeeded", OutcomeFailed: "failed",
	OutcomeMismatch: "mismatch"}

func (o Outcome) String() string {
	if int(o) < len(outcomeNames) {
		return outcomeNames[o]
	}
	return fmt.Sprintf("outcome(%d)", uint8(o))
}

// Kind is a payment instrument.
type Kind uint8

const (
	// Coupon: a coupon liability account pays (internal).
	Coupon Kind = 1 + iota
	// Balance: the user's balance pays (internal).
	Balance
	// Card: the channel collects from the user's external instrument (external, last).
	Card
)

var kindNames = [...]string{Coupon: "coupon", Balance: "balance", Card: "card"}

func (k Kind) String() string {
	if int(k) < len(kindNames) && kindNames[k] != "" {
		return kindNames[k]
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// Instrument is one way a combined payment (or a refund's part) moves money.
type Instrument struct {
	Kind    Kind
	Amount  uint64
	Account uint64 // the ledger account it draws on (coupon: the coupon account; balance: the payer)
	// Refunded is, on a payment, how much of this instrument refunds have taken.
	Refunded uint64
}

// Order is a payment order. The fields up to Instruments are the caller's request and never
// change; the rest is its progress.
type Order struct {
	ID             uint64
	Key            string // the caller's idempotency key
	BizID          string
	Form           Form
	Ledger         uint32
	Amount         uint64
	From, To       uint64 // ledger accounts: who pays, who is paid (0 where the form has none)
	Channel        string
	ChannelAccount string // the external instrument, opaque
	Original       uint64 // Refund: the payment order it refunds
	Instruments    []Instrument
	OriginalTxn    string // Refund: the channel's transaction of the payment it refunds

	State    State
	Stage    Stage
	Outcome  Outcome
	Result   Result
	Ledgered ledger.TransferResult // the ledger's reason when Result is LedgerRefused and the like
	Done     uint64                // bit s: the transfer of step s is durable
	Refunded uint64                // on a payment: refunds reserved or made
	Txn      string                // the channel's transaction that decided the order
	TxnAt    uint64                // when the order recorded Txn (its statement day)
	Paid     uint64                // what the channel moved for the order
	SentAt   uint64                // when the channel request was (or may have been) sent
	Sends    uint32                // how many times it was sent (a payment may be sent again)
	Queries  uint32
	Next     uint64 // when to query the channel next (StageAwait)
	Flagged  bool   // a duplicate payment or another anomaly was seen on the order
	Dropped  uint32 // anomalies that held no money, not recorded: the order had no room
	Created  uint64
	Updated  uint64
	Version  uint32 // bumped by every change; the host persists the order when it moved

	Exceptions []Exception

	inflight uint64 // steps submitted to the ledger and not answered; not persisted
	// quiet is when the last sending of the request ended (its outcome came back, or the
	// host restarted): from then on no sending of it can still be on its way to the channel.
	// 0 while one may be. Not persisted: a restart sets it.
	quiet uint64
}

// OrderNo is the number of the order's request at the channel.
func OrderNo(id uint64) string { return "P" + strconv.FormatUint(id, 10) }

// ExceptionNo is the number of attempt n (from 1) of the channel request that refunds
// exception k of order id. Each attempt has a number of its own: the channel deduplicates by
// number, and an attempt that failed must not answer for the next one.
func ExceptionNo(id uint64, k int, n uint32) string {
	return OrderNo(id) + "-x" + strconv.Itoa(k) + "-" + strconv.FormatUint(uint64(n), 10)
}

// ParseOrderNo is the inverse of OrderNo and ExceptionNo: the order, and the exception (-1
// for the order's own request).
func ParseOrderNo(s string) (id uint64, exception int, err error) {
	rest, ok := strings.CutPrefix(s, "P")
	if !ok {
		return 0, 0, fmt.Errorf("payment: order number %q does not start with P", s)
	}
	exception = -1
	if main, x, found := strings.Cut(rest, "-x"); found {
		ks, ns, _ := strings.Cut(x, "-")
		k, errK := strconv.Atoi(ks)
		n, errN := strconv.ParseUint(ns, 10, 32)
		if errK != nil || k < 0 || k >= ExceptionsMax || strconv.Itoa(k) != ks || errN != nil || n == 0 ||
			strconv.FormatUint(n, 10) != ns {
			return 0, 0, fmt.Errorf("payment: order number %q: bad exception number", s)
		}
		rest, exception = main, k
	}
	id, err = strconv.ParseUint(rest, 10, 64)
	if err != nil || id == 0 || id > OrderIDMax || strconv.FormatUint(id, 10) != rest {
		return 0, 0, fmt.Errorf("payment: order number %q: bad order id", s)
	}
	return id, exception, nil
}

// Steps of an order's transfers. Step s of order id is transfer TransferID(id, s).
const (
	stepHold       = 1  // + instrument index: holds (or a transfer's one posting)
	stepPost       = 5  // + instrument index: post the hold
	stepVoid       = 9  // + instrument index: void the hold
	stepMain       = 13 // the channel's money booked (recharge, pay_channel, withdraw_paid)
	stepExceptions = 16 // + 2k: exception k booked to suspense; + 2k + 1: out of suspense
	stepsMax       = stepExceptions + 2*ExceptionsMax
)

// transferIDBit marks the ids of transfers the payment layer makes.
const transferIDBit = 1 << 63

// TransferID is the id of the ledger transfer of step s of order id. The ledger API refuses
// transfer ids (and pending ids) with the top bit set: they are the payment layer's.
func TransferID(id uint64, step int) uint64 {
	if id == 0 || id > OrderIDMax || step <= 0 || step >= stepsMax {
		panic(fmt.Sprintf("payment: INVARIANT: transfer of order %d step %d out of range", id, step))
	}
	return transferIDBit | id<<6 | uint64(step)
}

// TransferIDs are the ids of every ledger transfer order id may book (one a step).
func TransferIDs(id uint64) []uint64 {
	out := make([]uint64, 0, stepsMax-1)
	for step := 1; step < stepsMax; step++ {
		out = append(out, TransferID(id, step))
	}
	return out
}

// StepOf is the inverse of TransferID.
func StepOf(transferID uint64) (id uint64, step int, ok bool) {
	if transferID&transferIDBit == 0 {
		return 0, 0, false
	}
	id, step = transferID&^transferIDBit>>6, int(transferID&63)
	return id, step, id != 0 && id <= OrderIDMax && step > 0 && step < stepsMax
}

// ExceptionKind is what went wrong.
type ExceptionKind uint8

const (
	// DuplicatePayment: the channel collected a second time for an order already paid or
	// closed. Booked to suspense and refunded by the original route automatically.
	DuplicatePayment ExceptionKind = 1 + iota
	// AmountMismatch: the channel collected an amount other than the order's. Booked to
	// suspense; an operator refunds it or closes the record.
	AmountMismatch
	// StatusConflict: the channel reported a failure for an order it had reported paid (or
	// the reverse). Nothing is booked; an operator reviews it.
	StatusConflict
	// SettleRefused: the ledger refused a posting of a decided outcome (an account closed
	// meanwhile). An operator reviews it.
	SettleRefused
)

var exceptionNames = [...]string{DuplicatePayment: "duplicate_payment", AmountMismatch: "amount_mismatch",
	StatusConflict: "status_conflict", SettleRefused: "settle_refused"}

func (k ExceptionKind) String() string {
	if int(k) < len(exceptionNames) && exceptionNames[k] != "" {
		return exceptionNames[k]
	}
	return fmt.Sprintf("exception(%d)", uint8(k))
}

// ExceptionStep is an exception record's progress.
type ExceptionStep uint8

const (
	// ExcBooking: the money is being booked to suspense.
	ExcBooking ExceptionStep = 1 + iota
	// ExcOpen: awaiting an operator (or, for a duplicate, the automatic refund).
	ExcOpen
	// ExcRefunding: the channel was (or may have been) asked to refund the money.
	ExcRefunding
	// ExcUnbooking: the channel refunded; the money leaves suspense.
	ExcUnbooking
	// ExcResolved: final.
	ExcResolved
)

var excStepNames = [...]string{ExcBooking: "booking", ExcOpen: "open", ExcRefunding: "refunding",
	ExcUnbooking: "unbooking", ExcResolved: "resolved"}

func (s ExceptionStep) String() string {
	if int(s) < len(excStepNames) && excStepNames[s] != "" {
		return excStepNames[s]
	}
	return fmt.Sprintf("step(%d)", uint8(s))
}

// Exception is an anomaly on an order: a record an operator can list and resolve.
type Exception struct {
	Kind    ExceptionKind
	Step    ExceptionStep
	Txn     string // the channel's transaction it is about
	Amount  uint64 // the money it is about (booked to suspense when it is money)
	Note    string // what happened last, or the operator's resolution
	Attempt uint32 // refunds asked of the channel so far (see ExceptionNo)
	Refund  string // the channel's transaction that refunded it, once it did
	// RefundAt is when the record took Refund (its statement day).
	RefundAt uint64
	SentAt   uint64
	Queries  uint32
	Next     uint64
	Created  uint64
	Updated  uint64

	quiet uint64 // as Order.quiet, for the refund's current attempt
}

// Booked reports whether the exception holds money in suspense.
func (e *Exception) Booked() bool {
	return (e.Kind == DuplicatePayment || e.Kind == AmountMismatch) && e.Amount > 0
}

// Clone is a deep copy of o (an empty slice of it copies as nil).
func (o *Order) Clone() *Order {
	c := *o
	c.Instruments = append([]Instrument(nil), o.Instruments...)
	c.Exceptions = append([]Exception(nil), o.Exceptions...)
	return &c
}
