package nrtrecon

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ledgercore/ledger/channel/fake"
	"github.com/ledgercore/ledger/events"
	"github.com/ledgercore/ledger/ledger"
	"github.com/ledgercore/ledger/ledger/payment"
	"github.com/ledgercore/ledger/ledger/recon"
	"github.com/ledgercore/ledger/storage"
)

// startWith starts a runner of window 1s and grace 1s whose store check is confirm, retried
// for retryFor (0: ConfirmRetryDefault).
func (w *world) startWith(t *testing.T, mc recon.Config, retryFor time.Duration, confirm func(string) ([]payment.Difference, error)) *Runner {
	t.Helper()
	if mc.Window == 0 {
		mc.Window = recon.WindowMin
	}
	r, err := Start(Config{Seq: w.seq, Store: w.store, Setup: w.setup, Matcher: mc, Grace: time.Second,
		ConfirmRetryFor: retryFor, Confirm: confirm})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func (w *world) confirm(biz string) ([]payment.Difference, error) {
	rec, err := w.engine.Reconcile(biz)
	return rec.Differences, err
}

// strayPaymentTransfer books a transfer with a payment order's id (order 999, never made)
// carrying biz: a window that saw only part of a life (partial); the store says: unmatched.
func (w *world) strayPaymentTransfer(t *testing.T, biz string, order uint64) {
	t.Helper()
	if rs, err := w.ledger.CreateTransfers([]ledger.Transfer{{ID: payment.TransferID(order, 1), DebitAccountID: 1,
		CreditAccountID: 2, Amount: 5, Ledger: 1, Code: 1, BizID: biz}}); err != nil || rs[0] != ledger.ResultOK {
		t.Fatal(err, rs)
	}
}

func (w *world) account2(t *testing.T) {
	t.Helper()
	if rs, err := w.ledger.CreateAccounts([]ledger.Account{{ID: 2, Ledger: 1, Code: 2001}}); err != nil || rs[0] != ledger.AccountResultOK {
		t.Fatal(err, rs)
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatal(what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestCleanRechargesNeedNoStoreCheck: recharges through the real engine (whose first
// streamed version of an order is past 1) seen from their creation are judged from the stream
// alone: no window of them asks the store.
func TestCleanRechargesNeedNoStoreCheck(t *testing.T) {
	w := newWorld(t, fake.Config{Seed: 1, Latency: 5 * time.Millisecond})
	var confirms atomic.Int64
	r := w.startWith(t, recon.Config{}, 0, func(biz string) ([]payment.Difference, error) {
		confirms.Add(1)
		return w.confirm(biz)
	})
	defer r.Stop()
	orders := w.recharge(0, 10, 100)
	w.settle(orders)
	quiet(t, r)
	if confirms.Load() != 0 || r.Stats.Matched.Load() != uint64(len(orders)) {
		t.Fatalf("%d clean recharge windows: %d matched, %d store checks", len(orders), r.Stats.Matched.Load(), confirms.Load())
	}
}

// TestUnconfirmedWindowNotSkipped: a window whose store check failed is not recorded; a later
// window of the same biz id is; after a restart the first window's events are taken again
// (only the recorded window is skipped) and its finding is recorded.
func TestUnconfirmedWindowNotSkipped(t *testing.T) {
	w := newWorld(t, channelConfig())
	w.account2(t)
	var failing atomic.Bool
	failing.Store(true)
	confirm := func(biz string) ([]payment.Difference, error) {
		if failing.Load() {
			return nil, errors.New("store check unavailable")
		}
		return w.confirm(biz)
	}
	r := w.startWith(t, recon.Config{}, time.Hour, confirm)
	w.strayPaymentTransfer(t, "X", 999)
	waitFor(t, "the first window was not checked", func() bool { return r.Stats.ConfirmRetries.Load() > 0 })
	// A later recharge of X, seen whole: recorded without the store.
	rs, err := w.engine.Create([]payment.Request{{Key: "x2", BizID: "X", Form: payment.Recharge, Ledger: 1, Amount: 100,
		To: 1, Channel: "bank", ChannelAccount: "card-1"}})
	if err != nil || rs[0].Result != payment.ResultOK {
		t.Fatal(err, rs)
	}
	w.settle(map[uint64]string{rs[0].Order.ID: "X"})
	waitFor(t, "the later window was not recorded", func() bool {
		v := w.store.Snapshot()
		defer v.Close()
		n := 0
		_ = v.ReconClosed(func(storage.ReconClosedWindow) { n++ })
		return n > 0
	})
	r.Stop()
	if got, _ := recorded(t, w.store); len(got["X"]) != 0 && fmt.Sprint(got["X"]) != "[amount_mismatch]" &&
		fmt.Sprint(got["X"]) != "[duplicate_payment]" && fmt.Sprint(got["X"]) != "[amount_mismatch duplicate_payment]" {
		t.Fatalf("before the restart: %v", got)
	}
	failing.Store(false)
	r = w.startWith(t, recon.Config{}, time.Hour, confirm)
	defer r.Stop()
	quiet(t, r)
	_, all := recorded(t, w.store)
	var ledgerFinding bool
	for _, f := range all {
		if f.BizID == "X" && f.Kind == recon.KindLedger && strings.Contains(fmt.Sprint(f.Differences), "999") {
			ledgerFinding = true
		}
	}
	if !ledgerFinding {
		t.Fatalf("the window whose store check failed was never recorded: %+v", all)
	}
}

// TestUnverifiable: a store check that can never be made records an unverifiable finding at
// once; one that keeps failing is retried with backoff for ConfirmRetryFor (here 1.5 s),
// counted, then recorded as unverifiable; either way the checkpoint moves on.
func TestUnverifiable(t *testing.T) {
	w := newWorld(t, fake.Config{Seed: 1, Latency: 5 * time.Millisecond})
	w.account2(t)
	var calls atomic.Int64
	r := w.startWith(t, recon.Config{}, 1500*time.Millisecond, func(biz string) ([]payment.Difference, error) {
		calls.Add(1)
		if biz == "big" {
			return nil, fmt.Errorf("%w: too many transfers", ErrUnverifiable)
		}
		return nil, errors.New("disk on fire")
	})
	defer r.Stop()
	w.strayPaymentTransfer(t, "big", 998)
	w.strayPaymentTransfer(t, "flaky", 997)
	waitFor(t, "not recorded", func() bool { got, _ := recorded(t, w.store); return len(got) == 2 })
	quiet(t, r)
	got, all := recorded(t, w.store)
	// flaky: checked at its close, then at least once more before 1.5 s had passed since (the
	// backoff starts at 100 ms; the idle runner steps each second), then past it.
	if fmt.Sprint(got) != "map[big:[unverifiable] flaky:[unverifiable]]" || calls.Load() < 4 ||
		r.Stats.ConfirmRetries.Load() != uint64(calls.Load()-1) || r.Stats.Checkpoint.Load() != w.seq.Last() {
		t.Fatalf("findings %v, calls %d, retries %d, checkpoint %d of %d", got, calls.Load(),
			r.Stats.ConfirmRetries.Load(), r.Stats.Checkpoint.Load(), w.seq.Last())
	}
	for _, f := range all {
		want := map[string]string{"big": "too many transfers",
			"flaky": fmt.Sprintf("failed %d times over ", calls.Load()-1)}[f.BizID]
		if !strings.Contains(f.Differences[0].Found, want) || (f.BizID == "flaky" && !strings.Contains(f.Differences[0].Found, "disk on fire")) {
			t.Fatalf("%s: %v", f.BizID, f.Differences)
		}
	}
}

// TestStoreDifferenceOnce: one store difference of a biz id is one finding, however many
// later windows of the biz id get it from the store's check.
func TestStoreDifferenceOnce(t *testing.T) {
	w := newWorld(t, fake.Config{Seed: 1, Latency: 5 * time.Millisecond})
	w.account2(t)
	// Every window asks the store (as ledgerctl's matcher does).
	r := w.startWith(t, recon.Config{StoreVerdict: true}, 0, w.confirm)
	defer r.Stop()
	if recon.Kinds[4] != recon.KindLedger {
		t.Fatal("recon.Kinds moved: Stats.Unmatched[4] is not ledger")
	}
	w.strayPaymentTransfer(t, "biz-000", 999)
	ledgerFound := func(n uint64) func() bool {
		return func() bool { return r.Stats.Unmatched[4].Load() >= n } // recon.Kinds[4] is ledger
	}
	waitFor(t, "the stray transfer's window did not close", ledgerFound(1))
	for i := range 2 { // two clean recharges of the biz id, each in a window of its own
		rs, err := w.engine.Create([]payment.Request{{Key: fmt.Sprint("again", i), BizID: "biz-000", Form: payment.Recharge,
			Ledger: 1, Amount: 100, To: 1, Channel: "bank", ChannelAccount: "card-1"}})
		if err != nil || rs[0].Result != payment.ResultOK {
			t.Fatal(err, rs)
		}
		w.settle(map[uint64]string{rs[0].Order.ID: "biz-000"})
		waitFor(t, "the recharge's window did not close", ledgerFound(uint64(i)+2))
	}
	quiet(t, r)
	_, all := recorded(t, w.store)
	if len(all) != 1 || all[0].First&recon.StoreFindingBit == 0 {
		t.Fatalf("one unmatched transfer recorded as %d findings: %+v", len(all), all)
	}
}

// TestSubscribersDoNotStarveRunner: FollowersMax subscribers do not keep the runner from
// following.
func TestSubscribersDoNotStarveRunner(t *testing.T) {
	w := newWorld(t, fake.Config{Seed: 1, Latency: 5 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	for range events.FollowersMax {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = w.seq.Follow(ctx, 1, events.FollowOptions{}, func([]events.Event) error { return nil })
		}()
	}
	waitFor(t, "the subscribers did not start", func() bool { return w.seq.Stats.Followers.Load() == events.FollowersMax })
	r := w.start(t)
	defer r.Stop()
	orders := w.recharge(0, 5, 100)
	w.settle(orders)
	quiet(t, r)
	if r.Stats.Errors.Load() != 0 || r.Stats.Matched.Load() != 5 {
		t.Fatalf("errors %d, matched %d", r.Stats.Errors.Load(), r.Stats.Matched.Load())
	}
}

// TestRetentionHeld: retention does not trim the events of a window still open under the
// runner; once the runner stops, its hold is released.
func TestRetentionHeld(t *testing.T) {
	w := newWorldRetain(t, fake.Config{Seed: 1, Latency: 5 * time.Millisecond}, 10)
	w.account2(t)
	r := w.startWith(t, recon.Config{Window: 60 * recon.WindowMin}, 0, w.confirm)
	w.strayPaymentTransfer(t, "held", 999) // a window open for a minute
	waitFor(t, "the window did not open", func() bool { return r.Stats.Tracked.Load() == 1 })
	first := r.Stats.Checkpoint.Load() + 1
	for i := range 30 { // far more than retention keeps
		if rs, err := w.ledger.CreateTransfers([]ledger.Transfer{{ID: uint64(100 + i), DebitAccountID: 1,
			CreditAccountID: 2, Amount: 1, Ledger: 1, Code: 1}}); err != nil || rs[0] != ledger.ResultOK {
			t.Fatal(err, rs)
		}
	}
	waitFor(t, "the runner did not read the stream", func() bool { return r.Lag() == 0 })
	time.Sleep(2500 * time.Millisecond) // retention runs every second
	if h := w.seq.Horizon(); h > first || w.seq.Stats.RetentionHeld.Load() == 0 {
		t.Fatalf("retention trimmed to %d under the open window from %d (held %d)", h, first,
			w.seq.Stats.RetentionHeld.Load())
	}
	r.Stop()
	waitFor(t, "the hold was not released", func() bool { return w.seq.Horizon() > first })
}

// TestPendingSettled: an order still awaiting its channel when its window closes is a pending
// finding; when a later window of the biz id matches (the late notice settled it), the
// finding is resolved in the same step, with a note naming the sequence.
func TestPendingSettled(t *testing.T) {
	w := newWorld(t, fake.Config{Seed: 1, Latency: 5 * time.Millisecond, CallbackDelay: 4 * time.Second})
	r := w.start(t)
	defer r.Stop()
	orders := w.recharge(0, 1, 100)
	waitFor(t, "no pending finding", func() bool { got, _ := recorded(t, w.store); return len(got["biz-000"]) > 0 })
	if got, all := recorded(t, w.store); fmt.Sprint(got) != "map[biz-000:[pending]]" || all[0].Resolved {
		t.Fatalf("findings %v", got)
	}
	w.settle(orders)
	quiet(t, r)
	_, all := recorded(t, w.store)
	if len(all) != 1 || !all[0].Resolved || !strings.HasPrefix(all[0].Note, "settled at sequence ") ||
		r.Stats.Settled.Load() != 1 {
		t.Fatalf("findings %+v, settled %d", all, r.Stats.Settled.Load())
	}
}
