package eod

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/ledgercore/ledger/ledger"
	"github.com/ledgercore/ledger/ledger/accounting"
	"github.com/ledgercore/ledger/storage"
)

// Run closes day: it checks that day may be closed now, then runs (or resumes) its phases,
// then archives, in order, every day that may be archived. An archived day answers its
// record; a day whose trial balance failed is recomputed from the store. Bad input changes
// nothing and answers ErrInvalid or ErrPrecondition; a drain timeout or a failed trial
// balance is a Result, not an error.
func (r *Runner) Run(ctx context.Context, day ledger.Day, opts Options) (Result, error) {
	if !r.mu.TryLock() {
		return Result{}, ErrBusy
	}
	defer r.mu.Unlock()
	return r.run(ctx, day, opts)
}

func (r *Runner) run(ctx context.Context, day ledger.Day, opts Options) (Result, error) {
	if r.runFails != nil {
		if err := r.runFails(day); err != nil {
			return Result{}, err
		}
	}
	if !day.Valid() || !day.Next().Valid() {
		return Result{}, fmt.Errorf("%w: %v is not a date with a next day (from %v to %v)", ErrInvalid, uint32(day), ledger.DayMin, ledger.DayMax.Prev())
	}
	rec, meta, err := r.admit(day)
	if err != nil {
		return Result{}, err
	}
	if Phase(rec.Phase) == PhaseArchived {
		res, err := fromRecord(&rec)
		res.Steps = []string{"archived before: the recorded result"}
		return res, err
	}
	if Phase(rec.Phase) < PhaseSwitched && !meta.Early {
		now, end := r.cfg.Now(), DayEnd(day)
		if now.Before(end) {
			if !opts.Early {
				return Result{}, fmt.Errorf("%w: %v has not ended: it ends at %s UTC, it is %s; ask for early to close it now",
					ErrPrecondition, day, end.Format(time.DateTime), now.UTC().Format(time.DateTime))
			}
			meta.Early = true
			r.cfg.Log.Warn("end of day: closing a day before its calendar end, on request", "day", day.String(),
				"ends", end.Format(time.RFC3339), "now", now.UTC().Format(time.RFC3339))
		}
	}
	start := time.Now() // the run's duration only
	r.Stats.Runs.Add(1)
	defer r.Refresh()
	res := Result{Day: day}
	if o := Outcome(rec.Outcome); o == OutcomeTrialFailed || o == OutcomeRecomputing {
		// Recompute the snapshot and the trial balance from the store. The record says so,
		// durably, before the old snapshot is touched: a crash or an error while it is
		// replaced leaves a day that says its snapshot is incomplete (it cannot be accepted),
		// not a failed trial balance whose report no longer matches its snapshot.
		if err := r.put(&rec, PhaseDrained, OutcomeRecomputing, meta, recorded{}); err != nil {
			return res, err
		}
		res.Steps = append(res.Steps, fmt.Sprintf("the trial balance of %v failed before (%v): its snapshot and trial balance are recomputed from the store", day, o))
	}
	fresh := map[ledger.Day]bool{}
	err = r.phases(ctx, &rec, meta, &res, fresh)
	if err == nil {
		err = r.archive(ctx, fresh, &res)
	}
	r.Stats.LastRunSeconds.Store(math.Float64bits(time.Since(start).Seconds()))
	if err != nil {
		return res, err
	}
	return r.result(day, res.Steps)
}

// result reads day's record as a Result, with steps.
func (r *Runner) result(day ledger.Day, steps []string) (Result, error) {
	var res Result
	err := r.l.Read(func(v *storage.Reader) error {
		rec, found, err := v.EOD(day)
		if err != nil || !found {
			return cmp.Or(err, fmt.Errorf("eod: the record of %v is gone", day))
		}
		res, err = fromRecord(&rec)
		return err
	})
	res.Steps = steps
	return res, err
}

