// Package simulation is the seeded simulation harness of the ledger: it drives a ledger under
// simulation (a System) with random requests, power cuts and bursts of concurrent requests, and
// checks every answer against an independent model (simModel), which decides each transfer by
// the rules of ledger/doc.go written again:
//   - a request sent alone: every transfer whose outcome the model can decide (nothing else in
//     the request touches its accounts, or it repeats one whose outcome is known) must get
//     exactly the model's answer, whichever shard decides it; any other answer must be one the
//     rules allow, and the model follows it;
//   - concurrent bursts, with copies of transfers still in flight in other requests, ids
//     claimed by two shards at once, and more requests than a shard admits (overloaded): an
//     answer of ok or exists means the transfer is stored, as sent, and final; a refusal that
//     takes the id is stored with it; copies answer what the first copy answered; an
//     overloaded request changed nothing;
//   - power cuts between requests and in the middle of bursts or of a request sent alone (only
//     what was synced survives, plus a random part of the rest): nothing decided is lost or
//     changed, every balance equals the model's once the ledger settles, and storage.Verify
//     finds every invariant intact.
//
// The harness is the same for every system: the shard actors over Pebble (actors/sim_test.go)
// and a deterministic simulated cluster run it. A seed generates the same requests as long as
// the system gives the same answers (which a concurrent system need not).
package simulation

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/ledgercore/ledger/ledger"
	"github.com/ledgercore/ledger/storage"
)

// System is a ledger under simulation. The harness calls it from one goroutine (the test's),
// one call at a time; it calls the functions it passes (Await's cond, Read's fn) on that
// goroutine too.
type System interface {
	// Store is the store as it is now (another one after each crash); the harness reads it live
	// (Store().Live()), between requests and after the ledger settled.
	Store() *storage.Store
	// Read runs fn on a durable snapshot of the store, what actors.Ledger.Read does: nothing
	// in it is undone by a crash.
	Read(fn func(*storage.Reader) error) error
	// CreateAccounts creates accounts and returns their results. The harness calls it once,
	// before any transfer, and needs an answer: it must not be cut.
	CreateAccounts([]ledger.Account) ([]ledger.AccountResult, error)
	// CreateTransfers sends one request and returns its answer, one result per transfer. An
	// error for which errors.Is(err, ErrCut) holds: the system crashed (and recovered) while
	// the request was in flight, its outcome is unknown. errors.Is(err, ErrOverloaded): refused
	// whole, nothing ran. Any other error fails the run.
	CreateTransfers([]ledger.Transfer) ([]ledger.TransferResult, error)
	// Burst sends the requests at once and returns each one's answer (results[i], errs[i], as
	// CreateTransfers would). With cut, it cuts the power while they are in flight and
	// recovers (as Crash) before it returns. certain[i]: request i's answer came before any cut
	// (an ErrCut answer is never certain); an uncertain request may or may not have run, and
	// the harness asks the store which.
	Burst(batches [][]ledger.Transfer, cut bool) (results [][]ledger.TransferResult, errs []error, certain []bool)
	// Crash cuts the power now (only what was synced survives, plus a random part of the
	// rest) and recovers: the ledger runs again on what survived.
	Crash()
	// Await runs the system until cond holds and returns true, or returns false if cond did
	// not hold within the system's bound (a real-time system: a deadline; a simulated one: a
	// number of events or a span of simulated time). cond reads the store and Quiet.
	Await(cond func() bool) bool
	// Quiet reports whether every shard's outbox and hot-account buffers are empty: every
	// leg sent was applied by its credit shard and answered.
	Quiet() bool
	// Now is the time the ledger stamps with now (Unix ns). It changes only through Advance
	// (not while a request runs, nor in Await): the model decides with it which holds have
	// expired. A system's own timers (ticks, flush intervals) run on another clock.
	Now() uint64
	// Advance moves the ledger's clock (Now) forward by ns.
	Advance(ns uint64)
	// Flushes counts hot-account buffer flushes per reason (FlushInterval, FlushSize,
	// FlushDrain, FlushAlong) over every run of the ledger so far.
	Flushes() [FlushReasons]uint64
	// Crashes counts the crashes the system injected by itself (not through Crash or Burst);
	// may be 0.
	Crashes() int
	// Close stops the ledger and closes the store (nothing if it already died). Run calls it
	// when it returns, also when the run failed.
	Close()
}

// ErrCut is the error (or wraps it) of a request in flight when the system crashed: its outcome
// is unknown.
var ErrCut = errors.New("simulation: the system crashed while the request was in flight")

// ErrOverloaded is the error (or wraps it) of a request refused whole: nothing of it ran.
var ErrOverloaded = errors.New("simulation: overloaded")

// Flush reasons, the indexes of System.Flushes (those of the actors' ledger_hot_flushes_total).
const (
	FlushInterval = iota
	FlushSize
	FlushDrain
	FlushAlong // with other legs to the same shard
	FlushReasons
)

