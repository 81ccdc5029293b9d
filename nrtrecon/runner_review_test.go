package nrtrecon

// Tests of the store check retried by time, and of the bound on the windows to skip.

import (
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

// TestTransientConfirmFailureRetried: a store check that fails for 150 ms (a transient error)
// under ordinary traffic (a batch every few milliseconds) is retried by time, with backoff,
// not once per batch: the window gets the store's verdict, not an unverifiable finding, and
// the failing check is not made at every batch.
func TestTransientConfirmFailureRetried(t *testing.T) {
	w := newWorld(t, fake.Config{Seed: 1, Latency: 5 * time.Millisecond})
	w.account2(t)
	var mu sync.Mutex
	var firstFail time.Time
	var calls []time.Duration
	r := w.startWith(t, recon.Config{}, 0, func(biz string) ([]payment.Difference, error) {
		mu.Lock()
		defer mu.Unlock()
		if firstFail.IsZero() {
			firstFail = time.Now()
		}
		since := time.Since(firstFail)
		calls = append(calls, since)
		if since < 150*time.Millisecond {
			return nil, errors.New("transient: store busy")
		}
		return w.confirm(biz)
	})
	defer r.Stop()
	w.strayPaymentTransfer(t, "flaky", 997) // a partial window: the store must check it
	// Ordinary traffic: plain transfers (no biz id), one commit each, for 2 s.
	id := uint64(1000)
	for end := time.Now().Add(2 * time.Second); time.Now().Before(end); {
		id++
		if rs, err := w.ledger.CreateTransfers([]ledger.Transfer{{ID: id, DebitAccountID: 1, CreditAccountID: 2,
			Amount: 1, Ledger: 1, Code: 1}}); err != nil || rs[0] != ledger.ResultOK {
			t.Fatal(err, rs)
		}
		time.Sleep(2 * time.Millisecond)
	}
	quiet(t, r)
	got, all := recorded(t, w.store)
	mu.Lock()
	t.Logf("store check calls at %v", calls)
	mu.Unlock()
	for _, f := range all {
		t.Logf("%s %s %v", f.BizID, f.Kind, f.Differences)
	}
	if strings.Contains(fmt.Sprint(got), "unverifiable") {
		t.Errorf("a 150 ms store hiccup made an unverifiable finding (retries %d)", r.Stats.ConfirmRetries.Load())
	}
	// Backoff from 100 ms: the failing checks are at 0 and 100 ms (then 300 ms, which passes),
	// not one a batch.
	if n := r.Stats.ConfirmRetries.Load(); n < 1 || n > 3 {
		t.Errorf("%d failed checks in 150 ms of failures", n)
	}
}

// TestStartRefusesTooManyToSkip: a store holding more windows recorded past the checkpoint
// than the matcher can skip fails Start (the error was overwritten by the scan's nil: the
// runner started, and the windows past the bound were reconciled again).
func TestStartRefusesTooManyToSkip(t *testing.T) {
	st, err := storage.Open(t.TempDir(), storage.Options{Shards: 1, CacheBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	seq, err := events.Start(st, events.Config{Fatal: func(err error) { t.Error(err) }})
	if err != nil {
		t.Fatal(err)
	}
	defer seq.Stop()
	const skipMax = 3
	closed := make([]storage.ReconClosedWindow, skipMax+1)
	for i := range closed {
		closed[i] = storage.ReconClosedWindow{BizID: fmt.Sprint("b", i), First: uint64(10 + i), Through: uint64(10 + i)}
	}
	if _, err := st.CommitRecon(storage.ReconWrite{Closed: closed, Checkpoint: 9, Now: 1}); err != nil {
		t.Fatal(err)
	}
	cfg := Config{Seq: seq, Store: st, Confirm: func(string) ([]payment.Difference, error) { return nil, nil },
		Matcher: recon.Config{StoreVerdict: true, SkipMax: skipMax}}
	r, err := Start(cfg)
	if !errors.Is(err, recon.ErrSkipFull) {
		if err == nil {
			r.Stop()
		}
		t.Fatalf("Start with %d windows to skip, at most %d held: %v", skipMax+1, skipMax, err)
	}
	cfg.Matcher.SkipMax = skipMax + 1
	if r, err = Start(cfg); err != nil {
		t.Fatal(err)
	}
	r.Stop()
}

// TestSkipBoundHeldAcrossAStep: while a window waiting for its store check holds the
// checkpoint back, more windows close past it, in one step or a few, than a restart may skip
// (SkipMax 3 here): the runner closes the window holding the checkpoint back (unverifiable,
// saying why) rather than record more than the bound, and a restart starts.
func TestSkipBoundHeldAcrossAStep(t *testing.T) {
	const skipMax = 3
	w := newWorld(t, fake.Config{Seed: 1, Latency: 5 * time.Millisecond})
	w.account2(t)
	var seen sync.Map
	confirm := func(biz string) ([]payment.Difference, error) {
		if biz == "hold" {
			return nil, errors.New("store check unavailable")
		}
		seen.Store(biz, true)
		return w.confirm(biz)
	}
	r := w.startWith(t, recon.Config{SkipMax: skipMax}, time.Hour, confirm)
	w.strayPaymentTransfer(t, "hold", 990)
	for i := range 2 * skipMax {
		w.strayPaymentTransfer(t, fmt.Sprint("b", i), uint64(991+i))
	}
	// quiet alone may return before the runner has seen the transfers' events (their
	// sequencing is asynchronous, and slow on a loaded machine): wait for the finding too.
	heldFinding := func() (bool, []*storage.ReconFinding) {
		_, all := recorded(t, w.store)
		var held bool
		for _, f := range all {
			held = held || (f.BizID == "hold" && f.Kind == recon.KindUnverifiable &&
				strings.Contains(f.Differences[0].Found, "more than 3 windows recorded past the checkpoint"))
		}
		return held, all
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		quiet(t, r)
		held, all := heldFinding()
		if held {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the window holding the checkpoint back was not closed as unverifiable: %+v", all)
		}
		time.Sleep(50 * time.Millisecond)
	}
	r.Stop()
	v := w.store.Snapshot()
	n := 0
	if err := v.ReconClosed(func(storage.ReconClosedWindow) { n++ }); err != nil {
		t.Fatal(err)
	}
	v.Close()
	if n > skipMax {
		t.Fatalf("%d windows recorded past the checkpoint, at most %d", n, skipMax)
	}
	r = w.startWith(t, recon.Config{SkipMax: skipMax}, time.Hour, confirm)
	r.Stop()
}

// TestHoldCapped: a runner whose checkpoint is stuck (a window whose store check keeps
// failing) holds retention only up to HoldMax events past it: then it releases the hold
// (counted), retention trims what it has not reconciled, and a restart from the stuck
// checkpoint meets the gap (counted, the open windows made partial) and goes on; once the
// checkpoint is back within HoldMax/2 the runner holds again.
func TestHoldCapped(t *testing.T) {
	w := newWorldRetain(t, fake.Config{Seed: 1, Latency: 5 * time.Millisecond}, 10)
	w.account2(t)
	var failing atomic.Bool
	failing.Store(true)
	start := func() *Runner {
		r, err := Start(Config{Seq: w.seq, Store: w.store, Setup: w.setup, Grace: time.Second, HoldMax: 20,
			Matcher: recon.Config{Window: recon.WindowMin}, ConfirmRetryFor: time.Hour,
			Confirm: func(biz string) ([]payment.Difference, error) {
				if failing.Load() {
					return nil, errors.New("store check unavailable")
				}
				return w.confirm(biz)
			}})
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	r := start()
	w.strayPaymentTransfer(t, "stuck", 999)
	waitFor(t, "the store check was not tried", func() bool { return r.Stats.ConfirmRetries.Load() > 0 })
	stuck := r.Stats.Checkpoint.Load()
	for i := range 40 { // more than HoldMax past the checkpoint
		if rs, err := w.ledger.CreateTransfers([]ledger.Transfer{{ID: uint64(100 + i), DebitAccountID: 1,
			CreditAccountID: 2, Amount: 1, Ledger: 1, Code: 1}}); err != nil || rs[0] != ledger.ResultOK {
			t.Fatal(err, rs)
		}
	}
	waitFor(t, "the hold was not released", func() bool { return r.Stats.HoldReleased.Load() == 1 })
	waitFor(t, "retention did not trim past the stuck checkpoint", func() bool { return w.seq.Horizon() > stuck+1 })
	if cp := r.Stats.Checkpoint.Load(); cp != stuck {
		t.Fatalf("checkpoint moved from %d to %d", stuck, cp)
	}
	// The store answers again: the checkpoint catches up and the hold is taken again.
	failing.Store(false)
	quiet(t, r)
	r.holdMu.Lock()
	held := r.held
	r.holdMu.Unlock()
	if !held {
		t.Fatal("the hold was not taken again once the checkpoint caught up")
	}
	r.Stop()
	// A restart from the stuck checkpoint (moved back to it) meets the trimmed events.
	if _, err := w.store.CommitRecon(storage.ReconWrite{Checkpoint: stuck, Now: 1}); err != nil {
		t.Fatal(err)
	}
	r = start()
	defer r.Stop()
	waitFor(t, "the gap was not met", func() bool { return r.Stats.Trimmed.Load() == 1 })
	quiet(t, r)
}
