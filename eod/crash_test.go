package eod

import (
	"bytes"
	"context"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/ledgercore/ledger/actors"
	"github.com/ledgercore/ledger/ledger"
	"github.com/ledgercore/ledger/ledger/accounting"
	"github.com/ledgercore/ledger/storage"
)

// crashTransfers makes n seeded transfers from id on: deposits from the channel receivable,
// user to user (often across shards), and user to the hot merchant (buffered).
func crashTransfers(seed, id uint64, n int, ids []uint64) []ledger.Transfer {
	rng := rand.New(rand.NewPCG(seed, id))
	users := ids[2:]
	ts := make([]ledger.Transfer, n)
	for i := range ts {
		t := ledger.Transfer{ID: id + uint64(i), Ledger: 1, Code: 1, Amount: 1 + uint64(rng.IntN(500))}
		u := users[rng.IntN(len(users))]
		switch rng.IntN(3) {
		case 0:
			t.DebitAccountID, t.CreditAccountID = 1, u
		case 1:
			t.DebitAccountID, t.CreditAccountID = u, users[rng.IntN(len(users))]
			if t.DebitAccountID == t.CreditAccountID {
				t.CreditAccountID = 1
			}
		case 2:
			t.DebitAccountID, t.CreditAccountID = u, 2
		}
		ts[i] = t
	}
	return ts
}

func send(t *testing.T, l *actors.Ledger, ts []ledger.Transfer) {
	t.Helper()
	for len(ts) > 0 {
		n := min(len(ts), 25)
		rs, err := l.CreateTransfers(ts[:n])
		if err != nil {
			t.Fatal(err)
		}
		for i, r := range rs {
			if r != ledger.ResultOK {
				t.Fatalf("transfer %+v: %v", ts[i], r)
			}
		}
		ts = ts[n:]
	}
}

