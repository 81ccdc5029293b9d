package eod

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/ledgercore/ledger/ledger"
	"github.com/ledgercore/ledger/storage"
)

func userOn(t *testing.T, ids []uint64, shard uint32) uint64 {
	t.Helper()
	for _, id := range ids[2:] {
		if ledger.ShardOf(id, 2) == shard {
			return id
		}
	}
	t.Fatalf("no user on shard %d", shard)
	return 0
}

// TestHalfSwitchedDayCloses: a crash after shard 0's switch to the next day was durable and
// before shard 1's leaves the shards on different days; a split transfer from shard 0 to
// shard 1 then books its credit (of the next day) on shard 1, which switches itself to that
// day first, so that the next day's end of day finds the posting: both days close with
// passing trial balances.
func TestHalfSwitchedDayCloses(t *testing.T) {
	fs := vfs.NewMem()
	l, store, ids := world(t, fs)
	defer store.Close()
	a0, a1 := userOn(t, ids, 0), userOn(t, ids, 1)
	send(t, l, []ledger.Transfer{{ID: 7000, DebitAccountID: 1, CreditAccountID: a0, Amount: 900, Ledger: 1, Code: 1}})
	// The runner recorded its start and asked the shards to switch; shard 0's switch was
	// durable, then the process died.
	if err := store.PutEOD(&storage.EODRecord{Day: firstDay, Phase: uint8(PhaseStarted), Outcome: uint8(OutcomeRunning)}); err != nil {
		t.Fatal(err)
	}
	l.Stop()
	switchOneShard(t, store, 0, firstDay.Next())
	l = startOn(t, store)
	defer l.Stop()
	// New work while shard 1 is still on the day before.
	send(t, l, []ledger.Transfer{{ID: 7001, DebitAccountID: a0, CreditAccountID: a1, Amount: 500, Ledger: 1, Code: 1}})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	r := NewRunner(l, store, Config{DrainTimeout: 5 * time.Second, Now: afterDays})
	for _, day := range []ledger.Day{firstDay, firstDay.Next()} {
		res, err := r.Run(ctx, day, Options{})
		if err != nil {
			t.Fatalf("eod %v: %v", day, err)
		}
		if res.Outcome != OutcomeClosed {
			var diffs []string
			if res.Report != nil {
				diffs = res.Report.Differences
			}
			t.Fatalf("eod %v: %v %v: a correct ledger fails its trial balance:\n%s", day, res.Phase, res.Outcome, strings.Join(diffs, "\n"))
		}
	}
	checkBooked(t, l, map[uint64]ledger.Day{7000: firstDay, 7001: firstDay.Next()},
		[]ledger.Transfer{{ID: 7000, DebitAccountID: 1, CreditAccountID: a0, Amount: 900, Ledger: 1, Code: 1},
			{ID: 7001, DebitAccountID: a0, CreditAccountID: a1, Amount: 500, Ledger: 1, Code: 1}})
}

