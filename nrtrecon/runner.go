// Package nrtrecon runs near-real-time reconciliation in the server: it follows the event
// stream from a durable checkpoint, feeds the pure matcher (ledger/recon), confirms the windows
// that saw only part of a biz id's life against the store, and records what is unmatched as
// durable findings (storage.ReconFinding) in one synced batch with the new checkpoint.
//
// Restart: the checkpoint is the sequence before the oldest window still open or not yet
// recorded (every event up to it belongs to a recorded window), and each window recorded past
// it is kept with the sequences it took its events from and through; a restart follows from
// the checkpoint and skips exactly those windows' events, so nothing is reported twice and
// nothing is missed. A finding's id is (biz id or order key, kind, first sequence; for a ledger
// finding, a digest of its differences): recording it again changes nothing.
//
// The runner holds retention from its checkpoint (events.Sequencer.HoldRetention), released
// when it stops or when more than Config.HoldMax events lie past its checkpoint, and is a
// reserved follower of the stream (subscribers cannot crowd it out).
package nrtrecon

import (
	"container/heap"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ledgercore/ledger/events"
	"github.com/ledgercore/ledger/ledger/payment"
	"github.com/ledgercore/ledger/ledger/recon"
	"github.com/ledgercore/ledger/storage"
)

// Limits and defaults (units last).
const (
	// GraceDefault is how long past a window's end, on the wall clock, the runner closes it
	// when no event does (an idle stream), once it has read every event durable.
	GraceDefault = 5 * time.Second
	// tickInterval is how often the runner looks at the wall clock.
	tickInterval = time.Second
	// retryDelay is how long the runner waits before following again after an error.
	retryDelay = time.Second
	// ConfirmRetryDefault is how long, on the wall clock from its first failure, the store's
	// check of a partial window is retried before the window is recorded as an unverifiable
	// finding (with the last error); ConfirmBackoffMin and ConfirmBackoffMax bound the wait
	// between two checks of the window (doubled after each failure). A check is made only
	// when a step (a batch of events, or the idle tick each second) finds it due.
	ConfirmRetryDefault = time.Minute
	ConfirmBackoffMin   = 100 * time.Millisecond
	ConfirmBackoffMax   = 10 * time.Second
	// HoldMaxDefault is how many durable events past its checkpoint the runner may hold
	// from retention by default (Config.HoldMax): past it, it releases its hold.
	HoldMaxDefault = 50_000_000
)

// ErrUnverifiable: the store's check of a biz id can never be made (Config.Confirm wraps it,
// e.g. around payments.ErrReconcileTooLarge): the window is recorded as an unverifiable
// finding at once, not retried.
var ErrUnverifiable = errors.New("nrtrecon: the biz id cannot be checked against the store")

// Config configures a Runner.
type Config struct {
	Seq     *events.Sequencer
	Store   *storage.Store
	Setup   *payment.Setup
	Matcher recon.Config
	// Confirm is the three-way check of a biz id against the store (payments.Engine.Reconcile);
	// an error wrapping ErrUnverifiable is permanent (recorded at once), any other is retried
	// with backoff for ConfirmRetryFor.
	Confirm func(biz string) ([]payment.Difference, error)
	// ConfirmRetryFor is how long a window's failing store check is retried before the window
	// is recorded as unverifiable; 0: ConfirmRetryDefault.
	ConfirmRetryFor time.Duration
	Now             func() uint64 // wall clock, ns; nil: time.Now
	Grace           time.Duration // 0: GraceDefault
	// HoldMax caps the retention hold: when more than HoldMax durable events lie past the
	// durable checkpoint (a runner stuck, or a window held open), the runner releases its
	// hold, logs at ERROR and counts it (Stats.HoldReleased): retention may then trim what it
	// has not reconciled, and the gap is handled as any other (the open windows are made
	// partial). It holds again once back within HoldMax/2. 0: HoldMaxDefault.
	HoldMax uint64
	Logger  *slog.Logger
}

