// Package eod runs end of day (日终): it closes an accounting day in the ordered phases of
// DOMAIN.md, each recorded durably in the day's end-of-day record (storage.EODRecord), so
// that a run a crash interrupted resumes where it stopped and a run for a closed day answers
// the recorded result:
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
//     are sealed (no run changes them again) and the next day may be closed. There is no
//     archive storage: the day's postings stay where they are; archive means sealed. A day
//     that failed is not archived; the run reports the differences, and it may be run again.
//
// The day of a posting is its transfer's: a split transfer's credit leg and its answer carry
// the day of its debit side, so a day boundary never separates a transfer's two halves and
// transit accounts are drained at each close.
package eod

import (
	"encoding/json"
	"errors"
	"fmt"
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
	OutcomeClosed                          // archived
	outcomeLast
)

var outcomeNames = [...]string{"", "running", "drain timeout", "trial balance failed", "closed"}

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

// ErrInvalid: the day asked for cannot be closed now (not a date, in the future, already
// past without a record); nothing was changed.
var ErrInvalid = errors.New("eod: invalid day")

// ErrPrecondition: the day before is not closed yet.
var ErrPrecondition = errors.New("eod: the day before is not closed")

// ErrBusy: another end of day is running.
var ErrBusy = errors.New("eod: an end of day is running")

// Config configures a Runner.
type Config struct {
	Chart         *rules.Chart // nil: rules.Default
	DrainTimeout  time.Duration
	SwitchTimeout time.Duration
	Now           func() time.Time // for the record's times only; nil: time.Now
}

// Stats are the runner's counters and gauges, read by the metrics adapter.
type Stats struct {
	Runs           atomic.Uint64 // runs that did a phase (not those answered from a record)
	DrainTimeouts  atomic.Uint64
	TrialFailures  atomic.Uint64
	Closed         atomic.Uint64 // days archived
	LastFailed     atomic.Bool   // the last run's trial balance failed or its drain timed out
	LastClosedDay  atomic.Uint32 // yyyymmdd of the last day archived
	LastRunSeconds atomic.Uint64 // math.Float64bits of the last run's duration
	FailedLedgers  sync.Map      // ledger (uint32) -> bool: its last trial balance failed
}

// Runner runs end of day over a running ledger.
type Runner struct {
	cfg   Config
	l     *actors.Ledger
	store *storage.Store
	mu    sync.Mutex // one end of day at a time
	Stats Stats
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
	return &Runner{cfg: cfg, l: l, store: store}
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
}

// recorded is what the record's Result bytes hold.
type recorded struct {
	Report *accounting.DayReport `json:",omitempty"`
	Stuck  []string              `json:",omitempty"`
}

// Status is where the accounting days stand.
type Status struct {
	// Day is the current day: the day every shard is on (the lowest, while a switch runs).
	Day ledger.Day
	// Last is the latest day's end-of-day record (found: there is one).
	Last  Result
	Found bool
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
		rec, found, err := v.LastEOD()
		if err != nil || !found {
			return err
		}
		st.Found = true
		st.Last, err = fromRecord(&rec)
		return err
	})
	return st, err
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
		res.Report, res.Stuck = x.Report, x.Stuck
	}
	return res, nil
}
