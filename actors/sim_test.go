package actors

import (
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/ledgercore/ledger/internal/simulation"
	"github.com/ledgercore/ledger/ledger"
	"github.com/ledgercore/ledger/ledger/driver"
	"github.com/ledgercore/ledger/storage"
)

var (
	simSeed  = flag.Int64("sim.seed", 0, "seed of the simulation (0: a few fixed seeds)")
	simSteps = flag.Int("sim.steps", 250, "requests per simulation run")
)

// TestSimulation runs the simulation harness (internal/simulation: seeded random requests,
// bursts and power cuts, every answer checked against an independent model of the rules) on
// the shard actors over Pebble. Pebble's crashable in-memory file system makes the power cuts:
// it keeps only what was synced, plus a random part of what was not.
//
// Replay a failure with -sim.seed: the requests are the same, though the shards run
// concurrently, so legs may interleave differently (and the requests differ once answers
// or crashes do).
func TestSimulation(t *testing.T) {
	seeds := []int64{1, 2, 3}
	if *simSeed != 0 {
		seeds = []int64{*simSeed}
	}
	for _, seed := range seeds {
		t.Run(fmt.Sprint("seed=", seed), func(t *testing.T) {
			replay := fmt.Sprint("-sim.seed=", seed)
			simulation.Run(t, newSimLedger(t, seed, replay), simulation.Options{Seed: seed, Steps: *simSteps, Replay: replay})
		})
	}
}

// TestCutRequests runs the simulation harness with power cuts in the middle of requests sent
// alone, which the system reports as cut (simulation.ErrCut): the harness judges such a
// request by what the store says happened, as a burst's, the way it must for a system that
// crashes by itself (a simulated cluster). Replay with -run TestCutRequests -sim.seed.
func TestCutRequests(t *testing.T) {
	seed := int64(4)
	if *simSeed != 0 {
		seed = *simSeed
	}
	replay := fmt.Sprint("-run TestCutRequests -sim.seed=", seed)
	l := newSimLedger(t, seed, replay)
	l.cutAlone = 5
	simulation.Run(t, l, simulation.Options{Seed: seed, Steps: *simSteps, Replay: replay})
}

// simLedger is the shard actors over Pebble as a simulation.System.
type simLedger struct {
	t      *testing.T
	seed   int64
	replay string
	rng    *rand.Rand // crash choices: the cut's moment, what survives of unsynced data
	fs     *vfs.MemFS
	store  *storage.Store
	l      *Ledger // nil once closed
	now    atomic.Uint64
	shards uint32
	// flushes: hot-account buffer flushes of the ledgers stopped so far.
	flushes [simulation.FlushReasons]uint64
	fatal   chan error // what a shard's broken invariant reported (Config.Fatal)
	dead    bool       // a shard stopped: the ledger cannot be stopped cleanly
	// cutAlone: the percentage of requests sent alone (CreateTransfers) during which the
	// power is cut, as in a burst; cuts counts them (Crashes).
	cutAlone, cuts int
	// pieceEvents: Config.PieceEvents; even seeds run parts in pieces of one transfer, so that
	// a round is sealed between two transfers of a part while another commits (two rounds
	// in flight; a shard's part here is a few transfers).
	pieceEvents int
}

var _ simulation.System = (*simLedger)(nil)

func newSimLedger(t *testing.T, seed int64, replay string) *simLedger {
	s := &simLedger{t: t, seed: seed, replay: replay, rng: rand.New(rand.NewPCG(uint64(seed), 1)),
		fs: vfs.NewCrashableMem(), shards: 3, fatal: make(chan error, 1)}
	if seed%2 == 0 {
		s.pieceEvents = 1
	}
	s.now.Store(1_000_000_000_000)
	s.open()
	return s
}

func (s *simLedger) check(ok bool, format string, args ...any) {
	s.t.Helper()
	if !ok {
		s.t.Fatalf("seed %d (replay with %s): %s", s.seed, s.replay, fmt.Sprintf(format, args...))
	}
}

func (s *simLedger) open() {
	store, err := storage.Open("db", storage.Options{FS: s.fs, Shards: s.shards, CacheBytes: 1 << 20,
		PostingTailMax: 64, PagingAccountsPerRound: 4}) // small: postings go to index pages many times a run, over several rounds
	s.check(err == nil, "open store: %v", err)
	s.store = store
	// A tiny transfer cache: the shards forget and re-read transfers all the time, and trim
	// while rounds are in flight (the forced path), which a real size would never reach here.
	// Small hot-account buffers with a short interval: buffered credits land after their
	// replies, in the middle of later requests and across crashes. Admission of 3 requests
	// and 48 transfers per shard: bursts meet it.
	l, err := Start(store, Config{Shards: s.shards, TickInterval: 5 * time.Millisecond, RedeliverAfterTicks: 20,
		TransferCacheEntriesMax: 64, HotFlushInterval: 3 * time.Millisecond, HotBufferLegsMax: 3,
		ShardRequestsMax: 3, ShardEventsMax: 48, PieceEvents: s.pieceEvents,
		Now: s.now.Load, Fatal: func(err error) {
			select {
			case s.fatal <- err:
			default:
			}
		}})
	s.check(err == nil, "start: %v", err)
	s.l = l
}

// Close stops the ledger and closes the store, unless a shard died (requests in flight would
// never end) or it is closed already.
func (s *simLedger) Close() {
	if s.dead || s.l == nil {
		return
	}
	s.l.Stop()
	for r, n := range s.running() {
		s.flushes[r] += n
	}
	s.l = nil
	_ = s.store.Close()
}

