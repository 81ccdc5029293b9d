// Package eod runs end of day (日终): it closes an accounting day in the ordered phases below
// (docs/ARCHITECTURE.md, "Accounting days and end of day"), each recorded durably in the
// day's end-of-day record (storage.EODRecord), so that a run a crash interrupted resumes
// where it stopped and a run for a closed day answers the recorded result:
//
//  1. switch: every shard switches new work to the next day, each at a point of its own
//     stream (actors.Ledger.SwitchDay); transfers keep flowing, there is no global lock.
//  2. drain: hot-account buffers are sent and the split legs in flight (holds' expiry legs
//     included) are waited for, at most DrainTimeout; then no leg of the day may be left in
//     any outbox. A timeout reports the legs still stuck and leaves the day open.
//  3. snapshot: each account's closing balance of the day, from one durable view: its
//     balance now, less what later days' postings moved (storage.ForEachDayAccount).
//  4. trial balance: on a second durable view, the stored closing balances against the
//     opening (the day before's snapshot) moved by the day's postings, and the trial
//     balance of the closing balances (accounting.DayBuilder).
//  5. archive: a day whose trial balance passed is closed: its record, snapshot and report
//     are sealed (no run changes them again). There is no archive storage: the day's
//     postings stay where they are; archive means sealed. Days are archived in order: a day
//     whose trial balance passed waits (OutcomeTrialPassed) until every earlier day is
//     archived, and its trial balance is checked again then (an earlier day's snapshot,
//     its opening, may have been recomputed meanwhile). A day that failed is not archived;
//     the run reports the differences. Running it again recomputes its snapshot and trial
//     balance from the store (recorded as OutcomeRecomputing first, so that an interrupted
//     recomputation never leaves a failed day with a partial snapshot); an operator may
//     instead accept its differences with a note (Accept, which runs the trial balance
//     again and accepts only the differences recorded), recorded with them, and the day is
//     archived as accepted with differences, its trial balance checked again then.
//
// The switch never waits for earlier days: the end of day of a day switches, drains,
// snapshots and checks it whatever earlier days' outcomes, so one failed day does not stop
// accounting days; only the archive waits. A day is closed (its switch) only once its
// calendar end (UTC) has passed, unless the caller asks for early (logged, and recorded in
// the day's record): the wall clock decides only that, it never stamps a posting.
//
// The day of a posting is its transfer's: a split transfer's credit leg and its answer carry
// the day of its debit side, so a day boundary never separates a transfer's two halves and
// transit accounts are drained at each close.
package eod

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ledgercore/ledger/actors"
	"github.com/ledgercore/ledger/ledger"
	"github.com/ledgercore/ledger/ledger/accounting"
	"github.com/ledgercore/ledger/ledger/rules"
	"github.com/ledgercore/ledger/storage"
)

// Phase is the last phase of a day's end of day that completed.
type Phase uint8

const (
	PhaseStarted Phase = 1 + iota
	PhaseSwitched
	PhaseDrained
	PhaseSnapshot
	PhaseTrial
	PhaseArchived
	phaseLast
)

var phaseNames = [...]string{"", "started", "switched", "drained", "snapshot", "trial balance", "archived"}

func (p Phase) String() string {
	if p < phaseLast {
		return phaseNames[p]
	}
	return fmt.Sprintf("phase(%d)", uint8(p))
}

// Outcome is where a day's end of day stands.
type Outcome uint8

const (
	OutcomeRunning      Outcome = 1 + iota // running, or interrupted by a crash: run it again
	OutcomeDrainTimeout                    // legs of the day still in flight: run it again
	OutcomeTrialFailed                     // the trial balance failed: the day stays open
	OutcomeClosed                          // the trial balance passed; archived
	OutcomeTrialPassed                     // the trial balance passed; waits for an earlier day to be archived
	OutcomeAccepted                        // the trial balance failed and an operator accepted its differences (archived once every earlier day is)
	// OutcomeRecomputing: a failed day's snapshot is being replaced (recorded before the
	// old one is touched): until its trial balance runs again its snapshot may be partial
	// and it has no report; run it again (it cannot be accepted).
	OutcomeRecomputing
	outcomeLast
)

var outcomeNames = [...]string{"", "running", "drain timeout", "trial balance failed", "closed",
	"trial balance passed, waiting for an earlier day", "accepted with differences", "recomputing (snapshot incomplete)"}

