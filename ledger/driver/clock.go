package driver

import (
	"log/slog"
	"sync/atomic"
	"time"
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
//   - within the bound: it returns the wall clock and re-anchors on it. NTP slews the clock
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

// ClockSource reads the wall clock and the monotonic time elapsed since a fixed instant, at
// once. Tests give a fake one: a fake time.Time has no monotonic reading of its own.
type ClockSource func() (wall time.Time, elapsed time.Duration)

// MachineClock reads the machine's clocks.
func MachineClock() ClockSource {
	start := time.Now()
	return func() (time.Time, time.Duration) {
		now := time.Now()
		return now, now.Sub(start) // Sub uses the monotonic readings of both
	}
}

// Clock is the guard; Now is its reading.
type Clock struct {
	source       ClockSource
	skewMaxNanos int64
	stats        *ClockStats
	log          *slog.Logger
	// offset is the anchor: wall time minus elapsed time (ns) at the last reading followed.
	// One word, so that anchoring is one atomic store.
	offset atomic.Int64
	// recovered is the latest shard clock recovered from storage (ns), when it was ahead of
	// the wall clock by more than the bound at start (checkRecoveredClocks), else 0.
	recovered atomic.Int64
	stepped   atomic.Bool // the last reading found the wall clock past the bound
}

// NewClock starts a guard over source.
func NewClock(source ClockSource, skewMax time.Duration, stats *ClockStats, log *slog.Logger) *Clock {
	c := &Clock{source: source, skewMaxNanos: int64(skewMax), stats: stats, log: log}
	wall, elapsed := source()
	c.offset.Store(wall.UnixNano() - int64(elapsed))
	return c
}

// Now returns the time in Unix nanoseconds: the wall clock when it is within the bound of
// the projection, else the projection.
func (c *Clock) Now() uint64 {
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
func (c *Clock) setSkew(skew int64) {
	if c.stats.ClockSkewNanos.Load() != skew {
		c.stats.ClockSkewNanos.Store(skew)
	}
}

// Recovered tells the guard the latest shard clock recovered from storage (ns), when it is
// ahead of the wall clock by more than the bound: the skew it reports counts from there.
func (c *Clock) Recovered(ns int64) { c.recovered.Store(ns) }

// ClockStats are the guard's figures.
type ClockStats struct {
	// ClockSkewNanos is the wall clock minus the time the shards stamp with, while they do not
	// follow it (a step past the bound, or a stored clock ahead at start); 0 otherwise.
	ClockSkewNanos atomic.Int64
	// ClockJumps counts steps of the wall clock past the bound, once each.
	ClockJumps atomic.Uint64
}