func startOn(t *testing.T, store *storage.Store) *actors.Ledger {
	t.Helper()
	l, err := actors.Start(store, actors.Config{Shards: 2, FirstDay: firstDay, HotFlushInterval: 5 * time.Millisecond,
		TickInterval: 10 * time.Millisecond, Fatal: func(err error) { t.Errorf("fatal: %v", err) }})
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// switchOneShard makes shard's switch to day durable as the shard's own round would: a
// crash that came after that shard's switch round and before the others'.
func switchOneShard(t *testing.T, store *storage.Store, shard uint32, day ledger.Day) {
	t.Helper()
	v := store.Snapshot()
	clock, err := v.Clock(shard)
	if err != nil {
		t.Fatal(err)
	}
	cur, found, err := v.ShardDay(shard)
	if err != nil || !found || cur != day.Prev() {
		t.Fatalf("shard %d on %v (%v %v)", shard, cur, found, err)
	}
	_ = v.Close()
	b := ledger.NewBook(shard, store.Shards())
	b.LoadClock(clock)
	b.LoadDay(cur)
	var fx ledger.Effects
	b.SwitchDay(day, &fx)
	fx.Freeze()
	w := store.Writer(shard)
	if err := w.Commit(&fx, b.Clock()); err != nil {
		t.Fatal(err)
	}
	_ = w.Close()
}

func dayTable(t *testing.T, rep *accounting.DayReport) string {
	t.Helper()
	if rep == nil {
		t.Fatal("no report")
	}
	var b bytes.Buffer
	if err := accounting.WriteDayTable(&b, rep, nil); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// checkBooked: every account's posted balance is what the transfers sent make it (each
// booked once, none lost), the transit accounts drained, nothing pending, no leg in any outbox, and every transfer's
// postings are on the day it was sent on.
func checkBooked(t *testing.T, l *actors.Ledger, days map[uint64]ledger.Day, ts []ledger.Transfer) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := l.Drain(ctx); err != nil {
		t.Fatal(err)
	}
	debits, credits := map[uint64]uint64{}, map[uint64]uint64{}
	for _, tr := range ts {
		debits[tr.DebitAccountID] += tr.Amount
		credits[tr.CreditAccountID] += tr.Amount
	}
	var td, tc uint64
	err := l.Read(func(v *storage.Reader) error {
		if err := v.ForEachAccount(func(a ledger.Account) error {
			if _, _, transit := ledger.IsTransit(a.ID); transit {
				td, tc = td+a.Balance.DebitsPosted.Lo, tc+a.Balance.CreditsPosted.Lo
				return nil
			}
			if a.Balance.DebitsPosted != ledger.U128(debits[a.ID]) || a.Balance.CreditsPosted != ledger.U128(credits[a.ID]) ||
				!a.Balance.DebitsPending.IsZero() || !a.Balance.CreditsPending.IsZero() {
				t.Errorf("account %d: %+v, want debits %d credits %d", a.ID, a.Balance, debits[a.ID], credits[a.ID])
			}
			return nil
		}); err != nil {
			return err
		}
		if td != tc { // drained: the transit accounts moved as much out as in
			t.Errorf("transit accounts: debits %d, credits %d", td, tc)
		}
		if err := v.ForEachOutboxLeg(func(leg ledger.Leg) error {
			t.Errorf("leg still in an outbox: %+v", leg)
			return nil
		}); err != nil {
			return err
		}
		return v.ForEachPosting(func(p ledger.Posting) error {
			if want, ok := days[p.TransferID]; ok && p.Day != want {
				t.Errorf("posting %+v of transfer %d: day %v, want %v", p, p.TransferID, p.Day, want)
			}
			return nil
		})
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestEndOfDayResumesAfterACrash: a power cut at each phase boundary of end of day (before the
// switch, after one shard's switch only, after the switch, the drain, the snapshot, and after
// a passed trial balance before the archive is recorded); the reopened store's end of day
// resumes and closes the day with the trial balance an uninterrupted run had, every transfer
// is booked once on the day it was sent on, no shard is left on the old day, transfers after
// the restart go to the next day, and the next day closes too.
func TestEndOfDayResumesAfterACrash(t *testing.T) {
	const seed = 20261126
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	// The uninterrupted run.
	fs := vfs.NewMem()
	l, store, ids := world(t, fs)
	before := crashTransfers(seed, 1000, 300, ids)
	send(t, l, before)
	res, err := NewRunner(l, store, Config{Now: afterDays}).Run(ctx, firstDay, Options{})
	if err != nil || res.Outcome != OutcomeClosed {
		t.Fatalf("uninterrupted: %+v %v", res, err)
	}
	want := dayTable(t, res.Report)
	l.Stop()
	_ = store.Close()

	for _, c := range []struct {
		name    string
		at      Phase
		half    bool // switch shard 0 only in the crashed store
		late    bool // transfers of the next day are sent before the crash
		recPh   Phase
		recOut  Outcome
		curDay  ledger.Day
		shards1 ledger.Day // shard 1's day after the crash
	}{
		{"before the switch", PhaseStarted, false, false, PhaseStarted, OutcomeRunning, firstDay, firstDay},
		{"one shard switched", PhaseStarted, true, false, PhaseStarted, OutcomeRunning, firstDay, firstDay},
		{"switched", PhaseSwitched, false, true, PhaseSwitched, OutcomeRunning, firstDay.Next(), firstDay.Next()},
		{"drained", PhaseDrained, false, true, PhaseDrained, OutcomeRunning, firstDay.Next(), firstDay.Next()},
		{"snapshot", PhaseSnapshot, false, true, PhaseSnapshot, OutcomeRunning, firstDay.Next(), firstDay.Next()},
		{"trial passed, archive not recorded", PhaseTrial, false, true, PhaseTrial, OutcomeTrialPassed, firstDay.Next(), firstDay.Next()},
	} {
		t.Run(c.name, func(t *testing.T) {
			mem := vfs.NewCrashableMem()
			l, store, ids := world(t, mem)
			send(t, l, before)
			days := map[uint64]ledger.Day{}
			for _, tr := range before {
				days[tr.ID] = firstDay
			}
			sent := append([]ledger.Transfer(nil), before...)
			late := crashTransfers(seed+1, 5000, 60, ids)
			var crashed *vfs.MemFS
			r := NewRunner(l, store, Config{Now: afterDays})
			r.at = func(p Phase) {
				if p != c.at || crashed != nil {
					return
				}
				if c.late {
					send(t, l, late)
				}
				crashed = mem.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: 0})
			}
			if res, err := r.Run(ctx, firstDay, Options{}); err != nil || res.Outcome != OutcomeClosed || crashed == nil {
				t.Fatalf("run before the crash: %+v %v", res, err)
			}
			l.Stop()
			_ = store.Close()
			if c.late {
				sent = append(sent, late...)
				for _, tr := range late {
					days[tr.ID] = firstDay.Next()
				}
			}

			store, err := storage.Open("db", storage.Options{FS: crashed, Shards: 2})
			if err != nil {
				t.Fatal(err)
			}
			defer store.Close()
			if c.half {
				switchOneShard(t, store, 0, firstDay.Next())
			}
			l = startOn(t, store)
			defer l.Stop()
			r = NewRunner(l, store, Config{Now: afterDays})
			st, err := r.Status()
			if err != nil || st.Day != c.curDay || !st.Found || st.Last.Day != firstDay || st.Last.Phase != c.recPh ||
				st.Last.Outcome != c.recOut || len(st.Open) != btoi(c.curDay > firstDay) {
				t.Fatalf("status after the crash: %+v %v", st, err)
			}
			if err := l.Read(func(v *storage.Reader) error {
				d, _, err := v.ShardDay(1)
				if d != c.shards1 {
					t.Errorf("shard 1 on %v after the crash, want %v", d, c.shards1)
				}
				return err
			}); err != nil {
				t.Fatal(err)
			}
			res, err := r.Run(ctx, firstDay, Options{})
			if err != nil || res.Outcome != OutcomeClosed || res.Phase != PhaseArchived {
				t.Fatalf("run after the crash: %+v %v", res, err)
			}
			if got := dayTable(t, res.Report); got != want {
				t.Errorf("trial balance after the crash:\n%s\nuninterrupted:\n%s", got, want)
			}
			st, err = r.Status()
			if err != nil || st.Day != firstDay.Next() || st.Last.Day != firstDay || st.Last.Outcome != OutcomeClosed {
				t.Fatalf("status after the run: %+v %v", st, err)
			}
			if err := l.Read(func(v *storage.Reader) error {
				for s := range uint32(2) {
					if d, _, err := v.ShardDay(s); err != nil || d != firstDay.Next() {
						t.Errorf("shard %d on %v (%v)", s, d, err)
					}
				}
				return nil
			}); err != nil {
				t.Fatal(err)
			}
			after := crashTransfers(seed+2, 9000, 60, ids)
			send(t, l, after)
			sent = append(sent, after...)
			for _, tr := range after {
				days[tr.ID] = firstDay.Next()
			}
			checkBooked(t, l, days, sent)
			res, err = r.Run(ctx, firstDay.Next(), Options{})
			if err != nil || res.Outcome != OutcomeClosed {
				t.Fatalf("the next day: %+v %v", res, err)
			}
		})
	}
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}
