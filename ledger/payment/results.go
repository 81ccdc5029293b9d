package payment

import (
	"fmt"

	"github.com/ledgercore/ledger/ledger"
)

// Result is the named outcome of a request, or why an order failed. The numbers are those of
// the wire contract (ledger.v1.PaymentResult).
type Result uint8

const (
	ResultOK Result = 1 + iota
	// ResultExists: a request with this idempotency key was accepted before; the answer is
	// that order as it stands.
	ResultExists
	// ResultKeyReused: a request with this key, but different fields, was accepted before.
	ResultKeyReused
	ResultKeyRequired
	ResultKeyTooLong
	ResultBizIDTooLong
	ResultFormUnknown
	ResultLedgerMustNotBeZero
	ResultAmountMustNotBeZero
	ResultAccountRequired
	ResultAccountsMustBeDifferent
	ResultChannelRequired
	ResultChannelUnknown
	ResultChannelAccountTooLong
	ResultInstrumentsRequired
	ResultTooManyInstruments
	ResultInstrumentAmountMustNotBeZero
	ResultInstrumentsMustAddUp
	ResultCardMustBeLast
	ResultInstrumentUnknown
	ResultOriginalRequired
	ResultOriginalNotFound
	ResultOriginalNotRefundable
	ResultRefundExceedsCaptured
	ResultAccountNotFound
	// ResultAccountWrongSubject: the account's code is not the subject the transaction code
	// posts to (a merchant account where a user's balance is wanted).
	ResultAccountWrongSubject
	ResultLedgerMismatch
	ResultInsufficientFunds
	ResultAccountClosed
	// ResultLedgerRefused: the ledger refused a posting for another reason (Order.Ledgered).
	ResultLedgerRefused
	// ResultChannelUnavailable: the channel was not called (circuit open, degraded, busy).
	ResultChannelUnavailable
	// ResultChannelDeclined: the channel answered that it failed.
	ResultChannelDeclined
	// ResultChannelNotFound: the channel never received the request (it said so for longer
	// than the settle window).
	ResultChannelNotFound
	ResultAmountMismatch
	// ResultOverloaded: too many orders in flight; nothing was accepted.
	ResultOverloaded
	ResultOrderNotFound
	ResultExceptionNotFound
	// ResultExceptionNotOpen: the exception is not awaiting an operator (it is refunding or
	// resolved).
	ResultExceptionNotOpen
	// ResultNotRefundable: the exception holds no money to refund.
	ResultNotRefundable
	// ResultSettleRefused: the ledger refused a posting of the decided outcome; an exception
	// record says which.
	ResultSettleRefused
	// ResultNoteTooLong: an operator's note is longer than NoteBytesMax.
	ResultNoteTooLong
	// ResultChannelMismatch: a callback's amount or channel does not match its order.
	ResultChannelMismatch
	// ResultBizIDNotPrintable: the biz id is not printable UTF-8 (it travels to channels,
	// logs and metrics).
	ResultBizIDNotPrintable
	// ResultChannelAccountNotPrintable: the external instrument is not printable UTF-8.
	ResultChannelAccountNotPrintable
	// ResultAccountLimitsCredits: an account the order credits limits its credits, so a
	// posting after the channel moved money could be refused.
	ResultAccountLimitsCredits
	// ResultFieldNotUsed: a field the form does not use is set (instruments outside Pay, an
	// original outside Refund).
	ResultFieldNotUsed
	resultsEnd
)

// NoteBytesMax is the longest operator note on an exception.
const NoteBytesMax = 256

