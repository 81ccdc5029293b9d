// Package channel speaks to external payment channels (banks, card acquirers, wallets): the
// requests the ledger sends them, the answers and callbacks they send back, and the HTTP
// adapter for the channel protocol that cmd/fakechannel serves.
//
// Every request carries the ledger's own order number (OrderNo), unique per request; a channel
// treats a second request with the same OrderNo as the same request and never executes it
// twice. A channel answers a request at once (often Processing) and reports the final outcome
// later through a signed callback, or when queried.
package channel

import (
	"context"
	"errors"
	"fmt"
)

// Op is what a request asks the channel to do.
type Op uint8

const (
	// Pay collects money from the payer's external instrument (card, bank account) into the
	// platform's account at the channel.
	Pay Op = 1 + iota
	// Payout pays money out of the platform's account at the channel to the payee's external
	// instrument (a withdrawal).
	Payout
	// Refund returns (part of) an earlier Pay, named by Original, to the instrument it came
	// from.
	Refund
)

func (o Op) String() string {
	switch o {
	case Pay:
		return "pay"
	case Payout:
		return "payout"
	case Refund:
		return "refund"
	}
	return fmt.Sprintf("op(%d)", uint8(o))
}

// ParseOp is the inverse of Op.String.
func ParseOp(s string) (Op, error) {
	for _, o := range []Op{Pay, Payout, Refund} {
		if o.String() == s {
			return o, nil
		}
	}
	return 0, fmt.Errorf("channel: unknown op %q", s)
}

// Status is where a request stands at the channel.
type Status uint8

const (
	// Processing: the channel took the request; the outcome comes later.
	Processing Status = 1 + iota
	// Succeeded: money moved, Result.Amount of it.
	Succeeded
	// Failed: nothing moved and nothing will for this OrderNo.
	Failed
	// NotFound: the channel has no request with this OrderNo (only from Query). A request
	// that was never received is NotFound; one still in the channel's queue may be too, so
	// NotFound right after a send that timed out does not prove it never arrives.
	NotFound
)

func (s Status) String() string {
	switch s {
	case Processing:
		return "processing"
	case Succeeded:
		return "succeeded"
	case Failed:
		return "failed"
	case NotFound:
		return "not_found"
	}
	return fmt.Sprintf("status(%d)", uint8(s))
}

// ParseStatus is the inverse of Status.String.
func ParseStatus(s string) (Status, error) {
	for _, x := range []Status{Processing, Succeeded, Failed, NotFound} {
		if x.String() == s {
			return x, nil
		}
	}
	return 0, fmt.Errorf("channel: unknown status %q", s)
}

// Request is one request to a channel.
type Request struct {
	Op       Op
	OrderNo  string // the ledger's number for this request; the channel's idempotency key
	Original string // Refund: the OrderNo of the Pay it refunds
	// OriginalTxn: Refund: the channel's transaction of the Pay it refunds (a Pay collected
	// twice has two).
	OriginalTxn string
	Amount      uint64 // minor units
	Currency    string
	Account     string // Pay: the payer's instrument; Payout: the payee's; opaque to the ledger
	BizID       string // the business id that travels through every service
}

// Result is a channel's answer about one request.
type Result struct {
	Status Status
	Txn    string // the channel's own transaction number, once it has one
	Amount uint64 // what the channel moved (Succeeded); may differ from what was asked
	Reason string // why it failed, in the channel's words
}

// Notice is a callback: the channel reporting the outcome of a request. A channel may send
// the same notice more than once, late, and out of order; and, when a payer paid twice, two
// Succeeded notices for one OrderNo with different Txn.
type Notice struct {
	Op      Op
	OrderNo string
	Txn     string
	Status  Status // Succeeded or Failed
	Amount  uint64
	BizID   string
}

// Client sends requests to one channel. Implementations are safe for concurrent use.
//
// An error means the outcome is unknown: the request may or may not have reached the channel
// (a timeout, a broken connection, an answer that could not be read). The caller must not
// send it again as a new request; it asks with Query (sending the same OrderNo again is safe
// only because the channel deduplicates, and a Payout is never sent twice by the ledger).
type Client interface {
	Do(ctx context.Context, r Request) (Result, error)
	Query(ctx context.Context, op Op, orderNo string) (Result, error)
}

// ErrBadNotice is wrapped by every refusal of a callback: bad signature, malformed body,
// unknown fields.
var ErrBadNotice = errors.New("channel: bad notice")