func (o Outcome) String() string {
	if o < outcomeLast {
		return outcomeNames[o]
	}
	return fmt.Sprintf("outcome(%d)", uint8(o))
}

// Limits and defaults (units last).
const (
	// DrainTimeoutDefault bounds how long the drain waits for the day's legs in flight.
	DrainTimeoutDefault = 30 * time.Second
	// SwitchTimeoutDefault bounds how long the switch waits for every shard to be durable on
	// the next day.
	SwitchTimeoutDefault = 30 * time.Second
	// StuckLegsMax is how many stuck legs a drain timeout names.
	StuckLegsMax = 10
)

// ErrInvalid: the day asked for cannot be closed (not a date, no next day, in the future,
// already past without a record), or a note is missing or too long; nothing was changed.
var ErrInvalid = errors.New("eod: invalid request")

// ErrPrecondition: the day cannot be closed now (its calendar end has not come and early was
// not asked), or its differences cannot be accepted (its trial balance did not fail);
// nothing was changed.
var ErrPrecondition = errors.New("eod: precondition failed")

// NoteBytesMax bounds the note of an acceptance.
const NoteBytesMax = 1000

// ErrBusy: another end of day is running.
var ErrBusy = errors.New("eod: an end of day is running")

// Config configures a Runner.
type Config struct {
	Chart         *rules.Chart // nil: rules.Default
	DrainTimeout  time.Duration
	SwitchTimeout time.Duration
	// Now is the wall clock: for the record's times, and to tell whether a day's calendar
	// end has passed (never to stamp a posting); nil: time.Now.
	Now func() time.Time
	// Log takes the warnings (an early close, an acceptance); nil: slog.Default().
	Log *slog.Logger
	// CatchUpDaysMax bounds the days one RunDue runs (0: CatchUpDaysMaxDefault); the rest
	// are due at the next call.
	CatchUpDaysMax int
}

// CatchUpDaysMaxDefault is the default Config.CatchUpDaysMax.
const CatchUpDaysMaxDefault = 31

// Options are a run's requests.
type Options struct {
	// Early: close the day even though its calendar end (UTC) has not come yet.
	Early bool
}

// Stats are the runner's counters and gauges, read by the metrics adapter. The gauges are
// derived from the stored end-of-day records (Refresh), at the start and after every run,
// so that a restart neither clears nor invents an alert.
type Stats struct {
	Runs           atomic.Uint64 // runs that did a phase (not those answered from a record)
	DrainTimeouts  atomic.Uint64
	TrialFailures  atomic.Uint64
	Closed         atomic.Uint64 // days archived
	LastRunSeconds atomic.Uint64 // math.Float64bits of the last run's duration
	// LastFailed: some day switched away from is not archived and its last trial balance
	// failed, its drain timed out, or its recomputation was interrupted.
	LastFailed atomic.Bool
	// DaysOpen: days switched away from and not archived.
	DaysOpen      atomic.Int64
	LastClosedDay atomic.Uint32 // yyyymmdd of the latest day archived (0: none)
	// FailedLedgers: ledger (uint32) -> bool: the trial balance of a day not archived fails
	// for it (false: the ledger is in a report and no such day fails for it).
	FailedLedgers sync.Map
	// RefreshErrors counts failed reads of the records (the gauges keep their last values).
	RefreshErrors atomic.Uint64
	// CurrentDay is the current day (yyyymmdd) as the last Refresh read it: only end of day
	// switches days, and every run refreshes.
	CurrentDay atomic.Uint32
	// ScheduleErrors counts scheduled runs that failed (ledgerd's --eod-at schedule, which
	// retries them).
	ScheduleErrors atomic.Uint64
}

// DueDays is how many days have a calendar end (UTC) that has passed and are not switched
// away from: the current day once its end passed, and each day after it up to yesterday.
// Above 0 for long, the schedule (or the operator) is not closing days.
func (r *Runner) DueDays() int64 {
	cur := ledger.Day(r.Stats.CurrentDay.Load())
	if cur == 0 {
		return 0
	}
	late := r.cfg.Now().Sub(DayEnd(cur))
	if late < 0 {
		return 0
	}
	return int64(late/(24*time.Hour)) + 1
}