var resultNames = [...]string{ResultOK: "ok", ResultExists: "exists", ResultKeyReused: "key_reused",
	ResultKeyRequired: "key_required", ResultKeyTooLong: "key_too_long", ResultBizIDTooLong: "biz_id_too_long",
	ResultFormUnknown: "form_unknown", ResultLedgerMustNotBeZero: "ledger_must_not_be_zero",
	ResultAmountMustNotBeZero: "amount_must_not_be_zero", ResultAccountRequired: "account_required",
	ResultAccountsMustBeDifferent: "accounts_must_be_different", ResultChannelRequired: "channel_required",
	ResultChannelUnknown: "channel_unknown", ResultChannelAccountTooLong: "channel_account_too_long",
	ResultInstrumentsRequired: "instruments_required", ResultTooManyInstruments: "too_many_instruments",
	ResultInstrumentAmountMustNotBeZero: "instrument_amount_must_not_be_zero",
	ResultInstrumentsMustAddUp:          "instruments_must_add_up", ResultCardMustBeLast: "card_must_be_last",
	ResultInstrumentUnknown: "instrument_unknown", ResultOriginalRequired: "original_required",
	ResultOriginalNotFound: "original_not_found", ResultOriginalNotRefundable: "original_not_refundable",
	ResultRefundExceedsCaptured: "refund_exceeds_captured", ResultAccountNotFound: "account_not_found",
	ResultAccountWrongSubject: "account_wrong_subject", ResultLedgerMismatch: "ledger_mismatch",
	ResultInsufficientFunds: "insufficient_funds", ResultAccountClosed: "account_closed",
	ResultLedgerRefused: "ledger_refused", ResultChannelUnavailable: "channel_unavailable",
	ResultChannelDeclined: "channel_declined", ResultChannelNotFound: "channel_not_found",
	ResultAmountMismatch: "amount_mismatch", ResultOverloaded: "overloaded", ResultOrderNotFound: "order_not_found",
	ResultExceptionNotFound: "exception_not_found", ResultExceptionNotOpen: "exception_not_open",
	ResultNotRefundable: "not_refundable", ResultSettleRefused: "settle_refused",
	ResultNoteTooLong: "note_too_long", ResultChannelMismatch: "channel_mismatch",
	ResultBizIDNotPrintable: "biz_id_not_printable", ResultChannelAccountNotPrintable: "channel_account_not_printable",
	ResultAccountLimitsCredits: "account_limits_credits", ResultFieldNotUsed: "field_not_used"}

func (r Result) String() string {
	if r == 0 {
		return "none"
	}
	if int(r) < len(resultNames) && resultNames[r] != "" {
		return resultNames[r]
	}
	return fmt.Sprintf("result(%d)", uint8(r))
}

// Results lists every result, for the wire contract's test.
func Results() []Result {
	out := make([]Result, 0, resultsEnd-1)
	for r := ResultOK; r < resultsEnd; r++ {
		out = append(out, r)
	}
	return out
}

// Retryable reports whether a ledger result is transient: the same transfer sent again later
// may succeed, so the host sends it again and does not tell the order.
func Retryable(r ledger.TransferResult) bool {
	switch r {
	case ledger.ResultOverloaded, ledger.ResultIDInFlight, ledger.ResultPendingTransferInFlight:
		return true
	}
	return false
}

// done reports whether a ledger result means the transfer is durable as sent: made now, or
// made before (a replay).
func done(r ledger.TransferResult) bool { return r == ledger.ResultOK || r == ledger.ResultExists }

// fromLedger names why the ledger refused a transfer of an order.
func fromLedger(r ledger.TransferResult) Result {
	switch r {
	case ledger.ResultExceedsCredits, ledger.ResultExceedsDebits:
		return ResultInsufficientFunds
	case ledger.ResultDebitAccountNotFound, ledger.ResultCreditAccountNotFound:
		return ResultAccountNotFound
	case ledger.ResultDebitAccountClosed, ledger.ResultCreditAccountClosed:
		return ResultAccountClosed
	case ledger.ResultAccountsMustHaveTheSameLedger, ledger.ResultTransferMustHaveTheSameLedgerAsAccounts:
		return ResultLedgerMismatch
	}
	return ResultLedgerRefused
}