// Stats are the runner's figures, read by the metrics adapter.
type Stats struct {
	Matched   atomic.Uint64
	Unmatched [9]atomic.Uint64 // findings by kind, indexed as recon.Kinds
	Recorded  atomic.Uint64    // findings new to the store (not recorded before)
	Settled   atomic.Uint64    // pending or not_final findings resolved by a later matched window
	Pending   atomic.Int64
	Tracked   atomic.Int64
	Kept      atomic.Int64 // orders and transfers kept across the open windows
	Overflow  atomic.Uint64
	Ignored   atomic.Uint64 // plain transfers with a biz id and no payment window open
	// Trimmed counts gaps: events trimmed by retention before the runner read them (the open
	// windows were made partial, and it went on from the oldest kept).
	Trimmed        atomic.Uint64
	Errors         atomic.Uint64 // follow, confirm or commit errors (each retried)
	ConfirmRetries atomic.Uint64 // store checks that failed and were retried
	PlainDropped   atomic.Uint64 // plain transfers not tracked past a window's recon.PlainPerBizMax
	HoldReleased   atomic.Uint64 // retention holds released past HoldMax
	Next           atomic.Uint64 // the next sequence to read
	Checkpoint     atomic.Uint64
}

// Runner is the reconciliation goroutine.
type Runner struct {
	cfg     Config
	log     *slog.Logger
	mu      sync.Mutex // the matcher and what is not yet committed
	m       *recon.Matcher
	next    uint64
	closed  []storage.ReconClosedWindow
	settled []storage.ReconSettled
	found   []recon.Finding
	// unconfirmed are partial windows the store could not check yet (retried with backoff
	// for ConfirmRetryFor; the checkpoint stays before them).
	unconfirmed []unconfirmed
	// past are the sequences through which the windows recorded past the checkpoint went (at
	// most skipMax: a restart skips them).
	past    throughs
	skipMax int
	// holdMu guards hold and held: released by the ticker (HoldMax) even while a step is
	// stuck under mu.
	holdMu sync.Mutex
	hold   *events.RetentionHold
	held   bool
	cancel context.CancelFunc
	stop   sync.Once
	done   chan struct{}
	Stats  Stats
}

type unconfirmed struct {
	w     recon.Window
	fails int
	since uint64        // the wall clock (ns) of its first failed check
	next  uint64        // not checked again before this wall clock (ns)
	delay time.Duration // the last wait
}

