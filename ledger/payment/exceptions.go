package payment

import (
	"fmt"

	"github.com/ledgercore/ledger/channel"
	"github.com/ledgercore/ledger/ledger"
)

// openException records an anomaly on the order. A record that holds money starts by booking
// it to suspense. Past ExceptionsMax the order is flagged and nothing more is recorded.
func (o *Order) openException(x Exception, now uint64) (k int, recorded bool) {
	o.Flagged = true
	o.touch(now)
	if !o.room(x.Booked()) {
		// A record that holds no money, past its share: dropped, counted on the order (the
		// host logs it). Records that hold money are refused before they get here.
		o.Dropped++
		return 0, false
	}
	x.Created, x.Updated, x.Step = now, now, ExcOpen
	if x.Booked() {
		x.Step = ExcBooking
	}
	o.Exceptions = append(o.Exceptions, x)
	return len(o.Exceptions) - 1, true
}

// room reports whether the order can take another exception record: records that hold money
// may fill every slot; records that hold none, at most half of them.
func (o *Order) room(money bool) bool {
	if len(o.Exceptions) >= ExceptionsMax {
		return false
	}
	if money {
		return true
	}
	n := 0
	for i := range o.Exceptions {
		if !o.Exceptions[i].Booked() {
			n++
		}
	}
	return n < ExceptionsMax/2
}

func bookStep(k int) int   { return stepExceptions + 2*k }
func unbookStep(k int) int { return stepExceptions + 2*k + 1 }

// dueException is the transfer exception k waits for, if it is not durable nor submitted.
func (o *Order) dueException(s *Setup, k int) []ledger.Transfer {
	switch o.Exceptions[k].Step {
	case ExcBooking:
		return o.due(s, 1<<bookStep(k))
	case ExcUnbooking:
		return o.due(s, 1<<unbookStep(k))
	}
	return nil
}

// resumeException is what exception k does after a restart: its posting again, or a query
// for its refund.
func (o *Order) resumeException(s *Setup, k int, now uint64) Effects {
	x := &o.Exceptions[k]
	if x.Step == ExcRefunding {
		x.Next, x.quiet = now+backoff(x.Queries), now
		return Effects{Calls: []Call{{Request: o.exceptionRequest(s, k), Query: true}}}
	}
	return Effects{Transfers: o.dueException(s, k)}
}

// exceptionSteps moves exception k on when its posting is durable. A posting to suspense the
// ledger refuses leaves the record where it is, noted, for an operator.
func (o *Order) exceptionSteps(s *Setup, k int, failed uint64, now uint64) Effects {
	x := &o.Exceptions[k]
	var step int
	switch x.Step {
	case ExcBooking:
		step = bookStep(k)
	case ExcUnbooking:
		step = unbookStep(k)
	default:
		return Effects{}
	}
	if failed&(1<<step) != 0 {
		x.Note = fmt.Sprintf("the ledger refused the suspense posting of step %d; retried on restart", step)
		x.Updated = now
		o.touch(now)
		return Effects{}
	}
	if o.Done&(1<<step) == 0 {
		return Effects{}
	}
	x.Updated = now
	o.touch(now)
	if x.Step == ExcUnbooking {
		x.Step = ExcResolved
		return Effects{}
	}
	x.Step = ExcOpen
	if x.Kind == DuplicatePayment {
		return o.refundException(s, k, now)
	}
	return Effects{}
}

// exceptionNotice takes a callback about the current attempt c of exception k's refund. A
// success that comes after the record went back to an operator (the channel had said it
// never got the refund, or refused it) is the refund made after all: the money leaves
// suspense, and a refund again would pay twice.
func (o *Order) exceptionNotice(s *Setup, k int, c Call, n *channel.Notice, now uint64) (Effects, Result) {
	x := &o.Exceptions[k]
	succeeded := n.Status == channel.Succeeded
	switch {
	case x.Step == ExcRefunding:
		return o.exceptionAnswer(s, k, c, Answered, channel.Result{Status: n.Status, Txn: n.Txn, Amount: n.Amount}, now), ResultOK
	case !succeeded || x.Refund == n.Txn:
		return Effects{}, ResultOK // a failure of a refund not awaited, or the same success again
	case x.Step == ExcOpen && n.Amount == x.Amount && x.Refund == "":
		return o.refunded(s, k, n.Txn, now), ResultOK
	case o.hasTxn(n.Txn):
		return Effects{}, ResultOK // the conflict it opens is on record already: a notice again changes nothing
	}
	return o.exception(s, Exception{Kind: StatusConflict, Txn: n.Txn, Amount: n.Amount,
		Note: fmt.Sprintf("the channel refunded %d under %s (txn %s), for a record %v of %d", n.Amount, n.OrderNo, n.Txn,
			x.Step, x.Amount)}, now), ResultOK
}