// Options are a run's parameters.
type Options struct {
	// Seed seeds the workload: the requests and the harness's choices.
	Seed int64
	// Steps is the number of requests sent alone (each may be followed by a crash, a burst,
	// an advance of the clock or a settle). The workload's coverage is checked from 100 on.
	Steps int
	// Replay says how to replay the run, in every failure message ("replay with ..."), for
	// example "-sim.seed=7"; empty: "seed N".
	Replay string
	// CoverageByCaller: the caller checks the coverage of many runs together (Counts.Covered);
	// otherwise a run of 100 steps or more checks its own.
	CoverageByCaller bool
}

// Run runs the simulation on sys, which holds a new, empty ledger, and fails t at the first
// answer or state that breaks a rule. The number of shards is the store's. Run closes sys
// when it returns.
func Run(t testing.TB, sys System, o Options) Counts {
	defer sys.Close()
	s := newSim(t, sys, o)
	return s.run(o.Steps, !o.CoverageByCaller)
}

type sim struct {
	t        testing.TB
	seed     int64
	replay   string
	rng      *rand.Rand
	sys      System
	shards   uint32
	m        *simModel
	nextID   uint64
	crashes  int // crashes the harness asked for (Crash, Burst); the system's own: sys.Crashes()
	counts   simCounts
	decidedN []uint64 // decided ids in order, for seeded choices
	maxNow   uint64   // the latest reading of the ledger's clock (now)
}

// simCounts is what a run exercised, for its log line (and the checks that it did).
type simCounts struct {
	predicted, unpredicted, refusedElsewhere, copiesInFlight, overloaded, idInFlight int
	// cut: requests sent alone that a crash cut (ErrCut).
	cut int
}

// Counts are what runs exercised.
type Counts struct {
	Runs, Steps, Decided, Crashes, Cut                                               int
	Predicted, Unpredicted, RefusedElsewhere, CopiesInFlight, IDInFlight, Overloaded int
	Flushes                                                                          [FlushReasons]uint64
}

// Add adds the counts of another run.
func (c *Counts) Add(x Counts) {
	c.Runs += x.Runs
	c.Steps += x.Steps
	c.Decided += x.Decided
	c.Crashes += x.Crashes
	c.Cut += x.Cut
	c.Predicted += x.Predicted
	c.Unpredicted += x.Unpredicted
	c.RefusedElsewhere += x.RefusedElsewhere
	c.CopiesInFlight += x.CopiesInFlight
	c.IDInFlight += x.IDInFlight
	c.Overloaded += x.Overloaded
	for r := range c.Flushes {
		c.Flushes[r] += x.Flushes[r]
	}
}

// Covered says what the runs counted did not exercise (nil: all of it): hot-account buffers
// sent, most answers predicted exactly, refusals by credit shards, copies in flight, overload.
// Which reasons buffers flush for depends on timing; that they were sent at all does not.
func (c Counts) Covered() error {
	switch {
	case c.Flushes[FlushInterval]+c.Flushes[FlushSize]+c.Flushes[FlushDrain]+c.Flushes[FlushAlong] == 0:
		return fmt.Errorf("hot-account buffers were not exercised: flushes %v", c.Flushes)
	case c.Predicted <= c.Unpredicted:
		return fmt.Errorf("too few answers predicted: %+v", c)
	case c.RefusedElsewhere == 0 || c.CopiesInFlight == 0 || c.Overloaded == 0:
		return fmt.Errorf("the workload did not exercise refusals on other shards, copies in flight and overload: %+v", c)
	}
	return nil
}

const (
	simAccounts = 24
	simBank     = 1  // no limits: funds the others
	simLimited  = 10 // credits_must_not_exceed_debits: refuses what exceeds its debits
	simLimited2 = 15
	simHot      = 12 // hot, internal, no overdraft: spends only what its buffers delivered
	simHot2     = 13 // hot, overdraft allowed, history
	simClosed   = 14
	simNoSuch   = 999
)

func newSim(t testing.TB, sys System, o Options) *sim {
	shards := sys.Store().Shards()
	s := &sim{t: t, seed: o.Seed, replay: o.Replay, rng: rand.New(rand.NewPCG(uint64(o.Seed), 0)), sys: sys,
		shards: shards, m: newSimModel(shards), nextID: 1000}
	if s.replay == "" {
		s.replay = fmt.Sprint("seed ", o.Seed)
	}
	var as []ledger.Account
	for id := uint64(1); id <= simAccounts; id++ {
		a := ledger.Account{ID: id, Ledger: 1, Code: 10}
		switch {
		case id >= 2 && id <= 9:
			a.Flags = ledger.AccountDebitsMustNotExceedCredits
		case id == simLimited, id == simLimited2:
			a.Flags = ledger.AccountCreditsMustNotExceedDebits
		case id == 11:
			a.Flags = ledger.AccountHistory
		case id == simHot:
			a.Flags = ledger.AccountHot | ledger.AccountInternal | ledger.AccountDebitsMustNotExceedCredits
		case id == simHot2:
			a.Flags = ledger.AccountHot | ledger.AccountHistory
		case id == simClosed:
			a.Flags = ledger.AccountClosed
		}
		as = append(as, a)
		s.m.flags[id] = a.Flags
		s.m.bal[id] = &simBalance{}
	}
	rs, err := sys.CreateAccounts(as)
	s.check(err == nil, "create accounts: %v", err)
	s.check(len(rs) == len(as), "create accounts: %d results for %d accounts", len(rs), len(as))
	for i, r := range rs {
		s.check(r == ledger.AccountResultOK, "account %d: %v", as[i].ID, r)
	}
	return s
}

