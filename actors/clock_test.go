package actors

import (
	"bytes"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/ledgercore/ledger/ledger"
	"github.com/ledgercore/ledger/ledger/driver"
	"github.com/ledgercore/ledger/storage"
)

// fakeClocks is a wall clock that the test can step and a monotonic clock that only moves
// forward with true time. One lock keeps the two consistent for readers on other goroutines.
type fakeClocks struct {
	mu      sync.Mutex
	wall    time.Time
	elapsed time.Duration
}

func newFakeClocks(wall time.Time) *fakeClocks { return &fakeClocks{wall: wall} }

func (f *fakeClocks) read() (time.Time, time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.wall, f.elapsed
}

// advance lets true time pass: both clocks move.
func (f *fakeClocks) advance(d time.Duration) {
	f.mu.Lock()
	f.wall, f.elapsed = f.wall.Add(d), f.elapsed+d
	f.mu.Unlock()
}

// step sets the wall clock by d; the monotonic clock does not notice.
func (f *fakeClocks) step(d time.Duration) {
	f.mu.Lock()
	f.wall = f.wall.Add(d)
	f.mu.Unlock()
}

// wallNanos is the wall clock unguarded, as Config.Now was before the guard.
func (f *fakeClocks) wallNanos() uint64 {
	w, _ := f.read()
	return uint64(w.UnixNano())
}

var clockBase = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

// TestClockGuard: the guard follows drift and steps within the bound, does not follow a step
// past it (forward or back) but goes on from the monotonic clock, reports the step's skew and
// counts and logs it once, and follows the wall clock again when it comes back.
func TestClockGuard(t *testing.T) {
	f := newFakeClocks(clockBase)
	var st Stats
	var logs bytes.Buffer
	c := driver.NewClock(f.read, 5*time.Second, &st.ClockStats, slog.New(slog.NewTextHandler(&logs, nil)))
	follows := func(what string) {
		t.Helper()
		w, _ := f.read()
		if got := c.Now(); got != uint64(w.UnixNano()) {
			t.Fatalf("%s: reading %v, want the wall clock %v", what, time.Unix(0, int64(got)).UTC(), w)
		}
		if skew := st.ClockSkewNanos.Load(); skew != 0 {
			t.Fatalf("%s: skew %v while following", what, time.Duration(skew))
		}
	}
	// notFollowed reads the clock after true time passed and checks it went on from the last
	// reading by exactly that, whatever the wall clock says.
	last := c.Now()
	notFollowed := func(what string, skew time.Duration, jumps uint64) {
		t.Helper()
		for range 3 {
			f.advance(10 * time.Millisecond)
			got := c.Now()
			if got != last+uint64(10*time.Millisecond) {
				t.Fatalf("%s: reading %v after %v, want the projection %v", what, time.Unix(0, int64(got)).UTC(),
					time.Unix(0, int64(last)).UTC(), time.Unix(0, int64(last+uint64(10*time.Millisecond))).UTC())
			}
			last = got
			if got := time.Duration(st.ClockSkewNanos.Load()); got != skew {
				t.Fatalf("%s: skew %v, want %v", what, got, skew)
			}
			if got := st.ClockJumps.Load(); got != jumps {
				t.Fatalf("%s: %d jumps, want %d", what, got, jumps)
			}
		}
	}
	// Slewing: the wall clock runs 4% fast for 200 s, 8 s ahead of the monotonic clock in
	// all: each reading re-anchors, so only the drift between readings counts.
	for range 2000 {
		f.advance(100 * time.Millisecond)
		f.step(4 * time.Millisecond)
		follows("slew")
	}
	f.step(-5 * time.Second) // a step of the bound itself is followed
	follows("step of the bound")
	f.step(3 * time.Second)
	follows("small step")
	if st.ClockJumps.Load() != 0 {
		t.Fatalf("%d jumps while following", st.ClockJumps.Load())
	}

	last = c.Now()
	f.step(time.Hour)
	notFollowed("forward step", time.Hour, 1)
	f.step(-time.Hour)
	follows("back from the forward step")
	if got := c.Now(); got != last {
		t.Fatalf("back at the true time: reading %v, want %v (no time passed)", got, last)
	}

	last = c.Now()
	f.step(-time.Hour)
	notFollowed("backward step", -time.Hour, 2)
	f.step(time.Hour)
	follows("back from the backward step")

	// A step past the bound by a little is a step too.
	last = c.Now()
	f.step(5*time.Second + time.Millisecond)
	notFollowed("step just past the bound", 5*time.Second+time.Millisecond, 3)
	f.step(-5*time.Second - time.Millisecond)
	follows("back again")

	if n := strings.Count(logs.String(), "level=WARN"); n != 3 {
		t.Errorf("%d warnings for 3 steps:\n%s", n, logs.String())
	}
}

