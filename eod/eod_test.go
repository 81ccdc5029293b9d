package eod

import (
	"context"
	"errors"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/ledgercore/ledger/actors"
	"github.com/ledgercore/ledger/ledger"
	"github.com/ledgercore/ledger/storage"
)

const firstDay ledger.Day = 20261126

// world opens a store of two shards (so that transfers split), a hot internal account, and
// customers on both shards; the codes are subjects of the default chart.
func world(t *testing.T, fs vfs.FS) (*actors.Ledger, *storage.Store, []uint64) {
	t.Helper()
	store, err := storage.Open("db", storage.Options{FS: fs, Shards: 2})
	if err != nil {
		t.Fatal(err)
	}
	l, err := actors.Start(store, actors.Config{Shards: 2, FirstDay: firstDay, HotFlushInterval: 5 * time.Millisecond,
		TickInterval: 10 * time.Millisecond, Fatal: func(err error) { t.Errorf("fatal: %v", err) }})
	if err != nil {
		t.Fatal(err)
	}
	as := []ledger.Account{{ID: 1, Ledger: 1, Code: 1122, Flags: ledger.AccountInternal}, // channel receivable
		{ID: 2, Ledger: 1, Code: 2002, Flags: ledger.AccountHot | ledger.AccountInternal}} // a merchant, hot
	ids := []uint64{1, 2}
	for id := uint64(10); id < 30; id++ {
		as = append(as, ledger.Account{ID: id, Ledger: 1, Code: 2001}) // user balances
		ids = append(ids, id)
	}
	rs, err := l.CreateAccounts(as)
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range rs {
		if r != ledger.AccountResultOK {
			t.Fatalf("account %d: %v", as[i].ID, r)
		}
	}
	return l, store, ids
}

// load sends seeded transfers from several goroutines until stop: deposits from the channel
// receivable to users, user to user, user to the hot merchant, and holds with a short
// timeout that expire or are posted. Every transfer must succeed.
func load(t *testing.T, l *actors.Ledger, ids []uint64, seed uint64, stop <-chan struct{}, sent *atomic.Uint64) *sync.WaitGroup {
	var wg sync.WaitGroup
	var next atomic.Uint64
	next.Store(1 << 20)
	for g := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(seed, uint64(g)))
			for {
				select {
				case <-stop:
					return
				default:
				}
				batch := make([]ledger.Transfer, 1+rng.IntN(40))
				for i := range batch {
					id := next.Add(1)
					user := ids[2+rng.IntN(len(ids)-2)]
					tr := ledger.Transfer{ID: id, Ledger: 1, Code: 1, Amount: 1 + uint64(rng.IntN(1000))}
					switch rng.IntN(4) {
					case 0:
						tr.DebitAccountID, tr.CreditAccountID = 1, user
					case 1:
						tr.DebitAccountID, tr.CreditAccountID = user, ids[2+rng.IntN(len(ids)-2)]
						if tr.DebitAccountID == tr.CreditAccountID {
							tr.CreditAccountID = 1
						}
					case 2:
						tr.DebitAccountID, tr.CreditAccountID = user, 2
					case 3:
						tr.DebitAccountID, tr.CreditAccountID = 1, user
						tr.Flags, tr.Timeout = ledger.TransferPending, 1
					}
					batch[i] = tr
				}
				rs, err := l.CreateTransfers(batch)
				if err != nil {
					t.Errorf("transfers refused: %v", err)
					return
				}
				for i, r := range rs {
					if r != ledger.ResultOK {
						t.Errorf("transfer %+v: %v", batch[i], r)
						return
					}
				}
				sent.Add(uint64(len(batch)))
			}
		}()
	}
	return &wg
}