func (s *sim) check(ok bool, format string, args ...any) {
	s.t.Helper()
	if !ok {
		s.t.Fatalf("seed %d (replay with %s): %s", s.seed, s.replay, fmt.Sprintf(format, args...))
	}
}

// now reads the ledger's clock, and keeps the latest reading: when the clock steps back, a
// hold due by that latest time may already have been swept, so the harness treats it as
// uncertain (predictable, settle).
func (s *sim) now() uint64 {
	n := s.sys.Now()
	s.maxNow = max(s.maxNow, n)
	return n
}

// allCrashes counts every crash so far: the harness's and the system's own.
func (s *sim) allCrashes() int { return s.crashes + s.sys.Crashes() }

// crash cuts the power and recovers (System.Crash), then checks that nothing decided was lost
// and that the recovered ledger settles to the model.
func (s *sim) crash() {
	s.crashes++
	s.sys.Crash()
	s.checkDecided()
	s.settle()
}

func (s *sim) run(steps int, coverage bool) Counts {
	for step := 0; step < steps; step++ {
		s.step(step)
		s.checkHot(step)
		switch r := s.rng.IntN(100); {
		case r < 3:
			s.crash()
		case r < 9:
			s.burst()
		case r < 13:
			s.sys.Advance(uint64(s.rng.IntN(3)+1) * 1_000_000_000)
		case r < 18:
			s.settle()
		}
	}
	s.sys.Advance(10 * 1_000_000_000)
	s.settle()
	s.crash()
	c := s.counts
	flushes := s.sys.Flushes()
	s.t.Logf("seed %d: %d steps, %d ids decided, %d crashes, %d lone requests cut; answers predicted exactly %d, not predictable %d; "+
		"refused by a credit shard %d, copies in flight %d, id_in_flight %d, overloaded requests %d; hot-buffer flushes %v",
		s.seed, steps, len(s.m.decided), s.allCrashes(), c.cut, c.predicted, c.unpredicted, c.refusedElsewhere, c.copiesInFlight,
		c.idInFlight, c.overloaded, flushes)
	counts := Counts{Runs: 1, Steps: steps, Decided: len(s.m.decided), Crashes: s.allCrashes(), Cut: c.cut,
		Predicted: c.predicted, Unpredicted: c.unpredicted, RefusedElsewhere: c.refusedElsewhere,
		CopiesInFlight: c.copiesInFlight, IDInFlight: c.idInFlight, Overloaded: c.overloaded, Flushes: flushes}
	if coverage && steps >= 100 {
		err := counts.Covered()
		s.check(err == nil, "%v", err)
	}
	return counts
}

// The workload.

func (s *sim) account() uint64 { return uint64(s.rng.IntN(simAccounts)) + 1 }

// freshAccount picks an account that the request has not used yet, mostly: a transfer whose
// accounts nothing else in its request touches is one the model can decide exactly.
func (s *sim) freshAccount(used map[uint64]bool) uint64 {
	for try := 0; try < 8; try++ {
		if id := s.account(); !used[id] || s.rng.IntN(20) == 0 {
			return id
		}
	}
	return s.account()
}

func (s *sim) decidedID() (uint64, bool) {
	if len(s.decidedN) == 0 {
		return 0, false
	}
	return s.decidedN[s.rng.IntN(len(s.decidedN))], true
}

// transfer makes one random transfer; some are invalid or repeat an old one on purpose.
func (s *sim) transfer(used map[uint64]bool) ledger.Transfer {
	s.nextID++
	t := ledger.Transfer{ID: s.nextID, Ledger: 1, Code: 1, Amount: uint64(s.rng.IntN(500)) + 1}
	t.DebitAccountID, t.CreditAccountID = s.freshAccount(used), s.freshAccount(used)
	switch s.rng.IntN(4) {
	case 0:
		if !used[simBank] {
			t.DebitAccountID = simBank // the bank funds the others
		}
	case 1:
		if c := []uint64{simLimited, simLimited2}[s.rng.IntN(2)]; !used[c] {
			t.CreditAccountID = c // may refuse, often on another shard
		}
	}
	switch k := s.rng.IntN(100); {
	case k < 15:
		t.Flags = ledger.TransferPending
		if s.rng.IntN(2) == 0 {
			t.Timeout = uint32(s.rng.IntN(3) + 1)
		}
	case k < 30:
		if h := s.pendingHold(); h != nil {
			t.DebitAccountID, t.CreditAccountID, t.PendingID = h.t.DebitAccountID, h.t.CreditAccountID, h.t.ID
			t.Flags = ledger.TransferPostPending
			t.Amount = uint64(s.rng.Int64N(int64(h.t.Amount) + 1))
			if s.rng.IntN(3) == 0 {
				t.Flags, t.Amount = ledger.TransferVoidPending, 0
			}
		}
	case k < 33:
		t.Amount = 0
	case k < 35:
		t.CreditAccountID = simNoSuch
	case k < 37:
		t.DebitAccountID = simClosed
	case k < 42:
		if id, ok := s.decidedID(); ok && s.m.decided[id].t.Flags&ledger.TransferLinked == 0 {
			t = s.m.decided[id].t // a resend, sometimes with another amount
			if s.rng.IntN(3) == 0 {
				t.Amount++
			}
			return t
		}
	case k < 44:
		if id, ok := s.decidedID(); ok { // the id of another transfer, from another account
			t.ID = id
		}
	}
	if t.DebitAccountID == t.CreditAccountID {
		t.CreditAccountID = t.DebitAccountID%simAccounts + 1
	}
	used[t.DebitAccountID], used[t.CreditAccountID] = true, true
	return t
}