// transferAt books transfer id (account 1 to 2) and reads its timestamp back from storage.
func transferAt(t *testing.T, l *Ledger, store *storage.Store, id uint64) time.Time {
	t.Helper()
	rs, err := l.CreateTransfers([]ledger.Transfer{{ID: id, DebitAccountID: 1, CreditAccountID: 2, Amount: 1,
		Ledger: 1, Code: 1}})
	if err != nil || rs[0] != ledger.ResultOK {
		t.Fatalf("transfer %d: %v %v", id, rs, err)
	}
	tr, found, err := store.Live().Transfer(id)
	if err != nil || !found {
		t.Fatalf("transfer %d not stored: %v", id, err)
	}
	return time.Unix(0, int64(tr.Timestamp)).UTC()
}

// near: a timestamp is the true time, or a few nanoseconds past it (one past the shard's
// last timestamp).
func near(ts, want time.Time) bool { return !ts.Before(want) && ts.Sub(want) < time.Millisecond }

// TestClockStepDoesNotPinTimestamps: a wall clock that steps an hour forward and comes back.
// With the guard, transfers are stamped at the true time throughout. Without it (the wall
// clock as Config.Now), the control, the step pins every later timestamp an hour ahead.
func TestClockStepDoesNotPinTimestamps(t *testing.T) {
	for _, guarded := range []bool{true, false} {
		f := newFakeClocks(clockBase)
		store := openStore(t, vfs.NewMem(), 2)
		cfg := Config{Shards: 2, Fatal: func(err error) { t.Errorf("fatal: %v", err) }}
		if guarded {
			cfg.clockSource = f.read
		} else {
			cfg.Now = f.wallNanos
		}
		l, err := Start(store, cfg)
		if err != nil {
			t.Fatal(err)
		}
		openAccounts(t, l, ledger.Account{ID: 1, Ledger: 1, Code: 1}, ledger.Account{ID: 2, Ledger: 1, Code: 1})
		f.advance(time.Second)
		if ts := transferAt(t, l, store, 1); !near(ts, clockBase.Add(time.Second)) {
			t.Errorf("guarded %v: before the step, stamped %v", guarded, ts)
		}
		f.advance(time.Second)
		f.step(time.Hour)
		during := transferAt(t, l, store, 2)
		f.advance(time.Second)
		f.step(-time.Hour)
		after := transferAt(t, l, store, 3)
		if guarded {
			if !near(during, clockBase.Add(2*time.Second)) || !near(after, clockBase.Add(3*time.Second)) {
				t.Errorf("guarded: stamped %v during the step and %v after it, want the true time", during, after)
			}
			if st := l.Stats(); st.ClockJumps.Load() != 1 || st.ClockSkewNanos.Load() != 0 {
				t.Errorf("guarded: %d jumps, skew %v after the step", st.ClockJumps.Load(),
					time.Duration(st.ClockSkewNanos.Load()))
			}
		} else if after.Before(clockBase.Add(time.Hour)) {
			t.Errorf("unguarded: stamped %v after the step; the control should show the pinning", after)
		}
		l.Stop()
		_ = store.Close()
	}
}

