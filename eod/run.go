package eod

import (
	"context"
	"encoding/json"
	"fmt"
	"math"

	"github.com/ledgercore/ledger/ledger"
	"github.com/ledgercore/ledger/ledger/accounting"
	"github.com/ledgercore/ledger/storage"
)

// Run closes day: it checks that day may be closed now, then runs (or resumes) its phases.
// A day already closed answers its record. Bad input changes nothing and answers ErrInvalid
// or ErrPrecondition; a drain timeout or a failed trial balance is a Result, not an error.
func (r *Runner) Run(ctx context.Context, day ledger.Day) (Result, error) {
	if !r.mu.TryLock() {
		return Result{}, ErrBusy
	}
	defer r.mu.Unlock()
	if !day.Valid() {
		return Result{}, fmt.Errorf("%w: %v is not a date", ErrInvalid, uint32(day))
	}
	rec, err := r.admit(day)
	if err != nil || rec.Outcome == uint8(OutcomeClosed) {
		if err != nil {
			return Result{}, err
		}
		res, err := fromRecord(&rec)
		res.Steps = []string{"closed before: the recorded result"}
		return res, err
	}
	start := r.cfg.Now()
	r.Stats.Runs.Add(1)
	res, err := r.phases(ctx, &rec)
	r.Stats.LastRunSeconds.Store(math.Float64bits(r.cfg.Now().Sub(start).Seconds()))
	return res, err
}

// admit reads the day's record and checks that day may be run: it has a record not closed
// (a run to resume or repeat), or it is the current day and the day before it is closed.
func (r *Runner) admit(day ledger.Day) (rec storage.EODRecord, err error) {
	err = r.l.Read(func(v *storage.Reader) error {
		var found bool
		if rec, found, err = v.EOD(day); err != nil || found {
			return err
		}
		cur, err := currentDay(v, r.l.Shards())
		if err != nil {
			return err
		}
		switch {
		case day > cur:
			return fmt.Errorf("%w: %v has not begun (the current accounting day is %v)", ErrInvalid, day, cur)
		case day < cur:
			return fmt.Errorf("%w: %v is before the current accounting day %v and has no end-of-day record", ErrInvalid, day, cur)
		}
		rec = storage.EODRecord{Day: day}
		if _, first, err := r.first(v, day); err != nil || first {
			return err
		}
		prev, found, err := v.EOD(day.Prev())
		switch {
		case err != nil:
			return err
		case !found || prev.Outcome != uint8(OutcomeClosed):
			what := "has no end-of-day record"
			if found {
				what = fmt.Sprintf("stands at %v (%v)", Phase(prev.Phase), Outcome(prev.Outcome))
			}
			return fmt.Errorf("%w: %v %s; run end of day for it first", ErrPrecondition, day.Prev(), what)
		}
		return nil
	})
	return rec, err
}

// first reads the clocks at which the shards began day, and whether day is the store's first
// (no shard began the day before it).
func (r *Runner) first(v *storage.Reader, day ledger.Day) (starts []uint64, first bool, err error) {
	starts, found, err := v.DayStarts(day, r.l.Shards())
	if err != nil || !found {
		return nil, false, fmt.Errorf("eod: the shards' start of %v is not stored (%v)", day, err)
	}
	_, before, err := v.DayStarts(day.Prev(), r.l.Shards())
	return starts, !before, err
}

// phases runs the phases rec has not completed, recording each.
func (r *Runner) phases(ctx context.Context, rec *storage.EODRecord) (Result, error) {
	res := Result{Day: rec.Day}
	step := func(format string, args ...any) { res.Steps = append(res.Steps, fmt.Sprintf(format, args...)) }
	save := func(p Phase, o Outcome, body *recorded) error {
		rec.Phase, rec.Outcome, rec.Updated = uint8(p), uint8(o), uint64(r.cfg.Now().UnixNano())
		if rec.Started == 0 {
			rec.Started = rec.Updated
		}
		rec.Result = nil
		if body != nil {
			b, err := json.Marshal(body)
			if err != nil {
				return err
			}
			rec.Result = b
		}
		res.Phase, res.Outcome = p, o
		return r.store.PutEOD(rec)
	}
	if rec.Phase == 0 {
		if err := save(PhaseStarted, OutcomeRunning, nil); err != nil {
			return res, err
		}
	}
	if Phase(rec.Phase) < PhaseSwitched {
		sctx, cancel := context.WithTimeout(ctx, r.cfg.SwitchTimeout)
		err := r.l.SwitchDay(sctx, rec.Day.Next())
		cancel()
		if err != nil {
			return res, fmt.Errorf("eod: switch to %v: %w", rec.Day.Next(), err)
		}
		step("switch: new work goes to %v", rec.Day.Next())
		if err := save(PhaseSwitched, OutcomeRunning, nil); err != nil {
			return res, err
		}
	}
	if Phase(rec.Phase) < PhaseDrained {
		stuck, err := r.drain(ctx, rec.Day)
		if err != nil {
			return res, err
		}
		if len(stuck) > 0 {
			step("drain: %d legs of %v still in flight after %v", len(stuck), rec.Day, r.cfg.DrainTimeout)
			r.Stats.DrainTimeouts.Add(1)
			r.Stats.LastFailed.Store(true)
			res.Stuck = stuck
			return res, save(PhaseSwitched, OutcomeDrainTimeout, &recorded{Stuck: stuck})
		}
		step("drain: buffers sent, no leg of %v in flight", rec.Day)
		if err := save(PhaseDrained, OutcomeRunning, nil); err != nil {
			return res, err
		}
	}
	if Phase(rec.Phase) < PhaseSnapshot {
		n, err := r.snapshot(ctx, rec.Day)
		if err != nil {
			return res, err
		}
		step("snapshot: %d closing balances of %v", n, rec.Day)
		if err := save(PhaseSnapshot, OutcomeRunning, nil); err != nil {
			return res, err
		}
	}
	rep, err := r.trial(ctx, rec.Day)
	if err != nil {
		return res, err
	}
	res.Report = &rep
	r.noteLedgers(&rep)
	if !rep.Passed {
		step("trial balance: FAILED, %d differences; %v is not archived", len(rep.Differences), rec.Day)
		r.Stats.TrialFailures.Add(1)
		r.Stats.LastFailed.Store(true)
		return res, save(PhaseTrial, OutcomeTrialFailed, &recorded{Report: &rep})
	}
	step("trial balance: passed")
	if err := save(PhaseArchived, OutcomeClosed, &recorded{Report: &rep}); err != nil {
		return res, err
	}
	step("archive: %v closed and sealed", rec.Day)
	r.Stats.Closed.Add(1)
	r.Stats.LastFailed.Store(false)
	r.Stats.LastClosedDay.Store(uint32(rec.Day))
	return res, nil
}

