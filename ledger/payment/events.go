package payment

import (
	"fmt"
	"math/bits"
	"slices"

	"github.com/ledgercore/ledger/channel"
	"github.com/ledgercore/ledger/ledger"
)

// Begin is what a new order does once it is durable: make its first postings, or send its
// channel request when it has none.
func (o *Order) Begin(s *Setup, now uint64) Effects {
	if o.Stage == StageAwait {
		return o.send(s)
	}
	return o.Resume(s, now)
}

// Resume is what an order does when its host (re)starts with it, or retries it: every step
// that is due and not durable again (the ledger answers EXISTS for what was made), and a
// query for every channel request whose outcome is awaited; never a request sent again.
func (o *Order) Resume(s *Setup, now uint64) Effects {
	var e Effects
	switch o.Stage {
	case StageHold:
		e.Transfers = o.due(s, o.holds())
	case StageAwait:
		e.Calls = append(e.Calls, Call{Request: o.request(s), Query: true})
		o.Next, o.quiet = now+backoff(o.Queries), now
	case StageSettle:
		e.Transfers = o.due(s, o.settleSteps())
	}
	for k := range o.Exceptions {
		e.add(o.resumeException(s, k, now))
	}
	return e
}

// exception records an anomaly and makes its suspense posting when it holds money.
func (o *Order) exception(s *Setup, x Exception, now uint64) Effects {
	k, ok := o.openException(x, now)
	if !ok {
		return Effects{}
	}
	return Effects{Transfers: o.dueException(s, k)}
}

// due is the transfers of steps not durable and not already submitted; they are marked
// submitted.
func (o *Order) due(s *Setup, steps uint64) []ledger.Transfer {
	steps &^= o.Done | o.inflight
	o.inflight |= steps
	if steps == 0 {
		return nil
	}
	out := make([]ledger.Transfer, 0, bits.OnesCount64(steps))
	for steps != 0 {
		step := bits.TrailingZeros64(steps)
		steps &^= 1 << step
		out = append(out, o.transfer(s, step))
	}
	return out
}

// transfer is the ledger transfer of a step of the order.
func (o *Order) transfer(s *Setup, step int) ledger.Transfer {
	switch {
	case step >= stepHold && step < stepPost:
		code, from, to, hold := o.holdPosting(s, step-stepHold)
		t := s.posting(o, code, step, from, to, o.Instruments[step-stepHold].Amount)
		if hold {
			t.Flags = ledger.TransferPending
		}
		return t
	case step >= stepPost && step < stepMain:
		i, flag := step-stepPost, ledger.TransferPostPending
		if step >= stepVoid {
			i, flag = step-stepVoid, ledger.TransferVoidPending
		}
		hold := o.transfer(s, stepHold+i)
		t := hold
		t.ID, t.Flags, t.PendingID = TransferID(o.ID, step), flag, hold.ID
		return t
	case step == stepMain:
		return s.posting(o, o.mainCode(s), step, o.From, o.To, o.card().Amount)
	case step >= stepExceptions && step < stepsMax:
		k := (step - stepExceptions) / 2
		code := s.names.SuspenseIn
		if (step-stepExceptions)%2 == 1 {
			code = s.names.SuspenseOut
		}
		return s.posting(o, code, step, 0, 0, o.Exceptions[k].Amount)
	}
	panic(fmt.Sprintf("payment: INVARIANT: order %d has no step %d", o.ID, step))
}

// settleSteps are the postings of the decided outcome: post every hold and book the channel's
// money, or void every hold.
func (o *Order) settleSteps() uint64 {
	holds := o.holds()
	switch o.Outcome {
	case OutcomeSucceeded:
		steps := holds << (stepPost - stepHold)
		if o.Form == Transfer {
			return 0
		}
		if o.booksMain() {
			steps |= 1 << stepMain
		}
		return steps
	case OutcomeFailed, OutcomeMismatch:
		return (holds & o.Done) << (stepVoid - stepHold)
	}
	return 0
}

// send sends the order's channel request (again, for a payment the channel said it never
// received).
func (o *Order) send(s *Setup) Effects {
	o.Sends++
	o.Version++
	o.quiet = 0
	return Effects{Calls: []Call{{Request: o.request(s)}}}
}

