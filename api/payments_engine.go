package api

import (
	"errors"
	"fmt"

	"github.com/ledgercore/ledger/actors/payments"
	"github.com/ledgercore/ledger/ledger/payment"
)

// Payments serves the payment actors as a PaymentEngine.
func Payments(e *payments.Engine) PaymentEngine { return paymentActors{e} }

type paymentActors struct{ *payments.Engine }

func (p paymentActors) Create(reqs []payment.Request) ([]PaymentReply, error) {
	rs, err := p.Engine.Create(reqs)
	if err != nil {
		return nil, err
	}
	out := make([]PaymentReply, len(rs))
	for i, r := range rs {
		out[i] = PaymentReply{Result: r.Result, Order: r.Order}
	}
	return out, nil
}

func (p paymentActors) SetDegraded(channel string, degraded bool) (ChannelStatus, error) {
	st, err := p.Engine.SetDegraded(channel, degraded)
	if errors.Is(err, payments.ErrUnknownChannel) {
		return ChannelStatus{}, fmt.Errorf("%w: %q", ErrUnknownChannel, channel)
	}
	return channelStatus(st), err
}

func (p paymentActors) Channels() []ChannelStatus {
	var out []ChannelStatus
	for _, st := range p.Engine.Channels() {
		out = append(out, channelStatus(st))
	}
	return out
}

func channelStatus(st payments.ChannelStatus) ChannelStatus {
	return ChannelStatus{Name: st.Name, Degraded: st.Degraded, Circuit: int(st.Circuit), InFlight: st.InFlight,
		Queued: st.Queued}
}

func (p paymentActors) Reconcile(bizID string) (BizRecon, error) {
	r, err := p.Engine.Reconcile(bizID)
	if errors.Is(err, payments.ErrReconcileTooLarge) {
		return BizRecon{}, fmt.Errorf("%w: %w", ErrReconcileTooLarge, err)
	}
	return BizRecon{Orders: r.Orders, Transfers: r.Transfers, Differences: r.Differences}, err
}

var _ ReconEngine = paymentActors{}
