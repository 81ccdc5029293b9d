package eod

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/ledgercore/ledger/actors"
	"github.com/ledgercore/ledger/ledger"
	"github.com/ledgercore/ledger/storage"
)

// snapshotRecords counts the closing balances stored for day.
func snapshotRecords(t *testing.T, l *actors.Ledger, day ledger.Day) int {
	t.Helper()
	n := 0
	if err := l.Read(func(v *storage.Reader) error {
		return v.ForEachSnapshot(day, func(uint64, ledger.Balance) error { n++; return nil })
	}); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestInterruptedRecomputeIsNotAccepted: a failed day's recomputation cut off mid-snapshot
// (the caller's context ends; a crash between two batches leaves the same record) commits
// nothing of the snapshot that failed, and leaves a record that says the snapshot is being
// recomputed (not "trial balance failed" with the old report): Accept refuses it, the alert
// stays up, and the next run recomputes the whole snapshot.
func TestInterruptedRecomputeIsNotAccepted(t *testing.T) {
	l, store := bigWorld(t)
	defer store.Close()
	defer l.Stop()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	r := NewRunner(l, store, Config{Now: afterDays})
	failDay(t, ctx, r, store, firstDay, 4)
	before := snapshotRecords(t, l, firstDay)
	if before < nBig+1 { // the accounts, and transit accounts with a balance
		t.Fatalf("snapshot records %d, want at least %d", before, nBig+1)
	}
	ended, end := context.WithCancel(ctx)
	end()
	if _, err := r.Run(ended, firstDay, Options{}); !errors.Is(err, context.Canceled) {
		t.Fatalf("a recomputation with an ended context: %v", err)
	}
	if got := snapshotRecords(t, l, firstDay); got != before {
		t.Errorf("the snapshot that failed was committed: %d records, had %d", got, before)
	}
	st, err := r.Status()
	if err != nil || len(st.Open) != 1 || st.Open[0].Outcome != OutcomeRecomputing || st.Open[0].Phase != PhaseDrained || st.Open[0].Report != nil {
		t.Fatalf("the record after the interrupted recomputation: %+v %v", st.Open, err)
	}
	if !r.Stats.LastFailed.Load() || r.Stats.DaysOpen.Load() != 1 {
		t.Errorf("gauges: failed %v, open %d", r.Stats.LastFailed.Load(), r.Stats.DaysOpen.Load())
	}
	if res, err := r.Accept(ctx, firstDay, "account 10: one unit, known"); !errors.Is(err, ErrPrecondition) || res.Archived() {
		t.Fatalf("accepting a day whose recomputation was cut off: %+v %v", res, err)
	}
	res, err := r.Run(ctx, firstDay, Options{}) // recomputed: the tampered balance is gone
	if err != nil || res.Outcome != OutcomeClosed || !res.Archived() || !res.Report.Passed {
		t.Fatalf("run again: %+v %v", res, err)
	}
	if got := snapshotRecords(t, l, firstDay); got != before {
		t.Errorf("snapshot records %d after the recomputation, want %d", got, before)
	}
}

// TestAcceptedDayCheckedAgainAtArchive: the second day fails only because the first day's
// snapshot (its opening) is wrong, and is accepted; the first day is then recomputed and
// passes. The accepted day, checked again when it is archived, now passes: it is archived
// as closed (passed), its acceptance noted as superseded, not sealed with differences that
// do not exist.
func TestAcceptedDayCheckedAgainAtArchive(t *testing.T) {
	ctx, r, _, d1, d2 := secondDayFailed(t)
	const note = "account 10 one unit: known"
	if res, err := r.Accept(ctx, d2, note); err != nil || res.Outcome != OutcomeAccepted || res.Archived() {
		t.Fatalf("accept d2: %+v %v", res, err)
	}
	res, err := r.Run(ctx, d1, Options{}) // recomputed: passes, archives d1, then d2 checked again
	if err != nil || !res.Archived() || res.Outcome != OutcomeClosed {
		t.Fatalf("d1 again: %+v %v", res, err)
	}
	if !strings.Contains(strings.Join(res.Steps, "\n"), "checked again, passed: closed and sealed as passed") {
		t.Errorf("steps do not say d2 passed when checked again: %q", res.Steps)
	}
	got, err := r.Run(ctx, d2, Options{})
	if err != nil || !got.Archived() || got.Outcome != OutcomeClosed || !got.Report.Passed || len(got.Report.Differences) != 0 ||
		got.Note != note || !got.Superseded {
		t.Fatalf("d2: %+v %v, want closed, passed, the acceptance noted as superseded", got, err)
	}
	// A retry of the acceptance (its answer lost) answers the recorded result.
	if again, err := r.Accept(ctx, d2, note); err != nil || again.Outcome != OutcomeClosed || !again.Archived() {
		t.Fatalf("the same acceptance again: %+v %v", again, err)
	}
}

// TestAcceptChecksTheDifferences: an acceptance runs the trial balance again on the stored
// snapshot and accepts only the differences the operator saw: changed ones are recorded and
// refused, naming them; the same note again answers the recorded result, another note is
// refused; an accepted day whose differences changed by the time it is archived goes back
// to failed with the new report, its acceptance marked superseded.
func TestAcceptChecksTheDifferences(t *testing.T) {
	ctx, r, store, d1, d2 := secondDayFailed(t)
	// d2's opening changes after its report: the acceptance of the old report is refused.
	tamperOpening(t, store, d1, 10, ledger.Balance{CreditsPosted: ledger.U128(68)})
	const note = "INC-8: account 10, checked against the bank"
	res, err := r.Accept(ctx, d2, note)
	if !errors.Is(err, ErrPrecondition) || !strings.Contains(err.Error(), "changed since it was reported") ||
		!strings.Contains(err.Error(), "posted 0/68") || res.Outcome != OutcomeTrialFailed || res.Report == nil {
		t.Fatalf("accepting changed differences: %+v %v", res, err)
	}
	st, err := r.Status()
	if err != nil || len(st.Open) != 2 || st.Open[1].Outcome != OutcomeTrialFailed ||
		!strings.Contains(strings.Join(st.Open[1].Report.Differences, "\n"), "posted 0/68") {
		t.Fatalf("the new report is not recorded: %+v %v", st.Open, err)
	}
	// The operator read the new differences: accepted now.
	if res, err = r.Accept(ctx, d2, note); err != nil || res.Outcome != OutcomeAccepted || res.Note != note {
		t.Fatalf("accept d2: %+v %v", res, err)
	}
	if again, err := r.Accept(ctx, d2, note); err != nil || again.Outcome != OutcomeAccepted || again.Note != note {
		t.Fatalf("the same acceptance again: %+v %v", again, err)
	}
	if _, err := r.Accept(ctx, d2, "another note"); !errors.Is(err, ErrPrecondition) {
		t.Fatalf("another acceptance of an accepted day: %v", err)
	}
	// d1 changes again, then is accepted (after a first refusal: its own differences
	// changed); d2, checked again at the archive, has other differences: failed again.
	tamperOpening(t, store, d1, 10, ledger.Balance{CreditsPosted: ledger.U128(67)})
	if _, err := r.Accept(ctx, d1, "INC-9"); !errors.Is(err, ErrPrecondition) {
		t.Fatalf("accept d1 after its snapshot changed: %v", err)
	}
	res, err = r.Accept(ctx, d1, "INC-9")
	if err != nil || res.Outcome != OutcomeAccepted || !res.Archived() {
		t.Fatalf("accept d1: %+v %v", res, err)
	}
	if !strings.Contains(strings.Join(res.Steps, "\n"), "has other differences") {
		t.Errorf("steps do not say d2's differences changed: %q", res.Steps)
	}
	got, err := r.Run(ctx, d2, Options{}) // recomputed: d2's own snapshot is right, its opening is not
	if err != nil || got.Outcome != OutcomeTrialFailed || got.Archived() || got.Note != note || !got.Superseded ||
		!strings.Contains(strings.Join(got.Report.Differences, "\n"), "posted 0/67") {
		t.Fatalf("d2 after its opening changed again: %+v %v", got, err)
	}
	if _, err := r.Accept(ctx, d2, note); err != nil {
		t.Fatalf("accept d2 once more: %v", err)
	}
	if got, err = r.Run(ctx, d2, Options{}); err != nil || got.Outcome != OutcomeAccepted || !got.Archived() || got.Superseded {
		t.Fatalf("d2 accepted again: %+v %v", got, err)
	}
}

// TestRunDueCapsTheCatchUp: one RunDue runs at most CatchUpDaysMax days, says so, and the
// next call goes on; DueDays counts the days whose calendar end passed and are not switched
// away from.
func TestRunDueCapsTheCatchUp(t *testing.T) {
	l, store, _ := world(t, vfs.NewMem())
	defer store.Close()
	defer l.Stop()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	now := DayEnd(firstDay).Add(4*24*time.Hour + time.Hour) // five days due
	r := NewRunner(l, store, Config{Now: func() time.Time { return now }, CatchUpDaysMax: 2})
	if got := r.DueDays(); got != 5 {
		t.Fatalf("due days %d, want 5", got)
	}
	var days []ledger.Day
	for i, want := range []int{2, 2, 1, 0} {
		rs, err := r.RunDue(ctx, Options{})
		if err != nil || len(rs) != want {
			t.Fatalf("call %d: %d days, want %d (%v)", i, len(rs), want, err)
		}
		for _, res := range rs {
			if !res.Archived() {
				t.Fatalf("call %d: %+v", i, res)
			}
			days = append(days, res.Day)
		}
		capped := len(rs) > 0 && strings.Contains(strings.Join(rs[len(rs)-1].Steps, "\n"), "catch-up: 2 days run")
		if capped != (i < 2) {
			t.Errorf("call %d: capped %v, steps %q", i, capped, rs[len(rs)-1].Steps)
		}
		if want := int64(3 - 2*i); r.DueDays() != max(want, 0) {
			t.Errorf("call %d: due days %d, want %d", i, r.DueDays(), max(want, 0))
		}
	}
	for i, d := range days {
		if d != firstDay+ledger.Day(i) {
			t.Fatalf("days %v, not in order from %v", days, firstDay)
		}
	}
}

// TestCrashedRecomputeIsNotAccepted: a crash as the recomputation of a failed day begins to
// replace its snapshot (what a crash between two batches of it also finds) leaves, after
// recovery, a record that says the snapshot is being recomputed, not the old failed trial
// balance: Accept refuses it and the next run recomputes.
func TestCrashedRecomputeIsNotAccepted(t *testing.T) {
	mem := vfs.NewCrashableMem()
	l, store, _ := world(t, mem)
	send(t, l, []ledger.Transfer{{ID: 1, DebitAccountID: 1, CreditAccountID: 10, Amount: 70, Ledger: 1, Code: 1}})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	r := NewRunner(l, store, Config{Now: afterDays})
	var crashed *vfs.MemFS
	r.at = func(p Phase) {
		if p == PhaseSnapshot && r.Stats.TrialFailures.Load() == 0 {
			tamperOpening(t, store, firstDay, 10, ledger.Balance{CreditsPosted: ledger.U128(69)})
		}
	}
	r.snapshotStarts = func(ledger.Day) {
		if r.Stats.TrialFailures.Load() == 1 && crashed == nil { // the recomputation's snapshot
			crashed = mem.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: 0})
		}
	}
	if res, err := r.Run(ctx, firstDay, Options{}); err != nil || res.Outcome != OutcomeTrialFailed {
		t.Fatalf("%+v %v", res, err)
	}
	if _, err := r.Run(ctx, firstDay, Options{}); err != nil || crashed == nil {
		t.Fatalf("the recomputation: %v, crash taken %v", err, crashed != nil)
	}
	l.Stop()
	_ = store.Close()
	store, err := storage.Open("db", storage.Options{FS: crashed, Shards: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	l = startOn(t, store)
	defer l.Stop()
	r = NewRunner(l, store, Config{Now: afterDays})
	if st, err := r.Status(); err != nil || len(st.Open) != 1 || st.Open[0].Outcome != OutcomeRecomputing || !r.Stats.LastFailed.Load() {
		t.Fatalf("after the crash: %+v %v, failed %v", st.Open, err, r.Stats.LastFailed.Load())
	}
	if _, err := r.Accept(ctx, firstDay, "known"); !errors.Is(err, ErrPrecondition) {
		t.Fatalf("accepting a day whose recomputation a crash cut off: %v", err)
	}
	if res, err := r.Run(ctx, firstDay, Options{}); err != nil || res.Outcome != OutcomeClosed || !res.Report.Passed {
		t.Fatalf("run after the crash: %+v %v", res, err)
	}
}

// TestAcceptWaitsForTheOpening: a day's trial balance opens from the day before's snapshot,
// so while that day is being recomputed (its snapshot may be partial) the day cannot be
// accepted, and nothing of it is written; and a note once accepted and superseded does not
// answer for a day that was run again since.
func TestAcceptWaitsForTheOpening(t *testing.T) {
	l, store := bigWorld(t)
	defer store.Close()
	defer l.Stop()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	r := NewRunner(l, store, Config{Now: afterDays})
	d1, d2 := firstDay, firstDay.Next()
	failDay(t, ctx, r, store, d1, 4)
	if res, err := r.Run(ctx, d2, Options{}); err != nil || res.Outcome != OutcomeTrialFailed {
		t.Fatalf("d2: %+v %v", res, err)
	}
	ended, end := context.WithCancel(ctx)
	end()
	if _, err := r.Run(ended, d1, Options{}); !errors.Is(err, context.Canceled) {
		t.Fatalf("d1's recomputation with an ended context: %v", err)
	}
	var before storage.EODRecord
	if err := l.Read(func(v *storage.Reader) (err error) { before, _, err = v.EOD(d2); return err }); err != nil {
		t.Fatal(err)
	}
	if res, err := r.Accept(ctx, d2, "known"); !errors.Is(err, ErrPrecondition) || res.Outcome == OutcomeAccepted {
		t.Fatalf("accepting d2 while d1 is recomputed: %+v %v", res, err)
	}
	var after storage.EODRecord
	if err := l.Read(func(v *storage.Reader) (err error) { after, _, err = v.EOD(d2); return err }); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(before, after) {
		t.Fatalf("the refused acceptance changed d2's record:\n%+v\n%+v", before, after)
	}
}

// TestOpenDayErrorDoesNotStopTheSwitch: an open day that cannot be run again is reported,
// and the current day still switches: one broken day does not keep every posting after it
// on the same day.
func TestOpenDayErrorDoesNotStopTheSwitch(t *testing.T) {
	l, store, _ := world(t, vfs.NewMem())
	defer store.Close()
	defer l.Stop()
	send(t, l, []ledger.Transfer{{ID: 1, DebitAccountID: 1, CreditAccountID: 10, Amount: 70, Ledger: 1, Code: 1}})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	d1, d2 := firstDay, firstDay.Next()
	now := DayEnd(d2).Add(time.Hour) // d2 due too
	r := NewRunner(l, store, Config{Now: func() time.Time { return now }})
	failDay(t, ctx, r, store, d1, 69)
	broken := errors.New("d1 cannot be read")
	r.runFails = func(day ledger.Day) error {
		if day == d1 {
			return broken
		}
		return nil
	}
	rs, err := r.RunDue(ctx, Options{})
	if !errors.Is(err, broken) {
		t.Fatalf("the broken day's error was not reported: %v", err)
	}
	if len(rs) != 1 || rs[0].Day != d2 || rs[0].Phase < PhaseSwitched {
		t.Fatalf("d2 did not switch because d1 failed: %+v", rs)
	}
}

// secondDayFailed is the ledger of two days whose first day's snapshot was tampered (account
// 10 one unit short at its close, failDay), so that the second day's trial balance fails
// only because its opening is wrong: answered with both days' end of day run.
func secondDayFailed(t *testing.T) (ctx context.Context, r *Runner, store *storage.Store, d1, d2 ledger.Day) {
	t.Helper()
	l, store, _ := world(t, vfs.NewMem())
	t.Cleanup(func() { l.Stop(); _ = store.Close() })
	send(t, l, []ledger.Transfer{{ID: 1, DebitAccountID: 1, CreditAccountID: 10, Amount: 70, Ledger: 1, Code: 1}})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	r = NewRunner(l, store, Config{Now: afterDays})
	d1, d2 = firstDay, firstDay.Next()
	failDay(t, ctx, r, store, d1, 69)
	send(t, l, []ledger.Transfer{{ID: 2, DebitAccountID: 1, CreditAccountID: 11, Amount: 5, Ledger: 1, Code: 1}})
	if res, err := r.Run(ctx, d2, Options{}); err != nil || res.Outcome != OutcomeTrialFailed {
		t.Fatalf("d2: %+v %v", res, err)
	}
	return ctx, r, store, d1, d2
}

// failDay runs day's end of day with account 10's closing balance tampered to credit at its
// snapshot: its trial balance fails on that account.
func failDay(t *testing.T, ctx context.Context, r *Runner, store *storage.Store, day ledger.Day, credit uint64) {
	t.Helper()
	tampered := false
	r.at = func(p Phase) {
		if p == PhaseSnapshot && !tampered {
			tampered = true
			tamperOpening(t, store, day, 10, ledger.Balance{CreditsPosted: ledger.U128(credit)})
		}
	}
	defer func() { r.at = nil }()
	if res, err := r.Run(ctx, day, Options{}); err != nil || res.Outcome != OutcomeTrialFailed {
		t.Fatalf("%v: %+v %v, want its trial balance failed", day, res, err)
	}
}

// nBig is more accounts than a snapshot or trial balance reads between two checks of its
// context (1,024).
const nBig = 1500

// bigWorld is a ledger of nBig accounts, each credited 5 by account 1.
func bigWorld(t *testing.T) (*actors.Ledger, *storage.Store) {
	t.Helper()
	store, err := storage.Open("db", storage.Options{FS: vfs.NewMem(), Shards: 2})
	if err != nil {
		t.Fatal(err)
	}
	l, err := actors.Start(store, actors.Config{Shards: 2, FirstDay: firstDay, TickInterval: 10 * time.Millisecond,
		Fatal: func(err error) { t.Errorf("fatal: %v", err) }})
	if err != nil {
		t.Fatal(err)
	}
	as := []ledger.Account{{ID: 1, Ledger: 1, Code: 1122, Flags: ledger.AccountInternal}}
	var ts []ledger.Transfer
	for id := uint64(10); id < 10+nBig; id++ {
		as = append(as, ledger.Account{ID: id, Ledger: 1, Code: 2001})
		ts = append(ts, ledger.Transfer{ID: id, DebitAccountID: 1, CreditAccountID: id, Amount: 5, Ledger: 1, Code: 1})
	}
	for i := 0; i < len(as); i += 500 {
		if _, err := l.CreateAccounts(as[i:min(i+500, len(as))]); err != nil {
			t.Fatal(err)
		}
	}
	send(t, l, ts)
	return l, store
}
