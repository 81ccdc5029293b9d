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
	"github.com/ledgercore/ledger/ledger"
	"github.com/ledgercore/ledger/ledger/driver"
	"github.com/ledgercore/ledger/storage"
)

var (
	simSeed  = flag.Int64("sim.seed", 0, "seed of the simulation (0: a few fixed seeds)")
	simSteps = flag.Int("sim.steps", 250, "requests per simulation run")
)

// TestSimulation drives the shard actors and Pebble with seeded random requests and checks
// every answer against an independent model (simModel), which decides each transfer by the
// rules of ledger/doc.go written again:
//   - a request sent alone: every transfer whose outcome the model can decide (nothing else in
//     the request touches its accounts, or it repeats one whose outcome is known) must get
//     exactly the model's answer, whichever shard decides it; any other answer must be one the
//     rules allow, and the model follows it;
//   - concurrent bursts, with copies of transfers still in flight in other requests, ids
//     claimed by two shards at once, and more requests than a shard admits (overloaded): an
//     answer of ok or exists means the transfer is stored, as sent, and final; a refusal that
//     takes the id is stored with it; copies answer what the first copy answered; an
//     overloaded request changed nothing;
//   - power cuts between requests and in the middle of bursts (Pebble's crashable in-memory
//     file system keeps only what was synced, plus a random part of what was not): nothing
//     decided is lost or changed, every balance equals the model's once the ledger settles,
//     and storage.Verify finds every invariant intact.
//
// Replay a failure with -sim.seed: the requests are the same, though the shards run
// concurrently, so legs may interleave differently.
func TestSimulation(t *testing.T) {
	seeds := []int64{1, 2, 3}
	if *simSeed != 0 {
		seeds = []int64{*simSeed}
	}
	for _, seed := range seeds {
		t.Run(fmt.Sprint("seed=", seed), func(t *testing.T) {
			s := newSim(t, seed)
			defer s.close()
			s.run(*simSteps)
		})
	}
}

type sim struct {
	t        *testing.T
	seed     int64
	rng      *rand.Rand
	fs       *vfs.MemFS
	store    *storage.Store
	l        *Ledger
	now      atomic.Uint64
	shards   uint32
	m        *simModel
	nextID   uint64
	crashes  int
	flushes  [driver.FlushReasons]uint64 // hot-account buffer flushes, over every run of the ledger
	counts   simCounts
	decidedN []uint64   // decided ids in order, for seeded choices
	fatal    chan error // what a shard's broken invariant reported (Config.Fatal)
	dead     bool       // a shard stopped: the ledger cannot be stopped cleanly
}

// simCounts is what a run exercised, for its log line (and the checks that it did).
type simCounts struct {
	predicted, unpredicted, refusedElsewhere, copiesInFlight, overloaded, idInFlight int
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

func newSim(t *testing.T, seed int64) *sim {
	s := &sim{t: t, seed: seed, rng: rand.New(rand.NewPCG(uint64(seed), 0)), fs: vfs.NewCrashableMem(),
		shards: 3, m: newSimModel(3), nextID: 1000, fatal: make(chan error, 1)}
	s.now.Store(1_000_000_000_000)
	s.open()
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
	rs, err := s.l.CreateAccounts(as)
	s.check(err == nil, "create accounts: %v", err)
	for i, r := range rs {
		s.check(r == ledger.AccountResultOK, "account %d: %v", as[i].ID, r)
	}
	return s
}

func (s *sim) check(ok bool, format string, args ...any) {
	s.t.Helper()
	if !ok {
		s.t.Fatalf("seed %d (replay with -sim.seed=%d): %s", s.seed, s.seed, fmt.Sprintf(format, args...))
	}
}

func (s *sim) open() {
	store, err := storage.Open("db", storage.Options{FS: s.fs, Shards: s.shards, CacheBytes: 1 << 20})
	s.check(err == nil, "open store: %v", err)
	s.store = store
	// A tiny transfer cache: the shards forget and re-read transfers all the time, and trim
	// while rounds are in flight (the forced path), which a real size would never reach here.
	// Small hot-account buffers with a short interval: buffered credits land after their
	// replies, in the middle of later requests and across crashes. Admission of 3 requests
	// and 48 transfers per shard: bursts meet it.
	l, err := Start(store, Config{Shards: s.shards, TickInterval: 5 * time.Millisecond, RedeliverAfterTicks: 20,
		TransferCacheEntriesMax: 64, HotFlushInterval: 3 * time.Millisecond, HotBufferLegsMax: 3,
		ShardRequestsMax: 3, ShardEventsMax: 48,
		Now: s.now.Load, Fatal: func(err error) {
			select {
			case s.fatal <- err:
			default:
			}
		}})
	s.check(err == nil, "start: %v", err)
	s.l = l
}

func (s *sim) close() {
	if s.dead {
		return // a shard stopped on a broken invariant: requests in flight never end
	}
	s.l.Stop()
	for r := range s.flushes {
		s.flushes[r] += s.l.Stats().HotFlushes[r].Load()
	}
	_ = s.store.Close()
}

// crash takes what a power cut would leave of the store, drops the running ledger, and
// recovers from that copy.
func (s *sim) crash() {
	s.crashes++
	crashed := s.fs.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: s.rng.IntN(101), RNG: s.rng})
	s.close()
	s.fs = crashed
	s.open()
	s.checkDecided()
	s.settle()
}