// running is the hot-account buffer flushes of the ledger running now, by simulation's reasons.
func (s *simLedger) running() [simulation.FlushReasons]uint64 {
	var out [simulation.FlushReasons]uint64
	if s.l == nil {
		return out
	}
	f := &s.l.Stats().HotFlushes
	out[simulation.FlushInterval] = f[driver.FlushInterval].Load()
	out[simulation.FlushSize] = f[driver.FlushSize].Load()
	out[simulation.FlushDrain] = f[driver.FlushDrain].Load()
	out[simulation.FlushAlong] = f[driver.FlushAlong].Load()
	return out
}

// Crash takes what a power cut would leave of the store, drops the running ledger, and
// recovers from that copy.
func (s *simLedger) Crash() {
	crashed := s.fs.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: s.rng.IntN(101), RNG: s.rng})
	s.Close()
	s.fs = crashed
	s.open()
}

// CreateTransfers sends one request and waits for its answer, or fails the run at once if a
// shard stops on a broken invariant (its requests would never be answered). With cutAlone,
// it sometimes cuts the power while the request is in flight, as Burst does, and answers
// ErrCut.
func (s *simLedger) CreateTransfers(ts []ledger.Transfer) ([]ledger.TransferResult, error) {
	if s.cutAlone > 0 && s.rng.IntN(100) < s.cutAlone {
		s.cuts++
		_, errs, _ := s.Burst([][]ledger.Transfer{ts}, true)
		return nil, fmt.Errorf("%w (answered %v)", simulation.ErrCut, errs[0])
	}
	var rs []ledger.TransferResult
	var err error
	done := make(chan struct{})
	go func() {
		defer close(done)
		rs, err = s.l.CreateTransfers(ts)
	}()
	s.await(done)
	return rs, simError(err)
}

// simError maps the ledger's overload to the simulation's.
func simError(err error) error {
	if errors.Is(err, ErrOverloaded) {
		return fmt.Errorf("%w (%w)", simulation.ErrOverloaded, err)
	}
	return err
}

// await waits for done, or fails the run when a shard stops on a broken invariant.
func (s *simLedger) await(done <-chan struct{}) {
	s.t.Helper()
	select {
	case <-done:
	case err := <-s.fatal:
		s.died(err)
	}
}

func (s *simLedger) died(err error) {
	s.t.Helper()
	s.dead = true
	s.check(false, "fatal: %v", err)
}

// Burst sends the requests at once, each from a goroutine of its own; with cut, it cuts the
// power after a random pause of up to 3 ms, waits for the answers (the ledger runs on, on the
// file system the cut no longer sees), and recovers from what the cut left.
func (s *simLedger) Burst(batches [][]ledger.Transfer, cut bool) ([][]ledger.TransferResult, []error, []bool) {
	var cutDone atomic.Bool
	results := make([][]ledger.TransferResult, len(batches))
	errs := make([]error, len(batches))
	certain := make([]bool, len(batches))
	var wg sync.WaitGroup
	l := s.l
	for i := range batches {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rs, err := l.CreateTransfers(batches[i])
			results[i], errs[i] = rs, simError(err)
			certain[i] = !cutDone.Load()
		}()
	}
	waitAll := func() {
		done := make(chan struct{})
		go func() { wg.Wait(); close(done) }()
		s.await(done)
	}
	if cut {
		time.Sleep(time.Duration(s.rng.IntN(3000)) * time.Microsecond)
		cutDone.Store(true)
		crashed := s.fs.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: s.rng.IntN(101), RNG: s.rng})
		waitAll()
		s.Close()
		s.fs = crashed
		s.open()
	} else {
		waitAll()
	}
	return results, errs, certain
}

// Await polls cond every 5 ms for at most 10 s, and fails the run at once when a shard stops
// on a broken invariant.
func (s *simLedger) Await(cond func() bool) bool {
	deadline := time.Now().Add(10 * time.Second)
	for {
		select {
		case err := <-s.fatal:
			s.died(err)
		default:
		}
		if cond() {
			return true
		}
		if !time.Now().Before(deadline) {
			return false
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// errOutboxLeg stops the scan of the outbox at its first leg.
var errOutboxLeg = errors.New("an outbox leg")

// Quiet reports whether every shard's outbox and hot-account buffers are empty, by the
// shards' counters and by the store: a round's outbox legs are in the store (and a reply
// sent) before the shard updates its counter, and a hold swept at its timeout is released in
// the store before the leg that releases its credit side is counted.
func (s *simLedger) Quiet() bool {
	for sh := 0; sh < int(s.shards); sh++ {
		if s.l.OutboxLegs(sh) != 0 || s.l.BufferedLegs(sh) != 0 {
			return false
		}
	}
	err := s.store.Live().ForEachOutboxLeg(func(ledger.Leg) error { return errOutboxLeg })
	if errors.Is(err, errOutboxLeg) {
		return false
	}
	s.check(err == nil, "outbox: %v", err)
	return true
}

func (s *simLedger) Store() *storage.Store { return s.store }

func (s *simLedger) Read(fn func(*storage.Reader) error) error { return s.l.Read(fn) }

func (s *simLedger) CreateAccounts(as []ledger.Account) ([]ledger.AccountResult, error) {
	return s.l.CreateAccounts(as)
}

func (s *simLedger) Now() uint64 { return s.now.Load() }

func (s *simLedger) Advance(ns uint64) { s.now.Add(ns) }

// Flushes counts the hot-account buffer flushes of every ledger so far, the running one's
// included.
func (s *simLedger) Flushes() [simulation.FlushReasons]uint64 {
	out := s.running()
	for r := range out {
		out[r] += s.flushes[r]
	}
	return out
}

// Crashes is 0: the actors crash only when the harness says so; with cutAlone, the cuts of
// requests sent alone.
func (s *simLedger) Crashes() int { return s.cuts }