// Runner runs end of day over a running ledger.
type Runner struct {
	cfg   Config
	l     *actors.Ledger
	store *storage.Store
	mu    sync.Mutex // one end of day at a time
	Stats Stats
	// at, when set (tests), is called after each phase is recorded, and with PhaseTrial
	// when the trial balance passed, before the archive is recorded.
	at func(Phase)
	// snapshotStarts, when set (tests), is called as a snapshot is about to be written.
	snapshotStarts func(ledger.Day)
	// runFails, when set (tests), is an error for a run of a day before it starts.
	runFails func(ledger.Day) error
	// archived is the latest day archived (0: none, or not known yet). Days are archived in
	// order, so every record before it is archived: Status, Refresh and archive read the
	// records from it on, not every archived day's report again.
	archived atomic.Uint32
}

// NewRunner makes a runner.
func NewRunner(l *actors.Ledger, store *storage.Store, cfg Config) *Runner {
	if cfg.Chart == nil {
		cfg.Chart = rules.Default()
	}
	if cfg.DrainTimeout == 0 {
		cfg.DrainTimeout = DrainTimeoutDefault
	}
	if cfg.SwitchTimeout == 0 {
		cfg.SwitchTimeout = SwitchTimeoutDefault
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.CatchUpDaysMax <= 0 {
		cfg.CatchUpDaysMax = CatchUpDaysMaxDefault
	}
	r := &Runner{cfg: cfg, l: l, store: store}
	r.Refresh()
	return r
}

// CatchUpDaysMax is the most days one RunDue runs (Config.CatchUpDaysMax).
func (r *Runner) CatchUpDaysMax() int { return r.cfg.CatchUpDaysMax }

// from is the first day whose record Status, Refresh and archive read: the latest archived
// day (its record gives the last closed day), found once by a scan of the records' headers.
func (r *Runner) from(v *storage.Reader) (ledger.Day, error) {
	if d := r.archived.Load(); d != 0 {
		return ledger.Day(d), nil
	}
	var last ledger.Day
	err := v.ForEachEOD(func(rec *storage.EODRecord) error {
		if Phase(rec.Phase) == PhaseArchived {
			last = rec.Day
		}
		return nil
	})
	if err == nil && last != 0 {
		r.noteArchived(last)
	}
	return last, err
}

// noteArchived records that day is archived (the latest, days being archived in order).
func (r *Runner) noteArchived(day ledger.Day) {
	for {
		d := r.archived.Load()
		if uint32(day) <= d || r.archived.CompareAndSwap(d, uint32(day)) {
			return
		}
	}
}

// Result is what a run did, or what the record of a day holds.
type Result struct {
	Day     ledger.Day
	Phase   Phase
	Outcome Outcome
	// Steps say what this run did, phase by phase ("recorded" when it answered a record).
	Steps []string
	// Report is the day's trial balance (nil before that phase).
	Report *accounting.DayReport
	// Stuck names the legs of the day still in flight after a drain timeout.
	Stuck []string
	// Early: the day was closed before its calendar end, on request.
	Early bool
	// Note is the operator's note of an acceptance (OutcomeAccepted; kept when the
	// acceptance is superseded).
	Note string
	// Superseded: the day was accepted with differences, and its trial balance, checked
	// again when it was to be archived, differed from them: it passed (the day is closed as
	// passed) or had other differences (the day is back to failed, with the new ones).
	Superseded bool
}

// Archived reports whether the day is archived (closed, or accepted with differences).
func (res *Result) Archived() bool { return res.Phase == PhaseArchived }

// recorded is what the record's Result bytes hold.
type recorded struct {
	Report *accounting.DayReport `json:",omitempty"`
	Stuck  []string              `json:",omitempty"`
	Early  bool                  `json:",omitempty"`
	// Note and Accepted (Unix ns): the operator's acceptance of the differences.
	Note     string `json:",omitempty"`
	Accepted uint64 `json:",omitempty"`
	// Superseded (Unix ns): the trial balance checked again at the archive no longer had
	// the accepted differences.
	Superseded uint64 `json:",omitempty"`
}

// Status is where the accounting days stand.
type Status struct {
	// Day is the current day: the day every shard is on (the lowest, while a switch runs).
	Day ledger.Day
	// Last is the latest day's end-of-day record (found: there is one).
	Last  Result
	Found bool
	// Open are the days switched away from (before Day) and not archived, oldest first.
	Open []Result
}

// DayEnd is the calendar end of day: the next day's midnight, UTC.
func DayEnd(day ledger.Day) time.Time {
	return time.Date(int(day/10000), time.Month(day/100%100), int(day%100)+1, 0, 0, 0, 0, time.UTC)
}

// Status reads where the accounting days stand, on a durable view.
func (r *Runner) Status() (Status, error) {
	var st Status
	err := r.l.Read(func(v *storage.Reader) error {
		day, err := currentDay(v, r.l.Shards())
		if err != nil {
			return err
		}
		st.Day = day
		from, err := r.from(v)
		if err != nil {
			return err
		}
		return v.ForEachEODFrom(from, func(rec *storage.EODRecord) error {
			res, err := fromRecord(rec)
			if err != nil {
				return err
			}
			st.Found, st.Last = true, res
			if rec.Day < day && !res.Archived() {
				st.Open = append(st.Open, res)
			}
			return nil
		})
	})
	return st, err
}

// Refresh derives the gauges from the stored records (NewRunner and every run call it): the
// latest archived day's and those after it.
func (r *Runner) Refresh() {
	var (
		lastFailed bool
		open       int64
		closed     ledger.Day
		failed     = map[uint32]bool{}
		lastReport *accounting.DayReport
	)
	note := func(rep *accounting.DayReport, fails bool) {
		for l, f := range failedLedgers(rep) {
			failed[l] = failed[l] || (fails && f)
		}
	}
	var cur ledger.Day
	err := r.l.Read(func(v *storage.Reader) (err error) {
		if cur, err = currentDay(v, r.l.Shards()); err != nil {
			return err
		}
		from, err := r.from(v)
		if err != nil {
			return err
		}
		return v.ForEachEODFrom(from, func(rec *storage.EODRecord) error {
			if Phase(rec.Phase) == PhaseArchived {
				closed, lastReport = rec.Day, nil
				if len(rec.Result) > 0 {
					res, err := fromRecord(rec)
					if err != nil {
						return err
					}
					lastReport = res.Report
				}
				return nil
			}
			o := Outcome(rec.Outcome)
			if rec.Day < cur {
				open++
				lastFailed = lastFailed || o == OutcomeTrialFailed || o == OutcomeDrainTimeout || o == OutcomeRecomputing
			}
			if len(rec.Result) > 0 {
				res, err := fromRecord(rec)
				if err != nil {
					return err
				}
				if res.Report != nil {
					note(res.Report, o == OutcomeTrialFailed)
				}
			}
			return nil
		})
	})
	if err != nil {
		r.Stats.RefreshErrors.Add(1)
		r.cfg.Log.Error("end of day: reading the records for the gauges", "err", err)
		return
	}
	if lastReport != nil {
		note(lastReport, false)
	}
	r.Stats.CurrentDay.Store(uint32(cur))
	r.Stats.LastFailed.Store(lastFailed)
	r.Stats.DaysOpen.Store(open)
	r.Stats.LastClosedDay.Store(uint32(closed))
	r.Stats.FailedLedgers.Range(func(k, _ any) bool {
		if _, ok := failed[k.(uint32)]; !ok {
			r.Stats.FailedLedgers.Delete(k)
		}
		return true
	})
	for l, f := range failed {
		r.Stats.FailedLedgers.Store(l, f)
	}
}

// currentDay is the lowest day of the shards.
func currentDay(v *storage.Reader, shards uint32) (ledger.Day, error) {
	var low ledger.Day
	for s := range shards {
		d, found, err := v.ShardDay(s)
		if err != nil {
			return 0, err
		}
		if !found {
			return 0, fmt.Errorf("eod: shard %d has no accounting day", s)
		}
		if low == 0 || d < low {
			low = d
		}
	}
	return low, nil
}

func fromRecord(rec *storage.EODRecord) (Result, error) {
	res := Result{Day: rec.Day, Phase: Phase(rec.Phase), Outcome: Outcome(rec.Outcome)}
	if len(rec.Result) > 0 {
		var x recorded
		if err := json.Unmarshal(rec.Result, &x); err != nil {
			return res, fmt.Errorf("eod: record of %v: %w", rec.Day, err)
		}
		res.Report, res.Stuck, res.Early, res.Note, res.Superseded = x.Report, x.Stuck, x.Early, x.Note, x.Superseded != 0
	}
	return res, nil
}