// request is the order's channel request.
func (o *Order) request(s *Setup) channel.Request {
	r := channel.Request{Op: o.op(), OrderNo: OrderNo(o.ID), Amount: o.card().Amount, Account: o.ChannelAccount,
		BizID: o.BizID, Currency: s.Currency(o.Ledger)}
	if o.Form == Refund {
		r.Original, r.OriginalTxn = OrderNo(o.Original), o.OriginalTxn
	}
	return r
}

// OnTransfers takes the ledger's final answers to transfers the order submitted (never a
// Retryable one: the host sends those again).
func (o *Order) OnTransfers(s *Setup, ts []ledger.Transfer, rs []ledger.TransferResult, now uint64) Effects {
	var failed ledger.TransferResult
	failedSteps := uint64(0)
	for i, t := range ts {
		id, step, ok := StepOf(t.ID)
		if !ok || id != o.ID {
			panic(fmt.Sprintf("payment: INVARIANT: order %d answered for transfer %d", o.ID, t.ID))
		}
		o.inflight &^= 1 << step
		if done(rs[i]) {
			if o.Done&(1<<step) == 0 {
				o.Done |= 1 << step
				o.touch(now)
			}
			continue
		}
		if Retryable(rs[i]) {
			panic(fmt.Sprintf("payment: INVARIANT: order %d was handed a transient result %v", o.ID, rs[i]))
		}
		failedSteps |= 1 << step
		if failed == 0 {
			failed = rs[i]
		}
	}
	var e Effects
	for k := range o.Exceptions {
		e.add(o.exceptionSteps(s, k, failedSteps, now))
	}
	switch o.Stage {
	case StageHold:
		e.add(o.afterHolds(s, failedSteps, failed, now))
	case StageSettle:
		e.add(o.afterSettle(s, failedSteps, failed, now))
	case StageDone:
		if o.Outcome != OutcomeSucceeded {
			// Unreachable while holds are decided only once answered; if a hold ever lands
			// after its order failed, it is voided rather than left holding.
			e.Transfers = append(e.Transfers, o.due(s, o.settleSteps())...)
		}
	}
	return e
}

func (o *Order) afterHolds(s *Setup, failedSteps uint64, failed ledger.TransferResult, now uint64) Effects {
	holds := o.holds()
	if failedSteps&holds != 0 && o.Result == 0 {
		o.Result, o.Ledgered = fromLedger(failed), failed
		o.touch(now)
	}
	if o.inflight&holds != 0 {
		return Effects{} // decide only once every hold is answered: one may still be made
	}
	if o.Result != 0 {
		return o.decide(s, OutcomeFailed, now)
	}
	if holds&^o.Done != 0 {
		return Effects{}
	}
	if o.Form == Transfer {
		o.Outcome = OutcomeSucceeded
		return o.finish(now)
	}
	if o.card() == nil {
		return o.decide(s, OutcomeSucceeded, now)
	}
	o.Stage, o.SentAt, o.Next = StageAwait, now, now+CallbackWait
	o.set(Processing, now)
	return o.send(s)
}

// decide fixes the outcome and makes its postings.
func (o *Order) decide(s *Setup, outcome Outcome, now uint64) Effects {
	o.Outcome, o.Stage = outcome, StageSettle
	o.touch(now)
	if outcome != OutcomeSucceeded && o.holds()&o.Done != 0 && o.Form == Pay {
		o.set(Partial, now) // some instruments paid and are being reversed
	}
	if o.settleSteps() == 0 {
		return o.finish(now)
	}
	return Effects{Transfers: o.due(s, o.settleSteps())}
}

func (o *Order) afterSettle(s *Setup, failedSteps uint64, failed ledger.TransferResult, now uint64) Effects {
	steps := o.settleSteps()
	if failedSteps&steps != 0 {
		// The outcome stands (money may have moved at the channel): the order stays where it
		// is, holding what it held, and an operator looks. Nothing is released; a restart
		// tries the posting again. (The checks at New make this unreachable for the forms'
		// own accounts: account flags never change.)
		o.Ledgered = failed
		if !slices.ContainsFunc(o.Exceptions, func(x Exception) bool { return x.Kind == SettleRefused }) {
			return o.exception(s, Exception{Kind: SettleRefused, Txn: o.Txn,
				Note: fmt.Sprintf("the ledger refused a posting of the %v outcome: %v", o.Outcome, failed)}, now)
		}
		return Effects{}
	}
	if steps&^o.Done != 0 {
		// A hold made after the outcome was decided is voided too.
		return Effects{Transfers: o.due(s, steps)}
	}
	for k := range o.Exceptions {
		if x := &o.Exceptions[k]; x.Kind == SettleRefused && x.Step == ExcOpen {
			x.Step, x.Updated = ExcResolved, now
			x.Note += "; posted when tried again"
		}
	}
	return o.finish(now)
}