func (r *Runner) noteLedgers(rep *accounting.DayReport) {
	failed := map[uint32]bool{}
	for _, l := range rep.Trial.Ledgers {
		failed[l.Ledger] = false
	}
	if !rep.Passed {
		for _, l := range rep.Trial.Ledgers { // which ledgers the differences name
			prefix := fmt.Sprintf("ledger %d: ", l.Ledger)
			for _, d := range rep.Differences {
				if len(d) > len(prefix) && d[:len(prefix)] == prefix && !isInfo(d[len(prefix):]) {
					failed[l.Ledger] = true
				}
			}
		}
	}
	for l, f := range failed {
		r.Stats.FailedLedgers.Store(l, f)
	}
}

func isInfo(d string) bool { return len(d) >= 12 && d[:12] == "unclassified" }

// drain sends the buffers and waits for the legs in flight, at most DrainTimeout; then it
// reads, on a durable view, the outbox legs of day (or of no day) still there: none, unless
// the wait timed out.
func (r *Runner) drain(ctx context.Context, day ledger.Day) ([]string, error) {
	dctx, cancel := context.WithTimeout(ctx, r.cfg.DrainTimeout)
	err := r.l.Drain(dctx)
	cancel()
	if err != nil && ctx.Err() != nil {
		return nil, ctx.Err()
	}
	var stuck []string
	n := 0
	rerr := r.l.Read(func(v *storage.Reader) error {
		return v.ForEachOutboxLeg(func(l ledger.Leg) error {
			if l.Day > day {
				return nil
			}
			if n++; len(stuck) < StuckLegsMax {
				stuck = append(stuck, fmt.Sprintf("transfer %d leg %d from shard %d to account %d, amount %d, day %v",
					l.TransferID, l.Kind, l.From, l.Account, l.Amount, l.Day))
			}
			return nil
		})
	})
	if rerr != nil {
		return nil, rerr
	}
	if n > len(stuck) {
		stuck = append(stuck, fmt.Sprintf("and %d more", n-len(stuck)))
	}
	if n == 0 && err != nil {
		// The wait timed out on later days' legs only: the day is drained.
		return nil, nil
	}
	return stuck, nil
}

// snapshot writes each account's closing balance of day, from one durable view.
func (r *Runner) snapshot(ctx context.Context, day ledger.Day) (int, error) {
	n := 0
	err := r.l.Read(func(v *storage.Reader) error {
		starts, first, err := r.first(v, day)
		if err != nil {
			return err
		}
		w := r.store.WriteSnapshot(day)
		err = v.ForEachDayAccount(storage.DayQuery{Day: day, First: first, Starts: starts}, func(a *storage.DayAccount) error {
			if n++; n%1024 == 0 && ctx.Err() != nil {
				return ctx.Err()
			}
			closing, ok := a.Later.Back(a.Balance)
			if !ok {
				return fmt.Errorf("eod: account %d: later days moved more than its balance holds", a.ID)
			}
			return w.Add(a.ID, closing)
		})
		if err != nil {
			_ = w.Close()
			return err
		}
		return w.Close()
	})
	return n, err
}

// trial checks the stored snapshot of day against the opening and the day's postings, on a
// durable view taken after the snapshot was written.
func (r *Runner) trial(ctx context.Context, day ledger.Day) (accounting.DayReport, error) {
	b := accounting.NewDayBuilder(r.cfg.Chart, day)
	n := 0
	err := r.l.Read(func(v *storage.Reader) error {
		starts, first, err := r.first(v, day)
		if err != nil {
			return err
		}
		return v.ForEachDayAccount(storage.DayQuery{Day: day, First: first, Starts: starts}, func(a *storage.DayAccount) error {
			if n++; n%1024 == 0 && ctx.Err() != nil {
				return ctx.Err()
			}
			closing, err := v.SnapshotBalance(day, a.ID)
			if err != nil {
				return err
			}
			acc := a.Account
			acc.Balance = closing
			b.Add(acc, a.Opening, &a.Day)
			return nil
		})
	})
	if err != nil {
		return accounting.DayReport{}, err
	}
	return b.Report(), nil
}