// Start loads the checkpoint and starts following.
func Start(cfg Config) (*Runner, error) {
	if cfg.Seq == nil || cfg.Store == nil || cfg.Confirm == nil {
		return nil, errors.New("nrtrecon: no stream, store or confirmation")
	}
	if cfg.Now == nil {
		cfg.Now = func() uint64 { return uint64(time.Now().UnixNano()) }
	}
	if cfg.Grace == 0 {
		cfg.Grace = GraceDefault
	}
	if cfg.ConfirmRetryFor == 0 {
		cfg.ConfirmRetryFor = ConfirmRetryDefault
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.HoldMax == 0 {
		cfg.HoldMax = HoldMaxDefault
	}
	if err := cfg.Matcher.Validate(); err != nil {
		return nil, err
	}
	m, err := recon.New(cfg.Setup, cfg.Matcher)
	if err != nil {
		return nil, err
	}
	// The hold keeps every event until it moves to the checkpoint: taken before the checkpoint
	// is read, retention cannot trim past it in between.
	hold := cfg.Seq.HoldRetention()
	v := cfg.Store.Snapshot()
	defer v.Close()
	cp, err := v.ReconCheckpoint()
	if err != nil {
		hold.Release()
		return nil, err
	}
	var past throughs
	var skipErr error
	err = v.ReconClosed(func(c storage.ReconClosedWindow) {
		if skipErr == nil {
			skipErr = m.Skip(c.BizID, c.First, c.Through)
			past = append(past, c.Through)
		}
	})
	heap.Init(&past)
	if err == nil && skipErr != nil {
		err = fmt.Errorf("nrtrecon: the windows recorded past the checkpoint: %w", skipErr)
	}
	if err != nil {
		hold.Release()
		return nil, err
	}
	hold.Move(cp + 1)
	ctx, cancel := context.WithCancel(context.Background())
	r := &Runner{cfg: cfg, log: cfg.Logger.With("component", "recon"), m: m, next: cp + 1, cancel: cancel,
		done: make(chan struct{}), hold: hold, held: true, past: past, skipMax: cfg.Matcher.SkipMax}
	r.Stats.Next.Store(cp + 1)
	r.Stats.Checkpoint.Store(cp)
	go r.loop(ctx)
	return r, nil
}

// Stop ends the runner after its current step (what it has not committed is seen again on the
// next start).
func (r *Runner) Stop() {
	r.stop.Do(func() {
		r.cancel()
		<-r.done
	})
}

// Lag is how many durable events the runner has not read yet.
func (r *Runner) Lag() uint64 {
	last, next := r.cfg.Seq.Last(), r.Stats.Next.Load()
	if next > last {
		return 0
	}
	return last + 1 - next
}

func (r *Runner) loop(ctx context.Context) {
	defer close(r.done)
	defer func() {
		r.holdMu.Lock()
		defer r.holdMu.Unlock()
		if r.held {
			r.hold.Release()
			r.held = false
		}
	}()
	ticks := make(chan struct{})
	go func() {
		t := time.NewTicker(tickInterval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				close(ticks)
				return
			case <-t.C:
				r.capHold()
				r.tick()
			}
		}
	}()
	defer func() { <-ticks }()
	for ctx.Err() == nil {
		r.mu.Lock()
		from := r.next
		r.mu.Unlock()
		err := r.cfg.Seq.Follow(ctx, from, events.FollowOptions{Coalesce: true, Reserved: true}, r.batch)
		var trimmed *events.TrimmedError
		switch {
		case ctx.Err() != nil || errors.Is(err, events.ErrStopped):
			return
		case errors.As(err, &trimmed):
			r.Stats.Trimmed.Add(1)
			r.log.Error("reconciliation: events trimmed by retention before they were reconciled; following on from the oldest kept (the windows open are made partial: checked against the store)",
				"asked", trimmed.Asked, "oldest", trimmed.Oldest)
			r.mu.Lock()
			r.m.Gap()
			r.next = trimmed.Oldest
			r.Stats.Next.Store(r.next)
			r.mu.Unlock()
			continue
		case err != nil:
			r.Stats.Errors.Add(1)
			r.log.Error("reconciliation: following the event stream failed; retrying", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(retryDelay):
		}
	}
}

// batch takes a batch of events, closes the windows they end and commits what they found.
func (r *Runner) batch(evs []events.Event) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i := range evs {
		e := &evs[i]
		switch {
		case e.Transfer != nil:
			r.m.Transfer(e.Seq, e.Transfer)
		case e.Posting != nil:
			r.m.Posting(e.Seq, e.Posting)
		case e.Order != nil:
			if e.Exact {
				r.m.OrderExact(e.Seq, e.Order, e.Exception, e.Opened)
			} else {
				r.m.Order(e.Seq, e.Order, e.Exception)
			}
		}
	}
	r.next = evs[len(evs)-1].Seq + 1
	r.Stats.Next.Store(r.next)
	return r.flush(false)
}

// tick closes, on the wall clock, the windows of an idle stream: only once every durable event
// is read, and a grace period past their end.
func (r *Runner) tick() {
	if !r.mu.TryLock() {
		return // a step is running (it flushes); the ticker never waits, so capHold runs
	}
	defer r.mu.Unlock()
	if r.next <= r.cfg.Seq.Last() {
		return
	}
	if now, grace := r.cfg.Now(), uint64(r.cfg.Grace); now > grace {
		r.m.Advance(now - grace)
	}
	if err := r.flush(true); err != nil {
		r.Stats.Errors.Add(1)
		r.log.Error("reconciliation: recording findings failed; retried", "err", err)
	}
}