// finish ends the order in the state its outcome gives, once its postings are durable.
func (o *Order) finish(now uint64) Effects {
	o.Stage = StageDone
	if o.Outcome == OutcomeSucceeded {
		o.Result = ResultOK
		o.set(Succeeded, now)
		return Effects{}
	}
	if o.Result == ResultOK || o.Result == 0 {
		panic(fmt.Sprintf("payment: INVARIANT: order %d fails without a reason", o.ID))
	}
	o.set(Failed, now)
	return Effects{Release: o.Form == Refund}
}

// OnChannel takes what became of a call the order made (or its exception k >= 0 made).
func (o *Order) OnChannel(s *Setup, c Call, a Answer, r channel.Result, now uint64) Effects {
	_, k, err := ParseOrderNo(c.Request.OrderNo)
	if err != nil {
		panic(fmt.Sprintf("payment: INVARIANT: order %d answered for %q", o.ID, c.Request.OrderNo))
	}
	if k >= 0 {
		return o.exceptionAnswer(s, k, c, a, r, now)
	}
	if o.Stage != StageAwait {
		return Effects{} // a late answer to a decided order: callbacks bring anomalies, not answers
	}
	if !c.Query {
		o.quiet = now
	}
	switch a {
	case Rejected:
		if c.Query || o.Sends > 1 {
			// Only this call was not sent: an earlier sending of the request may have reached
			// the channel, so the order goes on asking.
			o.Queries++
			o.Next = now + backoff(o.Queries)
			return Effects{}
		}
		o.Result = ResultChannelUnavailable
		return o.decide(s, OutcomeFailed, now)
	case Unanswered:
		o.Queries++
		o.Next = now + backoff(o.Queries)
		o.set(Unknown, now)
		return Effects{}
	}
	switch r.Status {
	case channel.Succeeded, channel.Failed:
		if r.Status == channel.Succeeded && (r.Txn == "" || r.Amount == 0) {
			// Not an answer a channel may give: ask again later.
			o.Queries++
			o.Next = now + backoff(o.Queries)
			return Effects{}
		}
		return o.outcome(s, r.Status, r.Txn, r.Amount, r.Reason, now)
	case channel.NotFound:
		o.Queries++
		o.Next = now + backoff(o.Queries)
		if o.op() == channel.Pay {
			// Nothing leaves the platform on a payment, and the channel deduplicates it.
			return o.send(s)
		}
		if o.quiet != 0 && now-o.quiet >= NotFoundFinal {
			o.Result = ResultChannelNotFound
			return o.decide(s, OutcomeFailed, now)
		}
		return Effects{}
	default: // Processing
		if c.Query {
			o.Queries++
			o.Next = now + backoff(o.Queries)
		} else {
			o.Next = now + CallbackWait // the channel took it: its callback is the common path
		}
		o.set(Processing, now)
		return Effects{}
	}
}

// outcome applies the channel's final word on the order's request.
func (o *Order) outcome(s *Setup, status channel.Status, txn string, amount uint64, reason string, now uint64) Effects {
	o.Txn, o.Paid, o.TxnAt = txn, amount, now
	if status == channel.Failed {
		o.Result = ResultChannelDeclined
		return o.decide(s, OutcomeFailed, now)
	}
	want := o.card().Amount
	if amount == want {
		return o.decide(s, OutcomeSucceeded, now)
	}
	if o.op() != channel.Pay {
		// Money left the platform in another amount than held: post what was held and ask an
		// operator to look (nothing of the platform's is booked to suspense).
		o.exception(s, Exception{Kind: StatusConflict, Txn: txn, Amount: amount,
			Note: fmt.Sprintf("the channel moved %d for a request of %d", amount, want)}, now)
		return o.decide(s, OutcomeSucceeded, now)
	}
	o.Result = ResultAmountMismatch
	e := o.exception(s, Exception{Kind: AmountMismatch, Txn: txn, Amount: amount,
		Note: fmt.Sprintf("the channel collected %d for an order of %d", amount, want)}, now)
	e.add(o.decide(s, OutcomeMismatch, now))
	return e
}

