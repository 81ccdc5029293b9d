package main

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/ledgercore/ledger/actors"
	"github.com/ledgercore/ledger/eod"
	"github.com/ledgercore/ledger/ledger"
	"github.com/ledgercore/ledger/storage"
	"log/slog"
)

// TestEODAtFlag: --eod-at takes exactly HH:MM from 00:00 to 23:59 and nothing else, with an
// error that names the flag and the value.
func TestEODAtFlag(t *testing.T) {
	for s, want := range map[string]int{"00:00": 0, "00:01": 1, "09:30": 570, "23:59": 1439, "12:00": 720} {
		if c, err := parseFlags([]string{"--eod-at", s}); err != nil || c.eodAtMinute != want || c.eodAt != s {
			t.Errorf("--eod-at %s: %d %v, want %d", s, c.eodAtMinute, err, want)
		}
	}
	for _, s := range []string{"24:00", "23:60", "7:30", "07:3", "0730", "07-30", "1:305", "+1:30", " 1:30", "1:3 0",
		"12:3x", "-1:30", "07:30 ", "07:30:00", "ab:cd", "１２:００"} {
		_, err := parseFlags([]string{"--eod-at", s})
		if err == nil || !strings.Contains(err.Error(), "--eod-at must be HH:MM") || !strings.Contains(err.Error(), s) {
			t.Errorf("--eod-at %q: %v", s, err)
		}
	}
	if c, err := parseFlags(nil); err != nil || c.eodAt != "" || c.eodDrainTimeout != eod.DrainTimeoutDefault {
		t.Errorf("defaults: %q %v %v", c.eodAt, c.eodDrainTimeout, err)
	}
	for _, args := range [][]string{{"--eod-drain-timeout", "999ms"}, {"--eod-drain-timeout", "61m"}, {"--first-day", "2026-02-30"},
		{"--first-day", "26-11-2026"}, {"--first-day", "9999-12-31"}} {
		if _, err := parseFlags(args); err == nil {
			t.Errorf("%q accepted", args)
		}
	}
	if c, err := parseFlags([]string{"--first-day", "2026-11-26"}); err != nil || c.firstDay != 20261126 {
		t.Errorf("--first-day: %v %v", c.firstDay, err)
	}
}