func (s *sim) run(steps int) {
	for step := 0; step < steps; step++ {
		s.step(step)
		s.checkHot(step)
		switch r := s.rng.IntN(100); {
		case r < 3:
			s.crash()
		case r < 9:
			s.burst()
		case r < 13:
			s.now.Add(uint64(s.rng.IntN(3)+1) * 1_000_000_000)
		case r < 18:
			s.settle()
		}
	}
	s.now.Add(10 * 1_000_000_000)
	s.settle()
	s.crash()
	c := s.counts
	s.t.Logf("seed %d: %d steps, %d ids decided, %d crashes; answers predicted exactly %d, not predictable %d; "+
		"refused by a credit shard %d, copies in flight %d, id_in_flight %d, overloaded requests %d; hot-buffer flushes %v",
		s.seed, steps, len(s.m.decided), s.crashes, c.predicted, c.unpredicted, c.refusedElsewhere, c.copiesInFlight,
		c.idInFlight, c.overloaded, s.flushes)
	if steps >= 100 {
		// Which reasons flush depends on timing; that buffers were sent at all does not.
		s.check(s.flushes[driver.FlushInterval]+s.flushes[driver.FlushSize]+s.flushes[driver.FlushDrain]+s.flushes[driver.FlushAlong] > 0,
			"hot-account buffers were not exercised: flushes %v", s.flushes)
		s.check(c.predicted > c.unpredicted, "too few answers predicted: %+v", c)
		s.check(c.refusedElsewhere > 0 && c.copiesInFlight > 0 && c.overloaded > 0,
			"the workload did not exercise refusals on other shards, copies in flight and overload: %+v", c)
	}
}

// create sends one request and waits for its answer, or fails the run at once if a shard
// stops on a broken invariant (its requests would never be answered).
func (s *sim) create(ts []ledger.Transfer) ([]ledger.TransferResult, error) {
	var rs []ledger.TransferResult
	var err error
	done := make(chan struct{})
	go func() {
		defer close(done)
		rs, err = s.l.CreateTransfers(ts)
	}()
	s.await(done)
	return rs, err
}

// await waits for done, or fails the run when a shard stops on a broken invariant.
func (s *sim) await(done <-chan struct{}) {
	s.t.Helper()
	select {
	case <-done:
	case err := <-s.fatal:
		s.dead = true
		s.check(false, "fatal: %v", err)
	}
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
	now := s.now.Load()
	out := make([]bool, len(us))
	for i, u := range us {
		out[i] = true
		for k := u[0]; k <= u[1]; k++ {
			for _, id := range []uint64{ts[k].DebitAccountID, ts[k].CreditAccountID} {
				if len(owners[id]) > 1 || s.m.bal[id] != nil && s.m.due(id, now) {
					out[i] = false
				}
			}
		}
	}
	return out
}

// step sends one request alone and judges every answer.
func (s *sim) step(step int) {
	ts := s.batch()
	rs, err := s.create(ts)
	s.check(err == nil, "step %d: %v", step, err)
	pred := s.predictable(ts)
	now := s.now.Load()
	wasDecided := map[uint64]bool{}
	for _, t := range ts {
		wasDecided[t.ID] = s.m.decided[t.ID] != nil
	}
	for i, u := range units(ts) {
		unit, got := ts[u[0]:u[1]+1], rs[u[0]:u[1]+1]
		// A copy of a transfer earlier in the request answers by the first copy's answer,
		// which the model has taken by now: always decidable.
		copyOf := len(unit) == 1 && s.m.decided[unit[0].ID] != nil && s.m.decided[unit[0].ID].t == unit[0]
		if pred[i] || copyOf {
			want := s.m.expect(unit, now)
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
				stored, found, err := s.store.Live().Transfer(t.ID)
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
	upTo, certain := s.m.chainBurns(unit, rs, s.now.Load())
	certain = certain && predicted
	v := s.store.Live()
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
	v := s.store.Live()
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
	v := s.store.Live()
	for id, d := range s.m.decided {
		stored, found, err := v.Transfer(id)
		s.check(err == nil && found, "decided transfer %d lost after crash %d (%v)", id, s.crashes, err)
		s.check(sentAs(&stored, &d.t), "transfer %d: stored %+v, decided %+v", id, stored, d.t)
		if d.result == ledger.ResultOK {
			s.check(stored.State != ledger.StateFailed && stored.State != ledger.StateInFlight,
				"transfer %d answered ok, now %+v", id, stored)
		} else {
			s.check(stored.State == ledger.StateFailed && stored.Result == d.result,
				"transfer %d refused with %v, now %+v", id, d.result, stored)
		}
	}
}

// burst sends a few requests at once, with copies of one request's transfers in another and
// ids that two shards claim at once, sometimes more than a shard admits, and sometimes cuts
// the power while they are in flight. A reply received before the cut must survive it; a
// request still in flight may or may not have happened: the store, once the ledger has
// settled, says which, and every answer must agree with it.
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
			if s.rng.IntN(4) == 0 { // the same id from another account
				t.DebitAccountID, t.CreditAccountID = s.account(), simBank
				t.Flags, t.PendingID, t.Timeout = 0, 0, 0
				if t.DebitAccountID == simBank {
					continue
				}
			}
			batches[i] = append(batches[i], t)
		}
	}
	crash := s.rng.IntN(3) == 0
	var cut atomic.Bool
	results := make([][]ledger.TransferResult, len(batches))
	errs := make([]error, len(batches))
	certain := make([]bool, len(batches))
	var wg sync.WaitGroup
	for i := range batches {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i], errs[i] = s.l.CreateTransfers(batches[i])
			certain[i] = !cut.Load()
		}()
	}
	waitAll := func() {
		done := make(chan struct{})
		go func() { wg.Wait(); close(done) }()
		s.await(done)
	}
	if crash {
		time.Sleep(time.Duration(s.rng.IntN(3000)) * time.Microsecond)
		cut.Store(true)
		s.crashes++
		crashed := s.fs.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: s.rng.IntN(101), RNG: s.rng})
		waitAll()
		s.close()
		s.fs = crashed
		s.open()
	} else {
		waitAll()
	}
	s.waitOutboxes()
	s.judgeBurst(batches, results, errs, certain)
	s.checkDecided()
	s.settle()
}