// OnNotice takes a callback whose signature the host verified, for the order or one of its
// exception refunds. It answers ResultChannelMismatch, changing nothing, when the notice
// cannot be about the order; a duplicate of a notice already applied changes nothing.
func (o *Order) OnNotice(s *Setup, n *channel.Notice, now uint64) (Effects, Result) {
	_, k, err := ParseOrderNo(n.OrderNo)
	if err != nil || n.Status != channel.Succeeded && n.Status != channel.Failed || n.Txn == "" ||
		n.Status == channel.Succeeded && n.Amount == 0 {
		return Effects{}, ResultChannelMismatch
	}
	if k >= 0 {
		if k >= len(o.Exceptions) || n.Op != channel.Refund || o.Exceptions[k].Attempt == 0 {
			return Effects{}, ResultChannelMismatch
		}
		c := Call{Request: o.exceptionRequest(s, k)}
		if n.OrderNo != c.Request.OrderNo {
			// An earlier attempt: it failed (or was never received), so only a success is news.
			if n.Status != channel.Succeeded || o.hasTxn(n.Txn) {
				return Effects{}, ResultOK
			}
			return o.exception(s, Exception{Kind: StatusConflict, Txn: n.Txn, Amount: n.Amount,
				Note: fmt.Sprintf("the channel refunded %d under %s, an attempt the ledger took for failed", n.Amount, n.OrderNo)},
				now), ResultOK
		}
		return o.exceptionNotice(s, k, c, n, now)
	}
	if n.Op != o.op() || o.card() == nil || o.Stage == StageHold {
		return Effects{}, ResultChannelMismatch
	}
	if o.Stage == StageAwait {
		return o.outcome(s, n.Status, n.Txn, n.Amount, "", now), ResultOK
	}
	paid := o.Outcome == OutcomeSucceeded || o.Outcome == OutcomeMismatch
	if o.Txn != "" && n.Txn == o.Txn && (n.Status == channel.Succeeded) == paid {
		return Effects{}, ResultOK // the same notice again
	}
	if o.hasTxn(n.Txn) {
		return Effects{}, ResultOK // an anomaly already recorded
	}
	switch {
	case n.Status == channel.Succeeded && o.op() == channel.Pay:
		if !o.room(true) {
			// Money the books must hold, and no record to hold it: not applied, so the
			// channel calls back again (the host answers 503, logs and counts it).
			return Effects{}, ResultOverloaded
		}
		o.Flagged = true
		return o.exception(s, Exception{Kind: DuplicatePayment, Txn: n.Txn, Amount: n.Amount,
			Note: fmt.Sprintf("the channel collected again for a %v order", o.State)}, now), ResultOK
	case n.Status == channel.Failed && !paid:
		return Effects{}, ResultOK // a failure of a failed order changes nothing
	default:
		o.Flagged = true
		return o.exception(s, Exception{Kind: StatusConflict, Txn: n.Txn, Amount: n.Amount,
			Note: fmt.Sprintf("the channel reported %v (txn %s) for an order it had decided %v (txn %s)",
				n.Status, n.Txn, o.Outcome, o.Txn)}, now), ResultOK
	}
}

// Tick is what is due at now: queries of channel requests whose outcome is awaited.
func (o *Order) Tick(s *Setup, now uint64) Effects {
	var e Effects
	if o.Stage == StageAwait && o.Next <= now {
		e.Calls = append(e.Calls, Call{Request: o.request(s), Query: true})
		o.Next = now + backoff(o.Queries)
	}
	for k := range o.Exceptions {
		x := &o.Exceptions[k]
		if x.Step == ExcRefunding && x.Next <= now {
			e.Calls = append(e.Calls, Call{Request: o.exceptionRequest(s, k), Query: true})
			x.Next = now + backoff(x.Queries)
		}
	}
	return e
}

// Active reports whether the order still waits for something: a posting, the channel, an
// exception's refund. An order that is not active needs nothing but an operator.
func (o *Order) Active() bool {
	if o.Stage != StageDone {
		return true
	}
	for k := range o.Exceptions {
		if s := o.Exceptions[k].Step; s == ExcBooking || s == ExcRefunding || s == ExcUnbooking {
			return true
		}
	}
	return false
}

// hasTxn reports whether an exception of the order is about channel transaction txn.
func (o *Order) hasTxn(txn string) bool {
	for i := range o.Exceptions {
		if o.Exceptions[i].Txn == txn && txn != "" {
			return true
		}
	}
	return false
}