func (s *sim) pendingHold() *simHold {
	var hs []*simHold
	for _, h := range s.m.holds {
		if h.state == holdPending {
			hs = append(hs, h)
		}
	}
	if len(hs) == 0 {
		return nil
	}
	// Map order is random: choose by id, so that a seed replays.
	best := hs[0]
	pick := s.rng.Uint64()
	for _, h := range hs[1:] {
		if h.t.ID^pick < best.t.ID^pick {
			best = h
		}
	}
	return best
}

// batch makes one request: transfers, linked chains of two from one account, and copies of
// transfers earlier in the request (a copy of a transfer still in flight).
func (s *sim) batch() []ledger.Transfer {
	n := s.rng.IntN(12) + 1
	ts := make([]ledger.Transfer, 0, n+2)
	var alone []int // positions of transfers not in a chain
	used := map[uint64]bool{}
	for len(ts) < n {
		switch k := s.rng.IntN(100); {
		case k < 10 && len(alone) > 0:
			ts = append(ts, ts[alone[s.rng.IntN(len(alone))]])
		case k < 20:
			t, u := s.transfer(used), s.transfer(used)
			u.Flags &^= ledger.TransferPostPending | ledger.TransferVoidPending
			u.PendingID, u.DebitAccountID, u.Timeout = 0, t.DebitAccountID, 0
			if t.Flags&(ledger.TransferPostPending|ledger.TransferVoidPending) != 0 || u.DebitAccountID == u.CreditAccountID ||
				s.m.decided[t.ID] != nil || s.m.decided[u.ID] != nil || t.ID == u.ID {
				continue
			}
			if u.Amount == 0 {
				u.Amount = 1
			}
			t.Flags |= ledger.TransferLinked
			ts = append(ts, t, u)
		default:
			alone = append(alone, len(ts))
			ts = append(ts, s.transfer(used))
		}
	}
	return ts
}

// units splits a request into its lone transfers and chains, as [start, end] positions.
func units(ts []ledger.Transfer) [][2]int {
	var out [][2]int
	for i := 0; i < len(ts); {
		end := i
		for end < len(ts)-1 && ts[end].Flags&ledger.TransferLinked != 0 {
			end++
		}
		out = append(out, [2]int{i, end})
		i = end + 1
	}
	return out
}

// movesMoney reports whether a transfer may move money: a new, valid transfer (repeats and
// invalid ones change nothing whatever else runs).
func (s *sim) movesMoney(t *ledger.Transfer) bool {
	_, decided := s.m.decided[t.ID]
	return !decided && stateless(t) == ledger.ResultOK && t.CreditAccountID != simNoSuch
}

// predictable marks the units of a request whose answers the model can decide: those whose
// accounts no other unit that may move money touches (copies of one transfer are one unit),
// and which have no hold past its timeout that the ledger may or may not have released.
func (s *sim) predictable(ts []ledger.Transfer) []bool {
	us := units(ts)
	owners := map[uint64]map[ledger.Transfer]bool{} // account -> the distinct moving units on it
	key := func(u [2]int) ledger.Transfer { return ts[u[0]] }
	for _, u := range us {
		for k := u[0]; k <= u[1]; k++ {
			if !s.movesMoney(&ts[k]) {
				continue
			}
			for _, id := range []uint64{ts[k].DebitAccountID, ts[k].CreditAccountID} {
				if owners[id] == nil {
					owners[id] = map[ledger.Transfer]bool{}
				}
				owners[id][key(u)] = true
			}
		}
	}
	s.now()
	out := make([]bool, len(us))
	for i, u := range us {
		out[i] = true
		for k := u[0]; k <= u[1]; k++ {
			for _, id := range []uint64{ts[k].DebitAccountID, ts[k].CreditAccountID} {
				if len(owners[id]) > 1 || s.m.bal[id] != nil && s.m.due(id, s.maxNow) {
					out[i] = false
				}
			}
		}
	}
	return out
}

