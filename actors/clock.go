package actors

import (
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/ledgercore/ledger/ledger"
)

// The guarded time source, Config.Now's default.
//
// Why: a shard's timestamps never go back (ledger.Book hands out one past the last when the
// clock stood still or went back), and the last one is stored and reloaded on recovery. A wall
// clock that steps forward (a day, say) and later comes back would leave every shard stamping
// one past the future time: holds expire late, history ranges are wrong, and a restart keeps
// it. So the guard does not follow a step.
//
// How: it anchors the wall clock to Go's monotonic clock, which no one can set, and projects:
// reading = anchor's wall time + monotonic time elapsed since the anchor. Each reading compares
// the wall clock with the projection:
//   - within ClockSkewMax: it returns the wall clock and re-anchors on it. NTP slews the clock
//     (and steps it by small amounts), and the ledger must keep to true time. Re-anchoring on
//     every reading means only the drift between two readings (a tick apart at most) counts
//     against the bound, not the drift since start.
//   - further: a step. It returns the projection, so timestamps go on at the pace of the
//     monotonic clock from where they were; it reports the skew (wall minus projection) in
//     Stats.ClockSkewNanos, and when the step starts it counts it in Stats.ClockJumps and
//     logs a warning, once. When the wall clock comes back within the bound it is followed
//     again and the skew returns to 0.
//
// A step that is right (the clock was wrong before) is taken only by a restart, which anchors
// on the wall clock of that time. Go's monotonic clock also stops while the machine is
// suspended, so a suspend longer than the bound reads as a forward step until a restart.
//
// Each reading is one time.Now and a few atomics, no lock and no allocation: shards read the
// clock once per round, and several shards read it at once. Two readings racing across the
// instant of a step may count that step twice; the skew they report is right either way.

// clockSource reads the wall clock and the monotonic time elapsed since a fixed instant, at
// once. Tests give a fake one: a fake time.Time has no monotonic reading of its own.
type clockSource func() (wall time.Time, elapsed time.Duration)

// machineClock reads the machine's clocks.
func machineClock() clockSource {
	start := time.Now()
	return func() (time.Time, time.Duration) {
		now := time.Now()
		return now, now.Sub(start) // Sub uses the monotonic readings of both
	}
}

// clock is the guard; now is its reading.
type clock struct {
	source       clockSource
	skewMaxNanos int64
	stats        *Stats
	log          *slog.Logger
	// offset is the anchor: wall time minus elapsed time (ns) at the last reading followed.
	// One word, so that anchoring is one atomic store.
	offset atomic.Int64
	// recovered is the latest shard clock recovered from storage (ns), when it was ahead of
	// the wall clock by more than the bound at start (checkRecoveredClocks), else 0.
	recovered atomic.Int64
	stepped   atomic.Bool // the last reading found the wall clock past the bound
}

func newClock(source clockSource, skewMax time.Duration, stats *Stats, log *slog.Logger) *clock {
	c := &clock{source: source, skewMaxNanos: int64(skewMax), stats: stats, log: log}
	wall, elapsed := source()
	c.offset.Store(wall.UnixNano() - int64(elapsed))
	return c
}

// now returns the time in Unix nanoseconds: the wall clock when it is within the bound of
// the projection, else the projection.
func (c *clock) now() uint64 {
	wall, elapsed := c.source()
	w := wall.UnixNano()
	projection := c.offset.Load() + int64(elapsed)
	skew := w - projection
	if skew > c.skewMaxNanos || skew < -c.skewMaxNanos {
		c.setSkew(skew)
		if !c.stepped.Load() && c.stepped.CompareAndSwap(false, true) {
			c.stats.ClockJumps.Add(1)
			c.log.Warn("wall clock stepped past the bound; stamping with the monotonic clock instead (restart to take the new time)",
				"skew", time.Duration(skew), "skew_max", time.Duration(c.skewMaxNanos))
		}
		return uint64(projection)
	}
	c.offset.Store(w - int64(elapsed))
	if c.stepped.Load() && c.stepped.CompareAndSwap(true, false) {
		c.log.Info("wall clock back within the bound; following it again", "skew", time.Duration(skew))
	}
	skew = 0
	if r := c.recovered.Load(); r-w > c.skewMaxNanos {
		skew = w - r // the shards still stamp one past the recovered clock
	}
	c.setSkew(skew)
	return uint64(w)
}

// setSkew writes the skew only when it changed: shards on several cores read the clock.
func (c *clock) setSkew(skew int64) {
	if c.stats.ClockSkewNanos.Load() != skew {
		c.stats.ClockSkewNanos.Store(skew)
	}
}

// startClock puts the guard in as Config.Now unless a clock was given, and checks the clocks
// recovered from storage against it.
func (l *Ledger) startClock(books []*ledger.Book) {
	var guard *clock
	if l.cfg.Now == nil {
		source := l.cfg.clockSource
		if source == nil {
			source = machineClock()
		}
		guard = newClock(source, l.cfg.ClockSkewMax, &l.stats, slog.Default())
		l.cfg.Now = guard.now
	}
	l.checkRecoveredClocks(books, guard)
}

// checkRecoveredClocks warns when a shard's clock recovered from storage is ahead of the wall
// clock by more than ClockSkewMax: a step forward before the restart (or a store from a
// machine whose clock was ahead). Book.tick keeps each shard's timestamps above its stored
// clock, so they stay pinned there until the wall clock passes it; the skew gauge shows how
// far ahead until then. The ledger starts anyway: it must stay available, and its timestamps
// are still strictly increasing, only late to return to true time.
func (l *Ledger) checkRecoveredClocks(books []*ledger.Book, guard *clock) {
	now := l.cfg.Now()
	latest, shard := uint64(0), 0
	for i, b := range books {
		if b.Clock() > latest {
			latest, shard = b.Clock(), i
		}
	}
	if latest <= now || latest-now <= uint64(l.cfg.ClockSkewMax) {
		return
	}
	ahead := time.Duration(latest - now)
	slog.Warn("a shard's stored clock is ahead of the wall clock; its timestamps stay one past it until the wall clock gets there",
		"shard", shard, "ahead", ahead, "skew_max", l.cfg.ClockSkewMax)
	l.stats.ClockSkewNanos.Store(-int64(ahead))
	if guard != nil {
		guard.recovered.Store(int64(latest))
	}
}
