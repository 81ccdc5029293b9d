package payments

import (
	"testing"
	"time"

	"github.com/ledgercore/ledger/channel/fake"
	"github.com/ledgercore/ledger/ledger"
	"github.com/ledgercore/ledger/ledger/payment"
	"github.com/ledgercore/ledger/ledger/recon"
)

// TestReconcileOrderKey: the join key of an order without a biz id checks that order and the
// transfers of its steps (they carry no biz id); a transfer carrying the key as its biz id is
// not one of them; an order with a biz id is not checked by its order key.
func TestReconcileOrderKey(t *testing.T) {
	w := newWorld(t, fake.Config{Seed: 1, Latency: 2 * time.Millisecond})
	w.openAccounts()
	rs := w.create(payment.Request{Key: "r1", Form: payment.Recharge, Ledger: 1, Amount: 500, To: alice,
		Channel: "bank", ChannelAccount: "card-1"}, payment.Request{Key: "r2", BizID: "b2", Form: payment.Recharge,
		Ledger: 1, Amount: 500, To: alice, Channel: "bank", ChannelAccount: "card-1"})
	if rs[0].Result != payment.ResultOK || rs[1].Result != payment.ResultOK {
		t.Fatalf("create: %v %v", rs[0].Result, rs[1].Result)
	}
	id, other := rs[0].Order.ID, rs[1].Order.ID
	w.settle(id, other)
	r, err := w.engine.Reconcile(recon.OrderKey(id))
	if err != nil || r.Orders != 1 || r.Transfers == 0 || len(r.Differences) != 0 {
		t.Fatalf("reconcile by order key: %+v %v", r, err)
	}
	n := r.Transfers
	if res, err := w.ledger.CreateTransfers([]ledger.Transfer{{ID: 77, DebitAccountID: coupons, CreditAccountID: shop,
		Amount: 1, Ledger: 1, Code: 1, BizID: recon.OrderKey(id)}}); err != nil || res[0] != ledger.ResultOK {
		t.Fatalf("transfer: %v %v", res, err)
	}
	if r, err := w.engine.Reconcile(recon.OrderKey(id)); err != nil || r.Orders != 1 || r.Transfers != n || len(r.Differences) != 0 {
		t.Fatalf("a transfer carrying the key was taken: %+v %v", r, err)
	}
	if r, err := w.engine.Reconcile(recon.OrderKey(other)); err != nil || r.Orders != 0 || r.Transfers != 0 {
		t.Fatalf("an order with a biz id checked by its order key: %+v %v", r, err)
	}
}