// admit reads the day's record and checks that day may be run: it has a record (a run to
// resume or repeat, or an archived day), or it is the current day. Earlier days' outcomes do
// not matter: the cutover never waits for them (only the archive does).
func (r *Runner) admit(day ledger.Day) (rec storage.EODRecord, meta recorded, err error) {
	err = r.l.Read(func(v *storage.Reader) error {
		var found bool
		if rec, found, err = v.EOD(day); err != nil {
			return err
		}
		if found {
			if len(rec.Result) > 0 {
				if err := json.Unmarshal(rec.Result, &meta); err != nil {
					return fmt.Errorf("eod: record of %v: %w", day, err)
				}
			}
			return nil
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
		return nil
	})
	return rec, meta, err
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

// put writes rec with phase, outcome and body (meta's fields kept), durably.
func (r *Runner) put(rec *storage.EODRecord, p Phase, o Outcome, meta recorded, body recorded) error {
	rec.Phase, rec.Outcome, rec.Updated = uint8(p), uint8(o), uint64(r.cfg.Now().UnixNano())
	if rec.Started == 0 {
		rec.Started = rec.Updated
	}
	body.Early, body.Note, body.Accepted, body.Superseded = meta.Early, meta.Note, meta.Accepted, meta.Superseded
	rec.Result = nil
	if body.Report != nil || len(body.Stuck) > 0 || body.Early || body.Note != "" || body.Accepted != 0 || body.Superseded != 0 {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rec.Result = b
	}
	if err := r.store.PutEOD(rec); err != nil {
		return err
	}
	if p == PhaseArchived {
		r.noteArchived(rec.Day)
	}
	if r.at != nil {
		r.at(p)
	}
	return nil
}

// phases runs the phases rec has not completed, up to the trial balance, recording each.
// A day whose trial balance passed is recorded as OutcomeTrialPassed (fresh): archive
// archives it.
func (r *Runner) phases(ctx context.Context, rec *storage.EODRecord, meta recorded, res *Result, fresh map[ledger.Day]bool) error {
	step := func(format string, args ...any) { res.Steps = append(res.Steps, fmt.Sprintf(format, args...)) }
	save := func(p Phase, o Outcome, body recorded) error { return r.put(rec, p, o, meta, body) }
	if rec.Phase == 0 {
		if err := save(PhaseStarted, OutcomeRunning, recorded{}); err != nil {
			return err
		}
		if meta.Early {
			step("early: %v is closed before its calendar end (%s UTC), on request", rec.Day, DayEnd(rec.Day).Format(time.DateTime))
		}
	}
	if Phase(rec.Phase) < PhaseSwitched {
		sctx, cancel := context.WithTimeout(ctx, r.cfg.SwitchTimeout)
		err := r.l.SwitchDay(sctx, rec.Day.Next())
		cancel()
		if err != nil {
			return fmt.Errorf("eod: switch to %v: %w", rec.Day.Next(), err)
		}
		step("switch: new work goes to %v", rec.Day.Next())
		if err := save(PhaseSwitched, OutcomeRunning, recorded{}); err != nil {
			return err
		}
	}
	if Phase(rec.Phase) < PhaseDrained {
		stuck, err := r.drain(ctx, rec.Day)
		if err != nil {
			return err
		}
		if len(stuck) > 0 {
			step("drain: %d legs of %v still in flight after %v", len(stuck), rec.Day, r.cfg.DrainTimeout)
			r.Stats.DrainTimeouts.Add(1)
			res.Stuck = stuck
			return save(PhaseSwitched, OutcomeDrainTimeout, recorded{Stuck: stuck})
		}
		step("drain: buffers sent, no leg of %v in flight", rec.Day)
		if err := save(PhaseDrained, OutcomeRunning, recorded{}); err != nil {
			return err
		}
	}
	if Phase(rec.Phase) < PhaseSnapshot {
		n, err := r.snapshot(ctx, rec.Day)
		if err != nil {
			return err
		}
		step("snapshot: %d closing balances of %v", n, rec.Day)
		if err := save(PhaseSnapshot, OutcomeRunning, recorded{}); err != nil {
			return err
		}
	}
	if Phase(rec.Phase) >= PhaseTrial {
		return nil // passed or accepted, waiting for the archive
	}
	// The trial balance opens from the day before's snapshot: a day before that has none
	// yet (its drain timed out, or a crash) runs its phases first; its legs are drained,
	// since this day's are.
	if err := r.before(ctx, rec.Day, res, fresh); err != nil {
		return err
	}
	rep, err := r.trial(ctx, rec.Day)
	if err != nil {
		return err
	}
	res.Report = &rep
	if !rep.Passed {
		step("trial balance: FAILED, %d differences; %v is not archived", len(rep.Differences), rec.Day)
		r.Stats.TrialFailures.Add(1)
		return save(PhaseTrial, OutcomeTrialFailed, recorded{Report: &rep})
	}
	step("trial balance: passed")
	fresh[rec.Day] = true
	return save(PhaseTrial, OutcomeTrialPassed, recorded{Report: &rep})
}

// before runs the phases of the day before day, if it is not the store's first and has no
// snapshot yet.
func (r *Runner) before(ctx context.Context, day ledger.Day, res *Result, fresh map[ledger.Day]bool) error {
	var (
		prev  storage.EODRecord
		meta  recorded
		found bool
		first bool
	)
	err := r.l.Read(func(v *storage.Reader) error {
		var err error
		if _, first, err = r.first(v, day); err != nil || first {
			return err
		}
		if prev, found, err = v.EOD(day.Prev()); err != nil || !found {
			return cmp.Or(err, fmt.Errorf("eod: %v has no end-of-day record", day.Prev()))
		}
		if len(prev.Result) > 0 {
			return json.Unmarshal(prev.Result, &meta)
		}
		return nil
	})
	if err != nil || first || Phase(prev.Phase) >= PhaseSnapshot {
		return err
	}
	res.Steps = append(res.Steps, fmt.Sprintf("%v has no snapshot yet (%v): its phases run first", prev.Day, Outcome(prev.Outcome)))
	sub := Result{Day: prev.Day}
	err = r.phases(ctx, &prev, meta, &sub, fresh)
	for _, s := range sub.Steps {
		res.Steps = append(res.Steps, fmt.Sprintf("%v: %s", prev.Day, s))
	}
	if err == nil && Phase(prev.Phase) < PhaseSnapshot {
		err = fmt.Errorf("eod: %v could not be snapshot (%v): the trial balance of %v needs it", prev.Day, Outcome(prev.Outcome), day)
	}
	return err
}

// archive archives, oldest first, every day whose trial balance passed (checked again
// unless it ran in this run: an earlier day's snapshot may have been recomputed since) or
// whose differences were accepted, up to the first day that may not be archived.
func (r *Runner) archive(ctx context.Context, fresh map[ledger.Day]bool, res *Result) error {
	var recs []storage.EODRecord
	err := r.l.Read(func(v *storage.Reader) error {
		from, err := r.from(v)
		if err != nil {
			return err
		}
		return v.ForEachEODFrom(from, func(rec *storage.EODRecord) error {
			if Phase(rec.Phase) != PhaseArchived {
				recs = append(recs, *rec)
			}
			return nil
		})
	})
	if err != nil {
		return err
	}
	step := func(format string, args ...any) { res.Steps = append(res.Steps, fmt.Sprintf(format, args...)) }
	for i := range recs {
		rec := &recs[i]
		var meta recorded
		if len(rec.Result) > 0 {
			if err := json.Unmarshal(rec.Result, &meta); err != nil {
				return fmt.Errorf("eod: record of %v: %w", rec.Day, err)
			}
		}
		body := recorded{Report: meta.Report}
		switch Outcome(rec.Outcome) {
		case OutcomeTrialPassed:
			if !fresh[rec.Day] {
				rep, err := r.trial(ctx, rec.Day)
				if err != nil {
					return err
				}
				if !rep.Passed {
					step("archive: the trial balance of %v, checked again, FAILED: %d differences", rec.Day, len(rep.Differences))
					r.Stats.TrialFailures.Add(1)
					return r.put(rec, PhaseTrial, OutcomeTrialFailed, meta, recorded{Report: &rep})
				}
				step("archive: the trial balance of %v, checked again, passed", rec.Day)
				body.Report = &rep
			}
			if err := r.put(rec, PhaseArchived, OutcomeClosed, meta, body); err != nil {
				return err
			}
			r.Stats.Closed.Add(1)
			step("archive: %v closed and sealed", rec.Day)
		case OutcomeAccepted:
			if !fresh[rec.Day] {
				// The opening (the day before's snapshot) may have been recomputed since the
				// acceptance: the differences sealed must be the ones accepted.
				rep, err := r.trial(ctx, rec.Day)
				if err != nil {
					return err
				}
				if !sameDifferences(&rep, meta.Report) {
					meta.Superseded = uint64(r.cfg.Now().UnixNano())
					if rep.Passed {
						if err := r.put(rec, PhaseArchived, OutcomeClosed, meta, recorded{Report: &rep}); err != nil {
							return err
						}
						r.Stats.Closed.Add(1)
						r.cfg.Log.Warn("end of day: an accepted day passed when checked again; archived as passed", "day", rec.Day.String(), "note", meta.Note)
						step("archive: the trial balance of %v, accepted with %d differences (%q), checked again, passed: closed and sealed as passed, the acceptance noted as superseded",
							rec.Day, len(meta.Report.Differences), meta.Note)
						continue
					}
					step("archive: the trial balance of %v, accepted with %d differences (%q), checked again, has other differences (%d): the acceptance is superseded, %v is failed again",
						rec.Day, len(meta.Report.Differences), meta.Note, len(rep.Differences), rec.Day)
					r.Stats.TrialFailures.Add(1)
					r.cfg.Log.Error("end of day: an accepted day's differences changed when checked again; the acceptance is superseded",
						"day", rec.Day.String(), "accepted", len(meta.Report.Differences), "now", len(rep.Differences), "note", meta.Note)
					return r.put(rec, PhaseTrial, OutcomeTrialFailed, meta, recorded{Report: &rep})
				}
				step("archive: the trial balance of %v, checked again, has the %d differences accepted", rec.Day, len(rep.Differences))
				body.Report = &rep
			}
			if err := r.put(rec, PhaseArchived, OutcomeAccepted, meta, body); err != nil {
				return err
			}
			r.Stats.Closed.Add(1)
			step("archive: %v sealed, accepted with differences (%q)", rec.Day, meta.Note)
		default:
			if i+1 < len(recs) && res.Day > rec.Day {
				step("archive: %v waits for %v (%v, %v) to be archived", res.Day, rec.Day, Phase(rec.Phase), Outcome(rec.Outcome))
			}
			return nil
		}
	}
	return nil
}

// Accept accepts the differences of day, whose trial balance failed, with an operator's
// note. Only a failed trial balance whose snapshot and report are complete may be accepted
// (not a day whose recomputation is running or was interrupted): its trial balance is run
// again on the stored snapshot, and if its differences are not the recorded ones (those the
// operator saw) nothing is accepted: the new report is recorded and answered with
// ErrPrecondition. Otherwise the acceptance is recorded with the differences (durably), and
// the day is archived as accepted with differences once every earlier day is archived (then,
// or by a later run, which checks its differences again). Accepting again with the same note
// (a retry after a lost answer) answers the recorded result.
func (r *Runner) Accept(ctx context.Context, day ledger.Day, note string) (Result, error) {
	if !r.mu.TryLock() {
		return Result{}, ErrBusy
	}
	defer r.mu.Unlock()
	switch {
	case !day.Valid():
		return Result{}, fmt.Errorf("%w: %v is not a date", ErrInvalid, uint32(day))
	case strings.TrimSpace(note) == "":
		return Result{}, fmt.Errorf("%w: accepting differences needs a note", ErrInvalid)
	case len(note) > NoteBytesMax || !utf8.ValidString(note):
		return Result{}, fmt.Errorf("%w: a note is at most %d bytes of UTF-8", ErrInvalid, NoteBytesMax)
	}
	var (
		rec   storage.EODRecord
		found bool
		meta  recorded
	)
	if err := r.l.Read(func(v *storage.Reader) (err error) { rec, found, err = v.EOD(day); return err }); err != nil {
		return Result{}, err
	}
	if found && len(rec.Result) > 0 {
		if err := json.Unmarshal(rec.Result, &meta); err != nil {
			return Result{}, fmt.Errorf("eod: record of %v: %w", day, err)
		}
	}
	// The same acceptance again (a reply lost): the recorded result, while the day stands
	// accepted, or once it is archived (an acceptance superseded by a pass at the archive);
	// not for a day that was run again since and stands anywhere else.
	accepted := Outcome(rec.Outcome) == OutcomeAccepted && meta.Superseded == 0
	if found && meta.Accepted != 0 && meta.Note == note && (accepted || Phase(rec.Phase) == PhaseArchived) {
		return r.result(day, []string{fmt.Sprintf("accepted before with this note: the recorded result of %v", day)})
	}
	// The day's opening is the day before's snapshot: while that one is incomplete (being
	// recomputed, or not taken yet) a trial balance of this day says nothing.
	var prev storage.EODRecord
	var prevFound bool
	if err := r.l.Read(func(v *storage.Reader) (err error) { prev, prevFound, err = v.EOD(day.Prev()); return err }); err != nil {
		return Result{}, err
	}
	if prevFound && (Outcome(prev.Outcome) == OutcomeRecomputing || Phase(prev.Phase) < PhaseSnapshot) {
		return Result{}, fmt.Errorf("%w: %v's opening is %v's snapshot, which stands at %v (%v): run %v's end of day first",
			ErrPrecondition, day, day.Prev(), Phase(prev.Phase), Outcome(prev.Outcome), day.Prev())
	}
	if !found || Outcome(rec.Outcome) != OutcomeTrialFailed || Phase(rec.Phase) != PhaseTrial || meta.Report == nil {
		what := "has no end-of-day record"
		if found {
			what = fmt.Sprintf("stands at %v (%v)", Phase(rec.Phase), Outcome(rec.Outcome))
		}
		return Result{}, fmt.Errorf("%w: %v %s: only a failed trial balance's differences can be accepted", ErrPrecondition, day, what)
	}
	defer r.Refresh()
	rep, err := r.trial(ctx, day)
	if err != nil {
		return Result{}, err
	}
	if !sameDifferences(&rep, meta.Report) {
		o := OutcomeTrialFailed
		if rep.Passed {
			o = OutcomeTrialPassed // archived (checked again) by the next run
		}
		if err := r.put(&rec, PhaseTrial, o, meta, recorded{Report: &rep}); err != nil {
			return Result{}, err
		}
		res := Result{Day: day, Phase: PhaseTrial, Outcome: o, Report: &rep, Early: meta.Early, Note: meta.Note, Superseded: meta.Superseded != 0,
			Steps: []string{fmt.Sprintf("not accepted: the trial balance of %v, run again, differs from the one recorded: %d differences, not %d", day, len(rep.Differences), len(meta.Report.Differences))}}
		return res, fmt.Errorf("%w: the trial balance of %v changed since it was reported (%d differences, not %d): nothing accepted; the new differences: %s",
			ErrPrecondition, day, len(rep.Differences), len(meta.Report.Differences), listDifferences(rep.Differences))
	}
	meta.Note, meta.Accepted, meta.Superseded = note, uint64(r.cfg.Now().UnixNano()), 0
	if err := r.put(&rec, PhaseTrial, OutcomeAccepted, meta, recorded{Report: &rep}); err != nil {
		return Result{}, err
	}
	r.cfg.Log.Warn("end of day: differences accepted", "day", day.String(), "differences", len(rep.Differences), "note", note)
	res := Result{Day: day, Steps: []string{fmt.Sprintf("accepted: the %d differences of %v, checked again on its snapshot, with the note %q", len(rep.Differences), day, note)}}
	if err := r.archive(ctx, map[ledger.Day]bool{day: true}, &res); err != nil {
		return res, err
	}
	return r.result(day, res.Steps)
}

// sameDifferences reports whether rep has exactly the outcome and differences of was.
func sameDifferences(rep, was *accounting.DayReport) bool {
	return was != nil && rep.Passed == was.Passed && slices.Equal(rep.Differences, was.Differences)
}

// listDifferencesMax bounds the differences an error names.
const listDifferencesMax = 10

func listDifferences(ds []string) string {
	if len(ds) <= listDifferencesMax {
		return strings.Join(ds, "; ")
	}
	return fmt.Sprintf("%s; and %d more", strings.Join(ds[:listDifferencesMax], "; "), len(ds)-listDifferencesMax)
}

// RunDue closes every day that is due, in order: the days switched away from and not
// archived (resumed, drains retried, failed trial balances recomputed), then the current
// day while its calendar end (UTC) has passed (catching up after downtime), and with
// opts.Early the current day once more even if it has not ended; at most
// Config.CatchUpDaysMax days a call, but always the current day's switch when it is due, so
// that failed days never stop the days (a cap is logged and said in the last result's
// steps: the rest are due at the next call). A run that does not
// archive its day does not stop the next day's (the cutover never waits); an error does.
// It answers each run's result, oldest first (none: no day was due).
func (r *Runner) RunDue(ctx context.Context, opts Options) ([]Result, error) {
	st, err := r.Status()
	if err != nil {
		return nil, err
	}
	var out []Result
	limit := r.cfg.CatchUpDaysMax
	capped := func(out []Result) {
		r.cfg.Log.Warn("end of day: catch-up capped: the days still due run at the next call", "days", len(out),
			"last", out[len(out)-1].Day.String())
		out[len(out)-1].Steps = append(out[len(out)-1].Steps,
			fmt.Sprintf("catch-up: %d days run, the most one call runs (%d, and always one switch); the days still due run at the next call", len(out), limit))
	}
	// The open days, in order (a day archives only after the days before it). An error on one
	// of them is logged and returned, and does not keep the current day from its switch.
	open := st.Open
	var errs []error
	for i, o := range open {
		if i == limit {
			if len(out) > 0 {
				capped(out)
			}
			break
		}
		res, err := r.Run(ctx, o.Day, Options{})
		if err != nil {
			if ctx.Err() != nil {
				return out, err
			}
			r.cfg.Log.Error("end of day: an open day could not be run again; the current day goes on", "day", o.Day.String(), "err", err)
			errs = append(errs, fmt.Errorf("eod: %v: %w", o.Day, err))
			continue
		}
		out = append(out, res)
	}
	out, err = r.runCurrent(ctx, opts, out, limit, capped)
	return out, errors.Join(append(errs, err)...)
}

// runCurrent switches the current day, and every day after it that is due, in order (the
// catch-up: at most limit days run in the call).
func (r *Runner) runCurrent(ctx context.Context, opts Options, out []Result, limit int, capped func([]Result)) ([]Result, error) {
	early, switched := opts.Early, false
	for {
		st, err := r.Status()
		if err != nil {
			return out, err
		}
		due := !r.cfg.Now().Before(DayEnd(st.Day))
		if !due && !early {
			return out, nil
		}
		if switched && len(out) >= limit {
			capped(out)
			return out, nil
		}
		res, err := r.Run(ctx, st.Day, Options{Early: !due})
		if err != nil {
			return out, err
		}
		out = append(out, res)
		early, switched = early && due, true
		if res.Phase < PhaseSwitched {
			return out, fmt.Errorf("eod: %v did not switch (%v)", st.Day, res.Outcome)
		}
	}
}

func failedLedgers(rep *accounting.DayReport) map[uint32]bool {
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
	return failed
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
		if r.snapshotStarts != nil {
			r.snapshotStarts(day)
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
			w.Discard() // never a partial snapshot committed on an error
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