// step sends one request alone and judges every answer. A request that a crash cut (ErrCut)
// may or may not have happened: it is judged as a burst's uncertain request, by the store once
// the ledger has settled.
func (s *sim) step(step int) {
	ts := s.batch()
	rs, err := s.sys.CreateTransfers(ts)
	if errors.Is(err, ErrCut) {
		s.counts.cut++
		s.waitOutboxes()
		s.judgeBurst([][]ledger.Transfer{ts}, [][]ledger.TransferResult{rs}, []error{err}, []bool{false})
		s.checkDecided()
		s.settle()
		return
	}
	s.check(err == nil, "step %d: %v", step, err)
	s.check(len(rs) == len(ts), "step %d: %d answers to %d transfers", step, len(rs), len(ts))
	pred := s.predictable(ts)
	now := s.now()
	wasDecided := map[uint64]bool{}
	for _, t := range ts {
		wasDecided[t.ID] = s.m.decided[t.ID] != nil
	}
	for i, u := range units(ts) {
		unit, got := ts[u[0]:u[1]+1], rs[u[0]:u[1]+1]
		// A copy of a transfer earlier in the request answers by the first copy's answer,
		// which the model has taken by now: always decidable.
		copyOf := len(unit) == 1 && s.m.decided[unit[0].ID] != nil && s.m.decided[unit[0].ID].t == unit[0]
		var want [][]ledger.TransferResult
		if pred[i] || copyOf {
			want = s.m.expect(unit, now)
			if len(unit) > 1 && scenariosDiffer(want) {
				// A chain on an account whose hot inflows may not all have landed: any part of
				// them may have, not only none or all (the scenarios expect tells apart), and
				// the chain's first failing member moves with how much. Its answers are
				// checked for a chain failing between the two (chainBetween), not exactly;
				// which ids it took is not predicted (applyFailedChain).
				s.check(s.m.chainBetween(unit, got, now), "step %d: chain %+v answered %v, not as it would with its hot inflows landed in part (none: %v, all: %v)",
					step, unit, got, want, s.m.expect(unit, now))
				s.counts.predicted += len(unit)
				pred[i] = false
				s.apply(unit, got, false)
				continue
			}
		}
		if pred[i] || copyOf {
			for k := range unit {
				s.check(containsResult(want[k], got[k]), "step %d: transfer %d %+v answered %v, the model says %v (unit %v, request %+v, answers %v)",
					step, unit[k].ID, unit[k], got[k], want[k], u, ts, rs)
			}
			s.counts.predicted += len(unit)
		} else {
			for k := range unit {
				if r := stateless(&unit[k]); r != ledger.ResultOK && len(unit) == 1 {
					s.check(got[k] == r, "step %d: transfer %d answered %v, invalid request: %v", step, unit[k].ID, got[k], r)
				}
			}
			s.counts.unpredicted += len(unit)
		}
		if len(unit) == 1 && s.m.split(&unit[0]) {
			if got[0] == ledger.ResultExceedsDebits {
				s.counts.refusedElsewhere++
			}
			for j := 0; j < u[0]; j++ {
				if ts[j] == unit[0] {
					s.counts.copiesInFlight++
					break
				}
			}
		}
		s.apply(unit, got, pred[i])
	}
	s.checkStored(ts, rs, wasDecided)
}

// scenariosDiffer reports whether expect allowed more than one answer to any member.
func scenariosDiffer(want [][]ledger.TransferResult) bool {
	for _, w := range want {
		if len(w) > 1 {
			return true
		}
	}
	return false
}

// apply updates the model with a unit's answers.
func (s *sim) apply(unit []ledger.Transfer, rs []ledger.TransferResult, predicted bool) {
	before := len(s.m.decided)
	s.applyFailedChain(unit, rs, predicted)
	err := s.m.applyChain(unit, rs, func(t ledger.Transfer) bool {
		return s.m.flags[t.CreditAccountID]&ledger.AccountHot != 0 && s.m.split(&t)
	})
	s.check(err == nil, "%v", err)
	if len(s.m.decided) == before {
		return
	}
	for _, t := range unit {
		if d, ok := s.m.decided[t.ID]; ok && d.t == t && !containsID(s.decidedN, t.ID) {
			s.decidedN = append(s.decidedN, t.ID)
			if h := s.m.holds[t.ID]; h != nil && h.expiresAt == 0 && t.Timeout > 0 {
				stored, found, err := s.sys.Store().Live().Transfer(t.ID)
				s.check(err == nil && found, "hold %d: %v %v", t.ID, found, err)
				h.expiresAt = stored.Timestamp + uint64(t.Timeout)*1_000_000_000 // the rule, not the ledger's ExpiresAt
			}
		}
	}
}

// applyFailedChain takes the ids a failed chain took into the model, and checks them against
// the rule (simModel.chainBurns) where the model can tell (a chain it predicted): the store
// says which members were stored, and with what.
func (s *sim) applyFailedChain(unit []ledger.Transfer, rs []ledger.TransferResult, predicted bool) {
	if len(unit) < 2 || rs[0] == ledger.ResultOK {
		return
	}
	upTo, certain := s.m.chainBurns(unit, rs, s.now())
	certain = certain && predicted
	v := s.sys.Store().Live()
	for k, t := range unit {
		if s.m.decided[t.ID] != nil {
			continue
		}
		stored, found, err := v.Transfer(t.ID)
		s.check(err == nil, "lookup %d: %v", t.ID, err)
		mine := found && sentAs(&stored, &t) && stored.State == ledger.StateFailed && stored.Result == rs[k]
		if certain {
			s.check(mine == (k <= upTo), "chain %+v answered %v: member %d stored %v (%+v), the model says %v",
				unit, rs, k, mine, stored, k <= upTo)
		}
		if mine {
			s.m.decided[t.ID] = &simDecided{t: t, result: rs[k]}
		}
	}
}

