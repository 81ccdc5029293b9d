package sim

import (
	"flag"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/ledgercore/ledger/internal/simulation"
)

var (
	simSeed   = flag.Int64("sim.seed", 0, "run this one seed (0: the seeds from -sim.first)")
	simFirst  = flag.Int64("sim.first", 1, "the first seed of the run")
	simSeeds  = flag.Int("sim.seeds", 12, "how many seeds to run, from -sim.first")
	simSteps  = flag.Int("sim.steps", 200, "requests sent alone per seed")
	simFaults = flag.String("sim.faults", "all", "fault kinds: all, none, or a comma list of network,crash,storage,clock,slow")
	simShrink = flag.Bool("sim.shrink", false, "on a failure, look for a shorter run that fails (fewer steps, fewer fault kinds) and print it")
)

// TestSimulation runs the shard drivers over Pebble with every fault kind, one seed after
// another, each checked by the independent oracle of internal/simulation. Each run logs its
// seed and what it injected; a failure says how to replay it. A long run:
//
//	go test ./sim -run TestSimulation -sim.first 1 -sim.seeds 10000 -timeout 0
func TestSimulation(t *testing.T) {
	faults, err := parseFaults(*simFaults)
	if err != nil {
		t.Fatal(err)
	}
	first, n := *simFirst, int64(*simSeeds)
	if *simSeed != 0 {
		first, n = *simSeed, 1
	}
	var total Stats
	var counts simulation.Counts
	start := time.Now()
	for seed := first; seed < first+n; seed++ {
		if failed := runSeed(t, seed, *simSteps, faults, &total, &counts); failed != "" {
			if *simShrink {
				shrink(t, seed, *simSteps, faults)
			}
			t.Fatal(failed)
		}
	}
	t.Logf("%d seeds from %d, %d steps each, faults %s, in %v: injected %+v; exercised %+v", n, first, *simSteps,
		faultNames(faults), time.Since(start).Round(time.Millisecond), total, counts)
	if counts.Steps >= 100 {
		if err := counts.Covered(); err != nil {
			t.Fatal(err)
		}
	}
	if n >= 6 && counts.Steps >= 100 && total.EarlyCommits == 0 {
		t.Fatal("no round was completed between two pieces of a part (host.Durable): not exercised")
	}
}

// runSeed runs one seed and returns its failure, or "".
func runSeed(t *testing.T, seed int64, steps int, faults Faults, total *Stats, counts *simulation.Counts) (failure string) {
	tb := &quietTB{TB: t}
	defer func() {
		if r := recover(); r != nil {
			f, ok := r.(failed)
			if !ok {
				panic(r)
			}
			failure = string(f)
		}
	}()
	c, err := New(seed, faults, tb.Fatalf)
	if err != nil {
		t.Fatal(err)
	}
	counts.Add(simulation.Run(tb, c, simulation.Options{Seed: seed, Steps: steps, Replay: replay(seed, steps, faults),
		CoverageByCaller: true}))
	s := c.Stats()
	total.add(s)
	if faults.Network && s.Events > 10_000 && (s.Lost == 0 || s.Duplicated == 0) {
		return fmt.Sprintf("seed %d: the network lost %d and duplicated %d messages: faults not exercised", seed, s.Lost, s.Duplicated)
	}
	return ""
}

func replay(seed int64, steps int, faults Faults) string {
	return fmt.Sprintf("go test ./sim -run TestSimulation -sim.seed=%d -sim.steps=%d -sim.faults=%s -v", seed, steps, faultNames(faults))
}

// quietTB turns a failure into a panic that runSeed recovers, so that shrink can run a seed
// again; it keeps the harness's per-run log line.
type quietTB struct{ testing.TB }

type failed string

func (q *quietTB) Fatalf(format string, args ...any) { panic(failed(fmt.Sprintf(format, args...))) }
func (q *quietTB) Fatal(args ...any)                 { panic(failed(fmt.Sprint(args...))) }
func (q *quietTB) Errorf(format string, args ...any) { panic(failed(fmt.Sprintf(format, args...))) }
func (q *quietTB) Error(args ...any)                 { panic(failed(fmt.Sprint(args...))) }

// shrink looks for a shorter failing run of seed: each fault kind dropped in turn if the run
// still fails without it, then the fewest steps (halving, then stepping down) that still fail.
func shrink(t *testing.T, seed int64, steps int, faults Faults) {
	var ignore Stats
	var counts simulation.Counts
	fails := func(steps int, f Faults) bool { return runSeed(t, seed, steps, f, &ignore, &counts) != "" }
	for _, k := range faults.kinds() {
		if !*k {
			continue
		}
		*k = false
		if !fails(steps, faults) {
			*k = true
		}
	}
	for steps > 1 && fails(steps/2, faults) {
		steps /= 2
	}
	for lo := steps / 2; steps > lo+1; {
		mid := (lo + steps) / 2
		if fails(mid, faults) {
			steps = mid
		} else {
			lo = mid
		}
	}
	t.Logf("shrunk: %s", replay(seed, steps, faults))
}

func (s *Stats) add(x Stats) {
	s.Events += x.Events
	s.Sent += x.Sent
	s.Lost += x.Lost
	s.Duplicated += x.Duplicated
	s.SlowCommits += x.SlowCommits
	s.CommitErrors += x.CommitErrors
	s.ClockSteps += x.ClockSteps
	s.Drains += x.Drains
	s.Crashes += x.Crashes
	s.Restarts += x.Restarts
	s.Cuts += x.Cuts
	s.EarlyCommits += x.EarlyCommits
}

var faultKinds = []string{"network", "crash", "storage", "clock", "slow"}

func (f *Faults) kinds() []*bool {
	return []*bool{&f.Network, &f.Crashes, &f.Storage, &f.Clock, &f.Slow}
}

func parseFaults(s string) (Faults, error) {
	switch s {
	case "all":
		return AllFaults, nil
	case "none", "":
		return Faults{}, nil
	}
	var f Faults
	for _, name := range strings.Split(s, ",") {
		i := indexOf(faultKinds, strings.TrimSpace(name))
		if i < 0 {
			return f, fmt.Errorf("-sim.faults: unknown kind %q (want all, none, or some of %v)", name, faultKinds)
		}
		*f.kinds()[i] = true
	}
	return f, nil
}

func faultNames(f Faults) string {
	var names []string
	for i, on := range f.kinds() {
		if *on {
			names = append(names, faultKinds[i])
		}
	}
	switch len(names) {
	case 0:
		return "none"
	case len(faultKinds):
		return "all"
	}
	return strings.Join(names, ",")
}

func indexOf(xs []string, x string) int {
	for i, y := range xs {
		if x == y {
			return i
		}
	}
	return -1
}

// TestReplay: a seed replays exactly: two runs of one seed, with every fault kind, handle the
// same events in the same order and leave the same store.
func TestReplay(t *testing.T) {
	run := func() (uint64, Stats) {
		c, err := New(4242, AllFaults, t.Fatalf)
		if err != nil {
			t.Fatal(err)
		}
		simulation.Run(t, c, simulation.Options{Seed: 4242, Steps: 60})
		return c.Trace(), c.Stats()
	}
	trace1, stats1 := run()
	trace2, stats2 := run()
	if trace1 != trace2 || stats1 != stats2 {
		t.Fatalf("seed 4242 ran twice differently: trace %x and %x, %+v and %+v", trace1, trace2, stats1, stats2)
	}
	t.Logf("trace %x, %+v", trace1, stats1)
}
