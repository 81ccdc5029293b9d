package actors

import (
	"log/slog"
	"time"

	"github.com/ledgercore/ledger/ledger"
	"github.com/ledgercore/ledger/ledger/driver"
)

// Config.Now's default is the guarded clock of package driver (driver.Clock): it follows the
// wall clock but not a step of it past ClockSkewMax.

// startClock puts the guard in as Config.Now unless a clock was given, and checks the clocks
// recovered from storage against it.
func (l *Ledger) startClock(books []*ledger.Book) {
	var guard *driver.Clock
	if l.cfg.Now == nil {
		source := l.cfg.clockSource
		if source == nil {
			source = driver.MachineClock()
		}
		guard = driver.NewClock(source, l.cfg.ClockSkewMax, &l.stats.ClockStats, slog.Default())
		l.cfg.Now = guard.Now
	}
	l.checkRecoveredClocks(books, guard)
}

// checkRecoveredClocks warns when a shard's clock recovered from storage is ahead of the wall
// clock by more than ClockSkewMax: a step forward before the restart (or a store from a
// machine whose clock was ahead). Book.tick keeps each shard's timestamps above its stored
// clock, so they stay pinned there until the wall clock passes it; the skew gauge shows how
// far ahead until then. The ledger starts anyway: it must stay available, and its timestamps
// are still strictly increasing, only late to return to true time.
func (l *Ledger) checkRecoveredClocks(books []*ledger.Book, guard *driver.Clock) {
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
		guard.Recovered(int64(latest))
	}
}