func containsID(ids []uint64, id uint64) bool {
	// Only the last few can match: ids are appended as they are decided.
	for i := len(ids) - 1; i >= 0 && i >= len(ids)-64; i-- {
		if ids[i] == id {
			return true
		}
	}
	return false
}

// checkStored checks that what a request was answered is what the store holds: ok and exists
// mean the transfer is stored as sent and final; a refusal that takes the id is stored with
// it.
func (s *sim) checkStored(ts []ledger.Transfer, rs []ledger.TransferResult, wasDecided map[uint64]bool) {
	v := s.sys.Store().Live()
	inChain := make([]bool, len(ts))
	for _, u := range units(ts) {
		for k := u[0]; k <= u[1] && u[1] > u[0]; k++ {
			inChain[k] = true // applyFailedChain checks what a chain stored
		}
	}
	for i, t := range ts {
		stored, found, err := v.Transfer(t.ID)
		s.check(err == nil, "lookup %d: %v", t.ID, err)
		switch r := rs[i]; {
		case r == ledger.ResultOK || r == ledger.ResultExists:
			s.check(found && sentAs(&stored, &t) && final(&stored) && stored.State != ledger.StateFailed,
				"transfer %d answered %v, stored %+v (found %v)", t.ID, r, stored, found)
		case inChain[i]:
		case simBurns[r] && !wasDecided[t.ID]:
			s.check(found && sentAs(&stored, &t) && stored.State == ledger.StateFailed && stored.Result == r,
				"transfer %d answered %v, stored %+v (found %v)", t.ID, r, stored, found)
		case !simBurns[r] && !wasDecided[t.ID] && s.m.decided[t.ID] == nil:
			s.check(!found, "transfer %d answered %v, which takes no id, but is stored: %+v", t.ID, r, stored)
		}
	}
}

// sentAs reports whether a stored transfer is the one sent (a post or void that asked for 0
// stores the amount it moved).
func sentAs(stored, sent *ledger.Transfer) bool {
	s := *stored
	s.Timestamp, s.State, s.Result = 0, 0, 0
	if sent.Amount == 0 && sent.Flags&(ledger.TransferPostPending|ledger.TransferVoidPending) != 0 &&
		stored.State != ledger.StateFailed {
		s.Amount = 0
	}
	return s == *sent
}

// final reports whether a transfer's state is an outcome (not in flight).
func final(t *ledger.Transfer) bool { return t.State != ledger.StateInFlight && t.State != 0 }