// flush confirms and records the windows closed (and moves the checkpoint); with idle, it
// commits a moved checkpoint even when nothing closed. Under mu.
func (r *Runner) flush(idle bool) error {
	now := r.cfg.Now()
	pending := r.unconfirmed
	r.unconfirmed = nil
	for _, w := range r.m.Take() {
		pending = append(pending, unconfirmed{w: w})
	}
	var confirmErr error
	for _, u := range pending {
		if err := r.confirm(u, now); err != nil {
			confirmErr = err
		}
	}
	// The windows recorded past the checkpoint are bounded (a restart holds them all): past
	// the bound, the oldest window holding the checkpoint back is closed unreconciled (an
	// open one as overflow, one waiting for its store check as unverifiable) so that it moves.
	cp := r.checkpoint()
	if len(r.past)+len(r.closed) > r.skipMax {
		ts := make([]uint64, 0, len(r.past)+len(r.closed)) // every Through, ascending
		ts = append(ts, r.past...)
		for _, c := range r.closed {
			ts = append(ts, c.Through)
		}
		slices.Sort(ts)
		for {
			if i, _ := slices.BinarySearch(ts, cp+1); len(ts)-i <= r.skipMax {
				break
			}
			n := len(r.closed)
			if !r.release(now) {
				break
			}
			for _, c := range r.closed[n:] {
				i, _ := slices.BinarySearch(ts, c.Through)
				ts = slices.Insert(ts, i, c.Through)
			}
			cp = r.checkpoint()
		}
	}
	st := r.m.Stats()
	r.Stats.Matched.Store(st.Matched)
	for i, k := range recon.Kinds {
		r.Stats.Unmatched[i].Store(st.Unmatched[k])
	}
	r.Stats.Pending.Store(int64(st.Pending))
	r.Stats.Tracked.Store(int64(st.Tracked + len(r.unconfirmed)))
	r.Stats.Kept.Store(int64(st.Kept))
	r.Stats.Ignored.Store(st.Ignored)
	r.Stats.PlainDropped.Store(st.PlainDropped)
	if st.Overflow > r.Stats.Overflow.Load() {
		r.log.Error("reconciliation: windows overflowed their bounds; reported unreconciled as overflow findings",
			"overflow_total", st.Overflow)
	}
	r.Stats.Overflow.Store(st.Overflow)
	if confirmErr != nil {
		r.Stats.Errors.Add(1)
		r.log.Error("reconciliation: the store's three-way check failed; retried", "windows", len(r.unconfirmed),
			"err", confirmErr)
	}
	if len(r.found) == 0 && len(r.closed) == 0 && (!idle || cp == r.Stats.Checkpoint.Load()) {
		return nil
	}
	n, err := r.cfg.Store.CommitRecon(storage.ReconWrite{Findings: r.found, Closed: r.closed, Settled: r.settled,
		Checkpoint: cp, Now: now})
	if err != nil {
		// Kept, and committed with the next step: a checkpoint never passes an unrecorded finding.
		return fmt.Errorf("nrtrecon: %w", err)
	}
	r.Stats.Recorded.Add(uint64(n.Recorded))
	r.Stats.Settled.Add(uint64(n.Settled))
	r.Stats.Checkpoint.Store(cp)
	r.moveHold(cp)
	for _, c := range r.closed {
		heap.Push(&r.past, c.Through)
	}
	for len(r.past) > 0 && r.past[0] <= cp { // deleted with the checkpoint's batch
		heap.Pop(&r.past)
	}
	r.found, r.closed, r.settled = r.found[:0], r.closed[:0], r.settled[:0]
	return nil
}

// moveHold moves the retention hold to the durable checkpoint cp; a hold released (HoldMax)
// is taken again once the checkpoint is back within HoldMax/2 of the stream's end.
func (r *Runner) moveHold(cp uint64) {
	r.holdMu.Lock()
	defer r.holdMu.Unlock()
	if !r.held {
		if last := r.cfg.Seq.Last(); last > cp && last-cp > r.cfg.HoldMax/2 {
			return
		}
		r.hold, r.held = r.cfg.Seq.HoldRetention(), true
		r.log.Warn("reconciliation: holding retention again", "checkpoint", cp)
	}
	r.hold.Move(cp + 1)
}

// capHold releases the retention hold when more than HoldMax durable events lie past the
// durable checkpoint (never waiting for mu: a stuck step cannot keep it).
func (r *Runner) capHold() {
	r.holdMu.Lock()
	defer r.holdMu.Unlock()
	cp, last := r.Stats.Checkpoint.Load(), r.cfg.Seq.Last()
	if !r.held || last <= cp || last-cp <= r.cfg.HoldMax {
		return
	}
	r.hold.Release()
	r.held = false
	r.Stats.HoldReleased.Add(1)
	r.log.Error("reconciliation: too far behind; the retention hold is released (retention may trim events not yet reconciled; a gap makes the open windows partial)",
		"checkpoint", cp, "last", last, "hold_max", r.cfg.HoldMax)
}

