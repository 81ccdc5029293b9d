package api

import (
	"math"

	"github.com/ledgercore/ledger/ledger"
	"github.com/ledgercore/ledger/ledger/payment"
	ledgerv1 "github.com/ledgercore/ledger/proto/ledger/v1"
)

// The payment layer's enums have the wire's numbers (payment.Form and PaymentForm,
// payment.Kind and InstrumentKind, payment.State and PaymentState, payment.Result and
// PaymentResult, payment.ExceptionKind and ExceptionKind, payment.ExceptionStep and
// ExceptionState, payment.Resolution and Resolution); only the circuit state is shifted by one,
// for the wire's UNSPECIFIED.

// PaymentRequestFromProto translates a wire payment request into the domain's. An enum value
// that does not fit the domain's byte becomes 255, which the domain refuses as unknown, never
// a value that passes. An instrument's refunded (output only) is dropped: the service refuses
// it before.
func PaymentRequestFromProto(r *ledgerv1.PaymentRequest) payment.Request {
	out := payment.Request{Key: r.GetIdempotencyKey(), BizID: r.GetBizId(),
		Form: payment.Form(wireByte(int32(r.GetForm()))), Ledger: r.GetLedger(), Amount: r.GetAmount(),
		From: r.GetFromAccountId(), To: r.GetToAccountId(), Channel: r.GetChannel(),
		ChannelAccount: r.GetChannelAccount(), Original: r.GetOriginalOrderId()}
	if ins := r.GetInstruments(); len(ins) > 0 {
		out.Instruments = make([]payment.Instrument, len(ins))
		for i, in := range ins {
			out.Instruments[i] = payment.Instrument{Kind: payment.Kind(wireByte(int32(in.GetKind()))),
				Amount: in.GetAmount(), Account: in.GetAccountId()}
		}
	}
	return out
}

// PaymentRequestToProto translates a domain payment request to the wire (for clients and
// tests).
func PaymentRequestToProto(r *payment.Request) *ledgerv1.PaymentRequest {
	return &ledgerv1.PaymentRequest{IdempotencyKey: r.Key, BizId: r.BizID, Form: ledgerv1.PaymentForm(r.Form),
		Ledger: r.Ledger, Amount: r.Amount, FromAccountId: r.From, ToAccountId: r.To, Channel: r.Channel,
		ChannelAccount: r.ChannelAccount, OriginalOrderId: r.Original, Instruments: instrumentsToProto(r.Instruments)}
}

func instrumentsToProto(ins []payment.Instrument) []*ledgerv1.Instrument {
	if len(ins) == 0 {
		return nil
	}
	out := make([]*ledgerv1.Instrument, len(ins))
	for i, in := range ins {
		out[i] = &ledgerv1.Instrument{Kind: ledgerv1.InstrumentKind(in.Kind), Amount: in.Amount,
			AccountId: in.Account, Refunded: in.Refunded}
	}
	return out
}

// TransferIDs are the ids of the order's ledger transfers that are durable (Order.Done), in
// ascending step order.
func TransferIDs(o *payment.Order) []uint64 {
	var ids []uint64
	for step := 1; step < 64; step++ {
		if o.Done&(1<<step) != 0 {
			ids = append(ids, payment.TransferID(o.ID, step))
		}
	}
	return ids
}

// ExceptionToProto translates exception k of the order to the wire.
func ExceptionToProto(o *payment.Order, k int) *ledgerv1.PaymentException {
	x := &o.Exceptions[k]
	return &ledgerv1.PaymentException{OrderId: o.ID, Index: uint32(k), Kind: ledgerv1.ExceptionKind(x.Kind),
		State: ledgerv1.ExceptionState(x.Step), Txn: x.Txn, Amount: x.Amount, Note: x.Note, BizId: o.BizID,
		Created: x.Created, Updated: x.Updated}
}