// TestNextEndOfDay: the next run is the first HH:MM UTC strictly after now: later today,
// or tomorrow once past (across midnight, the end of a month and a year, a leap day); after
// downtime it is the next one after the start, not the one missed; the zone of now and its
// summer time change nothing.
func TestNextEndOfDay(t *testing.T) {
	utc := func(s string) time.Time {
		t.Helper()
		v, err := time.Parse("2006-01-02 15:04:05.999", s)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	for _, c := range []struct {
		now    string
		minute int
		want   string
	}{
		{"2026-11-26 10:00:00", 23*60 + 30, "2026-11-26 23:30:00"},
		{"2026-11-26 23:29:59.999", 23*60 + 30, "2026-11-26 23:30:00"},
		{"2026-11-26 23:30:00", 23*60 + 30, "2026-11-27 23:30:00"}, // at the minute: it ran
		{"2026-11-26 23:45:00", 23*60 + 30, "2026-11-27 23:30:00"},
		{"2026-11-26 23:59:59", 0, "2026-11-27 00:00:00"}, // across midnight
		{"2026-11-27 00:00:00", 0, "2026-11-28 00:00:00"},
		{"2026-11-30 12:00:00", 5, "2026-12-01 00:05:00"},
		{"2026-12-31 23:00:00", 30, "2027-01-01 00:30:00"},
		{"2028-02-28 22:00:00", 21 * 60, "2028-02-29 21:00:00"},
		{"2026-11-29 08:00:00", 23*60 + 30, "2026-11-29 23:30:00"}, // down since 11-26: no catch-up run
	} {
		if got := nextEndOfDay(utc(c.now), c.minute); !got.Equal(utc(c.want)) || got.Location() != time.UTC {
			t.Errorf("now %s, minute %d: %v, want %s", c.now, c.minute, got, c.want)
		}
	}
	// Summer time: New York goes from EDT to EST on 2026-11-01 and from EST to EDT on
	// 2027-03-14; the run stays at the same UTC minute.
	ny, err := time.LoadLocation("America/New_York")
	if err != nil {
		t.Skip(err)
	}
	for _, c := range []struct{ now, want string }{
		{"2026-11-01 01:30:00", "2026-11-01 23:30:00"}, {"2026-11-01 20:00:00", "2026-11-02 23:30:00"},
		{"2027-03-14 03:30:00", "2027-03-14 23:30:00"}, {"2027-03-14 19:45:00", "2027-03-15 23:30:00"},
	} {
		local, err := time.ParseInLocation("2006-01-02 15:04:05", c.now, ny)
		if err != nil {
			t.Fatal(err)
		}
		if got := nextEndOfDay(local, 23*60+30); !got.Equal(utc(c.want)) {
			t.Errorf("now %s New York (%v UTC): %v, want %s", c.now, local.UTC(), got.UTC(), c.want)
		}
	}
}

// TestScheduledEndOfDay: a scheduled run closes the days that are due (calendar end
// passed, UTC) and no other; a day whose trial balance fails is logged as an error, stays
// open, and is tried again (recomputed) at each run, while the next days still switch and
// check (one that passes waits, logged, for it); once the cause is fixed both are archived,
// in order; after downtime every due day closes, in order.
func TestScheduledEndOfDay(t *testing.T) {
	const day ledger.Day = 20261125
	store, err := storage.Open("db", storage.Options{FS: vfs.NewMem(), Shards: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	l, err := actors.Start(store, actors.Config{Shards: 1, FirstDay: day})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Stop()
	if _, err := l.CreateAccounts([]ledger.Account{{ID: 1, Ledger: 1, Code: 1122}, {ID: 10, Ledger: 1, Code: 2001}}); err != nil {
		t.Fatal(err)
	}
	if rs, err := l.CreateTransfers([]ledger.Transfer{{ID: 1, DebitAccountID: 1, CreditAccountID: 10, Amount: 70, Ledger: 1, Code: 1}}); err != nil || rs[0] != ledger.ResultOK {
		t.Fatal(rs, err)
	}
	ctx := context.Background()
	var now atomic.Int64
	at := func(s string) {
		v, err := time.Parse(time.DateTime, s)
		if err != nil {
			t.Fatal(err)
		}
		now.Store(v.UnixNano())
	}
	at("2026-11-25 23:59:59")
	r := eod.NewRunner(l, store, eod.Config{Now: func() time.Time { return time.Unix(0, now.Load()).UTC() }})
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	run := func(when string) string {
		t.Helper()
		at(when)
		logs.Reset()
		runScheduledEndOfDay(ctx, r, log)
		return logs.String()
	}
	if text := run("2026-11-25 23:59:59"); text != "" {
		t.Fatalf("a run before the day's end:\n%s", text)
	}
	if text := run("2026-11-26 00:05:00"); strings.Count(text, "level=") != 1 || !strings.Contains(text, `msg="scheduled end of day: closed" day=2026-11-25 outcome=closed`) {
		t.Fatalf("the first day:\n%s", text)
	}
	// The closing balance 2026-11-26 opens from loses a unit of account 10.
	snapshot := func(credit10 uint64) {
		w := store.WriteSnapshot(day)
		for id, b := range map[uint64]ledger.Balance{1: {DebitsPosted: ledger.U128(70)}, 10: {CreditsPosted: ledger.U128(credit10)}} {
			if err := w.Add(id, b); err != nil {
				t.Fatal(err)
			}
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
	}
	snapshot(69)
	text := run("2026-11-27 00:05:00")
	if strings.Count(text, "level=") != 1 || !strings.Contains(text, `level=ERROR msg="scheduled end of day did not close the day" day=2026-11-26 phase="trial balance" outcome="trial balance failed"`) ||
		!r.Stats.LastFailed.Load() || r.Stats.DaysOpen.Load() != 1 {
		t.Fatalf("failed run's log:\n%s", text)
	}
	// A day later: 2026-11-26 tried again (failing), 2026-11-27 closes but waits for it.
	text = run("2026-11-28 00:05:00")
	if strings.Count(text, "level=") != 2 || !strings.Contains(text, `level=ERROR msg="scheduled end of day did not close the day" day=2026-11-26`) ||
		!strings.Contains(text, `level=WARN msg="scheduled end of day: trial balance passed, the day waits for an earlier day to be archived" day=2026-11-27`) ||
		r.Stats.DaysOpen.Load() != 2 {
		t.Fatalf("second failed run's log:\n%s", text)
	}
	st, err := r.Status()
	if err != nil || st.Day != 20261128 || len(st.Open) != 2 || st.Open[0].Outcome != eod.OutcomeTrialFailed || st.Open[1].Outcome != eod.OutcomeTrialPassed {
		t.Fatalf("status after the failed runs: %+v %v", st, err)
	}
	snapshot(70) // the cause fixed
	text = run("2026-11-28 00:10:00")
	if strings.Contains(text, "ERROR") || !strings.Contains(text, `msg="scheduled end of day: closed" day=2026-11-26`) ||
		!strings.Contains(text, `msg="scheduled end of day: closed" day=2026-11-27`) || r.Stats.LastFailed.Load() || r.Stats.DaysOpen.Load() != 0 {
		t.Fatalf("run after the fix, log:\n%s", text)
	}
	// Down for two days: the two due days close, in order, and no other.
	text = run("2026-11-30 12:00:00")
	if strings.Contains(text, "ERROR") || strings.Count(text, "scheduled end of day: closed") != 2 ||
		!strings.Contains(text, "day=2026-11-28") || strings.Index(text, "day=2026-11-28") > strings.Index(text, "day=2026-11-29") {
		t.Fatalf("catch-up log:\n%s", text)
	}
	if st, err := r.Status(); err != nil || st.Day != 20261130 || len(st.Open) != 0 {
		t.Fatalf("status after the catch-up: %+v %v", st, err)
	}
}

// TestScheduleRetriesWithBackoff: a scheduled run that fails is retried after 1 minute, the
// wait doubling up to 30 minutes, never past the next scheduled run (which then runs as
// usual, its own failure starting the backoff again); each failure is counted and logged at
// ERROR; a success waits for the next scheduled run, and a capped run (more days due) runs
// again at once.
func TestScheduleRetriesWithBackoff(t *testing.T) {
	for _, c := range []struct {
		name  string
		start string
		fails int
		more  bool
		want  []time.Duration
	}{
		{"backoff", "2026-11-26 00:01:00", 8, false, []time.Duration{time.Minute, 2 * time.Minute, 4 * time.Minute, 8 * time.Minute,
			16 * time.Minute, 30 * time.Minute, 30 * time.Minute, 30 * time.Minute, 24*time.Hour - 122*time.Minute}},
		{"until the next run", "2026-11-26 23:50:00", 6, false, []time.Duration{time.Minute, 2 * time.Minute, 4 * time.Minute,
			3 * time.Minute, time.Minute, 2 * time.Minute, 24*time.Hour - 3*time.Minute}},
		{"capped", "2026-11-26 00:01:00", 1, true, []time.Duration{time.Minute, 0, 0, 0}},
	} {
		t.Run(c.name, func(t *testing.T) {
			now, err := time.Parse(time.DateTime, c.start)
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			var (
				waits  []time.Duration
				errs   atomic.Uint64
				logs   bytes.Buffer
				runs   int
				failed = errors.New("eod: an end of day is running")
			)
			s := schedule{minute: 0, now: func() time.Time { return now }, errors: &errs, log: slog.New(slog.NewTextHandler(&logs, nil)),
				after: func(d time.Duration) <-chan time.Time {
					waits = append(waits, d)
					now = now.Add(d)
					ch := make(chan time.Time, 1)
					ch <- now
					return ch
				},
				run: func(context.Context) (bool, error) {
					runs++
					if runs == len(c.want)+1 {
						cancel()
						return false, nil
					}
					if runs <= c.fails {
						return false, failed
					}
					return c.more, nil
				}}
			s.loop(ctx)
			if len(waits) != len(c.want) {
				t.Fatalf("waits %v, want %v", waits, c.want)
			}
			for i := range waits {
				if waits[i] != c.want[i] {
					t.Fatalf("waits %v, want %v", waits, c.want)
				}
			}
			if errs.Load() != uint64(c.fails) || strings.Count(logs.String(), "level=ERROR") != c.fails {
				t.Errorf("errors counted %d, logged %d, want %d:\n%s", errs.Load(), strings.Count(logs.String(), "level=ERROR"), c.fails, logs.String())
			}
		})
	}
}