// tamperOpening changes account's closing balance of day in its stored snapshot: the next
// day opens from it, so that day's trial balance fails however often it is recomputed.
func tamperOpening(t *testing.T, store *storage.Store, day ledger.Day, account uint64, b ledger.Balance) {
	t.Helper()
	w := store.WriteSnapshot(day)
	if err := store.Live().ForEachSnapshot(day, func(id uint64, x ledger.Balance) error {
		if id == account {
			x = b
		}
		return w.Add(id, x)
	}); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestFailedDayDoesNotStopDays: a day whose trial balance fails does not stop the next
// day's end of day: the next day switches, drains, snapshots and passes its trial balance,
// but waits, not archived, for the failed day; running the failed day again recomputes it
// (still failing); an operator's acceptance, with a note, archives the failed day as
// accepted with differences and then the day after it; the gauges follow the records, a
// restart included; and a run of an archived day answers its record.
func TestFailedDayDoesNotStopDays(t *testing.T) {
	l, store, _ := world(t, vfs.NewMem())
	defer store.Close()
	defer l.Stop()
	send(t, l, []ledger.Transfer{{ID: 1, DebitAccountID: 1, CreditAccountID: 10, Amount: 70, Ledger: 1, Code: 1}})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	r := NewRunner(l, store, Config{Now: afterDays})
	d1, d2, d3 := firstDay, firstDay.Next(), firstDay.Next().Next()
	if res, err := r.Run(ctx, d1, Options{}); err != nil || res.Outcome != OutcomeClosed {
		t.Fatalf("%v: %+v %v", d1, res, err)
	}
	tamperOpening(t, store, d1, 10, ledger.Balance{CreditsPosted: ledger.U128(69)})
	send(t, l, []ledger.Transfer{{ID: 2, DebitAccountID: 1, CreditAccountID: 11, Amount: 5, Ledger: 1, Code: 1}})
	for range 2 { // failed, then recomputed: failed again
		res, err := r.Run(ctx, d2, Options{})
		if err != nil || res.Outcome != OutcomeTrialFailed || res.Archived() {
			t.Fatalf("%v: %+v %v", d2, res, err)
		}
		if want := "account 10: opening [posted 0/69 pending 0/0] moved by [posted +0/+0 pending +0-0/+0-0] is [posted 0/69 pending 0/0], closing is [posted 0/70 pending 0/0]"; !strings.Contains(strings.Join(res.Report.Differences, "\n"), want) {
			t.Fatalf("differences %q lack %q", res.Report.Differences, want)
		}
	}
	send(t, l, []ledger.Transfer{{ID: 3, DebitAccountID: 1, CreditAccountID: 12, Amount: 6, Ledger: 1, Code: 1}})
	res, err := r.Run(ctx, d3, Options{})
	if err != nil || res.Outcome != OutcomeTrialPassed || res.Phase != PhaseTrial || res.Archived() || !res.Report.Passed {
		t.Fatalf("%v after a failed day: %+v %v", d3, res, err)
	}
	if !strings.Contains(strings.Join(res.Steps, "\n"), "archive: "+d3.String()+" waits for "+d2.String()) {
		t.Errorf("steps do not say what %v waits for: %q", d3, res.Steps)
	}
	st, err := r.Status()
	if err != nil || st.Day != d3.Next() || len(st.Open) != 2 || st.Open[0].Day != d2 || st.Open[1].Day != d3 {
		t.Fatalf("status %+v %v", st, err)
	}
	r = NewRunner(l, store, Config{Now: afterDays}) // a restart
	if f, _ := r.Stats.FailedLedgers.Load(uint32(1)); !r.Stats.LastFailed.Load() || r.Stats.DaysOpen.Load() != 2 || f != true ||
		r.Stats.LastClosedDay.Load() != uint32(d1) {
		t.Fatalf("gauges after a restart: failed %v, open %d, ledger 1 %v, closed %d", r.Stats.LastFailed.Load(), r.Stats.DaysOpen.Load(), f, r.Stats.LastClosedDay.Load())
	}
	for _, c := range []struct {
		day  ledger.Day
		note string
		want error
	}{{d2, "", ErrInvalid}, {d2, "   ", ErrInvalid}, {d2, strings.Repeat("x", NoteBytesMax+1), ErrInvalid}, {d2, "\xff", ErrInvalid},
		{d3, "ok", ErrPrecondition}, {d1, "ok", ErrPrecondition}, {d3.Next(), "ok", ErrPrecondition}, {0, "ok", ErrInvalid}} {
		if _, err := r.Accept(ctx, c.day, c.note); !errors.Is(err, c.want) {
			t.Errorf("accept %v %q: %v, want %v", c.day, c.note, err, c.want)
		}
	}
	if st2, err := r.Status(); err != nil || len(st2.Open) != 2 || st2.Open[0].Outcome != OutcomeTrialFailed {
		t.Fatalf("refused acceptances changed something: %+v %v", st2, err)
	}
	const note = "INC-7: the snapshot of 2026-11-26 was edited by hand; balances checked against the bank"
	res, err = r.Accept(ctx, d2, note)
	if err != nil || res.Outcome != OutcomeAccepted || !res.Archived() || res.Note != note || res.Report == nil || len(res.Report.Differences) == 0 {
		t.Fatalf("accept: %+v %v", res, err)
	}
	again, err := r.Run(ctx, d2, Options{})
	if err != nil || again.Outcome != OutcomeAccepted || again.Note != note || !again.Archived() ||
		strings.Join(again.Report.Differences, "\n") != strings.Join(res.Report.Differences, "\n") {
		t.Fatalf("the accepted day again: %+v %v", again, err)
	}
	res, err = r.Run(ctx, d3, Options{})
	if err != nil || res.Outcome != OutcomeClosed || !res.Archived() {
		t.Fatalf("%v after the acceptance: %+v %v", d3, res, err)
	}
	if f, _ := r.Stats.FailedLedgers.Load(uint32(1)); r.Stats.LastFailed.Load() || r.Stats.DaysOpen.Load() != 0 || f != false ||
		r.Stats.LastClosedDay.Load() != uint32(d3) {
		t.Fatalf("gauges at the end: failed %v, open %d, ledger 1 %v, closed %d", r.Stats.LastFailed.Load(), r.Stats.DaysOpen.Load(), f, r.Stats.LastClosedDay.Load())
	}
}

// TestDayClosesAfterItsCalendarEnd: before a day's calendar end (UTC), its end of day is
// refused (nothing changes) unless asked early, which is recorded; RunDue closes every day
// that is due, in order, after downtime, and nothing when none is.
func TestDayClosesAfterItsCalendarEnd(t *testing.T) {
	l, store, _ := world(t, vfs.NewMem())
	defer store.Close()
	defer l.Stop()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var now time.Time
	r := NewRunner(l, store, Config{Now: func() time.Time { return now }})
	// 15:00 on the day, then one nanosecond before its end: refused.
	for _, at := range []time.Time{time.Date(2026, 11, 26, 15, 0, 0, 0, time.UTC), DayEnd(firstDay).Add(-1)} {
		now = at
		if _, err := r.Run(ctx, firstDay, Options{}); !errors.Is(err, ErrPrecondition) {
			t.Fatalf("at %v: %v", at, err)
		}
		if rs, err := r.RunDue(ctx, Options{}); err != nil || len(rs) != 0 {
			t.Fatalf("due at %v: %+v %v", at, rs, err)
		}
	}
	if st, err := r.Status(); err != nil || st.Day != firstDay || st.Found {
		t.Fatalf("a refused run changed something: %+v %v", st, err)
	}
	// Early, on request: closed and recorded as early.
	res, err := r.Run(ctx, firstDay, Options{Early: true})
	if err != nil || !res.Archived() || !res.Early {
		t.Fatalf("early: %+v %v", res, err)
	}
	if again, err := r.Run(ctx, firstDay, Options{}); err != nil || !again.Early || !again.Archived() {
		t.Fatalf("the early day's record: %+v %v", again, err)
	}
	// Down for three days: at 12:00 on the fourth, the three due days close in order.
	d2 := firstDay.Next()
	now = DayEnd(d2).Add(2*24*time.Hour + 12*time.Hour)
	rs, err := r.RunDue(ctx, Options{})
	if err != nil || len(rs) != 3 {
		t.Fatalf("catch up: %+v %v", rs, err)
	}
	for i, res := range rs {
		if want := d2 + ledger.Day(i); res.Day != want || !res.Archived() || res.Early {
			t.Errorf("catch up %d: %v %v %v early %v, want %v closed", i, res.Day, res.Phase, res.Outcome, res.Early, want)
		}
	}
	if st, err := r.Status(); err != nil || st.Day != d2+3 {
		t.Fatalf("after the catch-up: %+v %v", st, err)
	}
	if rs, err := r.RunDue(ctx, Options{}); err != nil || len(rs) != 0 {
		t.Fatalf("nothing due: %+v %v", rs, err)
	}
}