// judgeBurst checks a burst's answers against the store, then takes what the store says
// happened into the model.
func (s *sim) judgeBurst(batches [][]ledger.Transfer, results [][]ledger.TransferResult, errs []error, certain []bool) {
	v := s.store.Live()
	type answer struct {
		t       ledger.Transfer
		r       ledger.TransferResult
		inChain bool
	}
	answers := map[uint64][]answer{}       // certain answers, by id
	sent := map[uint64][]ledger.Transfer{} // what requests that may have run sent, by id
	var order []uint64
	for i, ts := range batches {
		overloaded := errors.Is(errs[i], ErrOverloaded)
		if overloaded {
			s.counts.overloaded++
		} else {
			s.check(errs[i] == nil || !certain[i], "burst: request %d: %v", i, errs[i])
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

func (s *sim) waitOutboxes() {
	deadline := time.Now().Add(10 * time.Second)
	for {
		quiet := true
		for sh := 0; sh < int(s.shards); sh++ {
			if s.l.OutboxLegs(sh) != 0 {
				quiet = false
			}
		}
		if quiet {
			return
		}
		s.check(time.Now().Before(deadline), "outboxes did not drain")
		time.Sleep(5 * time.Millisecond)
	}
}

// settle waits until the ledger has delivered every leg and released every hold past its
// timeout, then compares everything: balances, decided transfers, invariants.
func (s *sim) settle() {
	now := s.now.Load()
	var due []*simHold
	for _, h := range s.m.holds {
		if h.state == holdPending && h.expiresAt != 0 && h.expiresAt <= now {
			due = append(due, h)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	time.Sleep(20 * time.Millisecond) // a few ticks: every hold due by the ledger's clock is swept
	for {
		quiet := true
		for sh := 0; sh < int(s.shards); sh++ {
			if s.l.OutboxLegs(sh) != 0 || s.l.BufferedLegs(sh) != 0 {
				quiet = false
			}
		}
		v := s.store.Live()
		for _, h := range due {
			t, found, err := v.Transfer(h.t.ID)
			s.check(err == nil && found, "hold %d: %v %v", h.t.ID, found, err)
			if t.State == ledger.StatePending {
				quiet = false
			}
		}
		if quiet {
			break
		}
		s.check(time.Now().Before(deadline), "ledger did not settle")
		time.Sleep(5 * time.Millisecond)
	}
	v := s.store.Live()
	for _, h := range due {
		t, _, _ := v.Transfer(h.t.ID)
		s.check(t.State == ledger.StatePendingExpired, "hold %d past its timeout: %+v", h.t.ID, t)
		s.m.expire(h)
	}
	clear(s.m.unlanded) // every leg was answered: every buffered inflow landed
	s.compare()
	s.checkDecided()
}

// checkHot checks the hot accounts between requests, while their buffered inflows may still
// be on their way: read from one snapshot, what is posted plus what is buffered equals what
// was acknowledged. Nothing buffered is lost, and nothing is counted twice.
func (s *sim) checkHot(step int) {
	err := s.l.Read(func(v *storage.Reader) error {
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
	v := s.store.Live()
	for id, want := range s.m.bal {
		a, found, err := v.Account(id)
		s.check(err == nil && found, "account %d: %v %v", id, found, err)
		s.check(want.equals(a.Balance), "account %d: stored %+v, model %+v (crashes %d)", id, a.Balance, *want, s.crashes)
	}
	snap := s.store.Snapshot()
	rep, err := storage.Verify(snap, s.shards)
	_ = snap.Close()
	s.check(err == nil, "verify: %v", err)
	s.check(len(rep.Problems) == 0, "verify: %v", rep.Problems)
}