// TestClockSkewGaugeDuringStep: while the wall clock is an hour ahead, the ledger's gauge
// says so and its counter counted the step once.
func TestClockSkewGaugeDuringStep(t *testing.T) {
	f := newFakeClocks(clockBase)
	store := openStore(t, vfs.NewMem(), 1)
	l, err := Start(store, Config{Shards: 1, clockSource: f.read, Fatal: func(err error) { t.Errorf("fatal: %v", err) }})
	if err != nil {
		t.Fatal(err)
	}
	openAccounts(t, l, ledger.Account{ID: 1, Ledger: 1, Code: 1}, ledger.Account{ID: 2, Ledger: 1, Code: 1})
	f.step(time.Hour)
	for id := uint64(1); id <= 3; id++ {
		f.advance(time.Second)
		if ts := transferAt(t, l, store, id); !near(ts, clockBase.Add(time.Duration(id)*time.Second)) {
			t.Errorf("transfer %d stamped %v", id, ts)
		}
	}
	if st := l.Stats(); st.ClockJumps.Load() != 1 || time.Duration(st.ClockSkewNanos.Load()) != time.Hour {
		t.Errorf("%d jumps, skew %v during the step", st.ClockJumps.Load(), time.Duration(st.ClockSkewNanos.Load()))
	}
	l.Stop()
	_ = store.Close()
}

// TestStoredClockAheadIsReported: a store whose clock was stamped an hour ahead (by a ledger
// without the guard) restarts on a right wall clock. It starts, reports the skew (negative:
// the wall clock is behind the stored one) and keeps it while timestamps stay one past the
// stored clock; once the wall clock passes it, timestamps follow it and the skew is 0.
func TestStoredClockAheadIsReported(t *testing.T) {
	fs := vfs.NewMem()
	f := newFakeClocks(clockBase)
	store := openStore(t, fs, 1)
	fatal := func(err error) { t.Errorf("fatal: %v", err) }
	l, err := Start(store, Config{Shards: 1, Now: f.wallNanos, Fatal: fatal})
	if err != nil {
		t.Fatal(err)
	}
	openAccounts(t, l, ledger.Account{ID: 1, Ledger: 1, Code: 1}, ledger.Account{ID: 2, Ledger: 1, Code: 1})
	f.step(time.Hour)
	stored := transferAt(t, l, store, 1)
	l.Stop()
	if err := store.Close(); err != nil {
		t.Fatal(err)
	}

	f.step(-time.Hour)
	f.advance(time.Second)
	store = openStore(t, fs, 1)
	l, err = Start(store, Config{Shards: 1, clockSource: f.read, Fatal: fatal})
	if err != nil {
		t.Fatal(err)
	}
	wall, _ := f.read()
	want := wall.Sub(stored)
	if skew := time.Duration(l.Stats().ClockSkewNanos.Load()); skew != want {
		t.Errorf("skew at start %v, want %v", skew, want)
	}
	if ts := transferAt(t, l, store, 2); !ts.After(stored) || !near(ts, stored) {
		t.Errorf("stamped %v over a stored clock of %v", ts, stored)
	}
	if skew := time.Duration(l.Stats().ClockSkewNanos.Load()); skew != want {
		t.Errorf("skew after a reading %v, want %v", skew, want)
	}
	f.advance(time.Hour)
	wall, _ = f.read()
	if ts := transferAt(t, l, store, 3); !near(ts, wall) {
		t.Errorf("stamped %v once the wall clock (%v) passed the stored one", ts, wall)
	}
	if st := l.Stats(); st.ClockSkewNanos.Load() != 0 || st.ClockJumps.Load() != 0 {
		t.Errorf("skew %v, %d jumps once the wall clock passed the stored one",
			time.Duration(st.ClockSkewNanos.Load()), st.ClockJumps.Load())
	}
	l.Stop()
	_ = store.Close()
}