// TestEndOfDayUnderLoad: transfers (split, buffered to a hot account, holds expiring) flow
// while end of day closes two days in a row; every trial balance passes, no transfer is
// refused, a second run answers the recorded result, and what a day's snapshot holds is what
// the next day opens from.
func TestEndOfDayUnderLoad(t *testing.T) {
	fs := vfs.NewMem()
	l, store, ids := world(t, fs)
	defer store.Close()
	defer l.Stop()
	r := NewRunner(l, store, Config{Now: afterDays, DrainTimeout: 20 * time.Second})
	stop := make(chan struct{})
	var sent atomic.Uint64
	wg := load(t, l, ids, 20261126, stop, &sent)
	var stopOnce sync.Once
	stopLoad := func() { stopOnce.Do(func() { close(stop) }); wg.Wait() }
	defer stopLoad() // before the ledger stops, also when the test fails
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for _, day := range []ledger.Day{firstDay, firstDay.Next()} {
		for before := sent.Load(); sent.Load() < before+2000 && !t.Failed(); {
			time.Sleep(5 * time.Millisecond)
		}
		res, err := r.Run(ctx, day, Options{})
		if err != nil {
			t.Fatalf("eod %v: %v", day, err)
		}
		if res.Outcome != OutcomeClosed || res.Report == nil || !res.Report.Passed {
			var diffs []string
			if res.Report != nil {
				diffs = res.Report.Differences
			}
			t.Fatalf("eod %v: %v %v, steps %q, stuck %q, differences %q", day, res.Phase, res.Outcome, res.Steps, res.Stuck, diffs)
		}
		t.Logf("%v: %q, %d transfers sent so far", day, res.Steps, sent.Load())
		again, err := r.Run(ctx, day, Options{})
		if err != nil || again.Outcome != OutcomeClosed || again.Report == nil || !again.Report.Passed ||
			len(again.Report.Movements) != len(res.Report.Movements) || again.Report.Movements[0] != res.Report.Movements[0] {
			t.Fatalf("eod %v again: %+v %v", day, again, err)
		}
	}
	stopLoad()
	if sent.Load() == 0 || t.Failed() {
		t.Fatalf("load: %d transfers", sent.Load())
	}
	st, err := r.Status()
	if err != nil || st.Day != firstDay.Next().Next() || !st.Found || st.Last.Day != firstDay.Next() {
		t.Fatalf("status %+v %v", st, err)
	}
	// Every posting has a day, and no posting of a closed day came after its close: the
	// snapshots still check (run the trial again on the closed days).
	for _, day := range []ledger.Day{firstDay, firstDay.Next()} {
		rep, err := r.trial(ctx, day)
		if err != nil || !rep.Passed {
			t.Fatalf("trial of %v again: %v %+v", day, err, rep.Differences)
		}
	}
	err = l.Read(func(v *storage.Reader) error {
		return v.ForEachPosting(func(p ledger.Posting) error {
			if p.Day < firstDay || p.Day > firstDay.Next().Next() {
				t.Errorf("posting %+v: day %v", p, p.Day)
			}
			return nil
		})
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestEndOfDayRefusesBadDays: a day in the future, a past day without a record, a non-date
// and the last day (no next day to switch to) change nothing, and nothing panics.
func TestEndOfDayRefusesBadDays(t *testing.T) {
	fs := vfs.NewMem()
	l, store, _ := world(t, fs)
	defer store.Close()
	defer l.Stop()
	r := NewRunner(l, store, Config{Now: afterDays})
	ctx := context.Background()
	for _, c := range []struct {
		day  ledger.Day
		want error
	}{{firstDay.Next(), ErrInvalid}, {firstDay.Prev(), ErrInvalid}, {20261131, ErrInvalid}, {0, ErrInvalid}, {ledger.DayMax, ErrInvalid}} {
		if _, err := r.Run(ctx, c.day, Options{Early: true}); !errors.Is(err, c.want) {
			t.Errorf("day %v: %v, want %v", c.day, err, c.want)
		}
	}
	if st, err := r.Status(); err != nil || st.Day != firstDay || st.Found {
		t.Fatalf("bad days changed something: %+v %v", st, err)
	}
	if res, err := r.Run(ctx, firstDay, Options{}); err != nil || !res.Archived() {
		t.Fatal(res, err)
	}
}

// TestEndOfDayOnTheLastDay: a store whose first day is the last one a ledger knows is
// refused at the start; end of day of that day is refused before any phase, and no shard
// panics.
func TestEndOfDayOnTheLastDay(t *testing.T) {
	store, err := storage.Open("db", storage.Options{FS: vfs.NewMem(), Shards: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	if l, err := actors.Start(store, actors.Config{Shards: 2, FirstDay: ledger.DayMax}); err == nil {
		l.Stop()
		t.Fatal("a ledger started on the last day")
	}
	l, err := actors.Start(store, actors.Config{Shards: 2, FirstDay: ledger.DayMax.Prev(),
		Fatal: func(err error) { t.Errorf("fatal: %v", err) }})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Stop()
	r := NewRunner(l, store, Config{Now: afterDays, SwitchTimeout: 5 * time.Second})
	ctx := context.Background()
	if res, err := r.Run(ctx, ledger.DayMax.Prev(), Options{Early: true}); err != nil || !res.Archived() {
		t.Fatalf("the day before the last: %+v %v", res, err)
	}
	if _, err := r.Run(ctx, ledger.DayMax, Options{Early: true}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("the last day: %v", err)
	}
	if err := l.SwitchDay(ctx, ledger.DayMax.Next()); err == nil {
		t.Fatal("a switch past the last day")
	}
	rs, err := l.CreateAccounts([]ledger.Account{{ID: 5, Ledger: 1, Code: 2001}})
	if err != nil || rs[0] != ledger.AccountResultOK {
		t.Fatalf("the ledger after: %v %v", rs, err)
	}
	if st, err := r.Status(); err != nil || st.Day != ledger.DayMax || st.Last.Day != ledger.DayMax.Prev() {
		t.Fatalf("status %+v %v", st, err)
	}
}

// TestEndOfDayRecomputesAFailedDay: a closing balance changed after the snapshot makes the
// trial balance fail with the account's exact difference, blocks the archive and sets the
// failure gauges; running the day again recomputes its snapshot from the store (a false
// alarm), which passes, and the day is archived.
func TestEndOfDayRecomputesAFailedDay(t *testing.T) {
	fs := vfs.NewMem()
	l, store, _ := world(t, fs)
	defer store.Close()
	defer l.Stop()
	rs, err := l.CreateTransfers([]ledger.Transfer{{ID: 1, DebitAccountID: 1, CreditAccountID: 10, Amount: 70, Ledger: 1, Code: 1}})
	if err != nil || rs[0] != ledger.ResultOK {
		t.Fatal(rs, err)
	}
	r := NewRunner(l, store, Config{Now: afterDays})
	ctx := context.Background()
	rec := storage.EODRecord{Day: firstDay, Phase: uint8(PhaseDrained), Outcome: uint8(OutcomeRunning)}
	if err := store.PutEOD(&rec); err != nil {
		t.Fatal(err)
	}
	if err := l.SwitchDay(ctx, firstDay.Next()); err != nil {
		t.Fatal(err)
	}
	if _, err := r.snapshot(ctx, firstDay); err != nil {
		t.Fatal(err)
	}
	w := store.WriteSnapshot(firstDay) // account 10 closes at 69: one unit lost
	for id, b := range map[uint64]ledger.Balance{1: {DebitsPosted: ledger.U128(70)}, 10: {CreditsPosted: ledger.U128(69)}} {
		if err := w.Add(id, b); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	rec.Phase = uint8(PhaseSnapshot)
	if err := store.PutEOD(&rec); err != nil {
		t.Fatal(err)
	}
	res, err := r.Run(ctx, firstDay, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if res.Outcome != OutcomeTrialFailed || res.Report.Passed || res.Archived() || !r.Stats.LastFailed.Load() || r.Stats.DaysOpen.Load() != 1 {
		t.Fatalf("%+v, gauges %v %d", res, r.Stats.LastFailed.Load(), r.Stats.DaysOpen.Load())
	}
	text := strings.Join(res.Report.Differences, "\n")
	for _, want := range []string{"account 10: opening [posted 0/0 pending 0/0] moved by [posted +0/+70 pending +0-0/+0-0] is [posted 0/70 pending 0/0], closing is [posted 0/69 pending 0/0]",
		"unbalanced: posted debits 70, posted credits 69"} {
		if !strings.Contains(text, want) {
			t.Errorf("differences lack %q:\n%s", want, text)
		}
	}
	if f, _ := r.Stats.FailedLedgers.Load(uint32(1)); f != true {
		t.Error("ledger 1 not marked failed")
	}
	// A restart keeps the alert: the gauges come from the records.
	r = NewRunner(l, store, Config{Now: afterDays})
	if f, _ := r.Stats.FailedLedgers.Load(uint32(1)); f != true || !r.Stats.LastFailed.Load() || r.Stats.DaysOpen.Load() != 1 {
		t.Fatalf("after a restart: failed %v, open %d, ledger 1 %v", r.Stats.LastFailed.Load(), r.Stats.DaysOpen.Load(), f)
	}
	res, err = r.Run(ctx, firstDay, Options{})
	if err != nil || res.Outcome != OutcomeClosed || !res.Archived() || !res.Report.Passed {
		t.Fatalf("run again: %+v %v", res, err)
	}
	if f, _ := r.Stats.FailedLedgers.Load(uint32(1)); f != false || r.Stats.LastFailed.Load() || r.Stats.DaysOpen.Load() != 0 ||
		r.Stats.LastClosedDay.Load() != uint32(firstDay) {
		t.Fatalf("gauges after the close: failed %v, open %d, ledger 1 %v, closed %d", r.Stats.LastFailed.Load(), r.Stats.DaysOpen.Load(), f, r.Stats.LastClosedDay.Load())
	}
}

// afterDays is a wall clock after every test day's calendar end.
func afterDays() time.Time { return time.Date(2100, 1, 1, 0, 0, 0, 0, time.UTC) }
