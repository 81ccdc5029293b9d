package payments

import (
	"fmt"
	"testing"
	"time"

	"github.com/ledgercore/ledger/channel/fake"
	"github.com/ledgercore/ledger/ledger/payment"
)

// TestBatchedEngineSendsOnce runs the engine with calls batched (Batch 8) and notices
// posted in arrays (NoticeBatch 8), the channel losing answers (batch items answered 504) and
// failing some, with a restart while calls are out: every payout and pay is sent once, every
// order ends final, and the books agree with the orders.
func TestBatchedEngineSendsOnce(t *testing.T) {
	cfg := fake.Config{Seed: 7, Latency: 30 * time.Millisecond, TimeoutRate: 0.3, FailRate: 0.2, NoticeBatch: 8}
	w := newWorldBatched(t, cfg, 8)
	w.openAccounts()
	r := w.create(payment.Request{Key: "seed", Form: payment.Recharge, Ledger: 1, Amount: 1_000_000, To: alice,
		Channel: "bank", ChannelAccount: "card-1"})[0]
	if r.Result != payment.ResultOK {
		t.Fatalf("%v", r.Result)
	}
	for w.settle(r.Order.ID)[0].State != payment.Succeeded {
		// a failed fate: try another key
		r = w.create(payment.Request{Key: fmt.Sprint("seed-", r.Order.ID), Form: payment.Recharge, Ledger: 1,
			Amount: 1_000_000, To: alice, Channel: "bank", ChannelAccount: "card-1"})[0]
	}
	var reqs []payment.Request
	for i := range 40 {
		reqs = append(reqs, payment.Request{Key: fmt.Sprint("w", i), BizID: fmt.Sprint("bw", i), Form: payment.Withdraw,
			Ledger: 1, Amount: 10, From: alice, Channel: "bank", ChannelAccount: "card-1"},
			payment.Request{Key: fmt.Sprint("r", i), BizID: fmt.Sprint("br", i), Form: payment.Recharge, Ledger: 1,
				Amount: 7, To: bob, Channel: "bank", ChannelAccount: "card-2"})
	}
	var ids []uint64
	for _, r := range w.create(reqs...) {
		if r.Result != payment.ResultOK {
			t.Fatalf("%v", r.Result)
		}
		ids = append(ids, r.Order.ID)
	}
	// Restart once every request has been handed to the client (some answered, some not yet):
	// a payout stopped before it was sent waits 10 minutes for CHANNEL_NOT_FOUND, by design.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(time.Millisecond) {
		w.client.mu.Lock()
		n := len(w.client.sends)
		w.client.mu.Unlock()
		if n >= len(reqs)+1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d requests sent", n, len(reqs))
		}
	}
	w.stop()
	w.start()
	again := w.create(reqs...)
	for i, r := range again {
		if r.Result != payment.ResultExists || r.Order.ID != ids[i] {
			t.Fatalf("request %d after the restart: %v", i, r.Result)
		}
	}
	var paid, got int64
	for i, o := range w.settle(ids...) {
		if o.State == payment.Succeeded {
			if i%2 == 0 {
				paid += 10
			} else {
				got += 7
			}
		}
	}
	w.eventually(alice, 1_000_000-paid)
	w.eventually(bob, got)
	for no, n := range w.client.sends {
		if n != 1 {
			t.Errorf("%s sent %d times", no, n)
		}
	}
	for i := range 40 {
		if r, err := w.engine.Reconcile(fmt.Sprint("bw", i)); err != nil || len(r.Differences) != 0 {
			t.Errorf("reconcile bw%d: %+v %v", i, r, err)
		}
	}
}