// confirm records u's window, once its store check (when Partial) is made or cannot be; a check
// not due yet, or failing with time left, leaves it waiting (the error returned).
func (r *Runner) confirm(u unconfirmed, now uint64) error {
	w := u.w
	if w.Partial {
		if u.fails > 0 && now < u.next {
			r.unconfirmed = append(r.unconfirmed, u)
			return nil
		}
		diffs, err := r.cfg.Confirm(w.BizID)
		switch {
		case err == nil:
			r.m.Confirm(&w, diffs)
		case errors.Is(err, ErrUnverifiable):
			r.m.Unverifiable(&w, err.Error())
		default:
			r.Stats.ConfirmRetries.Add(1)
			if u.fails == 0 {
				u.since, u.delay = now, ConfirmBackoffMin
			} else {
				u.delay = min(2*u.delay, ConfirmBackoffMax)
			}
			u.fails++
			var failing time.Duration
			if now > u.since {
				failing = time.Duration(now - u.since)
			}
			if failing < r.cfg.ConfirmRetryFor {
				u.next = now + uint64(u.delay)
				r.unconfirmed = append(r.unconfirmed, u)
				return err
			}
			r.m.Unverifiable(&w, fmt.Sprintf("failed %d times over %v: %v", u.fails, failing.Round(time.Millisecond), err))
		}
	}
	r.record(w)
	return nil
}

// record adds a complete window to what the next commit writes.
func (r *Runner) record(w recon.Window) {
	r.closed = append(r.closed, storage.ReconClosedWindow{BizID: w.BizID, First: w.First, Through: w.Closed})
	if w.Matched() && len(w.OrderIDs) > 0 {
		r.settled = append(r.settled, storage.ReconSettled{BizID: w.BizID, First: w.First, Closed: w.Closed,
			Orders: w.OrderIDs})
	}
	for _, f := range w.Findings {
		r.found = append(r.found, f)
		r.log.Warn("reconciliation: unmatched when the window closed", "biz_id", f.BizID, "kind", f.Kind,
			"first", f.First, "closed", f.Closed, "orders", f.Orders, "differences", len(f.Differences)+f.More,
			"first_difference", firstDiff(f))
	}
}

// checkpoint is the sequence before the oldest window still open or waiting for its store
// check (the last read when there is none).
func (r *Runner) checkpoint() uint64 {
	cp := r.next - 1
	if oldest := r.m.Oldest(); oldest != 0 {
		cp = min(cp, oldest-1)
	}
	for _, u := range r.unconfirmed {
		cp = min(cp, u.w.First-1)
	}
	return cp
}

// release closes the oldest window holding the checkpoint back, unreconciled: an open one as
// overflow, one waiting for its store check as unverifiable; false when there is none.
func (r *Runner) release(now uint64) bool {
	why := fmt.Sprintf("more than %d windows recorded past the checkpoint", r.skipMax)
	oldest := r.m.Oldest()
	ui := -1
	for i, u := range r.unconfirmed {
		if ui < 0 || u.w.First < r.unconfirmed[ui].w.First {
			ui = i
		}
	}
	if ui >= 0 && (oldest == 0 || r.unconfirmed[ui].w.First < oldest) {
		w := r.unconfirmed[ui].w
		r.unconfirmed = slices.Delete(r.unconfirmed, ui, ui+1)
		r.m.Unverifiable(&w, why)
		r.record(w)
		return true
	}
	if !r.m.EvictOldest(why) {
		return false
	}
	for _, w := range r.m.Take() {
		_ = r.confirm(unconfirmed{w: w}, now) // an overflow window: not partial
	}
	return true
}

// throughs is a min-heap of the windows recorded past the checkpoint, by Through.
type throughs []uint64

func (h throughs) Len() int           { return len(h) }
func (h throughs) Less(i, j int) bool { return h[i] < h[j] }
func (h throughs) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *throughs) Push(x any)        { *h = append(*h, x.(uint64)) }
func (h *throughs) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

func firstDiff(f recon.Finding) string {
	if len(f.Differences) == 0 {
		return ""
	}
	return f.Differences[0].String()
}