// OrderToProto translates a domain order to the wire. What only the order's host uses (its
// stage, the channel's outcome, query timing, version) stays off the wire.
func OrderToProto(o *payment.Order) *ledgerv1.PaymentOrder {
	out := &ledgerv1.PaymentOrder{Id: o.ID, IdempotencyKey: o.Key, BizId: o.BizID, Form: ledgerv1.PaymentForm(o.Form),
		Ledger: o.Ledger, Amount: o.Amount, FromAccountId: o.From, ToAccountId: o.To, Channel: o.Channel,
		ChannelAccount: o.ChannelAccount, OriginalOrderId: o.Original, Instruments: instrumentsToProto(o.Instruments),
		State: ledgerv1.PaymentState(o.State), Result: ledgerv1.PaymentResult(o.Result),
		LedgerResult: ledgerv1.CreateTransferResult(o.Ledgered), Refunded: o.Refunded, ChannelTxn: o.Txn,
		ChannelAmount: o.Paid, ChannelOrderNo: payment.OrderNo(o.ID), Flagged: o.Flagged, Created: o.Created,
		Updated: o.Updated, TransferIds: TransferIDs(o)}
	if len(o.Exceptions) > 0 {
		out.Exceptions = make([]*ledgerv1.PaymentException, len(o.Exceptions))
		for k := range o.Exceptions {
			out.Exceptions[k] = ExceptionToProto(o, k)
		}
	}
	return out
}

// OrderFromProto translates a wire order into the domain's: the fields the wire carries (for
// clients and tests). Done is rebuilt from transfer_ids; ids that are not the order's
// transfers are dropped.
func OrderFromProto(p *ledgerv1.PaymentOrder) *payment.Order {
	o := &payment.Order{ID: p.GetId(), Key: p.GetIdempotencyKey(), BizID: p.GetBizId(),
		Form: payment.Form(wireByte(int32(p.GetForm()))), Ledger: p.GetLedger(), Amount: p.GetAmount(),
		From: p.GetFromAccountId(), To: p.GetToAccountId(), Channel: p.GetChannel(),
		ChannelAccount: p.GetChannelAccount(), Original: p.GetOriginalOrderId(),
		State: payment.State(wireByte(int32(p.GetState()))), Result: payment.Result(wireByte(int32(p.GetResult()))),
		Ledgered: ledger.TransferResult(wireByte(int32(p.GetLedgerResult()))), Refunded: p.GetRefunded(),
		Txn: p.GetChannelTxn(), Paid: p.GetChannelAmount(), Flagged: p.GetFlagged(), Created: p.GetCreated(),
		Updated: p.GetUpdated()}
	if ins := p.GetInstruments(); len(ins) > 0 {
		o.Instruments = make([]payment.Instrument, len(ins))
		for i, in := range ins {
			o.Instruments[i] = payment.Instrument{Kind: payment.Kind(wireByte(int32(in.GetKind()))),
				Amount: in.GetAmount(), Account: in.GetAccountId(), Refunded: in.GetRefunded()}
		}
	}
	for _, id := range p.GetTransferIds() {
		if order, step, ok := payment.StepOf(id); ok && order == o.ID {
			o.Done |= 1 << step
		}
	}
	if xs := p.GetExceptions(); len(xs) > 0 {
		o.Exceptions = make([]payment.Exception, len(xs))
		for k, x := range xs {
			o.Exceptions[k] = payment.Exception{Kind: payment.ExceptionKind(wireByte(int32(x.GetKind()))),
				Step: payment.ExceptionStep(wireByte(int32(x.GetState()))), Txn: x.GetTxn(), Amount: x.GetAmount(),
				Note: x.GetNote(), Created: x.GetCreated(), Updated: x.GetUpdated()}
		}
	}
	return o
}

// ChannelStatusToProto translates a channel's status to the wire; counts past the wire's
// range are clamped.
func ChannelStatusToProto(c ChannelStatus) *ledgerv1.ChannelStatus {
	circuit := ledgerv1.CircuitState_CIRCUIT_STATE_UNSPECIFIED
	if c.Circuit >= CircuitClosed && c.Circuit <= CircuitOpen {
		circuit = ledgerv1.CircuitState(c.Circuit + 1)
	}
	return &ledgerv1.ChannelStatus{Name: c.Name, Degraded: c.Degraded, Circuit: circuit,
		InFlight: clampUint32(c.InFlight), Queued: clampUint32(c.Queued)}
}

func clampUint32(n int) uint32 {
	switch {
	case n < 0:
		return 0
	case uint64(n) > math.MaxUint32:
		return math.MaxUint32
	}
	return uint32(n)
}