// checkDecided checks that every decided transfer is stored as sent, with its outcome: a crash
// loses nothing answered, and nothing answered ok is ever undone.
func (s *sim) checkDecided() {
	ids := make([]uint64, 0, len(s.m.decided))
	for id := range s.m.decided {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	found := 0
	err := s.sys.Store().Live().Transfers(ids, func(stored ledger.Transfer) {
		found++
		d := s.m.decided[stored.ID]
		s.check(d != nil, "lookup of decided transfers found %d, not decided", stored.ID)
		s.check(sentAs(&stored, &d.t), "transfer %d: stored %+v, decided %+v", stored.ID, stored, d.t)
		if d.result == ledger.ResultOK {
			s.check(stored.State != ledger.StateFailed && stored.State != ledger.StateInFlight,
				"transfer %d answered ok, now %+v", stored.ID, stored)
		} else {
			s.check(stored.State == ledger.StateFailed && stored.Result == d.result,
				"transfer %d refused with %v, now %+v", stored.ID, d.result, stored)
		}
	})
	s.check(err == nil, "lookup of decided transfers: %v", err)
	if found != len(ids) {
		for _, id := range ids {
			_, ok, err := s.sys.Store().Live().Transfer(id)
			s.check(err == nil && ok, "decided transfer %d lost after crash %d (%v)", id, s.allCrashes(), err)
		}
	}
}

// burst sends a few requests at once (System.Burst), with copies of one request's transfers
// in another and ids that two shards claim at once, sometimes more than a shard admits, and
// sometimes cuts the power while they are in flight. A reply received before the cut must
// survive it; a request still in flight may or may not have happened: the store, once the
// ledger has settled, says which, and every answer must agree with it.
func (s *sim) burst() {
	batches := make([][]ledger.Transfer, s.rng.IntN(4)+2)
	for i := range batches {
		batches[i] = s.batch()
	}
	for i := 1; i < len(batches); i++ { // copies in flight, and ids claimed twice
		prev := batches[s.rng.IntN(i)]
		for k := 0; k < 3; k++ {
			t := prev[s.rng.IntN(len(prev))]
			if t.Flags&ledger.TransferLinked != 0 {
				continue
			}
			switch s.rng.IntN(4) {
			case 0, 1: // the same id from another account: claimed by two shards at once
				t.DebitAccountID, t.CreditAccountID = s.account(), simBank
				t.Flags, t.PendingID, t.Timeout = 0, 0, 0
				if t.DebitAccountID == simBank {
					continue
				}
			case 2: // the same id, invalid (amount 0): claimed, refused alone, its claim given back
				if t.Flags&(ledger.TransferPostPending|ledger.TransferVoidPending) == 0 {
					t.Amount = 0
				}
			}
			batches[i] = append(batches[i], t)
		}
	}
	crash := s.rng.IntN(3) == 0
	if crash {
		s.crashes++
	}
	results, errs, certain := s.sys.Burst(batches, crash)
	s.check(len(results) == len(batches) && len(errs) == len(batches) && len(certain) == len(batches),
		"burst: %d, %d and %d answers to %d requests", len(results), len(errs), len(certain), len(batches))
	s.waitOutboxes()
	s.judgeBurst(batches, results, errs, certain)
	s.checkDecided()
	s.settle()
}

// judgeBurst checks a burst's answers against the store, then takes what the store says
// happened into the model.
func (s *sim) judgeBurst(batches [][]ledger.Transfer, results [][]ledger.TransferResult, errs []error, certain []bool) {
	v := s.sys.Store().Live()
	type answer struct {
		t       ledger.Transfer
		r       ledger.TransferResult
		inChain bool
	}
	answers := map[uint64][]answer{}       // certain answers, by id
	sent := map[uint64][]ledger.Transfer{} // what requests that may have run sent, by id
	var order []uint64
	for i, ts := range batches {
		// A request that a crash cut may have run, whatever else its error says.
		overloaded := errors.Is(errs[i], ErrOverloaded) && !errors.Is(errs[i], ErrCut)
		if overloaded {
			s.counts.overloaded++
		} else {
			s.check(errs[i] == nil || !certain[i], "burst: request %d: %v", i, errs[i])
			s.check(errs[i] != nil || !certain[i] || len(results[i]) == len(ts),
				"burst: request %d: %d answers to %d transfers", i, len(results[i]), len(ts))
		}
		inChain := make([]bool, len(ts))
		for _, u := range units(ts) {
			for k := u[0]; k <= u[1] && u[1] > u[0]; k++ {
				inChain[k] = true
			}
		}
		for k, t := range ts {
			if _, seen := answers[t.ID]; !seen {
				order = append(order, t.ID)
				answers[t.ID] = nil
			}
			if !overloaded {
				sent[t.ID] = append(sent[t.ID], t)
			}
			if errs[i] == nil && certain[i] {
				answers[t.ID] = append(answers[t.ID], answer{t, results[i][k], inChain[k]})
			}
		}
	}
	for _, id := range order {
		stored, found, err := v.Transfer(id)
		s.check(err == nil, "lookup %d: %v", id, err)
		decided := s.m.decided[id]
		firsts := 0
		for _, a := range answers[id] {
			switch {
			case a.r == ledger.ResultOK || a.r == ledger.ResultExists:
				if a.r == ledger.ResultOK {
					firsts++
				}
				s.check(found && sentAs(&stored, &a.t) && final(&stored) && stored.State != ledger.StateFailed,
					"burst: transfer %d answered %v, stored %+v (found %v)", id, a.r, stored, found)
			case a.r == ledger.ResultIDInFlight:
				s.counts.idInFlight++
			case decided != nil && stateless(&a.t) == ledger.ResultOK && a.t.CreditAccountID != simNoSuch:
				s.check(a.r == s.m.knownAnswer(decided, &a.t), "burst: transfer %d answered %v, decided before as %+v",
					id, a.r, decided)
			case simBurns[a.r] && decided == nil && !a.inChain:
				// Stored with the id it took, unless another transfer holds the id and the
				// refusal came from a check before the id's (the accounts'): then it took none.
				mine := found && sentAs(&stored, &a.t)
				s.check(mine && stored.State == ledger.StateFailed && stored.Result == a.r ||
					found && !mine && beforeIDCheck[a.r],
					"burst: transfer %d answered %v, stored %+v (found %v)", id, a.r, stored, found)
			}
			for _, b := range answers[id] { // copies answer what the first copy answered
				if b.t != a.t || a.inChain || b.inChain {
					continue // a copy in a chain that failed before it answers linked_event_failed
				}
				if a.r == ledger.ResultExists && decided == nil {
					s.check(b.r == ledger.ResultOK || b.r == ledger.ResultExists,
						"burst: copies of transfer %d answered %v and %v", id, a.r, b.r)
				}
				if simBurns[a.r] && simBurns[b.r] {
					s.check(a.r == b.r, "burst: copies of transfer %d answered %v and %v", id, a.r, b.r)
				}
			}
		}
		s.check(firsts <= 1 && (firsts == 0 || decided == nil), "burst: transfer %d booked %d times", id, firsts)
		if !found || decided != nil {
			continue
		}
		// Newly decided: it must be one a request that ran sent, and the model takes the
		// store's word for its outcome, as the ledger's first answer.
		var t *ledger.Transfer
		for k := range sent[id] {
			if sentAs(&stored, &sent[id][k]) {
				t = &sent[id][k]
			}
		}
		s.check(t != nil, "burst: stored transfer %d %+v is none that a request which ran sent", id, stored)
		s.check(final(&stored), "burst: transfer %d still %+v once the ledger settled", id, stored)
		if stored.State == ledger.StateFailed {
			s.m.decided[id] = &simDecided{t: *t, result: stored.Result}
			s.decidedN = append(s.decidedN, id)
			continue
		}
		s.apply([]ledger.Transfer{*t}, []ledger.TransferResult{ledger.ResultOK}, false)
	}
}

// beforeIDCheck: the refusals that come before the check of the id (doc.go, 11 and 12).
var beforeIDCheck = map[ledger.TransferResult]bool{
	ledger.ResultDebitAccountNotFound: true, ledger.ResultCreditAccountNotFound: true,
	ledger.ResultAccountsMustHaveTheSameLedger: true, ledger.ResultTransferMustHaveTheSameLedgerAsAccounts: true,
}

// waitOutboxes waits until every leg sent was answered: every transfer of the requests
// answered so far is final in the store.
func (s *sim) waitOutboxes() {
	s.check(s.sys.Await(s.sys.Quiet), "outboxes did not drain")
}

// settle waits until the ledger has delivered every leg and released every hold past its
// timeout, then compares everything: balances, decided transfers, invariants.
func (s *sim) settle() {
	now := s.now()
	var due []*simHold
	for _, h := range s.m.holds {
		if h.state == holdPending && h.expiresAt != 0 && h.expiresAt <= now {
			due = append(due, h)
		}
	}
	// Every hold due by the ledger's clock is swept (its state is no longer pending in the
	// store; a hold the ledger did not sweep fails below), and every leg, the releases of the
	// holds swept included, is delivered and answered.
	var lookup error
	settled := s.sys.Await(func() bool {
		v := s.sys.Store().Live()
		for _, h := range due {
			t, found, err := v.Transfer(h.t.ID)
			if err != nil || !found {
				lookup = fmt.Errorf("hold %d: %v %v", h.t.ID, found, err)
				return true
			}
			if t.State == ledger.StatePending {
				return false
			}
		}
		return s.sys.Quiet()
	})
	s.check(lookup == nil, "%v", lookup)
	s.check(settled, "ledger did not settle")
	v := s.sys.Store().Live()
	for _, h := range due {
		t, _, _ := v.Transfer(h.t.ID)
		s.check(t.State == ledger.StatePendingExpired, "hold %d past its timeout: %+v", h.t.ID, t)
		s.m.expire(h)
	}
	// A hold due by a later time the clock has since stepped back from may or may not have
	// been swept meanwhile: the store says which.
	for _, h := range s.m.holds {
		if h.state == holdPending && h.expiresAt > now && h.expiresAt <= s.maxNow {
			t, found, err := v.Transfer(h.t.ID)
			s.check(err == nil && found, "hold %d: %v %v", h.t.ID, found, err)
			if t.State == ledger.StatePendingExpired {
				s.m.expire(h)
			}
		}
	}
	clear(s.m.unlanded) // every leg was answered: every buffered inflow landed
	s.compare()
	s.checkDecided()
}

// checkHot checks the hot accounts between requests, while their buffered inflows may still
// be on their way: read from one snapshot, what is posted plus what is buffered equals what
// was acknowledged. Nothing buffered is lost, and nothing is counted twice.
func (s *sim) checkHot(step int) {
	err := s.sys.Read(func(v *storage.Reader) error {
		sums := map[uint64]ledger.Uint128{simHot: {}, simHot2: {}}
		if err := v.InflowsInTransit(sums); err != nil {
			return err
		}
		for id, buffered := range sums {
			a, found, err := v.Account(id)
			s.check(err == nil && found, "step %d: account %d: %v %v", step, id, found, err)
			total, _ := a.CreditsPosted.Add(buffered)
			s.check(total == ledger.U128(s.m.bal[id].creditsPosted),
				"step %d: hot account %d: posted %v + buffered %v, acknowledged %d", step, id,
				a.CreditsPosted, buffered, s.m.bal[id].creditsPosted)
		}
		return nil
	})
	s.check(err == nil, "step %d: %v", step, err)
}

func (s *sim) compare() {
	v := s.sys.Store().Live()
	for id, want := range s.m.bal {
		a, found, err := v.Account(id)
		s.check(err == nil && found, "account %d: %v %v", id, found, err)
		s.check(want.equals(a.Balance), "account %d: stored %+v, model %+v (crashes %d)", id, a.Balance, *want, s.allCrashes())
	}
	snap := s.sys.Store().Snapshot()
	rep, err := storage.Verify(snap, s.shards)
	_ = snap.Close()
	s.check(err == nil, "verify: %v", err)
	s.check(len(rep.Problems) == 0, "verify: %v", rep.Problems)
}