// refunded moves exception k's money out of suspense: the channel refunded it (txn).
func (o *Order) refunded(s *Setup, k int, txn string, now uint64) Effects {
	x := &o.Exceptions[k]
	x.Step, x.Updated, x.Refund, x.RefundAt = ExcUnbooking, now, txn, now
	x.Note = "refunded by the channel, txn " + txn
	o.touch(now)
	return Effects{Transfers: o.dueException(s, k)}
}

// exceptionAnswer takes what became of exception k's refund request.
func (o *Order) exceptionAnswer(s *Setup, k int, c Call, a Answer, r channel.Result, now uint64) Effects {
	x := &o.Exceptions[k]
	if x.Step != ExcRefunding || c.Request.OrderNo != o.exceptionRequest(s, k).OrderNo {
		return Effects{} // a late answer about an earlier attempt
	}
	if !c.Query {
		x.quiet = now
	}
	settled := func(note string) Effects {
		x.Step, x.Note, x.Updated = ExcOpen, note, now
		o.touch(now)
		return Effects{}
	}
	switch {
	case a == Rejected && !c.Query:
		return settled("the channel was not called (unavailable); refund again or close")
	case a != Answered, r.Status == channel.Processing:
		x.Queries++
		x.Next = now + backoff(x.Queries)
		return Effects{}
	case r.Status == channel.NotFound:
		x.Queries++
		x.Next = now + backoff(x.Queries)
		if x.quiet != 0 && now-x.quiet >= NotFoundFinal {
			return settled("the channel never received the refund; refund again or close")
		}
		return Effects{}
	case r.Status == channel.Failed:
		why := r.Reason
		if why == "" {
			why = "no reason given, txn " + r.Txn
		}
		return settled("the channel refused the refund (" + why + "); refund again or close")
	case r.Amount != x.Amount || r.Txn == "":
		settled(fmt.Sprintf("the channel refunded %d of %d (txn %s); an operator looks", r.Amount, x.Amount, r.Txn))
		return o.exception(s, Exception{Kind: StatusConflict, Txn: r.Txn, Amount: r.Amount,
			Note: fmt.Sprintf("the channel refunded %d for a record of %d", r.Amount, x.Amount)}, now)
	}
	return o.refunded(s, k, r.Txn, now)
}

// exceptionRequest is the channel request that refunds exception k's money.
func (o *Order) exceptionRequest(s *Setup, k int) channel.Request {
	x := &o.Exceptions[k]
	return channel.Request{Op: channel.Refund, OrderNo: ExceptionNo(o.ID, k, x.Attempt), Original: OrderNo(o.ID),
		OriginalTxn: x.Txn, Amount: x.Amount, Account: o.ChannelAccount, BizID: o.BizID,
		Currency: s.Currency(o.Ledger)}
}

// Resolution is what an operator does with an open exception.
type Resolution uint8

const (
	// ResolveRefund sends the money held in suspense back by the original route.
	ResolveRefund Resolution = 1 + iota
	// ResolveClose closes the record with a note; money in suspense stays for finance.
	ResolveClose
	// ResolveReverse books what a statement record found the books hold and the channel does
	// not back through suspense (StatementRecord.Resolve); orders' records have nothing to
	// reverse.
	ResolveReverse
)

// Resolve applies an operator's resolution to exception k, which must be open (ExcOpen).
func (o *Order) Resolve(s *Setup, k int, how Resolution, note string, now uint64) (Effects, Result) {
	switch {
	case k < 0 || k >= len(o.Exceptions):
		return Effects{}, ResultExceptionNotFound
	case len(note) > NoteBytesMax:
		return Effects{}, ResultNoteTooLong
	case o.Exceptions[k].Step != ExcOpen:
		return Effects{}, ResultExceptionNotOpen
	}
	x := &o.Exceptions[k]
	switch how {
	case ResolveRefund:
		if !x.Booked() {
			return Effects{}, ResultNotRefundable
		}
		x.Note = note
		return o.refundException(s, k, now), ResultOK
	case ResolveClose:
		x.Step, x.Note, x.Updated = ExcResolved, note, now
		o.touch(now)
		return Effects{}, ResultOK
	case ResolveReverse:
		return Effects{}, ResultNotRefundable // a statement record's resolution
	}
	return Effects{}, ResultExceptionNotOpen
}

// refundException asks the channel to refund exception k's money: sent once, then queried.
func (o *Order) refundException(s *Setup, k int, now uint64) Effects {
	x := &o.Exceptions[k]
	x.Step, x.SentAt, x.Next, x.Updated = ExcRefunding, now, now+CallbackWait, now
	x.Attempt++
	x.Queries, x.quiet = 0, 0
	o.touch(now)
	return Effects{Calls: []Call{{Request: o.exceptionRequest(s, k)}}}
}
